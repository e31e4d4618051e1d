"""``audit(module)``: list the (parameter, prior) pairs whose prior and constraint disagree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from gpytorch.constraints import Interval
from gpytorch.module import Module
from torch import Tensor

from ._intervals import (
    Target,
    constraint_bounds,
    describe_prior,
    excluded_mass,
    find_target,
    format_interval,
    format_mass,
    prior_interval,
)

__all__ = ["EXCLUDED_BY_PRIOR", "Finding", "MASS_OUTSIDE", "NOT_ENFORCED", "audit"]

MASS_OUTSIDE = "prior mass outside the constraint"
EXCLUDED_BY_PRIOR = "constraint admits values the prior excludes"
NOT_ENFORCED = "constraint not enforced (transform=None)"


@dataclass(frozen=True, eq=False)
class Finding:
    """One (parameter, prior) pair whose prior and constraint disagree.

    :param parameter: full name of the raw parameter, e.g. ``"likelihood.noise_covar.raw_noise"``.
    :param prior_name: full name of the prior (``None`` for an unenforced constraint on a parameter without one).
    :param prior: the prior, or ``None``.
    :param prior_support: the prior's support ``(lower, upper)``, or ``None`` when it is not an interval.
    :param constraint: the parameter's constraint.
    :param constraint_interval: the interval ``(lower, upper)`` the constraint admits.
    :param kinds: what disagrees: any of :data:`MASS_OUTSIDE`, :data:`EXCLUDED_BY_PRIOR`, :data:`NOT_ENFORCED`.
    :param excluded_mass: the prior mass outside the constraint (the largest over batch elements) when the
        prior has a CDF and :data:`MASS_OUTSIDE` is among the kinds; ``None`` otherwise.
    """

    parameter: str
    prior_name: str | None
    prior: object | None
    prior_support: tuple[Tensor, Tensor] | None
    constraint: Interval
    constraint_interval: tuple[Tensor, Tensor]
    kinds: tuple[str, ...]
    excluded_mass: float | None = None

    @property
    def kind(self) -> str:
        """All kinds joined by ``"; "``."""
        return "; ".join(self.kinds)

    def __str__(self) -> str:
        if self.prior is None:
            prior = "no prior"
        else:
            support = "support unknown" if self.prior_support is None else format_interval(*self.prior_support)
            prior = f"{describe_prior(self.prior)} on {support}"
        kinds = []
        for kind in self.kinds:
            if kind == MASS_OUTSIDE:
                mass = "mass unknown" if self.excluded_mass is None else format_mass(self.excluded_mass)
                kind = f"{kind} ({mass})"
            kinds.append(kind)
        return (
            f"{self.parameter}: {prior} vs {self.constraint!r} on {format_interval(*self.constraint_interval)}: "
            + "; ".join(kinds)
        )


def _join(prefix: str, name: str) -> str:
    return prefix + ("." if prefix else "") + name


def _prior_sites(module: torch.nn.Module) -> Iterator[tuple[str, Module, str, object, object, object, Target]]:
    """``(prefix, owner, prior_name, prior, closure, setting_closure, target)`` for priors with a known parameter."""
    for prefix, owner in module.named_modules():
        if not isinstance(owner, Module):
            continue
        for prior_name, (prior, closure, setting_closure) in owner._priors.items():
            if prior is None:
                continue
            target = find_target(owner, prior_name, closure)
            if target is not None:
                yield prefix, owner, prior_name, prior, closure, setting_closure, target


def _compare(prior, constraint: Interval) -> tuple[tuple[str, ...], tuple[Tensor, Tensor] | None, float | None]:
    kinds: list[str] = []
    mass = None
    support = prior_interval(prior)
    lo_c, hi_c = constraint_bounds(constraint)
    if support is not None:
        s_lo, s_hi = support[0].to(lo_c), support[1].to(lo_c)
        if not bool(((s_lo >= lo_c) & (s_hi <= hi_c)).all()):
            kinds.append(MASS_OUTSIDE)
            m = excluded_mass(prior, lo_c, hi_c)
            mass = None if m is None else float(m.max())
        if bool(((lo_c < s_lo) | (hi_c > s_hi)).any()):
            kinds.append(EXCLUDED_BY_PRIOR)
    if not constraint.enforced:
        kinds.append(NOT_ENFORCED)
    return tuple(kinds), support, mass


def audit(module: torch.nn.Module) -> list[Finding]:
    """Find every (parameter, prior) pair of a GPyTorch module tree whose prior and constraint disagree.

    A prior is related to its parameter by GPyTorch's convention (prior ``X_prior`` on the value of ``raw_X``
    under ``raw_X_constraint``), whether it was registered by parameter name or by closure; a closure-given
    prior counts only when it evaluates exactly the constrained parameter value. Priors on other functions of
    parameters, priors with a ``transform`` and multivariate priors are not compared (except for
    :data:`NOT_ENFORCED`). Unenforced (``transform=None``) constraints of parameters without a prior are
    listed too.

    :param module: any ``gpytorch.Module`` (a model, a likelihood, a kernel, an MLL), batched or not.
    :return: the findings, in module order; an empty list for a model whose priors fit their constraints.

    Example:
        >>> lik = gpytorch.likelihoods.GaussianLikelihood(noise_prior=gpytorch.priors.GammaPrior(0.5, 2.0))
        >>> print(*audit(lik), sep="\\n")
        noise_covar.raw_noise: GammaPrior(concentration=0.5, rate=2) on (0, inf) vs GreaterThan(1.000E-04) on
        (0.0001, inf): prior mass outside the constraint (1.6%)
    """
    findings: list[Finding] = []
    covered: set[str] = set()
    for prefix, _, prior_name, prior, _, _, target in _prior_sites(module):
        parameter = _join(prefix, target.parameter)
        covered.add(parameter)
        kinds, support, mass = _compare(prior, target.constraint)
        if kinds:
            findings.append(
                Finding(
                    parameter=parameter,
                    prior_name=_join(prefix, prior_name),
                    prior=prior,
                    prior_support=support,
                    constraint=target.constraint,
                    constraint_interval=constraint_bounds(target.constraint),
                    kinds=kinds,
                    excluded_mass=mass,
                )
            )
    for prefix, owner in module.named_modules():
        if not isinstance(owner, Module):
            continue
        for constraint_name, constraint in owner._constraints.items():
            parameter = _join(prefix, constraint_name[: -len("_constraint")])
            if parameter in covered or constraint is None or constraint.enforced:
                continue
            covered.add(parameter)
            findings.append(
                Finding(
                    parameter=parameter,
                    prior_name=None,
                    prior=None,
                    prior_support=None,
                    constraint=constraint,
                    constraint_interval=constraint_bounds(constraint),
                    kinds=(NOT_ENFORCED,),
                )
            )
    return findings
