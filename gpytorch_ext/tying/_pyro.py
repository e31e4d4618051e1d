"""GPyTorch's Pyro entry points on a tied module: one value per tie, Pyro's ``equalize`` for the kept priors.

GPyTorch's ``pyro_sample_from_prior`` samples a copy of the module in which every child was copied separately,
so the copy's members are no longer tied: after sampling, each tie gives its first member's value (the sampled
one) to the others. With ``keep_dist=True`` the other members' priors are sampled inside
:func:`pyro.poutine.equalize` (``keep_dist=True``): they become observed sites holding the first member's value,
and ``pyro_load_from_samples`` gives them that value back from the first member's site.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

TIES = "_equalize_ties"  # root.__dict__: list[Tie]


def pyro_sample_from_prior(root: nn.Module) -> nn.Module:
    """``root.pyro_sample_from_prior()`` of a tied module (installed on the instance by ``equalize``)."""
    import pyro

    ties = root.__dict__[TIES]
    with contextlib.ExitStack() as stack:
        for tie in ties:
            if tie.kept:
                sites = [re.escape(site) for site in (*tie.sites, *tie.kept)]
                stack.enter_context(pyro.poutine.equalize(sites=sites, keep_dist=True))
        copy = type(root).pyro_sample_from_prior(root)
    for tie in ties:
        tie.propagate(copy)
    return copy


def pyro_load_from_samples(root: nn.Module, samples_dict: Mapping[str, Any]) -> None:
    """``root.pyro_load_from_samples(samples)`` of a tied module: observed (kept) sites take the group's value."""
    samples = dict(samples_dict)
    for tie in root.__dict__[TIES]:
        value = next((samples[site] for site in tie.sites if site in samples), None)
        if value is not None:
            for site in tie.kept:
                samples.setdefault(site, value)
    type(root).pyro_load_from_samples(root, samples)
