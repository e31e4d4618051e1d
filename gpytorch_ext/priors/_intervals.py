"""Intervals of prior supports and GPyTorch constraints: whether a prior fits its constraint, and the warning.

Private and self-contained (imports only torch and gpytorch) so that it can be vendored into GPyTorch.

:func:`compare` is the one place that decides how a univariate prior's support and a constraint's interval
relate; auditing, aligning, sampling and the registration warnings all ask it.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import NamedTuple

import torch
from gpytorch.constraints import Interval
from torch import Tensor
from torch.distributions import constraints as tc

from ._settings import prior_constraint_warning_threshold

__all__ = [
    "Fit",
    "PriorConstraintWarning",
    "compare",
    "constraint_bounds",
    "describe_prior",
    "excluded_mass",
    "format_interval",
    "format_mass",
    "prior_interval",
    "support_bounds",
    "warn",
    "warns_about_mass",
]


class PriorConstraintWarning(UserWarning):
    """A prior puts mass where its parameter's constraint cannot go, or a parameter left its constraint."""


_PRIOR_FIELDS = ("concentration", "rate", "loc", "scale", "low", "high", "df", "a", "b", "sigma", "lower", "upper")


def support_bounds(support: tc.Constraint) -> tuple[float | Tensor, float | Tensor] | None:
    """The interval ``(lower, upper)`` of a univariate torch support constraint, or ``None`` if it is none.

    Open and closed ends are not distinguished (they differ by a set of measure zero).
    """
    while isinstance(support, tc.independent):
        support = support.base_constraint
    if getattr(support, "is_discrete", False):
        return None
    if isinstance(support, tc._Real):
        return -math.inf, math.inf
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    if lower is None and upper is None:
        return None
    return (-math.inf if lower is None else lower), (math.inf if upper is None else upper)


def constraint_bounds(constraint: Interval) -> tuple[Tensor, Tensor]:
    """The interval ``(lower, upper)`` a GPyTorch constraint admits (its transform maps onto the open interval)."""
    return constraint.lower_bound, constraint.upper_bound


