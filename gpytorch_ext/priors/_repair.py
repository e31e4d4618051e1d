"""Constraint-aware prior handling for GPyTorch modules: the repair behind the ``constraint-aware-priors`` patch.

Private and self-contained (imports only torch and gpytorch, plus the sibling private modules) so that it can
be vendored into GPyTorch as the upstream change. Every path that draws parameters from their priors draws one
independent value per element of the parameter, from the prior truncated to the parameter's constraint:

- :func:`pyro_sample_from_prior` replaces ``gpytorch.module._pyro_sample_from_prior``: one Pyro sample site per
  (parameter, prior), named as GPyTorch names it; a prior whose support is not inside its parameter's constraint
  is sampled from its truncation to the constraint (the site declares the truncated support).
- :func:`pyro_load_from_samples` / :func:`local_load_samples` replace ``gpytorch.module._pyro_load_from_samples`` /
  ``Module.local_load_samples``: they load exactly those sites, visiting a module reachable twice once.
- :func:`sample_from_prior` replaces ``Module.sample_from_prior``, and :func:`sample_all_priors` draws every
  prior of a model (what BoTorch's ``sample_all_priors`` does).
- :func:`check_prior_registered` / :func:`check_constraint_registered` run after ``Module.register_prior`` /
  ``Module.register_constraint`` and warn when a prior puts more than
  ``prior_constraint_warning_threshold`` of its mass outside an enforced constraint.
- :func:`guard_priors` wraps, for ``Module.named_priors``, a prior whose parameter has an unenforced
  (``transform=None``) constraint: a value outside the interval gives a prior term of ``-inf`` (never NaN).

A prior is related to its parameter by :func:`~._sites.resolve` (the closure's autograd graph), never by name.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableSet

import torch
from gpytorch.constraints import Interval
from gpytorch.module import Module
from torch import Tensor

from ._intervals import (
    compare,
    constraint_bounds,
    describe_prior,
    excluded_mass,
    format_interval,
    format_mass,
    prior_interval,
    warn,
    warns_about_mass,
)
from ._sites import PriorSite, resolve, unique_sites
from ._truncated import TruncatedPrior

__all__ = [
    "check_constraint_registered",
    "check_prior_registered",
    "draw",
    "guard_priors",
    "local_load_samples",
    "pyro_load_from_samples",
    "pyro_sample_from_prior",
    "sample_all_priors",
    "sample_from_prior",
]


def _join(prefix: str, name: str) -> str:
    return prefix + ("." if prefix else "") + name


# --- what to sample a site from ----------------------------------------------------------------------


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


_PLANS: OrderedDict[tuple, tuple | None] = OrderedDict()  # see _truncation_plan
_PLANS_SIZE = 256
_CACHEABLE_MODULES = ("gpytorch.priors", "torch.distributions")


def _plan_key(prior, constraint: Interval, shape: torch.Size) -> tuple | None:
    """A key that determines the truncation plan, or ``None`` where it cannot be trusted to.

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


def _truncation_plan(prior, constraint: Interval, shape: torch.Size, parameter: str, key: tuple | None) -> tuple | None:
    """``(TruncatedPrior at batch shape shape, low, high)`` for a prior with mass outside ``constraint``, else ``None``.

    ``low``/``high`` are the clamp limits that keep a draw where the constraint's inverse transform is finite.
    Plans are reused across calls for equal arguments: ``pyro_sample_from_prior`` works on a fresh deep copy of
    the model at every call (every NUTS step), and building the truncation (its CDF bounds) is the expensive part.

    :param parameter: the parameter's name and module, for the error message.
    :param key: :func:`_plan_key` of the arguments.
    :raises ValueError: naming the parameter, when the prior's support does not overlap the constraint at all.
    """
    if key is not None and key in _PLANS:
        _PLANS.move_to_end(key)
        return _PLANS[key]
    fit = compare(prior, constraint)
    plan = None
    if not fit.inside:
        if not fit.overlaps:
            raise ValueError(
                f"cannot sample parameter '{parameter}) from {describe_prior(prior)}: the prior's support "
                f"{format_interval(*fit.support)} does not overlap the interval {format_interval(*fit.interval)} of "
                f"its constraint {constraint!r}. Use a prior whose support meets the constraint."
            )
        # a cached plan owns its copy of the prior: the sampled module, which holds this prior, is the caller's
        base = copy.deepcopy(prior) if key is not None else prior
        try:
            dist = TruncatedPrior(base, *fit.interval, batch_shape=shape)
        except ValueError as exc:
            raise ValueError(f"cannot sample parameter '{parameter}): {exc}") from exc
        if dist.batch_shape != shape:
            dist = dist.expand(shape)
        plan = (dist, *_clamp_limits(*fit.interval, dist.lower.dtype))
    if key is not None:
        _PLANS[key] = plan
        if len(_PLANS) > _PLANS_SIZE:
            _PLANS.popitem(last=False)
    return plan


