"""Constraint-aware prior handling for GPyTorch modules: the repair behind the ``constraint-aware-priors`` patch.

Private and self-contained (imports only torch and gpytorch, plus the sibling private modules) so that it can
be vendored into GPyTorch as the upstream change:

- :func:`pyro_sample_from_prior` replaces ``gpytorch.module._pyro_sample_from_prior``: each prior whose support
  is not inside its parameter's constraint is sampled from its truncation to the constraint (the Pyro site
  keeps its name and declares the truncated support); priors whose support is inside are sampled exactly as
  upstream does.
- :func:`check_prior_registered` / :func:`check_constraint_registered` run after ``Module.register_prior`` /
  ``Module.register_constraint`` and warn once per configuration when a prior puts mass outside an enforced
  constraint.
- :func:`guard_prior` wraps, for ``Module.named_priors``, a prior whose parameter has an unenforced
  (``transform=None``) constraint: a value outside the interval gives a prior term of ``-inf`` (never NaN)
  and one warning naming the parameter and value. Values inside give exactly the upstream term.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import MutableSet

import torch
from gpytorch.constraints import Interval
from gpytorch.module import Module
from torch import Tensor

from ._intervals import (
    Target,
    _string_parameter,
    constraint_bounds,
    describe_prior,
    excluded_mass,
    find_target,
    format_interval,
    format_mass,
    prior_interval,
    warn,
)
from ._truncated import TruncatedPrior

__all__ = [
    "check_constraint_registered",
    "check_prior_registered",
    "guard_prior",
    "pyro_sample_from_prior",
    "reset_warnings",
    "truncation_bounds",
]

_WARNED: set[tuple] = set()


def reset_warnings() -> None:
    """Forget which configurations were warned about, so that each warns again once."""
    _WARNED.clear()


def _join(prefix: str, name: str) -> str:
    return prefix + ("." if prefix else "") + name


# --- sampling --------------------------------------------------------------------------------------


def truncation_bounds(prior, target: Target | None, parameter: str) -> tuple[Tensor, Tensor] | None:
    """The interval to truncate ``prior`` to for sampling, or ``None`` when its support is inside the constraint.

    :param parameter: the parameter's full name, for the error message.
    :raises ValueError: if the prior's support and the constraint do not overlap at all.
    """
    if target is None:
        return None
    support = prior_interval(prior)
    if support is None:
        return None
    lo_c, hi_c = constraint_bounds(target.constraint)
    s_lo, s_hi = support[0].to(lo_c), support[1].to(lo_c)
    if bool(((s_lo >= lo_c) & (s_hi <= hi_c)).all()):
        return None
    if bool(((s_hi <= lo_c) | (s_lo >= hi_c)).any()):
        raise ValueError(
            f"cannot sample parameter {parameter!r} from {describe_prior(prior)}: the prior's support "
            f"{format_interval(s_lo, s_hi)} does not overlap the interval {format_interval(lo_c, hi_c)} of its "
            f"constraint {target.constraint!r}. Use a prior whose support meets the constraint."
        )
    return lo_c, hi_c


def _clamp_limits(lo: Tensor, hi: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Limits inside the open interval, far enough from its ends that the constraint's inverse transform is finite."""
    lo, hi = lo.to(dtype), hi.to(dtype)
    eps = torch.finfo(dtype).eps
    span = hi - lo
    scale = torch.maximum(torch.maximum(lo.abs(), hi.abs()).nan_to_num(posinf=0.0), span.nan_to_num(posinf=0.0))
    margin = torch.minimum(4 * eps * scale, span / 4).nan_to_num(posinf=0.0)
    inf = torch.full_like(lo, math.inf)
    low = torch.where(torch.isfinite(lo), torch.maximum(lo + margin, torch.nextafter(lo, inf)), lo)
    high = torch.where(torch.isfinite(hi), torch.minimum(hi - margin, torch.nextafter(hi, -inf)), hi)
    return low, high


_PLANS: OrderedDict[tuple, tuple | None] = OrderedDict()  # see _sampling_plan
_PLANS_SIZE = 256
_CACHEABLE_MODULES = ("gpytorch.priors", "torch.distributions")


def _plan_key(prior, constraint: Interval, shape: torch.Size) -> tuple | None:
    """A key that determines the sampling plan, or ``None`` where it cannot be trusted to.

    A GPyTorch or torch distribution is fully determined by its class and its ``arg_constraints`` arguments;
    priors from elsewhere, with a transform, large or learnable arguments are not cached.
    """
    cls = type(prior)
    if not cls.__module__.startswith(_CACHEABLE_MODULES) or getattr(prior, "_transform", None) is not None:
        return None
    parts: list = [cls, shape, *(b.tolist() for b in constraint_bounds(constraint))]
    for name in prior.arg_constraints:
        value = getattr(prior, name, None)
        if not isinstance(value, Tensor) or value.numel() > 64 or value.requires_grad:
            return None
        parts.append((name, value.dtype, value.device, value.shape, tuple(value.flatten().tolist())))
    return tuple(parts)


