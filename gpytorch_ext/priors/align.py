"""``align(module, how)``: make priors and constraints agree, by truncating the prior or relaxing the constraint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from gpytorch.constraints import GreaterThan, Interval, LessThan, Positive

from ._intervals import compare, constraint_bounds, describe_prior, format_interval, prior_interval
from ._truncated import TruncatedPrior
from .audit import constrained_sites

__all__ = ["Change", "align"]


@dataclass(frozen=True)
class Change:
    """One repair made by :func:`align`.

    :param parameter: full name of the raw parameter.
    :param prior_name: full name of the prior.
    :param action: ``"truncated prior"`` or ``"relaxed constraint"``.
    :param before: the prior (truncate) or constraint (relax) before, as text.
    :param after: the same after.
    """

    parameter: str
    prior_name: str
    action: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.action}: {self.before} -> {self.after}"


def _relaxed(old: Interval, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """A constraint on ``(lo, hi)`` keeping ``old``'s transform where the constraint kind stays the same."""
    finite_lo, finite_hi = bool(torch.isfinite(lo).all()), bool(torch.isfinite(hi).all())
    keep = {"transform": old._transform, "inv_transform": old._inv_transform}
    if not old.enforced:
        keep = {"transform": None, "inv_transform": None}
    if finite_lo and finite_hi:
        new = Interval(lo, hi, **(keep if type(old) is Interval or not old.enforced else {}))
    elif finite_lo:
        same = isinstance(old, GreaterThan) or not old.enforced
        if bool((lo == 0).all()):
            new = Positive(**(keep if same else {}))
        else:
            new = GreaterThan(lo, **(keep if same else {}))
    else:
        new = LessThan(hi, **(keep if isinstance(old, LessThan) or not old.enforced else {}))
    return new.to(old.lower_bound)


def align(module: torch.nn.Module, how: Literal["truncate", "relax"] = "truncate") -> list[Change]:
    """Repair every (parameter, prior) pair whose prior puts mass outside the parameter's constraint.

    - ``how="truncate"`` replaces the prior with :class:`~gpytorch_ext.priors.TruncatedPrior` on the
      constraint's interval (the constraint is unchanged).
    - ``how="relax"`` widens the constraint to cover the prior's support (e.g. ``GreaterThan(1e-4)`` to
      ``Positive()`` under a Gamma prior), keeping its transform where the kind of constraint stays the same,
      and keeps the parameter's current value.

    Pairs whose constraint admits values the prior excludes, or whose constraint is unenforced, are left
    alone (see :func:`~gpytorch_ext.priors.audit`). Priors are related to parameters as in ``audit``.

    :param module: any ``gpytorch.Module`` tree; modified in place.
    :param how: ``"truncate"`` or ``"relax"``.
    :return: what was changed (empty if nothing needed to be).
    :raises ValueError: for an unknown ``how``, or (before changing anything) when ``how="relax"`` would have to
        widen a constraint to the whole real line (use ``how="truncate"`` for those).
    """
    if how not in ("truncate", "relax"):
        raise ValueError(f"align(how=...) must be 'truncate' or 'relax', got {how!r}")
    todo = [site for site in constrained_sites(module) if not compare(site.prior, site.constraint).inside]
    if how == "relax":
        impossible = []
        for site in todo:
            s_lo, s_hi = prior_interval(site.prior)
            lo_c, hi_c = constraint_bounds(site.constraint)
            lo, hi = torch.minimum(lo_c, s_lo.to(lo_c)), torch.maximum(hi_c, s_hi.to(hi_c))
            if not (bool(torch.isfinite(lo).all()) or bool(torch.isfinite(hi).all())):
                impossible.append(site.parameter_name)
        if impossible:
            raise ValueError(
                f"align(how='relax') cannot relax the constraints of {', '.join(impossible)} to the whole real line "
                "(their priors have unbounded support); use how='truncate' for them"
            )

    changes: list[Change] = []
    for site in todo:
        parameter = site.parameter_name
        lo_c, hi_c = constraint_bounds(site.constraint)
        if how == "truncate":
            new_prior = TruncatedPrior(site.prior, lo_c.clone(), hi_c.clone())
            setattr(site.module, site.prior_name, new_prior)
            site.module._priors[site.prior_name] = (new_prior, site.closure, site.setting_closure)
            changes.append(Change(parameter, site.name, "truncated prior", describe_prior(site.prior), repr(new_prior)))
        else:
            s_lo, s_hi = prior_interval(site.prior)
            lo, hi = torch.minimum(lo_c, s_lo.to(lo_c)), torch.maximum(hi_c, s_hi.to(hi_c))
            old = site.owner._constraints[f"{site.attribute}_constraint"]
            if old is not site.constraint:
                continue  # already relaxed through another prior on the same parameter
            raw = site.parameter
            with torch.no_grad():
                value = old.transform(raw).clone()
            new = _relaxed(old, lo, hi)
            site.owner.register_constraint(site.attribute, new)
            with torch.no_grad():
                raw.data.copy_(new.inverse_transform(value))
            changes.append(
                Change(
                    parameter,
                    site.name,
                    "relaxed constraint",
                    f"{old!r} on {format_interval(lo_c, hi_c)}",
                    f"{new!r} on {format_interval(*constraint_bounds(new))}",
                )
            )
    return changes
