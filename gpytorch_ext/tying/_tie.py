"""One tie: a single :class:`~torch.nn.Parameter` registered under every member's name.

Sharing the parameter object is what a model written by hand does, so every tool that walks a module
(``named_parameters``, ``get_parameter``, optimizers, ``deepcopy``, pickle, ``.to``) sees one parameter. On top of
that a :class:`Tie` keeps

- the group's prior once (``keep_dist=False``): the other members' priors that read the parameter are set aside;
- each member's own shape where it is larger than the shared one (:mod:`._broadcast`);
- "the first match wins" when a checkpoint that holds different values for the members is loaded (:meth:`load`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from gpytorch.module import Module
from torch import Tensor, nn

from ._broadcast import ReducedClosure, broadcasts, expand, reduce, set_shape


def split(name: str) -> tuple[str, str]:
    """``"a.b.raw_x"`` to ``("a.b", "raw_x")``."""
    path, _, attr = name.rpartition(".")
    return path, attr


def _site(path: str, prior_name: str) -> str:
    return f"{path}.{prior_name}" if path else prior_name


@dataclass
class Tie:
    """A tie group of the module it was made on, by names relative to it (so it survives ``deepcopy``)."""

    names: tuple[str, ...]  # the members' parameter names; the first one gave the value
    shapes: tuple[torch.Size, ...]  # each member's own shape
    shape: torch.Size  # the shared parameter's shape
    keep_dist: bool
    sites: tuple[str, ...] = ()  # the first member's priors that read the parameter (Pyro sample sites)
    kept: tuple[str, ...] = ()  # keep_dist=True: the other members' priors (observed Pyro sites)
    saved: dict[tuple[str, str], Any] = field(default_factory=dict)  # (module path, prior name) -> original entry

    @classmethod
    def make(cls, root: nn.Module, names: Sequence[str], keep_dist: bool) -> Tie:
        """Tie ``names`` (checked by the caller: constraints, dtypes) in place and return the record."""
        paths, attrs = zip(*map(split, names))
        mods = [root.get_submodule(path) for path in paths]
        params = [mod.get_parameter(attr) for mod, attr in zip(mods, attrs)]
        shapes = tuple(p.shape for p in params)
        shape = _shared_shape(names, [_reduced_shape(mod, p) for mod, p in zip(mods, params)])

        readers: dict[tuple[str, str], int] = {}  # found before tying; a module holding two members counts once
        for i, (path, mod, param) in enumerate(zip(paths, mods, params)):
            for prior_name in _priors_reading(mod, param):
                readers.setdefault((path, prior_name), i)
        tie = cls(tuple(names), shapes, shape, keep_dist)
        tie.sites = tuple(_site(*key) for key, i in readers.items() if i == 0)
        tie.kept = tuple(_site(*key) for key, i in readers.items() if i > 0 and keep_dist)

        first = params[0]
        shared = first
        if first.shape != shape:
            shared = nn.Parameter(reduce(first.detach(), first.shape, shape).clone(), first.requires_grad)
        tie.share(root, shared)

        for (path, prior_name), i in readers.items():
            priors = mods[i]._priors  # GPyTorch keeps a module's priors in the private dict `_priors`
            if i > 0 and not keep_dist:
                tie.saved[(path, prior_name)] = priors.pop(prior_name)
            elif shapes[i] != shape:
                prior, closure, setting = tie.saved[(path, prior_name)] = priors[prior_name]
                priors[prior_name] = (prior, ReducedClosure(closure, shapes[i], shape), setting)
        return tie

    def share(self, root: nn.Module, shared: nn.Parameter | None = None) -> None:
        """Register ``shared`` (default: the first member's parameter) under every member's name."""
        for name, own in zip(self.names, self.shapes):
            path, attr = split(name)
            mod = root.get_submodule(path)
            shared = mod.get_parameter(attr) if shared is None else shared
            if mod.get_parameter(attr) is not shared:
                setattr(mod, attr, shared)
            if own != self.shape:
                set_shape(mod, attr, own, self.shape)

    def release(self, root: nn.Module) -> None:
        """Undo :meth:`make`: independent parameters from the current shared value, the priors set aside back."""
        for name, own in zip(self.names, self.shapes):
            path, attr = split(name)
            mod = root.get_submodule(path)
            shared = mod.get_parameter(attr)
            set_shape(mod, attr, None)
            value = expand(shared.detach(), own, self.shape).clone(memory_format=torch.contiguous_format)
            setattr(mod, attr, nn.Parameter(value, requires_grad=shared.requires_grad))
        for (path, prior_name), entry in self.saved.items():
            mod = root.get_submodule(path)
            mod._priors[prior_name] = entry
            order = [n for n, _ in mod.named_children() if n in mod._priors]  # registration order (priors are modules)
            mod._priors = {n: mod._priors[n] for n in [*order, *(n for n in mod._priors if n not in order)]}

    def load(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Give every member's entry the value of the first member the checkpoint holds (first match wins)."""
        keys = [prefix + name for name in self.names]
        i = next((i for i, key in enumerate(keys) if key in state_dict), None)
        value = None if i is None else state_dict[keys[i]]
        if isinstance(value, Tensor) and broadcasts(value, self.shapes[i]):  # else torch reports the shape
            value = reduce(value, self.shapes[i], self.shape)
            for key in keys:
                state_dict[key] = value

    def propagate(self, copy: nn.Module) -> None:
        """In a Pyro copy (GPyTorch copies every child separately), give every member the first member's value."""
        path, attr = split(self.names[0])
        value = getattr(copy.get_submodule(path), attr)
        for name in self.names[1:]:
            path, attr = split(name)
            mod = copy.get_submodule(path)
            delattr(mod, attr)
            setattr(mod, attr, value)  # a sampled tensor replaces the parameter, as GPyTorch's Pyro copies do


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
            i, j = next((i, j) for i in range(len(shapes)) for j in range(i) if 1 != shapes[i][k] != shapes[j][k] != 1)
            raise ValueError(
                f"equalize: cannot tie {names[j]} (shape {tuple(shapes[j])}, batch dimensions set to 1) and "
                f"{names[i]} (shape {tuple(shapes[i])}): the shapes do not broadcast (dimension {k})"
            )
        out.append(sizes.pop() if len(sizes) == 1 else 1)
    return torch.Size(out)


def _priors_reading(module: nn.Module, param: nn.Parameter) -> list[str]:
    """The names of the module's priors whose closure reads ``param`` (checked by autograd)."""
    if not isinstance(module, Module):
        return []
    names = []
    requires_grad = param.requires_grad
    try:
        param.requires_grad_(True)
        with torch.enable_grad():
            for name, (prior, closure, _) in module._priors.items():
                value = closure(module) if prior is not None else None
                if isinstance(value, Tensor) and value.requires_grad:
                    if torch.autograd.grad(value.sum(), param, allow_unused=True)[0] is not None:
                        names.append(name)
    finally:
        param.requires_grad_(requires_grad)
    return names
