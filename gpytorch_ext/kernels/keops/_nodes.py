r"""The nodes a covariance formula is built from.

A node is a callable ``node(x1, x2, params) -> value`` on broadcast inputs whose vector dimension is last
(torch tensors or KeOps LazyTensors alike); ``params`` maps parameter names to values of the same kind.

- :class:`Term`: one kernel family's formula, e.g. the RBF's :math:`\exp(-\lVert x - x' \rVert^2 / 2)`;
- :class:`Slice`: a node evaluated on some columns of the inputs and of the parameters, under other names (how
  formulas are combined: each one reads its own columns of the concatenated inputs);
- :class:`Sum`, :class:`Prod`: the sum and the elementwise product of their children;
- :class:`Scale`: a parameter times its child.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._vectors import cols

__all__ = ["Node", "Prod", "Scale", "Slice", "Sum", "Term"]

#: ``(x1, x2, params) -> value``
Node = Callable[[Any, Any, dict[str, Any]], Any]


class Term:
    """A kernel family's formula ``term(x1, x2, **params, **options)``; ``options`` are non-tensor settings."""

    def __init__(self, term: Callable[..., Any], options: dict[str, Any]):
        self.term, self.options = term, options

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        return self.term(x1, x2, **params, **self.options)

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{getattr(self.term, '__qualname__', self.term)}({options.lstrip(', ')})"


class Slice:
    """``child`` on columns ``start:stop`` of the inputs, with parameters renamed and sliced.

    :param params: for each parameter name of ``child``: ``(outer name, start, stop)``, the columns of the
        outer parameter it reads.
    """

    def __init__(self, child: Node, start: int, stop: int, params: dict[str, tuple[str, int, int]]):
        self.child, self.start, self.stop, self.params = child, start, stop, params

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        inner = {name: cols(params[outer], a, b) for name, (outer, a, b) in self.params.items()}
        return self.child(cols(x1, self.start, self.stop), cols(x2, self.start, self.stop), inner)

    def __repr__(self) -> str:
        return f"{self.child!r}[{self.start}:{self.stop}]"


class Sum:
    """The sum of the children's values."""

    symbol = " + "

    def __init__(self, children: list[Node]):
        if not children:
            raise ValueError(f"{type(self).__name__} needs at least one child")
        self.children = children

    @staticmethod
    def combine(a: Any, b: Any) -> Any:
        return a + b

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        res = self.children[0](x1, x2, params)
        for child in self.children[1:]:
            res = self.combine(res, child(x1, x2, params))
        return res

    def __repr__(self) -> str:
        return "(" + self.symbol.join(map(repr, self.children)) + ")"


class Prod(Sum):
    """The elementwise product of the children's values."""

    symbol = " * "

    @staticmethod
    def combine(a: Any, b: Any) -> Any:
        return a * b


class Scale:
    """The parameter called ``name`` times the child's value (the child does not see that parameter)."""

    def __init__(self, name: str, child: Node):
        self.name, self.child = name, child

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        inner = {k: v for k, v in params.items() if k != self.name}
        return params[self.name] * self.child(x1, x2, inner)

    def __repr__(self) -> str:
        return f"{self.name} * {self.child!r}"
