"""Moments, shapes and KL divergence of a lazy (multitask) multivariate normal, broadcast like torch.

A GPyTorch normal whose mean and covariance have different (broadcastable) batch shapes describes the same
distribution as :class:`torch.distributions.MultivariateNormal` on the broadcast tensors. The functions here give
its mean, covariance matrix, Cholesky factor, entropy, ``expand``/``unsqueeze`` and KL divergence torch's shapes and
values without ever repeating the covariance: every factorisation is computed on :func:`covariance_of`, the
*distinct* covariance (its own batch shape, with dimensions that only repeat it stripped). The module imports only
torch, linear_operator and gpytorch.
"""

from __future__ import annotations

import math

import torch
from linear_operator import to_dense
from linear_operator.operators import LinearOperator
from torch import Tensor
from torch.distributions import MultivariateNormal as _TorchMultivariateNormal

from ._columns import ShapeError, distinct_covariance, fold
from ._log_prob import _diagonal_variance

__all__ = [
    "broadcast_loc",
    "covariance_of",
    "dense_covariance",
    "mvn_entropy",
    "mvn_expand",
    "mvn_kl_divergence",
    "mvn_unsqueeze",
    "unbroadcasted_scale_tril",
]

_LOG_2PI = math.log(2 * math.pi)

#: instance attribute caching the distinct covariance of a distribution
_DISTINCT = "_distinct_covariance"


def broadcast_loc(loc: Tensor, batch_shape: torch.Size) -> Tensor:
    """The mean expanded to ``batch_shape x N`` (a view), as torch's ``MultivariateNormal.loc`` is."""
    if loc.shape[:-1] == batch_shape:
        return loc
    return loc.expand(*batch_shape, loc.size(-1))


def covariance_of(dist: _TorchMultivariateNormal) -> LinearOperator:
    """The distinct covariance of ``dist``: ``dist.lazy_covariance_matrix`` without the batch dimensions that only
    repeat it (see :func:`~._columns.distinct_covariance`). Cached on the distribution, so that its
    factorisations (cached on the operator by linear_operator) serve every later call."""
    cached = dist.__dict__.get(_DISTINCT)
    if cached is None:
        cached = distinct_covariance(dist.lazy_covariance_matrix)
        dist.__dict__[_DISTINCT] = cached
    return cached


def dense_covariance(dist: _TorchMultivariateNormal) -> Tensor:
    """The dense covariance of a lazy distribution, ``batch_shape x N x N`` (expanded, as torch gives it)."""
    dense = to_dense(covariance_of(dist))
    if dense.dim() < 2:  # the degenerate normal of a single indexed entry: its variance
        return dense
    return dense.expand(*dist.batch_shape, *dense.shape[-2:])


def unbroadcasted_scale_tril(dist: _TorchMultivariateNormal) -> Tensor:
    """The lower Cholesky factor of the distinct covariance (torch's ``_unbroadcasted_scale_tril``)."""
    return to_dense(covariance_of(dist).cholesky())


def mvn_entropy(dist: _TorchMultivariateNormal) -> Tensor:
    r"""The entropy of a lazy distribution, of shape ``batch_shape``:

    .. math::
        H = \tfrac{N}{2} (1 + \log 2\pi) + \tfrac{1}{2} \log \vert \mathbf K \vert

    with the exact log-determinant of the distinct covariance: from its Cholesky factor, as torch computes it, or
    in closed form for a diagonal covariance.
    """
    covar = covariance_of(dist)
    variance = _diagonal_variance(covar)
    if variance is not None:
        half_logdet = 0.5 * variance.log().sum(-1)
    else:
        half_logdet = covar.cholesky().diagonal(dim1=-2, dim2=-1).log().sum(-1)
    result = 0.5 * covar.size(-1) * (1.0 + _LOG_2PI) + half_logdet
    return result.expand(dist.batch_shape)


