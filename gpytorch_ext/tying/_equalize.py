"""Pyro-style parameter tying for GPyTorch modules: :func:`equalize`, :func:`untie`, :func:`tied`.

The mechanism is the one PyTorch already understands: every tied parameter name of the module tree holds the
*same* :class:`torch.nn.Parameter` object. On top of that this file

- counts the group's prior once (``keep_dist=False``) by unregistering the other members' priors,
- stores the shared value in its broadcast-reduced shape and lets members whose shape is larger (batch
  dimensions, broadcasting) read it expanded (a small mixin swapped into those members' classes),
- keeps ``state_dict`` in the untied layout (a checkpoint loads into a tied or an untied model alike),
- re-ties the copies that GPyTorch's Pyro integration makes (``to_random_module``), so that one Pyro sample
  site per group sets every member.

This module imports only torch and gpytorch, so it can be vendored into GPyTorch as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from gpytorch.module import Module
from torch import Tensor, nn

__all__ = ["equalize", "tied", "untie"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_GROUPS = "_equalize_groups"  # attribute of the module equalize() was called on: list[_Group]
_SHAPES = "_equalize_shapes"  # attribute of a member read expanded: {param name: (member shape, shared shape)}
_KEPT = "_equalize_kept"  # attribute of a member whose priors stay (keep_dist=True): prior names, not Pyro sites


@dataclass
class _Group:
    """One tie group, stored on the root by parameter names (so it survives ``copy.deepcopy`` unchanged)."""

    names: tuple[str, ...]  # parameter names relative to the root; the first one gives the value
    shapes: tuple[torch.Size, ...]  # each member's own shape
    shape: torch.Size  # the shared parameter's shape
    keep_dist: bool
    owner_priors: tuple[str, ...]  # priors of the first member's module that read the parameter
    other_priors: tuple[tuple[str, str], ...]  # (module path, prior name) of the other members' priors
    removed: dict[tuple[str, str], Any] = field(default_factory=dict)  # unregistered or replaced prior entries


# ----------------------------------------------------------------------------------------------- shapes


def _split(name: str) -> tuple[str, str]:
    path, _, attr = name.rpartition(".")
    return path, attr


def _alias(name: str) -> str:
    path, attr = _split(name)
    if not attr.startswith("raw_"):
        return name
    return f"{path}.{attr[4:]}" if path else attr[4:]


def _expand(value: Tensor, shape: torch.Size, shared: torch.Size) -> Tensor:
    """``value`` of shape ``... x shared`` expanded to ``... x shape`` (leading sample dimensions kept)."""
    extra = value.shape[: max(value.dim() - len(shared), 0)]
    return value.expand(*extra, *shape)


def _reduce(value: Tensor, shape: torch.Size, shared: torch.Size) -> Tensor:
    """The first element of every tied block: ``... x shape`` (or broadcastable to it) to ``... x shared``."""
    value = value.expand(*value.shape[: max(value.dim() - len(shape), 0)], *shape)
    index = [0] * (len(shape) - len(shared))
    index += [slice(0, 1) if s == 1 and m != 1 else slice(None) for m, s in zip(shape[len(index) :], shared)]
    return value[(Ellipsis, *index)]


def _reduced_shape(module: nn.Module, param: Tensor) -> torch.Size:
    """The parameter's shape with the module's batch dimensions (``module.batch_shape``) set to 1."""
    batch = getattr(module, "batch_shape", None)
    shape = list(param.shape)
    if isinstance(batch, torch.Size) and len(batch) and tuple(shape[: len(batch)]) == tuple(batch):
        shape[: len(batch)] = [1] * len(batch)
    return torch.Size(shape)


def _shared_shape(names: Sequence[str], shapes: Sequence[torch.Size]) -> torch.Size:
    """The largest shape that expands to every member: sizes all members agree on, 1 where they differ."""
    ndim = min(len(s) for s in shapes)
    out = []
    for k in range(-ndim, 0) if ndim else ():
        sizes = {s[k] for s in shapes}
        if len(sizes - {1}) > 1:
            bad = [i for i, s in enumerate(shapes) if s[k] != 1]
            i, j = next((i, j) for i in bad for j in bad if shapes[i][k] != shapes[j][k])
            raise ValueError(
                f"equalize: cannot tie {names[i]} (shape {tuple(shapes[i])}, batch dimensions set to 1) and "
                f"{names[j]} (shape {tuple(shapes[j])}): the shapes do not broadcast (dimension {k})"
            )
        out.append(sizes.pop() if len(sizes) == 1 else 1)
    return torch.Size(out)


# ----------------------------------------------------------------------------------------------- members


class _Expanded:
    """Mixin for a member whose tied parameter is stored in the shared, smaller shape and read expanded."""

    def __getattr__(self, name: str) -> Any:
        value = super().__getattr__(name)
        shapes = self.__dict__.get(_SHAPES, {}).get(name)
        return value if shapes is None else _expand(value, *shapes)

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters", {})
        if name in self.__dict__.get(_SHAPES, {}) and name in params and not isinstance(value, nn.Parameter):
            if isinstance(value, Tensor):  # a sampled value (GPyTorch's Pyro integration) replaces the parameter
                del params[name]
                object.__setattr__(self, name, value)
                return
        super().__setattr__(name, value)

    def initialize(self, **kwargs: Any) -> Any:
        shapes = self.__dict__.get(_SHAPES, {})
        mine = {k: kwargs.pop(k) for k in list(kwargs) if k in shapes and k in self._parameters}
        super().initialize(**kwargs)
        for name, value in mine.items():
            param = self._parameters[name]
            value = torch.as_tensor(value, dtype=param.dtype, device=param.device)
            constraint = self._constraints.get(name + "_constraint")
            if constraint is not None and constraint.enforced and not constraint.check_raw(value):
                raise RuntimeError(f"Attempting to set {name} to a value outside of its constraint {constraint}.")
            value = _reduce(value, *shapes[name])
            if value.shape == param.shape:
                param.data.copy_(value)
            elif not self._strict_init:  # loading a batch of samples
                param.data = value
            else:
                param.data.copy_(value.view_as(param))
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        reduced = super().__reduce_ex__(protocol)
        if type(self) is not _expanded_class(self._equalize_base):
            return reduced  # e.g. GPyTorch's Pyro copies, a further dynamic subclass
        return (_new_expanded, (self._equalize_base,), *reduced[2:])


@functools.cache
def _expanded_class(cls: type) -> type:
    attrs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "_equalize_base": cls}
    return type(cls.__name__, (_Expanded, cls), attrs)


def _new_expanded(cls: type) -> nn.Module:
    new_cls = _expanded_class(cls)
    return new_cls.__new__(new_cls)


def _set_shape(module: nn.Module, attr: str, shape: torch.Size, shared: torch.Size) -> None:
    shapes = module.__dict__.setdefault(_SHAPES, {})
    if shape == shared:
        shapes.pop(attr, None)
    else:
        shapes[attr] = (shape, shared)
        if not isinstance(module, _Expanded):
            module.__class__ = _expanded_class(type(module))
    if not shapes:
        del module.__dict__[_SHAPES]
        if isinstance(module, _Expanded) and type(module) is _expanded_class(module._equalize_base):
            module.__class__ = module._equalize_base


# ----------------------------------------------------------------------------------------------- priors


def _reads(module: nn.Module, param: nn.Parameter, closure: Callable[[nn.Module], Tensor]) -> bool:
    """Whether a prior's closure reads ``param`` (checked by autograd)."""
    requires_grad = param.requires_grad
    try:
        with torch.enable_grad():
            param.requires_grad_(True)
            value = closure(module)
            if not isinstance(value, Tensor) or not value.requires_grad:
                return False
            return torch.autograd.grad(value.sum(), param, allow_unused=True)[0] is not None
    finally:
        param.requires_grad_(requires_grad)


