"""Capabilities that are not patches (functions the user calls), with a self-check in the report's format.

A :class:`~gpytorch_ext.Patch` repairs GPyTorch in place, so its self-check compares GPyTorch with the patch
reverted and applied. A feature such as :func:`~gpytorch_ext.equalize` changes nothing until it is called; its
self-check compares what a user writes with GPyTorch alone (the ``upstream`` measurement) with what the feature
gives (the ``patched`` measurement), in the same :class:`~gpytorch_ext.CheckResult`, so that
``python -m gpytorch_ext`` shows every capability the same way.

Each check needs only torch and GPyTorch and takes well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._registry import CheckResult, Probe

__all__ = ["Feature", "features"]


@dataclass(frozen=True)
class Feature:
    """A capability of gpytorch-ext that is called explicitly rather than patched in.

    :param name: the report's name for it, e.g. ``"equalize"``.
    :param summary: one line saying what it does.
    :param without: measures the defect as a user meets it with GPyTorch alone.
    :param with_feature: measures the same with the feature used.
    """

    name: str
    summary: str
    without: Callable[[], Probe]
    with_feature: Callable[[], Probe]

    def self_check(self) -> CheckResult:
        """Run both measurements; the check passes when the one with the feature shows no defect."""
        before, after = _run(self.without), _run(self.with_feature)
        return CheckResult(self.name, before.summary, after.summary, before.defect, not after.defect)


def _run(measure: Callable[[], Probe]) -> Probe:
    try:
        return measure()
    except Exception as exc:  # a self-check must report, never crash the report
        return Probe(f"self-check raised {type(exc).__name__}: {str(exc)[:80]}", defect=True)


# --- equalize ---------------------------------------------------------------------------------------------------

_CONCENTRATION, _RATE, _VALUE = 3.0, 6.0, 0.4


def _two_kernels() -> torch.nn.Module:
    from gpytorch.kernels import RBFKernel
    from gpytorch.priors import GammaPrior

    return RBFKernel(lengthscale_prior=GammaPrior(_CONCENTRATION, _RATE)) + RBFKernel(
        lengthscale_prior=GammaPrior(_CONCENTRATION, _RATE)
    )


def _measure_tie(model: torch.nn.Module, how: str) -> Probe:
    """Prior terms over the two lengthscales, against a model written with one lengthscale and one prior.

    The reference is the one-parameter model's log prior, ``Gamma(3, 6).log_prob(l)`` from
    :mod:`torch.distributions`; an MLL adds ``prior.log_prob(closure(module))`` for each entry of
    ``named_priors()``, which is what is summed here.
    """
    first, second = model.kernels
    with torch.no_grad():
        first.lengthscale = _VALUE  # set through the first member only
        shared = bool(torch.equal(first.lengthscale, second.lengthscale))
        terms = [float(prior.log_prob(closure(module)).sum()) for _, module, prior, closure, _ in model.named_priors()]
    total = sum(terms)
    reference = float(torch.distributions.Gamma(_CONCENTRATION, _RATE).log_prob(torch.tensor(_VALUE)))
    counted = total / reference
    once = len(terms) == 1 and abs(total - reference) <= 1e-6 * abs(reference)
    plural = "" if len(terms) == 1 else "s"
    summary = f"{how}: prior counted {counted:.3g}x ({len(terms)} term{plural}), one value {'yes' if shared else 'no'}"
    return Probe(summary, defect=not (once and shared))


def _tied_by_hand() -> Probe:
    model = _two_kernels()
    first, second = model.kernels
    second.raw_lengthscale = first.raw_lengthscale  # the usual way: share the nn.Parameter
    return _measure_tie(model, "shared nn.Parameter")


def _tied_by_equalize() -> Probe:
    from .tying import equalize

    model = equalize(_two_kernels(), r"kernels\.\d+\.lengthscale")
    return _measure_tie(model, "equalize")


EQUALIZE = Feature(
    name="equalize",
    summary="tie parameters across a model by regular expression: one value shared, the prior counted once",
    without=_tied_by_hand,
    with_feature=_tied_by_equalize,
)


def features() -> tuple[Feature, ...]:
    """The features the report checks, in the order it shows them."""
    return (EQUALIZE,)
