"""Batch-safe log-density of (multitask) multivariate normals.

:func:`mvn_log_prob_method` and :func:`mtmvn_log_prob_method` are the ``log_prob`` methods of
:class:`~gpytorch.distributions.MultivariateNormal` and :class:`~gpytorch.distributions.MultitaskMultivariateNormal`.
The module imports only torch, linear_operator and gpytorch.

The algorithm:

1. The batch shape of the result is ``broadcast(value.shape[:-1], mean.shape[:-1], covariance.batch_shape)``,
   computed before any linear algebra; shapes that do not broadcast raise a ``ValueError`` naming all three.
2. Batch dimensions that the covariance does not have (missing, of size 1 where the result's is larger, or only
   repeated by ``expand``) are moved into extra right-hand-side columns, so that a single ``inv_quad_logdet``
   call on the *un-repeated* covariance computes every quadratic form; its log-determinant is computed once and
   broadcast.
3. On linear_operator's Cholesky path, a covariance that linear_operator factorises as a dense matrix costs one
   Cholesky factorisation and one triangular solve (the factor is cached on the operator, as linear_operator
   caches its own).
4. Diagonal covariances (``DiagLinearOperator``, ``ConstantDiagLinearOperator`` and ``AddedDiagLinearOperator``
   sums of those) are evaluated in closed form, elementwise.
5. A dense (non-lazy) distribution reuses the Cholesky factor that torch computed at construction.
"""

from __future__ import annotations

import math

import torch
from gpytorch import settings
from linear_operator import to_linear_operator
from linear_operator.operators import AddedDiagLinearOperator, DiagLinearOperator, LinearOperator
from torch import Tensor
from torch.distributions import MultivariateNormal as _TorchMultivariateNormal

from ._columns import cholesky_factor, distinct_covariance, fold, log_prob_by_cholesky, unexpand

__all__ = [
    "diag_normal_log_prob",
    "keep_validate_args",
    "mtmvn_log_prob_method",
    "mvn_log_prob",
    "mvn_log_prob_method",
]

_LOG_2PI = math.log(2 * math.pi)


# --- shapes ----------------------------------------------------------------------------------------------------


def _batch_shape(value: Tensor, mean: Tensor, covar_shape: torch.Size) -> torch.Size:
    """The broadcast batch shape of value, mean and covariance, or a ``ValueError`` naming all three shapes."""
    n = covar_shape[-1]

    def _fail(reason: str) -> ValueError:
        return ValueError(
            f"MultivariateNormal.log_prob: {reason} (value shape {tuple(value.shape)}, "
            f"mean shape {tuple(mean.shape)}, covariance shape {tuple(covar_shape)})"
        )

    if value.dim() < 1:
        raise _fail("the value must have at least one dimension (the event dimension)")
    if value.size(-1) not in (1, n) or mean.size(-1) not in (1, n):
        raise _fail(f"the event size must be {n}")
    try:
        return torch.broadcast_shapes(value.shape[:-1], mean.shape[:-1], covar_shape[:-2])
    except RuntimeError:
        raise _fail("the batch shapes do not broadcast") from None


# --- the three evaluation paths -------------------------------------------------------------------------------


def _diagonal_variance(covar: LinearOperator) -> Tensor | None:
    """The variances of a diagonal covariance operator (without forming a matrix), or ``None`` if not diagonal."""
    if isinstance(covar, DiagLinearOperator):
        return covar.diagonal(dim1=-2, dim2=-1)
    if isinstance(covar, AddedDiagLinearOperator):
        first = _diagonal_variance(covar._linear_op)
        second = _diagonal_variance(covar._diag_tensor) if first is not None else None
        if first is not None and second is not None:
            return first + second
    return None


def _check_positive(name: str, tensor: Tensor) -> None:
    bad = ~(torch.isfinite(tensor) & (tensor > 0))
    if bool(bad.any()):
        example = tensor[bad].flatten()[0].item()
        raise ValueError(
            f"{name} must be positive and finite; {int(bad.sum())} of {tensor.numel()} entries are not "
            f"(for example {example})"
        )


def _finish(inv_quad: Tensor, logdet: Tensor, n: int) -> Tensor:
    return -0.5 * (inv_quad + logdet + n * _LOG_2PI)


def _diag_log_prob(diff: Tensor, variance: Tensor) -> Tensor:
    inv_quad = diff.square().div(variance).sum(-1)
    return _finish(inv_quad, variance.log().sum(-1), variance.size(-1))


def _operator_log_prob(diff: Tensor, covar: LinearOperator, batch: torch.Size) -> Tensor:
    rhs, unfold = fold(diff, covar.batch_shape, batch)
    if log_prob_by_cholesky(covar):  # one Cholesky factor and one triangular solve: the algebraic minimum
        factor = cholesky_factor(covar)
        whitened = torch.linalg.solve_triangular(factor, rhs, upper=False)
        inv_quad = whitened.square().sum(-2)
        logdet = 2 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    else:
        inv_quad, logdet = covar.inv_quad_logdet(inv_quad_rhs=rhs, logdet=True, reduce_inv_quad=False)
    return _finish(unfold(inv_quad), logdet, covar.size(-1))