def _priors_reading(module: nn.Module, param: nn.Parameter) -> list[str]:
    if not isinstance(module, Module):
        return []
    return [n for n, (p, closure, _) in module._priors.items() if p is not None and _reads(module, param, closure)]


class _ReducedClosure:
    """A prior closure that returns the shared value once, not expanded to the member's shape."""

    def __init__(self, closure: Callable[[nn.Module], Tensor], shape: torch.Size, shared: torch.Size):
        self.closure, self.shape, self.shared = closure, shape, shared

    def __call__(self, module: nn.Module) -> Tensor:
        value = self.closure(module)
        if value.shape[max(value.dim() - len(self.shape), 0) :] != self.shape:
            return value
        return _reduce(value, self.shape, self.shared)


# ----------------------------------------------------------------------------------------------- hooks


def _groups(module: nn.Module) -> list[_Group]:
    return module.__dict__.get(_GROUPS, [])


def _save_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    """Write every member in its own shape, as an untied model would."""
    for group in _groups(module):
        for name, shape in zip(group.names, group.shapes):
            if prefix + name in state_dict and shape != group.shape:
                state_dict[prefix + name] = _expand(state_dict[prefix + name], shape, group.shape)


def _load_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Load the first member's value into every member (``load_state_dict`` copies the dict before hooks)."""
    for group in _groups(module):
        first = prefix + group.names[0]
        if first in state_dict:
            value = _reduce(state_dict[first], group.shapes[0], group.shape)
            for name in group.names:
                state_dict[prefix + name] = value