def _expandable(dist: _TorchMultivariateNormal, batch_shape: torch.Size) -> torch.Size:
    batch_shape = torch.Size(batch_shape)
    try:
        ok = torch.broadcast_shapes(dist.batch_shape, batch_shape) == batch_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ShapeError(
            f"{type(dist).__name__}.expand: batch shape {tuple(dist.batch_shape)} cannot be expanded to "
            f"{tuple(batch_shape)} (torch's expand rules: sizes of 1 grow, other sizes must match)"
        )
    return batch_shape


def _multitask_kwargs(dist: _TorchMultivariateNormal) -> dict:
    """Constructor arguments of ``type(dist)`` beyond mean and covariance (a multitask normal's interleaving)."""
    return {"interleaved": dist._interleaved} if hasattr(dist, "_interleaved") else {}


def _from_scale_tril(dist: _TorchMultivariateNormal, loc: Tensor, scale_tril: Tensor, covariance: Tensor):
    """A dense (non-lazy) distribution of ``type(dist)`` from its Cholesky factor, without factorising again (as
    upstream GPyTorch builds them in ``expand`` and ``unsqueeze``)."""
    new = dist.__new__(type(dist))
    new._islazy = False
    _TorchMultivariateNormal.__init__(new, loc=loc, scale_tril=scale_tril)
    new.covariance_matrix = covariance
    return new


def mvn_expand(dist: _TorchMultivariateNormal, batch_shape: torch.Size) -> _TorchMultivariateNormal:
    """``dist.expand(batch_shape)``, torch's rules, nothing factorised again.

    A lazy distribution gets the mean and covariance expanded lazily (as upstream) and shares its distinct
    covariance, and so its factorisations, with ``dist``; a dense one keeps torch's Cholesky factor.

    :raises ValueError: when ``dist.batch_shape`` does not expand to ``batch_shape``, naming both.
    """
    batch_shape = _expandable(dist, batch_shape)
    mean = dist.mean
    event_dims = mean.dim() - len(dist.batch_shape)
    new_mean = mean.expand(*batch_shape, *mean.shape[mean.dim() - event_dims :])
    kwargs = _multitask_kwargs(dist)
    if not dist.islazy:
        if not kwargs:
            covariance = dist.covariance_matrix
            return _from_scale_tril(
                dist, new_mean, dist._unbroadcasted_scale_tril, covariance.expand(*batch_shape, *covariance.shape[-2:])
            )
        return type(dist)(new_mean, to_dense(covariance_of(dist)), **kwargs)
    covar = dist.lazy_covariance_matrix
    new = type(dist)(new_mean, covar.expand(*batch_shape, *covar.shape[-2:]), **kwargs)
    new.__dict__[_DISTINCT] = covariance_of(dist)
    return new


def mvn_unsqueeze(dist: _TorchMultivariateNormal, dim: int) -> _TorchMultivariateNormal:
    """``dist.unsqueeze(dim)`` for a distribution whose covariance may have fewer batch dimensions than the
    distribution: the new dimension goes to the same place counted from the right, or nowhere in the covariance
    when it lies left of all of its batch dimensions (broadcasting supplies it). Nothing is factorised again.
    """
    num_batch = len(dist.batch_shape)
    if dim > num_batch or dim < -num_batch - 1:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-num_batch - 1}, {num_batch}], but got {dim})."
        )
    from_right = dim if dim < 0 else dim - num_batch - 1  # negative, counted within the batch dimensions
    mean = dist.mean
    event_dims = mean.dim() - num_batch
    new_mean = mean.unsqueeze(from_right - event_dims)

    def insert(covar):
        if -from_right > covar.dim() - 1:
            return covar
        # a lazily evaluated kernel does not unsqueeze its kernel's parameters (GPyTorch 1.15.2): evaluate it first
        if isinstance(covar, LinearOperator):
            covar = covar.evaluate_kernel()
        return covar.unsqueeze(from_right - 2)

    kwargs = _multitask_kwargs(dist)
    if not dist.islazy:
        if not kwargs:
            return _from_scale_tril(
                dist,
                new_mean,
                insert(dist._unbroadcasted_scale_tril),
                dist.covariance_matrix.unsqueeze(dim if dim >= 0 else dim - 2),
            )
        return type(dist)(new_mean, insert(to_dense(covariance_of(dist))), **kwargs)
    covar, distinct = dist.lazy_covariance_matrix, covariance_of(dist)
    new_covar = insert(covar)
    new = type(dist)(new_mean, new_covar, **kwargs)
    new.__dict__[_DISTINCT] = new_covar if distinct is covar else insert(distinct)
    return new


