r"""Batch-safe reparameterised sampling of (multitask) multivariate normals.

A sample is :math:`\boldsymbol\mu + \mathbf R \boldsymbol\epsilon` with a root :math:`\mathbf R \mathbf R^\top
= \mathbf K`. The base samples :math:`\boldsymbol\epsilon` carry the distribution's full batch shape, so that
batch members are independent even where they share a covariance; the root is that of the *distinct* covariance
(:func:`~._moments.covariance_of`), computed once, and batch dimensions that the root lacks become columns of one
matrix product (:func:`~._columns.fold`). The module imports only torch, linear_operator and gpytorch.
"""

from __future__ import annotations

import torch
from linear_operator import settings as linop_settings
from linear_operator.operators import LinearOperator, TriangularLinearOperator
from linear_operator.utils.errors import CachingError
from linear_operator.utils.memoize import get_from_cache
from torch import Tensor
from torch.distributions import MultivariateNormal as _TorchMultivariateNormal

from ._columns import ShapeError, cholesky_factor, columns, factorised_densely, fold
from ._moments import broadcast_loc, covariance_of

__all__ = ["mvn_rsample"]

_NO_SAMPLE_SHAPE = torch.Size()


def _root(dist: _TorchMultivariateNormal) -> Tensor | LinearOperator:
    """A root of the distinct covariance (``... x N x R``): torch's Cholesky factor for a dense distribution,
    else the covariance's (cached) ``root_decomposition``, as upstream GPyTorch samples with.

    Where that is a Cholesky factor of a densely factorised covariance, the factor is computed as ``log_prob``
    computes it (:func:`~._columns.cholesky_factor`: linear_operator's factor, cached on the operator, without its
    contiguous copy).
    """
    if not dist.islazy:
        return dist._unbroadcasted_scale_tril
    covar = covariance_of(dist)
    if _root_by_cholesky(covar):  # root_decomposition will take this (cached) Cholesky factor
        cholesky_factor(covar)
    return covar.root_decomposition().root


def _root_by_cholesky(covar: LinearOperator) -> bool:
    """Whether ``covar.root_decomposition()`` would compute a dense Cholesky factor: the generic
    ``root_decomposition`` (not, say, a root the operator holds), no root cached yet, linear_operator's choice of
    method (its private ``_choose_root_method``: no public hook says which method it will use) is Cholesky, and a
    dense factorisation."""
    if type(covar).root_decomposition is not LinearOperator.root_decomposition or not factorised_densely(covar):
        return False
    try:
        get_from_cache(covar, "root_decomposition")
        return False
    except CachingError:
        return covar._choose_root_method() == "cholesky"


def _lower_triangular_matmul(factor: Tensor, rhs: Tensor, depth: int = 2) -> Tensor:
    """``factor @ rhs`` for a lower triangular ``factor`` (``... x N x N``) and many columns.

    The zero upper right block is skipped, recursively (``depth`` levels): three products of half size instead of
    four, then the two diagonal blocks likewise. Small problems take one product.
    """
    n = factor.size(-1)
    if depth == 0 or n < 256 or rhs.size(-1) < 16:
        return factor @ rhs
    half = n // 2
    top = _lower_triangular_matmul(factor[..., :half, :half], rhs[..., :half, :], depth - 1)
    bottom = _lower_triangular_matmul(factor[..., half:, half:], rhs[..., half:, :], depth - 1)
    bottom = bottom + factor[..., half:, :half] @ rhs[..., :half, :]
    return torch.cat([top, bottom], -2)


def _apply_root(root: Tensor | LinearOperator, noise: Tensor, batch: torch.Size) -> Tensor:
    """``root @ noise`` per batch member: ``noise`` is ``K x batch x R``, the result ``K x batch x N``.

    ``root`` is torch's Cholesky factor (a Tensor) or a linear_operator root; batch dimensions it lacks become
    columns of one product.
    """
    rhs, unfold = fold(noise, root.shape[:-2], torch.Size((noise.size(0),)) + batch)
    if type(root) is TriangularLinearOperator and not root.upper:  # a dense factor (not a Kronecker one)
        product = _lower_triangular_matmul(root.to_dense(), rhs)
    elif isinstance(root, Tensor):
        product = _lower_triangular_matmul(root, rhs)
    else:
        product = root.matmul(rhs)
    return unfold(product.mT)


