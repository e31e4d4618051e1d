"""Intervals of prior supports and GPyTorch constraints, and which constraint a prior's value lives under.

Private and self-contained (imports only torch and gpytorch) so that it can be vendored into GPyTorch.

GPyTorch's convention: a prior registered as ``X_prior`` evaluates the constrained value ``X``, which is
``raw_X_constraint.transform(raw_X)``. A prior registered by parameter name evaluates that attribute. The
helpers below recover the (raw parameter, constraint) pair a prior's value lives under, and confirm a
by-name guess by evaluating the prior's closure, so a prior on some other function of a parameter (for
example ``log(lengthscale)``) is never mistaken for a prior on the parameter itself.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from gpytorch.constraints import Interval
from torch import Tensor
from torch.distributions import constraints as tc

__all__ = [
    "PriorConstraintWarning",
    "Target",
    "constraint_bounds",
    "describe_prior",
    "excluded_mass",
    "find_target",
    "format_interval",
    "format_mass",
    "support_bounds",
]


class PriorConstraintWarning(UserWarning):
    """A prior puts mass where its parameter's constraint cannot go, or a parameter left its constraint."""


@dataclass(frozen=True)
class Target:
    """The parameter a prior's value lives on.

    :param parameter: name of the raw parameter in the prior's module (e.g. ``"raw_noise"``).
    :param constraint: the parameter's constraint; the prior evaluates values inside its interval.
    """

    parameter: str
    constraint: Interval


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


# --- which parameter a prior lives on ----------------------------------------------------------------


def _string_parameter(closure) -> str | None:
    """The parameter name of a prior registered by name (GPyTorch wraps it in a ``closure_new`` closure)."""
    code = getattr(closure, "__code__", None)
    cells = getattr(closure, "__closure__", None)
    if code is None or not cells or code.co_freevars != ("param",):
        return None
    if not getattr(closure, "__qualname__", "").endswith("register_prior.<locals>.closure_new"):
        return None
    value = cells[0].cell_contents
    return value if isinstance(value, str) else None


def _candidates(module, prior_name: str, closure) -> list[tuple[str, bool]]:
    """Candidate ``(raw parameter, needs confirmation)`` pairs for a prior, from GPyTorch's naming convention."""
    constraints_ = getattr(module, "_constraints", {})
    param = _string_parameter(closure)
    if param is not None:
        if param in getattr(module, "_parameters", {}):
            # the prior evaluates the raw tensor itself: that is the parameter's value only when the
            # constraint does not transform it
            c = constraints_.get(f"{param}_constraint")
            return [(param, False)] if c is not None and not c.enforced else []
        return [(f"raw_{param}", False)] if f"raw_{param}_constraint" in constraints_ else []
    if not prior_name.endswith("_prior"):
        return []
    stem = prior_name[: -len("_prior")]
    out = []
    if f"raw_{stem}_constraint" in constraints_:
        out.append((f"raw_{stem}", True))
    if stem.startswith("raw_") and f"{stem}_constraint" in constraints_:
        out.append((stem, True))  # e.g. MultitaskGaussianLikelihood's "raw_noise_prior" on ``noise``
    return out


def find_target(module, prior_name: str, closure, value: Tensor | None = None) -> Target | None:
    """The (raw parameter, constraint) whose constrained value a registered prior evaluates, or ``None``.

    A guess from the naming convention is confirmed by evaluating ``closure(module)`` (or using ``value``,
    its result when the caller already has it) and comparing with the constraint's transform of the raw
    parameter.
    """
    for param, confirm in _candidates(module, prior_name, closure):
        constraint = module._constraints[f"{param}_constraint"]
        if not isinstance(constraint, Interval):
            continue
        if confirm:
            try:
                with torch.no_grad():
                    got = closure(module) if value is None else value
                    want = constraint.transform(getattr(module, param))
                if not (isinstance(got, Tensor) and got.shape == want.shape and torch.equal(got, want)):
                    continue
            except Exception:  # a closure that cannot be evaluated yet tells us nothing
                continue
        return Target(param, constraint)
    return None


def warn(message: str, stacklevel: int) -> None:
    """Emit a :class:`PriorConstraintWarning`; ``stacklevel`` counts from the caller of this function."""
    warnings.warn(message, PriorConstraintWarning, stacklevel=stacklevel + 1)
