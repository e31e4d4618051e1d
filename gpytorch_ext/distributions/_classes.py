"""Drop-in (multitask) multivariate normals with the batch-safe ``log_prob``."""

from __future__ import annotations

import gpytorch
from torch import Tensor

from ._log_prob import keep_validate_args, mtmvn_log_prob_method, mvn_log_prob_method

__all__ = ["MultitaskMultivariateNormal", "MultivariateNormal"]


class MultivariateNormal(gpytorch.distributions.MultivariateNormal):
    """:class:`gpytorch.distributions.MultivariateNormal` with a batch-safe ``log_prob``.

    ``log_prob`` broadcasts value, mean and covariance like :class:`torch.distributions.MultivariateNormal`,
    factorises each distinct covariance once (batch dimensions present only in the value or the mean become
    extra right-hand sides of one ``inv_quad_logdet`` call), and evaluates diagonal covariances in closed form.
    With ``validate_args=True`` the value is validated as torch does (also for lazy covariances).
    """

    def __init__(self, mean: Tensor, covariance_matrix, validate_args: bool = False) -> None:
        super().__init__(mean, covariance_matrix, validate_args=validate_args)
        keep_validate_args(self, validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-density of ``value`` (`... x N`); shape ``broadcast(value.shape[:-1], batch_shape)``."""
        return mvn_log_prob_method(self, value)


class MultitaskMultivariateNormal(gpytorch.distributions.MultitaskMultivariateNormal):
    """:class:`gpytorch.distributions.MultitaskMultivariateNormal` with a batch-safe ``log_prob``.

    The value (`... x N x T`) is flattened in the distribution's own order (interleaved or not).
    """

    def __init__(self, mean: Tensor, covariance_matrix, validate_args: bool = False, interleaved: bool = True) -> None:
        super().__init__(mean, covariance_matrix, validate_args=validate_args, interleaved=interleaved)
        keep_validate_args(self, validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-density of ``value`` (`... x N x T`); shape ``broadcast(value.shape[:-2], batch_shape)``."""
        return mtmvn_log_prob_method(self, value)
