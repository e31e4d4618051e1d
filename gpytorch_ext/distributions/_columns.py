"""Batch dimensions that a covariance does not carry become columns, never copies of the covariance.

Shared by the batch-safe ``log_prob`` and the batch-safe sampling, moments and KL divergence of
:class:`~gpytorch.distributions.MultivariateNormal`. The module imports only torch and linear_operator.

- :func:`unexpand` undoes ``expand`` on batch dimensions (dimensions of stride 0 become size 1, a view);
- :func:`distinct_covariance` strips batch dimensions that merely repeat a covariance (an ``expand``-ed tensor,
  a :class:`~linear_operator.operators.BatchRepeatLinearOperator`), so that a factorisation is computed once per
  distinct covariance;
- :func:`fold` arranges a batch of vectors as the right-hand-side columns of an operator with a smaller batch
  shape, and maps per-column results back;
- :func:`cholesky_factor` is the lower Cholesky factor of a covariance that linear_operator factorises densely
  (:func:`factorised_densely`, :func:`log_prob_by_cholesky`), without the contiguous copy of the factor that
  linear_operator makes, and cached where linear_operator caches its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from linear_operator import settings as linop_settings
from linear_operator.operators import (
    BatchRepeatLinearOperator,
    DenseLinearOperator,
    KeOpsLinearOperator,
    LinearOperator,
    TriangularLinearOperator,
)
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import CachingError
from linear_operator.utils.memoize import add_to_cache, get_from_cache
from torch import Tensor

__all__ = [
    "ShapeError",
    "cholesky_factor",
    "columns",
    "distinct_covariance",
    "factorised_densely",
    "fold",
    "log_prob_by_cholesky",
    "unexpand",
]


class ShapeError(ValueError, RuntimeError):
    """Shapes that do not fit a distribution. A ``ValueError``; also a ``RuntimeError``, which GPyTorch raised for
    such shapes before, so that code catching that keeps working."""


def unexpand(tensor: Tensor, num_event_dims: int) -> Tensor:
    """Undo ``expand`` on the batch dimensions: dimensions of stride 0 become size 1 (a view, no copy)."""
    for dim in range(tensor.dim() - num_event_dims):
        if tensor.stride(dim) == 0 and tensor.size(dim) > 1:
            tensor = tensor.narrow(dim, 0, 1)
    return tensor


def distinct_covariance(covar: Tensor | LinearOperator) -> Tensor | LinearOperator:
    """``covar`` without the batch dimensions that only repeat it; broadcasts back to ``covar``'s shape.

    Recognised: tensors and :class:`~linear_operator.operators.DenseLinearOperator` with ``expand``-ed batch
    dimensions, and :class:`~linear_operator.operators.BatchRepeatLinearOperator` whose repeats broadcast (a
    repeated dimension of size 1). Any other operator is returned as it is.
    """
    if isinstance(covar, Tensor):
        return unexpand(covar, 2)
    if type(covar) is DenseLinearOperator:
        tensor = unexpand(covar.tensor, 2)
        return covar if tensor is covar.tensor else DenseLinearOperator(tensor)
    if isinstance(covar, BatchRepeatLinearOperator):
        base = covar.base_linear_op  # unsqueezed by linear_operator to the repeat's number of batch dimensions
        sizes = base.batch_shape[len(base.batch_shape) - len(covar.batch_repeat) :]
        if all(size == 1 or repeat == 1 for size, repeat in zip(sizes, covar.batch_repeat)):
            return distinct_covariance(base)
    return covar


def columns(covar_batch: torch.Size, batch: torch.Size) -> tuple[list[int], list[int], Callable[[Tensor], Tensor]]:
    """How :func:`fold` arranges ``batch`` for an operator of batch shape ``covar_batch``.

    :return: the dimensions of ``batch`` the operator has (``keep``), those that become columns (``extra``, the
        number of columns is the product of their sizes), and ``unfold``, which maps a per-column result of shape
        ``covar_batch x K x ...`` (any trailing dimensions) back to ``batch x ...``.
    """
    ndim = len(batch)
    padded = (1,) * (ndim - len(covar_batch)) + tuple(covar_batch)
    extra = [i for i in range(ndim) if padded[i] == 1 and batch[i] != 1]
    keep = [i for i in range(ndim) if not (padded[i] == 1 and batch[i] != 1)]
    inverse = [0] * ndim
    for position, dim in enumerate(keep + extra):
        inverse[dim] = position

    def unfold(per_column: Tensor) -> Tensor:
        trailing = tuple(per_column.shape[len(covar_batch) + 1 :])
        per_column = per_column.reshape(tuple(batch[i] for i in keep + extra) + trailing)
        return per_column.permute(inverse + list(range(ndim, ndim + len(trailing))))

    return keep, extra, unfold


def fold(vectors: Tensor, covar_batch: torch.Size, batch: torch.Size) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    r"""Arrange ``vectors`` (broadcastable to ``batch x N``) as right-hand sides for an operator of batch shape
    ``covar_batch`` (which must broadcast to ``batch``).

    Dimensions of ``batch`` that the operator lacks (missing, or of size 1 where ``batch`` is larger) become
    columns: the result has shape ``covar_batch x N x K``. The returned ``unfold`` maps a per-column result of
    shape ``covar_batch x K x ...`` (any trailing dimensions, e.g. an event dimension) back to ``batch x ...``.
    When the operator has every dimension of ``batch``, ``K = 1`` and nothing is reordered.
    """
    n = vectors.size(-1)
    keep, extra, unfold = columns(covar_batch, batch)
    num_cols = math.prod(batch[i] for i in extra)
    rhs = vectors.expand(*batch, n).permute([*keep, len(batch), *extra]).reshape(*covar_batch, n, num_cols)
    return rhs, unfold


def factorised_densely(covar: LinearOperator) -> bool:
    """Whether linear_operator factorises ``covar`` as a dense matrix: its generic ``_cholesky`` (no structured
    factorisation of its own), and no KeOps operator inside (linear_operator refuses to factorise those)."""
    return (
        type(covar)._cholesky is LinearOperator._cholesky
        and covar.size(-1) > 1
        and not any(isinstance(arg, KeOpsLinearOperator) for arg in covar._args)
    )


def log_prob_by_cholesky(covar: LinearOperator) -> bool:
    """Whether ``covar.inv_quad_logdet`` would factorise ``covar`` as a dense matrix: linear_operator's Cholesky path
    (``N <= max_cholesky_size``, or fast log-probabilities off), the generic ``inv_quad_logdet`` (not, say, the
    Woodbury identity of a low-rank plus diagonal operator) and a dense factorisation."""
    on_cholesky_path = linop_settings.fast_computations.log_prob.off() or (
        covar.size(-1) <= linop_settings.max_cholesky_size.value()
    )
    return (
        on_cholesky_path and type(covar).inv_quad_logdet is LinearOperator.inv_quad_logdet and factorised_densely(covar)
    )


def cholesky_factor(covar: LinearOperator) -> Tensor:
    """The lower Cholesky factor (a Tensor) of a covariance that linear_operator factorises densely
    (:func:`factorised_densely`).

    The factor is the one linear_operator computes (``psd_safe_cholesky`` of the dense matrix, with its jitter
    retries), taken from and stored in the operator's own ``"cholesky"`` cache, so that a later
    ``root_decomposition``, ``cholesky`` or ``inv_quad_logdet`` reuses it. Unlike linear_operator it is kept in the
    layout LAPACK returns (no contiguous copy, which triangular solves and products do not need).
    """
    try:
        return get_from_cache(covar, "cholesky", upper=False).to_dense()
    except CachingError:
        pass
    factor = psd_safe_cholesky(covar.to_dense())
    add_to_cache(covar, "cholesky", TriangularLinearOperator(factor), upper=False)
    return factor