def _ciq_samples(dist: _TorchMultivariateNormal, num: int, batch: torch.Size) -> Tensor:
    """Zero-mean samples (``num x batch x N``) by contour integral quadrature (``settings.ciq_samples``): the
    distinct covariance draws one column per sample and per batch dimension it lacks."""
    covar = covariance_of(dist)
    full = torch.Size((num,)) + batch
    _, extra, unfold = columns(covar.batch_shape, full)
    samples = covar.zero_mean_mvn_samples(torch.Size(full[i] for i in extra).numel())  # K x covar_batch x N
    return unfold(samples.movedim(0, len(covar.batch_shape)))


def _check_base_samples(dist: _TorchMultivariateNormal, base_samples: Tensor) -> None:
    batch = dist.batch_shape
    trailing = tuple(base_samples.shape[base_samples.dim() - len(batch) - 1 : -1]) if base_samples.dim() else ()
    if base_samples.dim() < len(batch) + 1 or trailing != tuple(batch):
        raise ShapeError(
            f"{type(dist).__name__}.rsample: base_samples of shape {tuple(base_samples.shape)} must have shape "
            f"sample_shape x batch_shape x base_sample_shape, with batch_shape {tuple(batch)} and base_sample_shape "
            f"{tuple(dist.base_sample_shape)}"
        )


def mvn_rsample(
    dist: _TorchMultivariateNormal, sample_shape: torch.Size = _NO_SAMPLE_SHAPE, base_samples: Tensor | None = None
) -> Tensor:
    r"""``rsample`` of :class:`gpytorch.distributions.MultivariateNormal`, batch-safe.

    .. math::
        \mathbf y = \boldsymbol\mu + \mathbf R \boldsymbol\epsilon, \qquad \mathbf R \mathbf R^\top = \mathbf K

    Without ``base_samples``, :math:`\boldsymbol\epsilon` is drawn as upstream GPyTorch draws it (``torch.randn``
    of shape ``batch_shape x R x num_samples``; so a seeded run gives upstream's numbers wherever upstream was
    right) but over the distribution's full batch shape, so that batch members sharing a covariance get
    independent noise. The root :math:`\mathbf R` (``R`` columns) belongs to the distinct covariance and is
    computed once; batch dimensions that it lacks become columns of one matrix product.

    :param dist: the distribution (``batch_shape``, event size ``N``).
    :param sample_shape: the shape of the samples to draw.
    :param base_samples: i.i.d. standard normal samples of shape ``sample_shape x batch_shape x M`` with ``M`` at
        least the rank ``R`` of the root (the first ``R`` entries are used), e.g. from ``dist.get_base_samples``.
    :return: samples of shape ``sample_shape x batch_shape x N``.
    """
    batch = dist.batch_shape
    loc = broadcast_loc(dist.loc, batch)
    n = loc.size(-1)
    if base_samples is not None:
        _check_base_samples(dist, base_samples)
        sample_shape = base_samples.shape[: base_samples.dim() - len(batch) - 1]
    sample_shape = torch.Size(sample_shape)
    num = sample_shape.numel()
    if num == 0:
        return loc.new_empty(*sample_shape, *batch, n)
    if base_samples is None and linop_settings.ciq_samples.on() and dist.islazy:
        zero_mean = _ciq_samples(dist, num, batch)
    else:
        root = _root(dist)
        rank = root.size(-1)
        if base_samples is None:
            noise = torch.randn(*batch, rank, num, dtype=root.dtype, device=root.device).movedim(-1, 0)
        elif base_samples.size(-1) < rank:
            raise ShapeError(
                f"{type(dist).__name__}.rsample: base_samples of shape {tuple(base_samples.shape)} have "
                f"{base_samples.size(-1)} entries per sample; the covariance's root needs {rank}"
            )
        else:
            noise = base_samples[..., :rank].reshape(num, *batch, rank)
        zero_mean = _apply_root(root, noise, batch)
    return (zero_mean + loc).reshape(*sample_shape, *batch, n)