def mvn_kl_divergence(p_dist: _TorchMultivariateNormal, q_dist: _TorchMultivariateNormal) -> Tensor:
    r""":math:`\mathrm{KL}(p \Vert q)` of two (multitask) multivariate normals, broadcast like torch.

    .. math::
        \mathrm{KL} = \tfrac{1}{2} \left( \log \vert \mathbf K_q \vert - \log \vert \mathbf K_p \vert
        + \mathrm{tr}(\mathbf K_q^{-1} \mathbf K_p) + \boldsymbol\delta^\top \mathbf K_q^{-1} \boldsymbol\delta
        - N \right), \quad \boldsymbol\delta = \boldsymbol\mu_p - \boldsymbol\mu_q

    Upstream's algorithm (a root :math:`\mathbf R_p` of :math:`\mathbf K_p`, and one ``inv_quad_logdet`` call of
    :math:`\mathbf K_q` on the columns :math:`[\boldsymbol\delta, \mathbf R_p]`), on the distinct covariances:
    batch dimensions that :math:`\mathbf K_q` lacks become further columns of that one call.

    :return: a Tensor of shape ``broadcast(p_dist.batch_shape, q_dist.batch_shape)``.
    """
    try:
        batch = torch.broadcast_shapes(p_dist.batch_shape, q_dist.batch_shape)
    except RuntimeError:
        raise ShapeError(
            f"kl_divergence: batch shapes {tuple(p_dist.batch_shape)} and {tuple(q_dist.batch_shape)} do not broadcast"
        ) from None
    if p_dist.event_shape != q_dist.event_shape:
        raise ShapeError(
            f"kl_divergence: event shapes {tuple(p_dist.event_shape)} and {tuple(q_dist.event_shape)} differ"
        )
    p_covar, q_covar = covariance_of(p_dist), covariance_of(q_dist)
    root_p = to_dense(p_covar.root_decomposition().root)  # p_batch x N x R
    logdet_p = p_covar.logdet()
    mean_diffs = p_dist.loc - q_dist.loc
    n = mean_diffs.size(-1)
    # columns: the mean differences (batch) and the root's columns (its batch broadcast with q's)
    root_batch = torch.broadcast_shapes(root_p.shape[:-2], q_covar.batch_shape)
    mean_rhs, unfold_mean = fold(mean_diffs, q_covar.batch_shape, batch)
    padding = (1,) * (len(root_batch) - (root_p.dim() - 2))
    root_columns = root_p.movedim(-1, 0).reshape(root_p.size(-1), *padding, *root_p.shape[:-1])  # R x root_batch x N
    root_rhs, unfold_root = fold(root_columns, q_covar.batch_shape, root_p.shape[-1:] + root_batch)
    rhs = torch.cat([mean_rhs, root_rhs], -1)
    inv_quad, logdet_q = q_covar.inv_quad_logdet(inv_quad_rhs=rhs, logdet=True, reduce_inv_quad=False)
    mahalanobis = unfold_mean(inv_quad[..., : mean_rhs.size(-1)])
    trace = unfold_root(inv_quad[..., mean_rhs.size(-1) :]).sum(0)
    result = 0.5 * (logdet_q - logdet_p + trace + mahalanobis - n)
    return result.expand(batch)