def _elementwise(prior, shape: torch.Size):
    """``prior`` expanded so that one draw fills a value of ``shape`` with independent elements.

    A univariate prior is expanded to ``shape``; a prior with an event shape to the leading dimensions of
    ``shape`` that precede it. A prior that cannot be expanded so is returned unchanged.
    """
    event = prior.event_shape
    n_batch = len(shape) - len(event)
    if n_batch < 0 or tuple(shape[n_batch:]) != tuple(event):
        return prior
    batch = shape[:n_batch]
    if prior.batch_shape == batch:
        return prior
    try:
        return prior.expand(batch)
    except (NotImplementedError, RuntimeError, ValueError, TypeError):
        return prior


def _site_shape(site: PriorSite) -> torch.Size:
    if site.shape is None:
        site.closure(site.module)  # raises the closure's own error
        raise RuntimeError(f"the closure of prior {site.name!r} did not return a tensor")
    return site.shape


def _check_setting_closure(site: PriorSite, what: str) -> None:
    if site.setting_closure is None:
        raise RuntimeError(
            f"Cannot {what} without a setting_closure for each prior, but the following prior had none: "
            f"{site.name}, {site.prior}."
        )


def _sampler(site: PriorSite, shape: torch.Size) -> tuple:
    """``(distribution, low, high)`` to draw ``site``'s value of ``shape`` from; ``low``/``high`` are ``None``
    unless the prior is truncated to the parameter's constraint."""
    constraint = site.parameter_constraint
    if constraint is not None and len(site.prior.event_shape) == 0:
        key = _plan_key(site.prior, constraint, shape)
        if (key is None or _PLANS.get(key, True) is not None) and site.constraint is not None:
            # a prior on the constrained value, not known to lie inside the constraint
            owner = type(site.owner or site.module).__name__.removeprefix("_Random")  # a Pyro copy's class
            plan = _truncation_plan(site.prior, constraint, shape, f"{site.parameter_name}' ({owner}", key)
            if plan is not None:
                return plan
    return _elementwise(site.prior, shape), None, None


def _missing_batch(dist, shape: torch.Size) -> torch.Size:
    """The sample shape that completes ``dist``'s draws to ``shape`` (for a prior whose ``expand`` failed)."""
    batch = shape[: len(shape) - len(dist.event_shape)]
    lead = len(batch) - len(dist.batch_shape)
    return batch[:lead] if lead > 0 and batch[lead:] == dist.batch_shape else torch.Size()


def draw(site: PriorSite) -> Tensor:
    """One value for ``site``: independent elements, each from the prior truncated to the parameter's constraint."""
    shape = _site_shape(site)
    dist, low, high = _sampler(site, shape)
    value = dist.sample(_missing_batch(dist, shape))
    if low is not None:
        value = torch.maximum(torch.minimum(value, high), low)
    return value


# --- sampling entry points ----------------------------------------------------------------------------


def pyro_sample_from_prior(module: torch.nn.Module, memo: MutableSet | None = None, prefix: str = ""):
    """Replacement of ``gpytorch.module._pyro_sample_from_prior``: one site per (parameter, prior), never NaN.

    Each prior is sampled at a Pyro site named as GPyTorch names it, once per parameter it governs (a prior
    object shared by two modules gets a site for each; a module reachable twice, one). A univariate prior whose
    support lies inside its parameter's constraint is sampled exactly as upstream does (``prior.expand(shape)``);
    any other is sampled from :class:`TruncatedPrior` on the constraint's interval, whose support tells Pyro's
    NUTS to move in an unconstrained space mapping into the constraint.

    :raises ValueError: naming the parameter, when a prior's support does not overlap its constraint at all.
    """
    try:
        import pyro
    except ImportError:
        raise RuntimeError("Cannot call pyro_sample_from_prior without pyro installed!") from None

    for site in unique_sites(module, prefix, memo):
        _check_setting_closure(site, "use Pyro for sampling")
        dist, low, high = _sampler(site, _site_shape(site))
        if low is None:
            if not callable(dist) and prior_interval(dist) is not None:
                # e.g. HalfNormalPrior.expand returns a torch HalfNormal, which Pyro cannot sample
                dist = TruncatedPrior(dist)
            value = pyro.sample(site.name, dist)
        else:
            value = torch.maximum(torch.minimum(pyro.sample(site.name, dist), high), low)
        site.setting_closure(site.module, value)
    return module


