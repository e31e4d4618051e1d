r"""Sums, products and scalings of KeOps formula kernels: one exact KeOps reduction, never densified.

GPyTorch multiplies kernel matrices through :class:`~linear_operator.operators.MulLinearOperator`, which replaces
each factor by a Lanczos low-rank root (slow and approximate). The matrices of KeOps formula kernels are
:class:`~._operator.KeOpsFormulaOperator`\ s, whose sums, elementwise products and scalings are formula operators
again, so :class:`~gpytorch.kernels.AdditiveKernel`, :class:`~gpytorch.kernels.ProductKernel` and
:class:`~gpytorch.kernels.ScaleKernel` trees over formula kernels evaluate as one formula

.. math::

    k(\mathbf x, \mathbf x') = \sum_i \prod_j \sigma_{ij}\, k_{ij}(\mathbf x, \mathbf x') \quad\text{(any nesting)},

whose matrix products are one KeOps reduction and whose diagonal is row-wise in O(N). One case needs more than
the operator algebra: GPyTorch's ``ProductKernel`` densifies its factors when ``x1 != x2``.
:func:`fused_product` multiplies the operators instead; :class:`ProductKernel` (and the ``keops-kernels`` patch,
for GPyTorch's class) use it. A tree containing anything else (a dense kernel, say) keeps GPyTorch's behaviour.

This module imports only torch, linear_operator and gpytorch.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from gpytorch import settings
from gpytorch.kernels.keops import keops_kernel as _gkeops
from gpytorch.kernels.kernel import AdditiveKernel as _AdditiveKernel
from gpytorch.kernels.kernel import Kernel
from gpytorch.kernels.kernel import ProductKernel as _ProductKernel
from gpytorch.kernels.scale_kernel import ScaleKernel as _ScaleKernel
from torch import Tensor

from ._operator import KeOpsFormulaOperator

__all__ = ["AdditiveKernel", "Fusing", "ProductKernel", "ScaleKernel", "formula_tree", "fused_product"]


def formula_tree(kernel: Kernel) -> bool:
    """Whether ``kernel`` is a KeOps kernel, or a sum, product or scaling of KeOps kernels (at any depth)."""
    if isinstance(kernel, _gkeops.KeOpsKernel):
        return True
    if isinstance(kernel, (_AdditiveKernel, _ProductKernel)):
        return all(formula_tree(k) for k in kernel.kernels)
    if isinstance(kernel, _ScaleKernel):
        return formula_tree(kernel.base_kernel)
    return False


def fused_product(
    kernel: _ProductKernel, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any
) -> KeOpsFormulaOperator | None:
    """The product of a ``ProductKernel``'s factors as one formula operator, or ``None`` when it cannot be one.

    :param kernel: the product kernel.
    :param x1: ``... x N x D``
    :param x2: ``... x M x D``
    :param diag: ``None`` for the diagonal: GPyTorch's product of the factors' O(N) diagonals is exact already.
    :return: a :class:`~._operator.KeOpsFormulaOperator`, or ``None`` if some factor is not a formula kernel
        (or a sum, product or scaling of them).
    """
    if diag or not all(formula_tree(k) for k in kernel.kernels):
        return None
    with settings.lazily_evaluate_kernels(False):
        factors = [k(x1, x2, **params) for k in kernel.kernels]
    if not all(isinstance(f, KeOpsFormulaOperator) for f in factors):
        return None  # e.g. GPyTorch's KeOps kernels without the patch
    return functools.reduce(operator.mul, factors)


class Fusing:
    """``k1 + k2`` and ``k1 * k2`` that build the fusing :class:`AdditiveKernel` and :class:`ProductKernel`."""

    def __add__(self, other: Kernel) -> Kernel:
        return AdditiveKernel._combine(self, other)

    def __mul__(self, other: Kernel) -> Kernel:
        return ProductKernel._combine(self, other)


class AdditiveKernel(Fusing, _AdditiveKernel):
    """Drop-in for :class:`gpytorch.kernels.AdditiveKernel` whose ``+`` and ``*`` keep fusing.

    Sums of KeOps formula kernels fuse through their operators; this class adds nothing else.

    :param kernels: kernels to add together.
    """

    @classmethod
    def _combine(cls, a: Kernel, b: Kernel) -> Kernel:
        parts = []
        for k in (a, b):
            parts += list(k.kernels) if isinstance(k, _AdditiveKernel) else [k]
        return cls(*parts)


class ProductKernel(Fusing, _ProductKernel):
    """Drop-in for :class:`gpytorch.kernels.ProductKernel` that multiplies KeOps formula kernels as one formula,
    also for ``x1 != x2`` (where GPyTorch densifies every factor).

    :param kernels: kernels to multiply together.
    """

    @classmethod
    def _combine(cls, a: Kernel, b: Kernel) -> Kernel:
        parts = []
        for k in (a, b):
            parts += list(k.kernels) if isinstance(k, _ProductKernel) else [k]
        return cls(*parts)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Any:
        res = fused_product(self, x1, x2, diag=diag, **params)
        return super().forward(x1, x2, diag=diag, **params) if res is None else res


class ScaleKernel(Fusing, _ScaleKernel):
    """Drop-in for :class:`gpytorch.kernels.ScaleKernel` whose ``+`` and ``*`` keep fusing.

    The scaling of a KeOps formula kernel fuses through its operator; same arguments as
    :class:`gpytorch.kernels.ScaleKernel`.
    """
