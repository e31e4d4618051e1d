"""Pyro-style parameter tying across a GPyTorch model, by regular expression: :func:`equalize`.

- :mod:`._equalize`: the front door (matching, checks, the root's hooks);
- :mod:`._tie`: one tie, a single ``nn.Parameter`` registered under every member's name;
- :mod:`._broadcast`: members whose own shape is larger than the shared one (batch dimensions, broadcasting);
- :mod:`._pyro` and :mod:`._botorch`: the Pyro and BoTorch entry points of a tied module.
"""

from ._equalize import equalize, tied, untie

__all__ = ["equalize", "tied", "untie"]