def _tensor(x: float | Tensor, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x if like is None else x.to(like)
    if like is None:
        return torch.tensor(float(x))
    return torch.tensor(float(x), dtype=like.dtype, device=like.device)


def _prior_support(prior) -> tuple[Tensor, Tensor] | None:
    if len(prior.event_shape) != 0 or getattr(prior, "_transform", None) is not None:
        return None
    try:
        bounds = support_bounds(prior.support)
    except (NotImplementedError, AttributeError):
        return None
    if bounds is None:
        return None
    return _tensor(bounds[0]), _tensor(bounds[1])


def prior_interval(prior) -> tuple[Tensor, Tensor] | None:
    """The support of a univariate, untransformed prior as ``(lower, upper)`` tensors; ``None`` otherwise."""
    return _prior_support(prior)


def excluded_mass(prior, lower: Tensor, upper: Tensor) -> Tensor | None:
    r"""The prior mass outside ``[lower, upper]``, :math:`F(\text{lower}) + 1 - F(\text{upper})`, elementwise.

    :return: a tensor broadcast over the prior's batch shape and the bounds, or ``None`` when the prior has no
        CDF (or is not univariate).
    """
    support = _prior_support(prior)
    if support is None:
        return None
    s_lo, s_hi = support
    try:
        with torch.no_grad():
            # evaluate in double precision where the prior allows (tail masses cancel badly in float32)
            ref = prior.cdf(_interior(s_lo, s_hi).to(torch.float64))
            lower = lower.to(ref)
            upper = upper.to(ref)
            s_lo, s_hi = s_lo.to(ref), s_hi.to(ref)
            point = _interior(s_lo, s_hi)
            cut_lo = lower > s_lo
            cut_hi = upper < s_hi
            f_lo = prior.cdf(torch.where(cut_lo, lower.clamp(max=torch.finfo(ref.dtype).max), point))
            f_hi = prior.cdf(torch.where(cut_hi, upper.clamp(min=-torch.finfo(ref.dtype).max), point))
            below = torch.where(cut_lo, f_lo, torch.zeros_like(f_lo))
            above = torch.where(cut_hi, 1 - f_hi, torch.zeros_like(f_hi))
            return (below + above).clamp(0.0, 1.0)
    except (NotImplementedError, ValueError):
        return None


def _interior(lo: Tensor, hi: Tensor) -> Tensor:
    """A point strictly inside ``(lo, hi)`` (elementwise), for evaluating functions safely off the bounds."""
    mid = (lo + hi) / 2
    lo_f, hi_f = lo > -math.inf, hi < math.inf  # bounds are never NaN
    one = torch.ones_like(mid)
    mid = torch.where(lo_f & ~hi_f, lo + one.maximum(lo.abs()), mid)
    mid = torch.where(~lo_f & hi_f, hi - one.maximum(hi.abs()), mid)
    return torch.where(~lo_f & ~hi_f, torch.zeros_like(mid), mid)


def _dtype_of(prior) -> torch.dtype:
    for name in _PRIOR_FIELDS:
        value = getattr(prior, name, None)
        if isinstance(value, Tensor) and value.is_floating_point():
            return value.dtype
    return torch.get_default_dtype()


def _fmt_number(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _fmt_value(value: Tensor) -> str:
    if value.numel() == 1:
        return _fmt_number(float(value))
    lo, hi = float(value.min()), float(value.max())
    if lo == hi:
        return _fmt_number(lo)
    return f"[{_fmt_number(lo)}..{_fmt_number(hi)}]"


def format_interval(lower: Tensor | float, upper: Tensor | float) -> str:
    """``"(0.0001, inf)"``; batched bounds print their range, e.g. ``"([0..1], inf)"``."""
    return f"({_fmt_value(_tensor(lower))}, {_fmt_value(_tensor(upper))})"


def format_mass(mass: Tensor | float | None) -> str:
    """``"1.6%"``, ``"1.2e-06"``; batched masses print their maximum as ``"up to ..."``."""
    if mass is None:
        return "unknown mass (the prior has no CDF)"
    m = _tensor(mass)
    prefix = "up to " if m.numel() > 1 and float(m.min()) != float(m.max()) else ""
    value = float(m.max())
    text = f"{100 * value:.3g}%" if value >= 1e-5 else f"{value:.2g}"
    return prefix + text


def describe_prior(prior) -> str:
    """A one-line description with the prior's parameters, e.g. ``"GammaPrior(concentration=0.5, rate=2)"``."""
    fields = []
    for name in _PRIOR_FIELDS:
        try:
            value = getattr(prior, name, None)
        except Exception:  # a property may fail on exotic priors
            value = None
        if isinstance(value, Tensor) and value.is_floating_point() and name not in dict(fields):
            fields.append((name, _fmt_value(value.detach())))
    base = getattr(prior, "base_prior", None)
    if base is not None:
        fields = [(n, v) for n, v in fields if n in ("lower", "upper")]
        return f"{type(prior).__name__}({describe_prior(base)}, " + ", ".join(f"{n}={v}" for n, v in fields) + ")"
    return f"{type(prior).__name__}(" + ", ".join(f"{n}={v}" for n, v in fields) + ")"


# --- how a prior's support and a constraint's interval relate ------------------------------------------


class Fit(NamedTuple):
    """How a univariate prior's support relates to a constraint's interval (elementwise over batches).

    :param support: the prior's support ``(lower, upper)``; ``None`` when it is not an interval (a multivariate
        prior, a prior with a transform): then nothing is known and every flag below is ``True``.
    :param interval: the interval ``(lower, upper)`` the constraint admits.
    :param inside: the support lies inside the interval: the prior puts no mass where the parameter cannot go.
    :param overlaps: the support and the interval share some interval (in every batch element).
    :param covers: the interval lies inside the support: the constraint admits no value the prior excludes.
    """

    support: tuple[Tensor, Tensor] | None
    interval: tuple[Tensor, Tensor]
    inside: bool
    overlaps: bool
    covers: bool


def compare(prior, constraint: Interval) -> Fit:
    """How ``prior``'s support relates to the interval of ``constraint`` (see :class:`Fit`)."""
    interval = constraint_bounds(constraint)
    support = prior_interval(prior)
    if support is None:
        return Fit(None, interval, True, True, True)
    lo_c, hi_c = interval
    s_lo, s_hi = support[0].to(lo_c), support[1].to(lo_c)
    return Fit(
        support,
        interval,
        inside=bool(((s_lo >= lo_c) & (s_hi <= hi_c)).all()),
        overlaps=not bool(((s_hi <= lo_c) | (s_lo >= hi_c)).any()),
        covers=bool(((lo_c >= s_lo) & (hi_c <= s_hi)).all()),
    )


def warns_about_mass(mass: Tensor | None) -> bool:
    """Whether an excluded prior mass (``None``: unknown) exceeds :class:`prior_constraint_warning_threshold`."""
    return mass is None or float(mass.max()) > prior_constraint_warning_threshold.value()


# --- the warning ----------------------------------------------------------------------------------------

#: packages whose frames a warning skips on its way to the user's line: the libraries, and this module's own
#: package (which holds the code that calls into it)
_LIBRARIES = frozenset({"gpytorch", "linear_operator", "torch", "botorch", "pyro"})
_PACKAGE = __name__.rpartition(".")[0]


def _is_library(module_name: str) -> bool:
    return module_name.partition(".")[0] in _LIBRARIES or (module_name + ".").startswith(_PACKAGE + ".")


def _user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called from :func:`warn` that names the first frame outside the
    libraries (GPyTorch, torch, linear_operator, BoTorch, Pyro) and this package: the user's line."""
    frame = sys._getframe(2)  # the caller of warn()
    level = 2
    while _is_library(frame.f_globals.get("__name__", "")) and frame.f_back is not None:
        frame = frame.f_back
        level += 1
    return level


def warn(message: str) -> None:
    """Emit a :class:`PriorConstraintWarning` attributed to the user's line that led here.

    Which repetitions show is up to the warnings filters: under the default action a message shows once per
    line that triggers it, ``warnings.simplefilter("always")`` shows every one.
    """
    warnings.warn(message, PriorConstraintWarning, stacklevel=_user_stacklevel())