def _sampling_plan(prior, target: Target, shape: torch.Size, parameter: str) -> tuple | None:
    """How to sample ``prior`` for a parameter of shape ``shape`` under ``target``'s constraint.

    ``None`` when the prior's support lies inside the constraint (sample it as upstream does); otherwise
    ``(TruncatedPrior on the interval at batch shape shape, low, high)`` with ``low``/``high`` the clamp limits
    that keep a draw where the constraint's inverse transform is finite. Plans are reused across calls for
    equal arguments: ``pyro_sample_from_prior`` works on a fresh deep copy of the model at every call, so
    without the cache each call would rebuild the truncation (its CDF bounds included) for the same prior.

    :raises ValueError: naming the parameter, when the prior's support does not overlap the constraint at all.
    """
    key = _plan_key(prior, target.constraint, shape)
    if key is not None and key in _PLANS:
        _PLANS.move_to_end(key)
        return _PLANS[key]
    bounds = truncation_bounds(prior, target, parameter)
    plan = None
    if bounds is not None:
        # a cached plan owns its copy of the prior: the sampled module, which holds this prior, is the caller's
        base = copy.deepcopy(prior) if key is not None else prior
        try:
            dist = TruncatedPrior(base, *bounds, batch_shape=shape)
        except ValueError as exc:
            raise ValueError(f"cannot sample parameter {parameter!r}: {exc}") from exc
        if dist.batch_shape != shape:
            dist = dist.expand(shape)
        plan = (dist, *_clamp_limits(*bounds, dist.lower.dtype))
    if key is not None:
        _PLANS[key] = plan
        if len(_PLANS) > _PLANS_SIZE:
            _PLANS.popitem(last=False)
    return plan


def pyro_sample_from_prior(module: torch.nn.Module, memo: MutableSet | None = None, prefix: str = ""):
    """Replacement of ``gpytorch.module._pyro_sample_from_prior`` that never produces NaN parameters.

    Each prior is sampled at a Pyro site named as upstream names it. A univariate prior whose support lies
    inside its parameter's constraint is sampled exactly as upstream does (``prior.expand(shape)``); any other
    is sampled from :class:`TruncatedPrior` on the constraint's interval, whose support tells Pyro's NUTS to
    move in an unconstrained space mapping into the constraint.

    :raises ValueError: naming the parameter, when a prior's support does not overlap its constraint at all.
    """
    try:
        import pyro
    except ImportError:
        raise RuntimeError("Cannot call pyro_sample_from_prior without pyro installed!") from None

    if memo is None:
        memo = set()
    if isinstance(module, Module):
        for prior_name, (prior, closure, setting_closure) in module._priors.items():
            if prior is not None and prior not in memo:
                if setting_closure is None:
                    raise RuntimeError(
                        "Cannot use Pyro for sampling without a setting_closure for each prior,"
                        f" but the following prior had none: {prior_name}, {prior}."
                    )
                memo.add(prior)
                current = closure(module)
                plan = None
                if module._constraints:
                    target = find_target(module, prior_name, closure, current)
                    if target is not None:
                        plan = _sampling_plan(prior, target, current.shape, _join(prefix, target.parameter))
                if plan is None:
                    dist = prior.expand(current.shape)
                    if not callable(dist) and prior_interval(dist) is not None:
                        # e.g. HalfNormalPrior.expand returns a torch HalfNormal, which Pyro cannot sample
                        dist = TruncatedPrior(dist)
                    value = pyro.sample(_join(prefix, prior_name), dist)
                else:
                    dist, low, high = plan
                    value = torch.maximum(torch.minimum(pyro.sample(_join(prefix, prior_name), dist), high), low)
                setting_closure(module, value)

    for mname, module_ in module.named_children():
        pyro_sample_from_prior(module=module_, memo=memo, prefix=_join(prefix, mname))

    return module


# --- warnings at registration -----------------------------------------------------------------------


