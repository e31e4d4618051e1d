"""``audit(module)``: list the (parameter, prior) pairs whose prior and constraint disagree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from gpytorch.constraints import Interval
from gpytorch.module import Module
from torch import Tensor

from ._intervals import compare, constraint_bounds, describe_prior, excluded_mass, format_interval, format_mass
from ._sites import PriorSite, unique_sites

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


def constrained_sites(module: torch.nn.Module) -> Iterator[PriorSite]:
    """The prior sites of ``module``'s tree (once per (parameter, prior)) that evaluate a constrained parameter."""
    for site in unique_sites(module):
        if site.constraint is not None:
            yield site


def _compare(prior, constraint: Interval) -> tuple[tuple[str, ...], tuple[Tensor, Tensor] | None, float | None]:
    kinds: list[str] = []
    mass = None
    fit = compare(prior, constraint)
    if not fit.inside:
        kinds.append(MASS_OUTSIDE)
        m = excluded_mass(prior, *fit.interval)
        mass = None if m is None else float(m.max())
    if not fit.covers:
        kinds.append(EXCLUDED_BY_PRIOR)
    if not constraint.enforced:
        kinds.append(NOT_ENFORCED)
    return tuple(kinds), fit.support, mass


def audit(module: torch.nn.Module) -> list[Finding]:
    """Find every (parameter, prior) pair of a GPyTorch module tree whose prior and constraint disagree.

    A prior is related to the parameter its closure reads (followed through properties and child modules, as in
    ``likelihood.register_prior("noise_prior", prior, "noise")``); it is compared with that parameter's
    constraint when it evaluates exactly the constrained value. Priors on other functions of parameters, priors
    with a ``transform`` and multivariate priors are not compared (except for :data:`NOT_ENFORCED`). Each
    (parameter, prior) pair is listed once, however many paths reach its module. Unenforced
    (``transform=None``) constraints of parameters without a prior are listed too.

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
    for site in constrained_sites(module):
        parameter = site.parameter_name
        covered.add(parameter)
        kinds, support, mass = _compare(site.prior, site.constraint)
        if kinds:
            findings.append(
                Finding(
                    parameter=parameter,
                    prior_name=site.name,
                    prior=site.prior,
                    prior_support=support,
                    constraint=site.constraint,
                    constraint_interval=constraint_bounds(site.constraint),
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