def _local_load_samples(module: Module, samples_dict: Any, memo: set, prefix: str) -> None:
    """Skip the priors kept with ``keep_dist=True``: they are observed Pyro sites, never sampled."""
    for name in module.__dict__.get(_KEPT, ()):
        if name in module._priors:
            memo.add(module._priors[name][0])
    type(module).local_load_samples(module, samples_dict, memo, prefix)


def _to_random_module(module: Module) -> Module:
    """GPyTorch's ``to_random_module`` deep-copies every child separately; tie the copy again."""
    new = type(module).to_random_module(module)
    for group in _groups(new):
        mods = [new.get_submodule(_split(n)[0]) for n in group.names]
        shared = mods[0]._parameters[_split(group.names[0])[1]]
        for mod, name in zip(mods, group.names):
            mod._parameters[_split(name)[1]] = shared
        observed = []
        if group.keep_dist:
            for path, prior_name in group.other_priors:
                mod = new.get_submodule(path)
                observed.append((f"{path}.{prior_name}" if path else prior_name, mod, mod._priors.pop(prior_name)))
        for prior_name in group.owner_priors:
            prior, closure, setting = mods[0]._priors[prior_name]
            mods[0]._priors[prior_name] = (prior, closure, _Propagate(setting, group, mods, observed))
    return new


class _Propagate:
    """Setting closure of the group's prior in a Pyro copy: set the first member, copy it to the others."""

    def __init__(self, setting: Callable, group: _Group, mods: list[nn.Module], observed: list):
        self.setting, self.group, self.mods, self.observed = setting, group, mods, observed

    def __call__(self, module: nn.Module, value: Tensor) -> None:
        self.setting(module, value)
        names, shapes = self.group.names, self.group.shapes
        shared = _reduce(getattr(self.mods[0], _split(names[0])[1]), shapes[0], self.group.shape)
        for mod, name in zip(self.mods[1:], names[1:]):
            mod.initialize(**{_split(name)[1]: shared})
        if self.observed:
            import pyro

            for site, mod, (prior, closure, _) in self.observed:
                x = closure(mod)
                pyro.sample(site, prior.expand(x.shape), obs=x)


def _install_hooks(root: nn.Module) -> None:
    if _GROUPS in root.__dict__:
        return
    root.__dict__[_GROUPS] = []
    root.register_state_dict_post_hook(_save_hook)
    root.register_load_state_dict_pre_hook(_load_hook)
    if isinstance(root, Module):
        root.__dict__["to_random_module"] = functools.partial(_to_random_module, root)


def _remove_hooks(root: nn.Module) -> None:
    del root.__dict__[_GROUPS]
    root.__dict__.pop("to_random_module", None)
    for hooks in (root._state_dict_hooks, root._load_state_dict_pre_hooks):
        for key, hook in list(hooks.items()):
            if getattr(hook, "hook", hook) in (_save_hook, _load_hook):
                del hooks[key]


# ----------------------------------------------------------------------------------------------- checks


