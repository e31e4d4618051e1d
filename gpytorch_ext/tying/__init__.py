"""Pyro-style parameter tying across a GPyTorch model, by regular expression."""

from ._equalize import equalize, tied, untie

__all__ = ["equalize", "tied", "untie"]
