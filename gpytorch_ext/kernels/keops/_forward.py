r"""The forward pass of one KeOps formula kernel: its O(N) diagonal, or a :class:`~._operator.KeOpsFormulaOperator`.

A family (see :mod:`._kernel`) prepares the inputs and parameters and states its formula; :func:`formula_forward`
evaluates it for any kernel object that has the family's parameters: our drop-ins, and GPyTorch's own KeOps
kernels (RBF, Matern, Periodic), whose ``forward`` the ``keops-kernels`` patch routes here.

With ``last_dim_is_batch=True`` (deprecated in GPyTorch 2.0, still passed by GPyTorch 1.15's
``GridKernel``, ``GridInterpolationKernel``, ``AdditiveStructureKernel`` and ``ProductStructureKernel``), each
input dimension becomes a batch dimension: the result is ``... x D x N x M`` (``... x D x N`` for the diagonal),
entry ``d`` being the kernel of the ``d``-th input column alone, with that dimension's parameters.

This module imports only torch, linear_operator and gpytorch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any

import torch
from gpytorch.kernels.kernel import Kernel
from torch import Tensor

from ._formula import Formula
from ._nodes import Term
from ._operator import KeOpsFormulaOperator

__all__ = ["by_dimension", "formula_forward", "stationary_diagonal"]


def by_dimension(
    x1: Tensor, x2: Tensor, params: dict[str, Tensor], dimension_params: Collection[str]
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    r"""Prepared inputs and parameters with every input dimension as a batch dimension (``last_dim_is_batch``).

    :param x1: ``... x N x D``
    :param x2: ``... x M x D``
    :param params: each ``... x 1 x K``
    :param dimension_params: the names of the parameters with values per input dimension: ``K = Q D``
        (dimension fastest), or ``K = 1`` for one value shared by all dimensions.
    :return: ``... x D x N x 1``, ``... x D x M x 1``, and the parameters: ``... x D x 1 x Q`` for the
        per-dimension ones, ``... x 1 x 1 x K`` for the others.
    """
    dims = x1.size(-1)
    split = {}
    for name, value in params.items():
        width = value.size(-1)
        if name in dimension_params and width > 1:
            if width % dims:
                raise ValueError(
                    f"parameter {name!r} of shape {tuple(value.shape)} has no value per input dimension for inputs "
                    f"of shape {tuple(x1.shape)}"
                )
            per_dim = value.reshape(*value.shape[:-2], width // dims, dims).transpose(-1, -2)  # ... x D x Q
            split[name] = per_dim.unsqueeze(-2)
        else:
            split[name] = value.unsqueeze(-3)
    return x1.transpose(-1, -2).unsqueeze(-1), x2.transpose(-1, -2).unsqueeze(-1), split


def stationary_diagonal(kernel: Kernel, x1: Tensor, x2: Tensor, compute: Callable[[Tensor, Tensor], Any]) -> Any:
    """``compute(x1, x2)`` (a diagonal); for a stationary kernel with ``x1 is x2``, the value at distance zero.

    That value is computed from one row and broadcast to ``... x N``, so it stays differentiable in the
    hyperparameters (e.g. an outputscale) at O(1) cost.
    """
    if x1 is x2 and kernel.is_stationary and x1.size(-2) > 0:
        row = x1[..., :1, :]
        res = compute(row, row)
        return res.expand(*res.shape[:-1], x1.size(-2)).contiguous()
    return compute(x1, x2)


def formula_forward(
    kernel: Kernel,
    family: type,
    x1: Tensor,
    x2: Tensor,
    diag: bool = False,
    last_dim_is_batch: bool = False,
) -> Tensor | KeOpsFormulaOperator:
    r"""The forward pass of a single formula kernel.

    :param kernel: the kernel object (its parameters are read by ``family._prepare``).
    :param family: the class whose ``_prepare``, ``_term``, ``_term_options`` and ``_dimension_params`` state the
        formula (a subclass of :class:`~._kernel.KeOpsKernel`; ``kernel`` need not be an instance of it).
    :param x1: ``... x N x D``
    :param x2: ``... x M x D``
    :param diag: the diagonal only (``x1`` and ``x2`` of equal length), row-wise in O(N), never KeOps.
    :param last_dim_is_batch: every input dimension as a batch dimension (see the module docstring).
    :return: ``... x N`` if ``diag``, else a :class:`~._operator.KeOpsFormulaOperator` ``... x N x M``
        (with ``... x D`` in front of ``N`` if ``last_dim_is_batch``).
    """

    def compute(a: Tensor, b: Tensor) -> Tensor | KeOpsFormulaOperator:
        a_, b_, tensors = family._prepare(kernel, a, b)
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in (a_, b_, *tensors.values())])
        a_, b_ = a_.to(dtype), b_.to(dtype)  # e.g. float32 inputs to a float64 kernel, as dense kernels allow
        if last_dim_is_batch:
            a_, b_, tensors = by_dimension(a_, b_, tensors, family._dimension_params)
        formula = Formula(Term(family._term, family._term_options(kernel)))
        if diag:
            return formula.rowwise(a_, b_, **tensors)
        return KeOpsFormulaOperator(a_, b_, covar_func=formula, **tensors)

    return stationary_diagonal(kernel, x1, x2, compute) if diag else compute(x1, x2)