def _same_constraint(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if type(a) is not type(b) or a.enforced != b.enforced:
        return False
    if getattr(a, "_transform", None) is not getattr(b, "_transform", None):
        return False
    for bound in ("lower_bound", "upper_bound"):
        x, y = getattr(a, bound, None), getattr(b, bound, None)
        if (x is None) != (y is None) or (x is not None and not torch.equal(torch.as_tensor(x), torch.as_tensor(y))):
            return False
    return True


def _match(root: nn.Module, sites: Sequence[str], names: Sequence[str], what: str) -> list[str]:
    patterns = [re.compile(s) for s in sites]
    for pattern in patterns:
        if not any(pattern.fullmatch(n) or pattern.fullmatch(_alias(n)) for n in names):
            choices = ", ".join(sorted({m for n in names for m in (n, _alias(n))})) or "none"
            raise ValueError(
                f"{what}: pattern {pattern.pattern!r} matches no parameter of {type(root).__name__}; "
                f"it could match: {choices}"
            )
    return [n for n in names if any(p.fullmatch(n) or p.fullmatch(_alias(n)) for p in patterns)]


# ----------------------------------------------------------------------------------------------- front door


def equalize(module: ModuleT, sites: str | Sequence[str], *, keep_dist: bool = False) -> ModuleT:
    r"""
    Tie, in place, every parameter of ``module`` whose name fully matches one of ``sites``, as
    :func:`pyro.poutine.equalize` does for Pyro sites: the tied parameters become one
    :class:`torch.nn.Parameter`, whose starting value is the value of the **first match** in
    ``module.named_parameters()`` order.

    Names are matched with :func:`re.fullmatch`, both as ``named_parameters()`` prints them
    (``covar_module.base_kernel.raw_lengthscale``) and by their constrained alias without ``raw_``
    (``covar_module.base_kernel.lengthscale``). All parameters matched by one call form one group; call
    ``equalize`` again to add further groups.

    - **Shapes.** The batch dimensions of a member (the leading ``module.batch_shape`` dimensions) are tied as
      well, and members whose shapes differ by broadcasting share one value, expanded to each member's shape:
      tying a kernel with ``batch_shape=(3,)`` (``raw_lengthscale`` of shape ``3 x 1 x d``) gives one
      ``1 x 1 x d`` parameter. Shapes that do not broadcast raise :class:`ValueError`.
    - **Constraints.** Tied parameters must have equal constraints (same class and bounds), or
      :class:`ValueError` names the conflicting parameters.
    - **Priors.** With ``keep_dist=False`` (default) only the first match's priors stay: the group's prior is
      counted once, as if the model had been written with one shared parameter, and GPyTorch's Pyro
      integration samples one site per group. With ``keep_dist=True`` every member's prior stays (the model is
      conditioned on the members being equal); under Pyro the other members' priors become observed sites.
    - ``state_dict()`` keeps the untied layout, so checkpoints load into tied and untied models alike; loading
      an untied checkpoint takes the first match's value. :func:`untie` undoes the tie, :func:`tied` lists the
      groups.

    Example:

        >>> import gpytorch, torch
        >>> from gpytorch_ext.tying import equalize, tied
        >>> prior = gpytorch.priors.GammaPrior(3.0, 6.0)
        >>> k = gpytorch.kernels.RBFKernel(lengthscale_prior=prior) + gpytorch.kernels.RBFKernel(
        ...     lengthscale_prior=prior
        ... )
        >>> k = equalize(k, r"kernels\.\d+\.lengthscale")
        >>> tied(k)
        [('kernels.0.raw_lengthscale', 'kernels.1.raw_lengthscale')]
        >>> [name for name, _ in k.named_parameters()]
        ['kernels.0.raw_lengthscale']
        >>> [name for name, *_ in k.named_priors()]
        ['kernels.0.lengthscale_prior']

    :param module: the model (any :class:`torch.nn.Module` tree of GPyTorch modules).
    :param sites: a regular expression, or a list of them, matched against the parameter names.
    :param keep_dist: keep the priors of the second and later matches (condition on equality).
    :return: ``module``, tied in place.
    """
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ValueError("equalize: no pattern given")
    names = _match(module, sites, [n for n, _ in module.named_parameters(remove_duplicate=False)], "equalize")
    taken = sorted({n for group in _groups(module) for n in group.names}.intersection(names))
    if taken:
        raise ValueError(f"equalize: {taken} already tied; untie them first")

    paths, attrs = zip(*map(_split, names))
    mods = [module.get_submodule(path) for path in paths]
    params = [mod._parameters[attr] for mod, attr in zip(mods, attrs)]
    constraints = [getattr(mod, "_constraints", {}).get(attr + "_constraint") for mod, attr in zip(mods, attrs)]
    for name, constraint in zip(names[1:], constraints[1:]):
        if not _same_constraint(constraints[0], constraint):
            raise ValueError(
                f"equalize: cannot tie {names[0]} ({constraints[0]}) and {name} ({constraint}): constraints differ"
            )
    shapes = tuple(p.shape for p in params)
    shared_shape = _shared_shape(names, [_reduced_shape(mod, p) for mod, p in zip(mods, params)])

    # the priors that read each member, found before tying; a module holding several members counts once
    readers = {}
    for i, (path, mod, param) in enumerate(zip(paths, mods, params)):
        for prior_name in _priors_reading(mod, param):
            readers.setdefault((path, prior_name), i)
    owner_priors = tuple(p for (path, p), i in readers.items() if i == 0)
    other_priors = tuple(key for key, i in readers.items() if i > 0)
    group = _Group(tuple(names), shapes, shared_shape, keep_dist, owner_priors, other_priors)

    first = params[0]
    shared = first
    if first.shape != shared_shape:
        shared = nn.Parameter(_reduce(first.detach(), first.shape, shared_shape).clone(), first.requires_grad)
    for mod, attr, shape in zip(mods, attrs, shapes):
        mod._parameters[attr] = shared
        _set_shape(mod, attr, shape, shared_shape)

    # keep_dist=False: only the first member's priors stay. Every prior that stays reads the shared value once.
    for (path, prior_name), i in readers.items():
        mod = mods[i]
        if i > 0 and not keep_dist:
            group.removed[(path, prior_name)] = mod._priors.pop(prior_name)
            continue
        if i > 0:  # kept: an observed Pyro site, so pyro_load_from_samples must not look for a sample
            mod.__dict__.setdefault(_KEPT, set()).add(prior_name)
            mod.__dict__["local_load_samples"] = functools.partial(_local_load_samples, mod)
        if shapes[i] != shared_shape:
            prior, closure, setting = group.removed[(path, prior_name)] = mod._priors[prior_name]
            mod._priors[prior_name] = (prior, _ReducedClosure(closure, shapes[i], shared_shape), setting)

    _install_hooks(module)
    _groups(module).append(group)
    return module


def untie(module: ModuleT, sites: str | Sequence[str] | None = None) -> ModuleT:
    """
    Undo :func:`equalize`, in place: every group (``sites=None``), or every group with a parameter matching one
    of ``sites``, becomes independent parameters again, each starting from the current shared value (expanded
    to its own shape), with the priors that tying had set aside.

    :param module: the module :func:`equalize` was called on.
    :param sites: regular expressions matched as in :func:`equalize`; ``None`` unties every group.
    :return: ``module``, untied in place.
    """
    groups = _groups(module)
    if sites is not None:
        sites = [sites] if isinstance(sites, str) else list(sites)
        names = _match(module, sites, [n for group in groups for n in group.names], "untie")
        groups = [group for group in groups if set(group.names).intersection(names)]
    for group in list(groups):
        for name, shape in zip(group.names, group.shapes):
            mod = module.get_submodule(_split(name)[0])
            attr = _split(name)[1]
            shared = mod._parameters[attr]
            _set_shape(mod, attr, shape, shape)
            value = _expand(shared.detach(), shape, group.shape).clone()
            mod._parameters[attr] = nn.Parameter(value, requires_grad=shared.requires_grad)
        for (path, prior_name), entry in group.removed.items():
            mod = module.get_submodule(path)
            mod._priors[prior_name] = entry
            order = [n for n, m in mod._modules.items() if n in mod._priors]  # registration order
            mod._priors = {n: mod._priors[n] for n in order + [n for n in mod._priors if n not in order]}
        for path, prior_name in group.other_priors if group.keep_dist else ():
            mod = module.get_submodule(path)
            mod.__dict__[_KEPT].discard(prior_name)
            if not mod.__dict__[_KEPT]:
                del mod.__dict__[_KEPT], mod.__dict__["local_load_samples"]
        _groups(module).remove(group)
    if _GROUPS in module.__dict__ and not _groups(module):
        _remove_hooks(module)
    return module


def tied(module: nn.Module) -> list[tuple[str, ...]]:
    """
    The tie groups of ``module``: for each, the names of its parameters, the first one giving the value.

    :param module: the module :func:`equalize` was called on.
    :return: one tuple of parameter names per group, in the order the groups were made.
    """
    return [group.names for group in _groups(module)]