def pyro_load_from_samples(
    module: torch.nn.Module, samples_dict, memo: MutableSet | None = None, prefix: str = ""
) -> None:
    """Replacement of ``gpytorch.module._pyro_load_from_samples``: each module's ``local_load_samples`` once.

    A module reachable on two paths is visited on the first (where :func:`pyro_sample_from_prior` names its
    sites), so that its parameters, and a kernel's ``batch_shape``, take the samples' dimension once.
    """
    memo = set() if memo is None else memo
    visited: set[int] = set()

    def visit(m: torch.nn.Module, prefix: str) -> None:
        if id(m) in visited:
            return
        visited.add(id(m))
        if isinstance(m, Module):
            m.local_load_samples(samples_dict, memo, prefix)
        for name, child in m.named_children():
            visit(child, _join(prefix, name))

    visit(module, prefix)


def local_load_samples(module: Module, samples_dict, memo: MutableSet, prefix: str) -> None:
    """Replacement of ``Module.local_load_samples``: load the sites :func:`pyro_sample_from_prior` samples.

    A prior is loaded once per (parameter, prior), so a prior object shared by two modules is loaded into both;
    ``memo`` (shared across the module tree) holds the keys loaded so far. A prior object put in ``memo`` by
    other code is skipped, as GPyTorch skips it.
    """
    module._strict(False)
    try:
        for prior_name, (prior, _, setting_closure) in module._priors.items():
            if prior is None or prior in memo:
                continue
            site = resolve(module, prior_name, prefix)
            if site.key in memo:
                continue
            memo.add(site.key)
            if setting_closure is None:
                raise RuntimeError("Must provide setting_closure to load samples.")
            setting_closure(module, samples_dict[site.name])
    finally:
        module._strict(True)


def sample_from_prior(module: Module, prior_name: str) -> None:
    """Replacement of ``Module.sample_from_prior``: draw the parameter from its prior, in place.

    Each element of the parameter is an independent draw (the prior term counts them as such), from the prior
    truncated to the parameter's constraint, so a draw never lands outside it.
    """
    if prior_name not in module._priors:
        raise RuntimeError(f"Unknown prior name '{prior_name}'")
    if module._priors[prior_name][2] is None:
        raise RuntimeError("Must provide inverse transform to be able to sample from prior.")
    site = resolve(module, prior_name)
    site.setting_closure(module, draw(site))


def sample_all_priors(module: torch.nn.Module, on_unsupported=None) -> None:
    """Draw every parameter of ``module``'s tree that has a prior from that prior, in place.

    One draw per (parameter, prior), one independent value per element, each inside the parameter's constraint
    (see :func:`sample_from_prior`); never retries, never fails on a batch.

    :param on_unsupported: called with the site of a prior that cannot be sampled (``NotImplementedError``);
        by default the error propagates.
    :raises RuntimeError: if a prior has no setting closure.
    :raises ValueError: naming the parameter, when a prior's support does not overlap its constraint at all.
    """
    for site in unique_sites(module):
        _check_setting_closure(site, "sample from the prior")
        try:
            value = draw(site)
        except NotImplementedError:
            if on_unsupported is None:
                raise
            on_unsupported(site)
            continue
        site.setting_closure(site.module, value)


# --- warnings at registration -----------------------------------------------------------------------


def _warn_if_mass_outside(site: PriorSite) -> None:
    constraint = site.constraint
    if constraint is None or not constraint.enforced:
        return  # the module does not keep the value inside; audit() lists this case
    fit = compare(site.prior, constraint)
    if fit.inside:
        return
    mass = excluded_mass(site.prior, *fit.interval)
    if not warns_about_mass(mass):
        return
    stem = site.attribute[4:] if site.attribute.startswith("raw_") else site.attribute
    warn(
        f"{type(site.module).__name__}.{site.prior_name}: {describe_prior(site.prior)} has support "
        f"{format_interval(*fit.support)} but the constraint {constraint!r} on {site.parameter_name} only admits "
        f"{format_interval(*fit.interval)}; {format_mass(mass)} of the prior's mass lies outside, where {stem} "
        f"cannot go. Remedy: a TruncatedPrior(prior, lower=..., upper=...) matching the constraint, or a "
        f"constraint matching the prior's support."
    )


