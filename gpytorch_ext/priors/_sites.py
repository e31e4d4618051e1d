"""Which parameter a registered prior governs, found by following its closure's autograd graph.

Private and self-contained (imports only torch and gpytorch) so that it can be vendored into GPyTorch.

A prior is registered with a closure that computes the value it evaluates, e.g. ``lambda m: m.lengthscale``, or
a property name such as ``"noise"`` on a likelihood, whose value is read from ``noise_covar.raw_noise`` through
its ``GreaterThan`` constraint. :func:`resolve` evaluates the closure with autograd on and collects the leaf
tensors its value depends on. When that is exactly one registered parameter of the module tree, the site knows
the parameter; when the value is moreover the parameter's constrained value (``constraint.transform(raw)``), the
prior lives under that constraint. Names play no part, so properties, child modules, priors registered by
name or by closure are all handled alike, and a prior on another function of a parameter (say, its log) is never
taken for a prior on the parameter itself.

:func:`unique_sites` lists a module tree's priors once per (parameter, prior): a module reachable on two paths
contributes its priors once, one prior object given to two modules contributes once per module (parameter), and
two names sharing one ``nn.Parameter`` and one prior object contribute once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableSet
from dataclasses import dataclass
from functools import cached_property

import torch
from gpytorch.constraints import Interval
from gpytorch.module import Module
from torch import Tensor

__all__ = ["PriorSite", "entries", "parameter_registry", "resolve", "unique_sites"]


@dataclass(frozen=True, eq=False)
class PriorSite:
    """One registered prior and what it governs.

    :param name: the prior's full name, as ``named_priors`` and Pyro sample sites name it.
    :param module: the module the prior is registered on.
    :param prior_name: its name there.
    :param prior: the prior.
    :param closure: computes the value the prior evaluates from ``module``.
    :param setting_closure: sets that value (``None`` when none was given).
    :param shape: the shape of the closure's value (``None`` when the closure could not be evaluated).
    :param parameter: the one leaf tensor the closure's value depends on, or ``None`` (none, or several).
    :param parameter_name: its dotted name in the tree the site was found in, e.g.
        ``"likelihood.noise_covar.raw_noise"`` (``None`` when it is not a parameter of that tree).
    :param owner: the module that registers the parameter, and :attr:`attribute` its name there.
    :param parameter_constraint: the parameter's constraint, if it has one (whatever the closure computes from it).
    :param value: the closure's value (detached), kept to confirm :attr:`constraint` when it is asked for.
    """

    name: str
    module: Module
    prior_name: str
    prior: object
    closure: Callable
    setting_closure: Callable | None
    shape: torch.Size | None = None
    parameter: Tensor | None = None
    parameter_name: str | None = None
    owner: Module | None = None
    attribute: str | None = None
    parameter_constraint: Interval | None = None
    value: Tensor | None = None

    @cached_property
    def constraint(self) -> Interval | None:
        """:attr:`parameter_constraint` when the closure's value is the parameter's constrained value (the prior
        then lives on the constraint's interval), else ``None``. Confirmed on first use, by comparing the value
        with ``constraint.transform(parameter)``."""
        if self.parameter_constraint is None:
            return None
        try:
            return (
                self.parameter_constraint
                if _is_constrained_value(self.value, self.parameter_constraint, self.parameter)
                else None
            )
        except Exception:  # a transform that fails on this value: not a prior on the constrained value
            return None

    @property
    def prefix(self) -> str:
        """The name of :attr:`module` in the tree (``""`` for the root)."""
        return self.name[: len(self.name) - len(self.prior_name)].rstrip(".")

    @property
    def key(self) -> tuple:
        """Identifies the (parameter, prior) pair; ``(module, prior name)`` stands in for an unknown parameter."""
        governs = id(self.parameter) if self.parameter is not None else (id(self.module), self.prior_name)
        return governs, id(self.prior)


def _join(prefix: str, name: str) -> str:
    return prefix + ("." if prefix else "") + name


def entries(module: torch.nn.Module, prefix: str = "") -> Iterator[tuple[str, Module, str]]:
    """``(module's name, module, prior name)`` of every registered prior, on every path, in GPyTorch's order (a
    module's own priors in registration order, then its children's, depth first)."""
    if isinstance(module, Module):
        for prior_name, (prior, _, _) in module._priors.items():
            if prior is not None:
                yield prefix, module, prior_name
    for child_name, child in module.named_children():
        yield from entries(child, _join(prefix, child_name))


def _leaves(value: Tensor) -> list[Tensor]:
    """The leaf tensors that require grad in ``value``'s autograd graph (``value`` itself if it is one)."""
    if value.grad_fn is None:
        return [value] if value.requires_grad else []
    found: list[Tensor] = []
    seen: set[int] = set()
    stack = [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        leaf = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if leaf is not None:
            if not any(leaf is f for f in found):
                found.append(leaf)
            continue
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def _evaluate(module: Module, closure: Callable) -> Tensor:
    with torch.enable_grad():
        value = closure(module)
    if not isinstance(value, Tensor):
        raise TypeError(f"a prior closure returned {type(value).__name__}, not a tensor")
    return value


def _dependencies(module: Module, closure: Callable) -> tuple[Tensor, list[Tensor]]:
    """The closure's value and the leaf tensors it depends on, frozen (``requires_grad=False``) parameters of
    ``module``'s tree included: they are switched on for one evaluation and switched back."""
    value = _evaluate(module, closure)
    found = _leaves(value)
    if found:
        return value, found
    frozen = [p for p in module.parameters() if not p.requires_grad]
    if not frozen:
        return value, found
    try:
        for p in frozen:
            p.requires_grad_(True)
        return value, _leaves(_evaluate(module, closure))
    finally:
        for p in frozen:
            p.requires_grad_(False)


Registry = dict[int, tuple[str, torch.nn.Module, str]]


def parameter_registry(module: torch.nn.Module, prefix: str = "") -> Registry:
    """``{id(parameter): (dotted name, owner, attribute)}`` for every parameter of ``module``'s tree (first path)."""
    return _registry_of(module.named_modules(prefix=prefix))


def _registry_of(named_modules: Iterable[tuple[str, torch.nn.Module]]) -> Registry:
    registry: Registry = {}
    for path, owner in named_modules:
        for attribute, parameter in owner._parameters.items():
            if parameter is not None and id(parameter) not in registry:
                registry[id(parameter)] = (_join(path, attribute), owner, attribute)
    return registry


def _is_constrained_value(value: Tensor, constraint: Interval, parameter: Tensor) -> bool:
    """Whether ``value`` is ``constraint.transform(parameter)``, possibly expanded to a larger shape."""
    with torch.no_grad():
        want = constraint.transform(parameter)
        if value.shape != want.shape:
            try:
                if torch.broadcast_shapes(value.shape, want.shape) != value.shape:
                    return False
            except RuntimeError:
                return False
            want = want.expand(value.shape)
        return torch.equal(value.detach(), want)


def resolve(module: Module, prior_name: str, prefix: str = "", registry: Registry | None = None) -> PriorSite:
    """The :class:`PriorSite` of the prior ``prior_name`` registered on ``module``.

    The closure is evaluated once (with autograd on, whatever the caller's grad mode). A closure that raises
    gives a site without shape or parameter.

    :param prefix: ``module``'s own name in the tree, for :attr:`PriorSite.name`.
    :param registry: the :func:`parameter_registry` of the tree to look the parameter up in (default: of
        ``module``'s own tree).
    """
    prior, closure, setting_closure = module._priors[prior_name]
    site = dict(
        name=_join(prefix, prior_name),
        module=module,
        prior_name=prior_name,
        prior=prior,
        closure=closure,
        setting_closure=setting_closure,
    )
    try:
        value, found = _dependencies(module, closure)
    except Exception:  # a closure that cannot be evaluated (yet) tells nothing about its parameter
        return PriorSite(**site)
    site["shape"] = value.shape
    site["value"] = value.detach()
    if len(found) != 1:
        return PriorSite(**site)
    site["parameter"] = parameter = found[0]
    registered = (parameter_registry(module, prefix) if registry is None else registry).get(id(parameter))
    if registered is None:
        return PriorSite(**site)
    site["parameter_name"], owner, attribute = registered
    site["owner"], site["attribute"] = owner, attribute
    constraint = getattr(owner, "_constraints", {}).get(f"{attribute}_constraint")
    if isinstance(constraint, Interval):
        site["parameter_constraint"] = constraint
    return PriorSite(**site)


def unique_sites(module: torch.nn.Module, prefix: str = "", memo: MutableSet | None = None) -> list[PriorSite]:
    """Every prior of ``module``'s tree once per (parameter, prior), resolved, in GPyTorch's order (a module's own
    priors in registration order, then its children's, depth first; a module reachable on two paths is visited on
    the first, which names its sites).

    Every site is resolved before the caller changes anything, so that setting one parameter cannot hide
    another site's parameter.

    :param memo: optional set shared across calls: a site whose key (or whose prior object, GPyTorch's older
        convention) is in it is skipped; the keys of the sites returned are added to it.
    """
    memo = set() if memo is None else memo
    modules = list(module.named_modules(prefix=prefix))
    registry = _registry_of(modules)
    sites = []
    for path, owner in modules:
        if not isinstance(owner, Module):
            continue
        for prior_name, (prior, _, _) in owner._priors.items():
            if prior is None or prior in memo:
                continue
            site = resolve(owner, prior_name, path, registry)
            if site.key not in memo:
                memo.add(site.key)
                sites.append(site)
    return sites