def _tril_log_prob(value: Tensor, mean: Tensor, scale_tril: Tensor) -> Tensor:
    """Log-density from a lower Cholesky factor ``scale_tril`` (``... x N x N``), torch's algorithm, batch-safe."""
    scale_tril = unexpand(scale_tril, 2)
    batch = _batch_shape(value, mean, scale_tril.shape)
    if batch.numel() == 0:
        return (value - mean).new_zeros(batch)
    rhs, unfold = fold(value - mean, scale_tril.shape[:-2], batch)
    whitened = torch.linalg.solve_triangular(scale_tril, rhs, upper=False)
    logdet = 2 * scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return _finish(unfold(whitened.square().sum(-2)), logdet, scale_tril.size(-1))


def mvn_log_prob(
    value: Tensor, mean: Tensor, covariance: Tensor | LinearOperator, validate_args: bool = False
) -> Tensor:
    r"""Log-density of a multivariate normal, broadcasting value, mean and covariance like torch.

    .. math::
        \log p(\mathbf y) = -\tfrac{1}{2}\left( (\mathbf y - \boldsymbol\mu)^\top \mathbf K^{-1}
        (\mathbf y - \boldsymbol\mu) + \log \vert \mathbf K \vert + N \log 2\pi \right)

    :param value: the values, of shape `... x N`.
    :param mean: the mean, of shape `... x N`.
    :param covariance: the covariance, a Tensor or LinearOperator of shape `... x N x N`. Its batch dimensions
        are never repeated: one ``inv_quad_logdet`` call serves every value and mean.
    :param validate_args: check that a diagonal covariance has positive, finite variances.
    :return: a Tensor of shape ``broadcast(value.shape[:-1], mean.shape[:-1], covariance.shape[:-2])``.
    """
    if isinstance(mean, LinearOperator):
        mean = mean.to_dense()
    batch = _batch_shape(value, mean, covariance.shape)
    covariance = to_linear_operator(distinct_covariance(covariance)).evaluate_kernel()
    diff = value - mean
    if batch.numel() == 0:
        return diff.new_zeros(batch)
    variance = _diagonal_variance(covariance)
    if variance is not None:
        if validate_args:
            _check_positive("the variances of a diagonal covariance", variance)
        return _diag_log_prob(diff, variance).expand(batch)
    return _operator_log_prob(diff, covariance, batch)


# --- distribution methods (what the patch installs) -----------------------------------------------------------


def keep_validate_args(dist: _TorchMultivariateNormal, validate_args: bool) -> None:
    """Record ``validate_args`` on a lazy GPyTorch normal after its ``__init__``.

    GPyTorch 1.15.2 stores ``validate_args`` for a lazy distribution and then overwrites it with ``False`` (it
    calls ``Distribution.__init__(..., validate_args=False)`` to skip torch's parameter checks), so
    ``log_prob`` never validated the value. Call this at the end of ``__init__``.
    """
    if validate_args and getattr(dist, "islazy", False):
        dist._validate_args = True


def _distribution_log_prob(dist: _TorchMultivariateNormal, value: Tensor) -> Tensor:
    if getattr(dist, "islazy", True):
        return mvn_log_prob(value, dist.loc, dist.lazy_covariance_matrix, validate_args=bool(dist._validate_args))
    # A dense distribution: torch factorised the (un-broadcast) covariance at construction; reuse it.
    return _tril_log_prob(value, dist.loc, dist._unbroadcasted_scale_tril)


def _torch_algorithm_log_prob(dist: _TorchMultivariateNormal, value: Tensor) -> Tensor:
    """torch's algorithm (``fast_computations(log_prob=False)``): the cached Cholesky factor, batch-safe.

    A lazily diagonal covariance is still evaluated in closed form: it is the same arithmetic without an
    `N x N` factor.
    """
    if getattr(dist, "islazy", False) and _diagonal_variance(dist.lazy_covariance_matrix) is not None:
        return _distribution_log_prob(dist, value)
    return _tril_log_prob(value, dist.loc, dist._unbroadcasted_scale_tril)


def mvn_log_prob_method(dist: _TorchMultivariateNormal, value: Tensor) -> Tensor:
    """``log_prob`` of :class:`gpytorch.distributions.MultivariateNormal`, batch-safe.

    Under ``gpytorch.settings.fast_computations(log_prob=False)`` (BoTorch's default) this uses torch's algorithm:
    the Cholesky factor of the dense covariance (``_unbroadcasted_scale_tril``, computed once and cached), made
    batch-safe (torch's ``log_prob`` assumes a mean expanded to the batch shape, which a lazy GPyTorch
    distribution does not have); a diagonal covariance is evaluated in closed form.

    :param dist: the distribution.
    :param value: the values, of shape `... x N`.
    :return: the log-densities, of shape ``broadcast(value.shape[:-1], dist.batch_shape)``.
    """
    if dist._validate_args:
        dist._validate_sample(value)
    if settings.fast_computations.log_prob.off():
        return _torch_algorithm_log_prob(dist, value)
    return _distribution_log_prob(dist, value)


