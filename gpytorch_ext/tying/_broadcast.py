"""Broadcast ties: a member whose own shape is larger than the shared parameter's.

A batch-tied kernel (``raw_lengthscale`` of shape ``3 x 1 x d`` sharing one ``1 x 1 x d`` value), or an ARD
lengthscale tied to an isotropic one, keeps the shared :class:`~torch.nn.Parameter` itself under its parameter
name (so ``named_parameters``, ``get_parameter`` and optimizers see the one parameter) and shows its own shape
where GPyTorch and checkpoints expect it:

- the constrained value (``lengthscale``) reads the shared value expanded to the member's shape;
- ``initialize`` (and so ``lengthscale = ...``) accepts values of the member's shape and keeps the first element of
  every tied block;
- ``state_dict()`` holds a materialised copy in the member's shape (writable in place), and loading it keeps the
  first element of every tied block;
- priors that read the parameter see the shared value once (:class:`ReducedClosure`).

The member's class becomes a subclass of its own with these methods (:func:`broadcast_class`), pickled as such.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

SHAPES = "_tie_shapes"  # member.__dict__: {raw parameter name: (member shape, shared shape)}


def expand(value: Tensor, shape: torch.Size, shared: torch.Size) -> Tensor:
    """``value`` of shape ``... x shared`` expanded to ``... x shape`` (leading sample dimensions kept)."""
    return value.expand(*value.shape[: max(value.dim() - len(shared), 0)], *shape)


def reduce(value: Tensor, shape: torch.Size, shared: torch.Size) -> Tensor:
    """The first element of every tied block: ``... x shape`` (or broadcastable to it) to ``... x shared``."""
    value = value.expand(*value.shape[: max(value.dim() - len(shape), 0)], *shape)
    index: list[Any] = [0] * (len(shape) - len(shared))
    index += [slice(0, 1) if s == 1 and m != 1 else slice(None) for m, s in zip(shape[len(index) :], shared)]
    return value[(Ellipsis, *index)]


def broadcasts(value: Tensor, shape: torch.Size) -> bool:
    """Whether the trailing dimensions of ``value`` broadcast to ``shape``."""
    tail = value.shape[max(value.dim() - len(shape), 0) :]
    return all(a in (1, b) for a, b in zip(reversed(tail), reversed(shape)))


class ReducedClosure:
    """A prior closure of a broadcast member that returns the shared value once, not expanded."""

    def __init__(self, closure: Callable[[nn.Module], Tensor], shape: torch.Size, shared: torch.Size):
        self.closure, self.shape, self.shared = closure, shape, shared

    def __call__(self, module: nn.Module) -> Tensor:
        value = self.closure(module)
        if value.shape[max(value.dim() - len(self.shape), 0) :] != self.shape:
            return value  # the closure reads the raw (shared) parameter itself
        return reduce(value, self.shape, self.shared)


class Broadcast:
    """Mixin of a broadcast member; ``self.__dict__[SHAPES]`` says which parameters it holds in the shared shape."""

    _tie_base: type
    _tie_aliases: frozenset[tuple[str, str]]

    def initialize(self, **kwargs: Any) -> Any:
        shapes = self.__dict__[SHAPES]
        mine = {name: kwargs.pop(name) for name in list(kwargs) if name in shapes}
        super().initialize(**kwargs)  # type: ignore[misc]
        for name, value in mine.items():
            param = self.get_parameter(name)  # type: ignore[attr-defined]
            value = torch.as_tensor(value, dtype=param.dtype, device=param.device)
            super().initialize(**{name: reduce(value, *shapes[name])})  # type: ignore[misc]
        return self

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)  # type: ignore[misc]
        if keep_vars:
            return  # the variables themselves: the shared parameter
        for name, shapes in self.__dict__[SHAPES].items():
            if prefix + name in destination:
                value = expand(destination[prefix + name], *shapes)
                destination[prefix + name] = value.clone(memory_format=torch.contiguous_format)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        for name, (shape, shared) in self.__dict__[SHAPES].items():
            value = state_dict.get(prefix + name)
            if isinstance(value, Tensor) and broadcasts(value, shape):
                state_dict[prefix + name] = reduce(value, shape, shared)
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[misc]

    def __reduce_ex__(self, protocol: Any) -> Any:
        reduced = super().__reduce_ex__(protocol)
        cls = type(self)
        if cls is not broadcast_class(cls._tie_base, cls._tie_aliases):
            return reduced  # a further subclass (GPyTorch's Pyro copies): copied, never pickled
        return (_new, (cls._tie_base, cls._tie_aliases), *reduced[2:])


def _expanding(fget: Callable[[Any], Tensor], raw: str) -> Callable[[Any], Tensor]:
    def get(self: Any) -> Tensor:
        value = fget(self)
        shapes = self.__dict__.get(SHAPES, {}).get(raw)
        return value if shapes is None else expand(value, *shapes)

    return get


@functools.cache
def broadcast_class(base: type, aliases: frozenset[tuple[str, str]]) -> type:
    """``base`` with :class:`Broadcast` and, for each ``(alias, raw name)``, the alias property read expanded."""
    namespace: dict[str, Any] = {"__module__": base.__module__, "__qualname__": base.__qualname__}
    namespace.update(_tie_base=base, _tie_aliases=aliases)
    for alias, raw in aliases:
        prop = getattr(base, alias)
        namespace[alias] = property(_expanding(prop.fget, raw), prop.fset, prop.fdel, prop.__doc__)
    return type(base.__name__, (Broadcast, base), namespace)


def _new(base: type, aliases: frozenset[tuple[str, str]]) -> nn.Module:
    cls = broadcast_class(base, aliases)
    return cls.__new__(cls)


def set_shape(module: nn.Module, name: str, shape: torch.Size | None, shared: torch.Size | None = None) -> None:
    """Make ``module`` read its parameter ``name`` (held in ``shared`` shape) as ``shape``; ``None`` undoes it."""
    shapes = {n: s for n, s in module.__dict__.pop(SHAPES, {}).items() if n != name}
    if shape is not None:
        shapes[name] = (shape, shared)
    base = getattr(type(module), "_tie_base", type(module))
    if not shapes:
        module.__class__ = base
        return
    module.__dict__[SHAPES] = shapes
    aliases = frozenset((_alias(n), n) for n in shapes if isinstance(getattr(base, _alias(n), None), property))
    module.__class__ = broadcast_class(base, aliases)


def _alias(name: str) -> str:
    return name[4:] if name.startswith("raw_") else name