def _warn_if_mass_outside(module: Module, prior_name: str, prior, target: Target) -> None:
    constraint = target.constraint
    if not constraint.enforced:
        return  # the module does not keep the value inside; audit() lists this case
    support = prior_interval(prior)
    if support is None:
        return
    lo_c, hi_c = constraint_bounds(constraint)
    if bool(((support[0].to(lo_c) >= lo_c) & (support[1].to(lo_c) <= hi_c)).all()):
        return
    key = (type(module).__qualname__, target.parameter, describe_prior(prior), repr(constraint))
    if key in _WARNED:
        return
    _WARNED.add(key)
    mass = excluded_mass(prior, lo_c, hi_c)
    value_name = target.parameter[4:] if target.parameter.startswith("raw_") else target.parameter
    warn(
        f"{type(module).__name__}.{prior_name}: {describe_prior(prior)} has support "
        f"{format_interval(*support)} but the constraint {constraint!r} on {target.parameter} only admits "
        f"{format_interval(lo_c, hi_c)}; {format_mass(mass)} of the prior's mass lies outside, where "
        f"{value_name} cannot go. Remedy: a TruncatedPrior(prior, lower=..., upper=...) matching the "
        f"constraint, or a constraint matching the prior's support.",
        stacklevel=5,  # the code calling Module.register_prior / register_constraint (through the patch wrapper)
    )


def _may_target(prior_name: str, closure, parameter: str) -> bool:
    stem = parameter[4:] if parameter.startswith("raw_") else parameter
    if prior_name in (f"{stem}_prior", f"{parameter}_prior"):
        return True
    return _string_parameter(closure) in (stem, parameter)


def check_prior_registered(module: Module, prior_name: str) -> None:
    """Warn (once per configuration) if the newly registered prior puts mass outside its parameter's constraint."""
    entry = module._priors.get(prior_name)
    if entry is None or entry[0] is None or not module._constraints:
        return
    prior, closure, _ = entry
    target = find_target(module, prior_name, closure)
    if target is not None:
        _warn_if_mass_outside(module, prior_name, prior, target)


def check_constraint_registered(module: Module, parameter: str) -> None:
    """Warn (once per configuration) for priors registered before ``parameter``'s constraint that exceed it."""
    for prior_name, (prior, closure, _) in list(module._priors.items()):
        if prior is None or not _may_target(prior_name, closure, parameter):
            continue
        target = find_target(module, prior_name, closure)
        if target is not None and target.parameter == parameter:
            _warn_if_mass_outside(module, prior_name, prior, target)


# --- unenforced constraints in the prior term ---------------------------------------------------------


class _UnenforcedGuard:
    """A prior seen through ``named_priors`` whose parameter's constraint is not enforced (``transform=None``).

    ``log_prob`` is the prior's own while the value is inside the constraint's interval; outside, the term is
    ``-inf`` and one :class:`PriorConstraintWarning` names the parameter and the value. Every other attribute
    is the prior's.
    """

    __slots__ = ("_prior", "_constraint", "_parameter", "_owner")

    def __init__(self, prior, constraint: Interval, parameter: str, owner: str) -> None:
        self._prior = prior
        self._constraint = constraint
        self._parameter = parameter
        self._owner = owner

    def __getattr__(self, name: str):
        return getattr(self._prior, name)

    def __repr__(self) -> str:
        return repr(self._prior)

    def log_prob(self, value: Tensor) -> Tensor:
        log_p = self._prior.log_prob(value)
        lo, hi = constraint_bounds(self._constraint)
        outside = (value < lo) | (value > hi) | torch.isnan(value)
        if not bool(outside.any()):
            return log_p
        key = ("unenforced", self._owner, self._parameter)
        if key not in _WARNED:
            _WARNED.add(key)
            bad = value.detach()[outside.expand_as(value)] if outside.shape == value.shape else value.detach()
            shown = ", ".join(f"{float(v):.4g}" for v in bad.flatten()[:3]) + (", ..." if bad.numel() > 3 else "")
            warn(
                f"parameter {self._parameter!r} ({self._owner}) holds {shown}, outside the interval "
                f"{format_interval(lo, hi)} of its constraint {self._constraint!r}, which is not enforced "
                f"(transform=None); its prior term {describe_prior(self._prior)} is -inf. Keep the value inside "
                f"(e.g. optimiser bounds) or use an enforced constraint.",
                stacklevel=2,  # the code computing the prior term (e.g. an MLL's forward)
            )
        while outside.dim() > log_p.dim():
            outside = outside.any(-1)
        outside = torch.broadcast_to(outside, torch.broadcast_shapes(outside.shape, log_p.shape))
        return torch.where(outside, torch.full_like(log_p, -math.inf), log_p)


def guard_prior(full_name: str, module: torch.nn.Module, prior, closure):
    """The prior to use in the prior term: ``prior`` itself unless its parameter's constraint is unenforced."""
    constraints_ = getattr(module, "_constraints", None)
    if not constraints_ or all(c.enforced for c in constraints_.values()):
        return prior
    prior_name = full_name.rsplit(".", 1)[-1]
    target = find_target(module, prior_name, closure)
    if target is None or target.constraint.enforced:
        return prior
    parameter = full_name[: len(full_name) - len(prior_name)] + target.parameter
    return _UnenforcedGuard(prior, target.constraint, parameter, type(module).__name__)
