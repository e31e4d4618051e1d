r"""Fused sums, products and scalings of KeOps formula kernels: one KeOps reduction, exact, never densified.

GPyTorch multiplies KeOps kernels through :class:`~linear_operator.operators.MulLinearOperator`, which
replaces each factor by a Lanczos low-rank root (slow and approximate), and densifies products when
``x1 != x2``. Here a tree of :class:`~gpytorch.kernels.AdditiveKernel`, :class:`~gpytorch.kernels.ProductKernel`
and :class:`~gpytorch.kernels.ScaleKernel` over formula kernels compiles into a single :class:`Formula`

.. math::

    k(\mathbf x, \mathbf x') = \sum_i \prod_j \sigma_{ij}\, k_{ij}(\mathbf x, \mathbf x') \quad\text{(any nesting)},

whose matrix products are one KeOps reduction and whose diagonal is row-wise in O(N).

A tree containing anything else (a dense kernel, a subclass overriding ``forward``) keeps GPyTorch's behaviour.
This module imports only torch, linear_operator and gpytorch (and its sibling ``base``).
"""

from __future__ import annotations

from typing import Any

import gpytorch
from gpytorch.kernels.kernel import Kernel
from torch import Tensor

from .base import KeOpsFormulaOperator, _Assembly, leaf_impl, stationary_diagonal

__all__ = ["AdditiveKernel", "ProductKernel", "ScaleKernel", "fused_forward"]


class _Sum:
    def __init__(self, children: list):
        self.children = children

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        res = self.children[0](x1, x2, params)
        for child in self.children[1:]:
            res = res + child(x1, x2, params)
        return res

    def __repr__(self) -> str:
        return "(" + " + ".join(map(repr, self.children)) + ")"


class _Prod(_Sum):
    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        res = self.children[0](x1, x2, params)
        for child in self.children[1:]:
            res = res * child(x1, x2, params)
        return res

    def __repr__(self) -> str:
        return "(" + " * ".join(map(repr, self.children)) + ")"


class _Scale:
    def __init__(self, name: str, child: Any):
        self.name, self.child = name, child

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        return params[self.name] * self.child(x1, x2, params)

    def __repr__(self) -> str:
        return f"{self.name} * {self.child!r}"


# The composite classes whose ``forward`` (GPyTorch's, patched or not, or ours) may be fused.
_KINDS: dict[type, str] = {
    gpytorch.kernels.AdditiveKernel: "sum",
    gpytorch.kernels.ProductKernel: "prod",
    gpytorch.kernels.ScaleKernel: "scale",
}

#: GPyTorch's own ``forward`` of the composite classes, as imported (before any patch).
UPSTREAM_FORWARDS = {cls: vars(cls)["forward"] for cls in _KINDS}


def _kind(kernel: Kernel) -> str | None:
    owner = next(c for c in type(kernel).__mro__ if "forward" in vars(c))
    return _KINDS.get(owner)


def _compile(kernel: Kernel, x1: Tensor, x2: Tensor, assembly: _Assembly, select: bool) -> Any:
    """The formula node of ``kernel`` (``None`` if some part cannot be fused), registering its inputs."""
    if select and kernel.active_dims is not None:  # what Kernel.__call__ does for a sub-kernel
        x1, x2 = x1.index_select(-1, kernel.active_dims), x2.index_select(-1, kernel.active_dims)
    impl = leaf_impl(kernel)
    if impl is not None:
        return assembly.leaf(kernel, impl, x1, x2)
    kind = _kind(kernel)
    if kind == "scale":  # ScaleKernel calls base_kernel.forward: no second active_dims selection
        child = _compile(kernel.base_kernel, x1, x2, assembly, select=False)
        if child is None:
            return None
        scale = kernel.outputscale
        return _Scale(assembly.param("outputscale", scale.view(*scale.shape, 1, 1)), child)
    if kind in ("sum", "prod"):
        children = [_compile(k, x1, x2, assembly, select=True) for k in kernel.kernels]
        if any(c is None for c in children):
            return None
        return (_Sum if kind == "sum" else _Prod)(children)
    return None


def fused_forward(
    kernel: Kernel, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any
) -> Tensor | KeOpsFormulaOperator | None:
    """The fused forward pass of a composite kernel, or ``None`` when it cannot be fused.

    :param kernel: an :class:`~gpytorch.kernels.AdditiveKernel`, :class:`~gpytorch.kernels.ProductKernel`,
        :class:`~gpytorch.kernels.ScaleKernel` or formula kernel, with its active dimensions already applied.
    :return: the O(N) diagonal ``... x N`` if ``diag``, else a :class:`KeOpsFormulaOperator` ``... x N x M``.
    """
    if params.get("last_dim_is_batch", False):
        return None

    def compute(a: Tensor, b: Tensor) -> Any:
        assembly = _Assembly()
        root = _compile(kernel, a, b, assembly, select=False)
        return None if root is None else assembly.evaluate(root, diag)

    return stationary_diagonal(kernel, x1, x2, compute) if diag else compute(x1, x2)


class _Fusing:
    """``+`` and ``*`` that build the fusing composites below."""

    def __add__(self, other: Kernel) -> Kernel:
        return AdditiveKernel._combine(self, other)

    def __mul__(self, other: Kernel) -> Kernel:
        return ProductKernel._combine(self, other)


class AdditiveKernel(_Fusing, gpytorch.kernels.AdditiveKernel):
    """Drop-in for :class:`gpytorch.kernels.AdditiveKernel` that fuses sums of KeOps formula kernels.

    :param kernels: kernels to add together.
    """

    @classmethod
    def _combine(cls, a: Kernel, b: Kernel) -> Kernel:
        parts = []
        for k in (a, b):
            parts += list(k.kernels) if isinstance(k, gpytorch.kernels.AdditiveKernel) else [k]
        return cls(*parts)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Any:
        res = fused_forward(self, x1, x2, diag=diag, **params)
        return super().forward(x1, x2, diag=diag, **params) if res is None else res


class ProductKernel(_Fusing, gpytorch.kernels.ProductKernel):
    """Drop-in for :class:`gpytorch.kernels.ProductKernel` that fuses products of KeOps formula kernels.

    :param kernels: kernels to multiply together.
    """

    @classmethod
    def _combine(cls, a: Kernel, b: Kernel) -> Kernel:
        parts = []
        for k in (a, b):
            parts += list(k.kernels) if isinstance(k, gpytorch.kernels.ProductKernel) else [k]
        return cls(*parts)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Any:
        res = fused_forward(self, x1, x2, diag=diag, **params)
        return super().forward(x1, x2, diag=diag, **params) if res is None else res


class ScaleKernel(_Fusing, gpytorch.kernels.ScaleKernel):
    """Drop-in for :class:`gpytorch.kernels.ScaleKernel` whose scaling fuses into the KeOps formula.

    Same arguments as :class:`gpytorch.kernels.ScaleKernel`.
    """

    def forward(self, x1: Tensor, x2: Tensor, last_dim_is_batch: bool = False, diag: bool = False, **params: Any):
        res = None if last_dim_is_batch else fused_forward(self, x1, x2, diag=diag, **params)
        if res is None:
            return super().forward(x1, x2, last_dim_is_batch=last_dim_is_batch, diag=diag, **params)
        return res


for _cls, _k in ((AdditiveKernel, "sum"), (ProductKernel, "prod"), (ScaleKernel, "scale")):
    _KINDS[_cls] = _k