def check_prior_registered(module: Module, prior_name: str) -> None:
    """Warn if the newly registered prior puts mass outside its parameter's constraint."""
    entry = module._priors.get(prior_name)
    if entry is not None and entry[0] is not None:
        _warn_if_mass_outside(resolve(module, prior_name))


def check_constraint_registered(module: Module, parameter: str) -> None:
    """Warn about the module's priors, registered before ``parameter``'s new constraint, that exceed it."""
    tensor = module._parameters.get(parameter)
    if tensor is None:
        return
    for prior_name, (prior, _, _) in list(module._priors.items()):
        if prior is not None:
            site = resolve(module, prior_name)
            if site.parameter is tensor:
                _warn_if_mass_outside(site)


# --- unenforced constraints in the prior term ---------------------------------------------------------


class _UnenforcedGuard:
    """A prior seen through ``named_priors`` whose module's tree holds unenforced (``transform=None``) constraints.

    ``log_prob`` is the prior's own while the value lies inside the intervals of those constraints (the common
    case costs one comparison per constraint). Otherwise the prior's parameter is resolved: if its constraint is
    one of them and the value lies outside it, the term is ``-inf`` and a :class:`PriorConstraintWarning` names
    the parameter. Every other attribute is the prior's.
    """

    __slots__ = ("_prior", "_module", "_name", "_constraints")

    def __init__(self, prior, module: Module, name: str, constraints: list[Interval]) -> None:
        self._prior = prior
        self._module = module
        self._name = name
        self._constraints = constraints

    def __getattr__(self, name: str):
        return getattr(self._prior, name)

    def __repr__(self) -> str:
        return repr(self._prior)

    def log_prob(self, value: Tensor) -> Tensor:
        log_p = self._prior.log_prob(value)
        if not any(bool(_outside(value, c).any()) for c in self._constraints):
            return log_p
        prefix, _, prior_name = self._name.rpartition(".")
        site = resolve(self._module, prior_name, prefix)
        constraint = site.constraint
        if constraint is None or constraint.enforced:
            return log_p
        outside = _outside(value, constraint)
        if not bool(outside.any()):
            return log_p
        warn(
            f"parameter {site.parameter_name!r} ({type(site.owner).__name__}) left the interval "
            f"{format_interval(*constraint_bounds(constraint))} of its constraint {constraint!r}, which is not "
            f"enforced (transform=None); its prior term {describe_prior(self._prior)} is -inf there. Keep the value "
            f"inside (e.g. optimiser bounds) or use an enforced constraint."
        )
        while outside.dim() > log_p.dim():
            outside = outside.any(-1)
        outside = torch.broadcast_to(outside, torch.broadcast_shapes(outside.shape, log_p.shape))
        return torch.where(outside, torch.full_like(log_p, -math.inf), log_p)


def _outside(value: Tensor, constraint: Interval) -> Tensor:
    lo, hi = constraint_bounds(constraint)
    try:
        return (value < lo) | (value > hi) | torch.isnan(value)
    except RuntimeError:  # bounds of another parameter's shape: not this value's constraint
        return torch.zeros((), dtype=torch.bool)


def _unenforced_in(module: torch.nn.Module) -> bool:
    constraints = module.__dict__.get("_constraints")  # a GPyTorch Module's; read without nn.Module.__getattr__
    return bool(constraints) and any(c is not None and not c.enforced for c in constraints.values())


def _any_unenforced(root: torch.nn.Module) -> bool:
    stack, seen = [root], set()
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if _unenforced_in(module):
            return True
        stack.extend(child for child in module._modules.values() if child is not None)
    return False


def guard_priors(root: torch.nn.Module, named_priors: Iterable[tuple]) -> Iterator[tuple]:
    """``named_priors`` entries of ``root``; a prior whose module's tree holds an unenforced constraint is guarded."""
    if not _any_unenforced(root):
        yield from named_priors  # the common case: every constraint enforced
        return
    unenforced = [
        (path, constraint)
        for path, m in root.named_modules()
        if isinstance(m, Module)
        for constraint in m._constraints.values()
        if constraint is not None and not constraint.enforced
    ]
    for name, module, prior, closure, setting_closure in named_priors:
        prefix = name.rpartition(".")[0]
        below = [c for path, c in unenforced if not prefix or path == prefix or path.startswith(prefix + ".")]
        if below:
            prior = _UnenforcedGuard(prior, module, name, below)
        yield name, module, prior, closure, setting_closure
