r"""The KeOps formula operator: a kernel matrix given by a :class:`~._formula.Formula`, and its algebra.

:class:`KeOpsFormulaOperator` is a :class:`~linear_operator.operators.KernelLinearOperator` whose ``covar_func``
is a formula:

- matrix products are single KeOps reductions (dense products below ``max_cholesky_size``); the diagonal and
  element access evaluate the formula row-wise with plain torch in O(N), never KeOps;
- if a KeOps formula fails to compile, in the forward product or in its gradient, KeOps is switched off for the
  process with one :class:`~._availability.KeOpsUnavailableWarning` and the product is computed densely;
- sums, elementwise products and scalings of formula operators, and products over a batch dimension, are formula
  operators again (one exact KeOps reduction), instead of GPyTorch's ``SumLinearOperator`` and
  ``MulLinearOperator``, whose products go through Lanczos roots of each factor (slow and approximate):

  .. math::

      (\mathbf K_1 \circ \mathbf K_2)_{ij} = k_1(\mathbf x_i, \mathbf x'_j)\, k_2(\mathbf x_i, \mathbf x'_j)
      \quad\text{as one formula } k_1 k_2 \text{ on the concatenated inputs.}

This module imports only torch, linear_operator and gpytorch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from linear_operator.operators import DenseLinearOperator, KernelLinearOperator, LinearOperator
from linear_operator.utils.memoize import cached
from torch import Tensor

from ._availability import disable_keops, is_lazy, keops_unavailable_reason, use_keops
from ._cache import retrying
from ._formula import Formula
from ._nodes import Prod, Scale, Slice, Sum

__all__ = ["KeOpsFormulaOperator"]

T = TypeVar("T")

#: What a KeOps formula that fails to compile or load raises.
KEOPS_ERRORS = (RuntimeError, OSError, ImportError, ValueError)

#: Column counts a KeOps matrix product is padded to (each count is a separately compiled formula).
_RHS_WIDTHS = (1, 2, 4, 8, 16, 32, 64)


_KEOPS_SOURCE = re.compile(r"[/\\](pykeops|keopscore)[/\\]")


def _raised_by_keops(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, was raised inside pykeops or keopscore."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if _KEOPS_SOURCE.search(tb.tb_frame.f_code.co_filename):
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


def keops_or_dense(keops: Callable[[], T], dense: Callable[[], T]) -> T:
    """``keops()``, or ``dense()`` after switching KeOps off (one warning) if a KeOps formula fails.

    A formula that another process is still writing to KeOps' cache is waited for, not taken for a failure.
    An error raised outside KeOps (a shape error in linear_operator, say) is raised as it is.
    """
    try:
        return retrying(keops)
    except KEOPS_ERRORS as exc:
        if keops_unavailable_reason() is not None or not _raised_by_keops(exc):
            raise
        disable_keops(f"a KeOps formula failed: {type(exc).__name__}: {str(exc)[:120]}")
        return dense()


def _keops_matmul(covar: Any, rhs: Tensor) -> Tensor:
    """``covar @ rhs`` as KeOps reductions, with the column count padded to one of a few compiled widths."""
    width = rhs.size(-1)
    if width in _RHS_WIDTHS:
        return covar @ rhs.contiguous()
    if width < _RHS_WIDTHS[-1]:
        padded = next(w for w in _RHS_WIDTHS if w > width)
        zeros = rhs.new_zeros(*rhs.shape[:-1], padded - width)
        return (covar @ torch.cat([rhs, zeros], dim=-1).contiguous())[..., :width]
    chunks = torch.split(rhs, _RHS_WIDTHS[-1], dim=-1)
    return torch.cat([_keops_matmul(covar, chunk) for chunk in chunks], dim=-1)


def _fold(t: Tensor, dim: int) -> Tensor:
    """``t`` with batch dimension ``dim`` (size B) moved into the last one: ``... x R x K -> ... x R x (B K)``."""
    moved = t.movedim(dim, -2)
    return moved.reshape(*moved.shape[:-2], moved.size(-2) * moved.size(-1))


class KeOpsFormulaOperator(KernelLinearOperator):
    r"""A :class:`~linear_operator.operators.KernelLinearOperator` whose ``covar_func`` is a formula.

    :param x1: ``... x N x D``
    :param x2: ``... x M x D``
    :param covar_func: the :class:`~._formula.Formula`.
    :param params: the formula's tensor parameters, each ``... x 1 x K``.
    """

    @cached(name="kernel_diag")
    def _diagonal(self) -> Tensor:
        n = min(self.x1.size(-2), self.x2.size(-2))
        return self.covar_func.rowwise(self.x1[..., :n, :], self.x2[..., :n, :], **self.tensor_params)

    def _get_indices(self, row_index: Tensor, col_index: Tensor, *batch_indices: Tensor) -> Tensor:
        x1 = self.x1[(*batch_indices, row_index)].unsqueeze(-2)
        x2 = self.x2[(*batch_indices, col_index)].unsqueeze(-2)
        params = {k: v[tuple(batch_indices)] for k, v in self.tensor_params.items()}
        return self.covar_func.rowwise(x1, x2, **params)[..., 0]

    def _matmul(self, rhs: Tensor) -> Tensor:
        covar = self.covar_func(self.x1, self.x2, **self.tensor_params)
        if not is_lazy(covar):
            return covar @ rhs
        return keops_or_dense(
            lambda: _keops_matmul(covar, rhs),
            lambda: self.covar_func.dense(self.x1, self.x2, **self.tensor_params) @ rhs,
        )

    def _bilinear_derivative(self, left_vecs: Tensor, right_vecs: Tensor) -> tuple[Tensor | None, ...]:
        # KeOps compiles a gradient formula while the gradient is computed: it may fail there, too
        derivative = super()._bilinear_derivative
        if not use_keops(self.x1, self.x2):
            return derivative(left_vecs, right_vecs)
        return keops_or_dense(lambda: derivative(left_vecs, right_vecs), lambda: derivative(left_vecs, right_vecs))

    # --- the algebra: sums, products and scalings of formula operators are formula operators -------------------

    def _combinable(self, other: Any) -> bool:
        if not isinstance(other, KeOpsFormulaOperator) or self.matrix_shape != other.matrix_shape:
            return False
        try:
            torch.broadcast_shapes(self.batch_shape, other.batch_shape)
        except RuntimeError:
            return False
        return True

    def __add__(self, other: Any) -> LinearOperator:
        if self._combinable(other):
            return _combine([self, other], Sum)
        return super().__add__(other)

    def _mul_matrix(self, other: LinearOperator) -> LinearOperator:
        if self._combinable(other):
            return _combine([self, other], Prod)
        if isinstance(other, DenseLinearOperator) and other.matrix_shape == (1, 1):  # a batch of constants
            return self._mul_constant(other.tensor[..., 0, 0])
        return super()._mul_matrix(other)

    def _mul_constant(self, other: Tensor) -> LinearOperator:
        x1, x2, params, (node,) = _embed([self])
        params["scale"] = other.reshape(*other.shape, 1, 1)
        return KeOpsFormulaOperator(x1, x2, covar_func=Formula(Scale("scale", node)), **params)

    def _prod_batch(self, dim: int) -> LinearOperator:
        if self.size(dim) == 1:
            return self.squeeze(dim)
        count, width = self.size(dim), self.x1.size(-1)
        params = {name: _fold(value, dim) for name, value in self.tensor_params.items()}
        factors = [
            Slice(
                self.covar_func.root,
                j * width,
                (j + 1) * width,
                {name: (name, j * v.size(-1), (j + 1) * v.size(-1)) for name, v in self.tensor_params.items()},
            )
            for j in range(count)
        ]
        x1, x2 = _fold(self.x1, dim), _fold(self.x2, dim)
        return KeOpsFormulaOperator(x1, x2, covar_func=Formula(Prod(factors)), **params)


def _embed(ops: list[KeOpsFormulaOperator]) -> tuple[Tensor, Tensor, dict[str, Tensor], list[Slice]]:
    """The inputs of ``ops`` side by side, their parameters renamed apart, and one node per operator."""
    batch = torch.broadcast_shapes(*(op.batch_shape for op in ops))
    x1s, x2s, params, nodes, start = [], [], {}, [], 0
    for i, op in enumerate(ops):
        names = {}
        for name, value in op.tensor_params.items():
            params[f"f{i}_{name}"] = value
            names[name] = (f"f{i}_{name}", 0, value.size(-1))
        width = op.x1.size(-1)
        nodes.append(Slice(op.covar_func.root, start, start + width, names))
        x1s.append(op.x1.expand(*batch, *op.x1.shape[-2:]))
        x2s.append(op.x2.expand(*batch, *op.x2.shape[-2:]))
        start += width
    return torch.cat(x1s, dim=-1), torch.cat(x2s, dim=-1), params, nodes


def _combine(ops: list[KeOpsFormulaOperator], node: type[Sum]) -> KeOpsFormulaOperator:
    x1, x2, params, nodes = _embed(ops)
    return KeOpsFormulaOperator(x1, x2, covar_func=Formula(node(nodes)), **params)