def mtmvn_log_prob_method(dist: _TorchMultivariateNormal, value: Tensor) -> Tensor:
    """``log_prob`` of :class:`gpytorch.distributions.MultitaskMultivariateNormal`, batch-safe.

    The value (`... x N x T`) is flattened in the distribution's order (interleaved or not) and evaluated
    against the flat `NT`-dimensional normal.

    :param dist: the distribution.
    :param value: the values, of shape `... x N x T`.
    :return: the log-densities, of shape ``broadcast(value.shape[:-2], dist.batch_shape)``.
    """
    if dist._validate_args:
        dist._validate_sample(value)
    num_data, num_tasks = dist.event_shape
    if value.dim() < 2 or value.size(-2) not in (1, num_data) or value.size(-1) not in (1, num_tasks):
        raise ValueError(
            f"MultitaskMultivariateNormal.log_prob: the value must have shape ... x {num_data} x {num_tasks}, "
            f"got {tuple(value.shape)}"
        )
    value = value.expand(*value.shape[:-2], num_data, num_tasks)
    if not dist._interleaved:
        value = value.transpose(-1, -2)
    flat = value.reshape(*value.shape[:-2], num_data * num_tasks)
    if settings.fast_computations.log_prob.off():
        return _torch_algorithm_log_prob(dist, flat)
    return _distribution_log_prob(dist, flat)


# --- independent normals --------------------------------------------------------------------------------------


def diag_normal_log_prob(
    value: Tensor, loc: Tensor | float, scale: Tensor | float, event_dim: int = 1, validate_args: bool | None = None
) -> Tensor:
    r"""Log-density of independent normals, summed over the last ``event_dim`` dimensions.

    Equal to ``torch.distributions.Independent(Normal(loc, scale), event_dim).log_prob(value)``, for tensors of
    any rank, computed elementwise (no covariance matrix, no Python loops):

    .. math::
        \log p(\mathbf y) = \sum_i \left( -\frac{(y_i - \mu_i)^2}{2 \sigma_i^2} - \log \sigma_i
        - \tfrac{1}{2} \log 2\pi \right)

    :param value: the values, of any shape broadcastable with ``loc`` and ``scale``.
    :param loc: the means.
    :param scale: the standard deviations.
    :param event_dim: how many trailing dimensions form the event (summed over). ``0`` gives elementwise
        log-densities.
    :param validate_args: check that ``scale`` is positive and finite (a ``ValueError`` otherwise). ``None``
        (default) follows torch's global default, ``torch.distributions.Distribution._validate_args``
        (on unless changed by ``Distribution.set_default_validate_args`` or ``python -O``).
    :return: a Tensor of shape ``broadcast(value.shape, loc.shape, scale.shape)[:-event_dim]``.
    """
    value, loc, scale = (torch.as_tensor(t) for t in (value, loc, scale))
    if isinstance(event_dim, bool) or not isinstance(event_dim, int) or event_dim < 0:
        raise ValueError(f"diag_normal_log_prob: event_dim must be a non-negative integer, got {event_dim!r}")
    try:
        shape = torch.broadcast_shapes(value.shape, loc.shape, scale.shape)
    except RuntimeError:
        raise ValueError(
            f"diag_normal_log_prob: shapes do not broadcast (value {tuple(value.shape)}, loc {tuple(loc.shape)}, "
            f"scale {tuple(scale.shape)})"
        ) from None
    if event_dim > len(shape):
        raise ValueError(
            f"diag_normal_log_prob: event_dim={event_dim} exceeds the rank {len(shape)} of the broadcast shape "
            f"{tuple(shape)}"
        )
    if validate_args is None:
        validate_args = torch.distributions.Distribution._validate_args
    if validate_args:
        _check_positive("diag_normal_log_prob: scale", scale)
    event_dims = tuple(range(len(shape) - event_dim, len(shape)))
    quad = ((value - loc) / scale).square()
    if quad.shape != shape:
        quad = quad.expand(shape)
    quad = quad.sum(event_dims) if event_dims else quad
    # sum log(scale) over scale's own event dimensions; dimensions where scale broadcasts count by multiplicity
    scale = scale.reshape((1,) * (len(shape) - scale.dim()) + tuple(scale.shape))
    multiplicity = math.prod(shape[d] for d in event_dims if scale.size(d) == 1)
    log_scale = scale.log()
    log_scale = log_scale.sum(event_dims) if event_dims else log_scale
    num_event = math.prod(shape[d] for d in event_dims)
    return -0.5 * quad - multiplicity * log_scale - (0.5 * _LOG_2PI) * num_event
