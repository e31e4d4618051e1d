"""Drop-in (multitask) multivariate normals with the repairs of ``mvn-log-prob`` and ``mvn-batch``."""

from __future__ import annotations

from typing import Any

import gpytorch
import torch
from torch import Tensor
from torch.distributions.kl import register_kl
from torch.distributions.utils import lazy_property

from ._indexing import mtmvn_getitem, mvn_getitem
from ._log_prob import keep_validate_args, mtmvn_log_prob_method, mvn_log_prob_method
from ._moments import (
    broadcast_loc,
    dense_covariance,
    mvn_entropy,
    mvn_expand,
    mvn_kl_divergence,
    mvn_unsqueeze,
    unbroadcasted_scale_tril,
)
from ._sampling import mvn_rsample

__all__ = ["MultitaskMultivariateNormal", "MultivariateNormal"]

_NO_SAMPLE_SHAPE = torch.Size()
# GPyTorch keeps the Cholesky factor of a lazy distribution in this private, name-mangled attribute.
_SCALE_TRIL = "_MultivariateNormal__unbroadcasted_scale_tril"


class MultivariateNormal(gpytorch.distributions.MultivariateNormal):
    """:class:`gpytorch.distributions.MultivariateNormal` that broadcasts mean and covariance batch shapes like
    :class:`torch.distributions.MultivariateNormal`, factorising each distinct covariance once.

    - ``log_prob`` broadcasts value, mean and covariance; batch dimensions present only in the value or the mean
      become extra right-hand sides of one factorisation; diagonal covariances are evaluated in closed form. With
      ``validate_args=True`` the value is validated as torch does (also for lazy covariances).
    - ``loc``/``mean``, ``covariance_matrix``, ``entropy``, ``expand``, ``unsqueeze``, indexing, ``rsample`` and
      ``kl_divergence`` follow torch on the broadcast tensors; samples of batch members that share a covariance get
      independent noise and one root decomposition of the shared covariance.
    """

    def __init__(self, mean: Tensor, covariance_matrix, validate_args: bool = False) -> None:
        super().__init__(mean, covariance_matrix, validate_args=validate_args)
        keep_validate_args(self, validate_args)

    @property
    def loc(self) -> Tensor:
        """The mean, ``batch_shape x N`` (expanded like torch's)."""
        batch_shape = self.__dict__.get("_batch_shape")  # unset while __init__ computes it from loc
        loc = self.__dict__["loc"]
        return loc if batch_shape is None else broadcast_loc(loc, batch_shape)

    @loc.setter
    def loc(self, value: Tensor) -> None:
        self.__dict__["loc"] = value

    @property
    def _unbroadcasted_scale_tril(self) -> Tensor:
        if self.islazy and getattr(self, _SCALE_TRIL) is None:
            setattr(self, _SCALE_TRIL, unbroadcasted_scale_tril(self))
        return getattr(self, _SCALE_TRIL)

    @_unbroadcasted_scale_tril.setter
    def _unbroadcasted_scale_tril(self, value: Tensor) -> None:
        if self.islazy:
            raise NotImplementedError("Cannot set _unbroadcasted_scale_tril for lazy MVN distributions")
        setattr(self, _SCALE_TRIL, value)

    @lazy_property
    def covariance_matrix(self) -> Tensor:
        """The covariance, ``batch_shape x N x N`` (expanded, as torch gives it)."""
        return dense_covariance(self) if self.islazy else super().covariance_matrix

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-density of ``value`` (`... x N`); shape ``broadcast(value.shape[:-1], batch_shape)``."""
        return mvn_log_prob_method(self, value)

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE, base_samples: Tensor | None = None) -> Tensor:
        """Reparameterised samples, ``sample_shape x batch_shape x N`` (see :func:`~._sampling.mvn_rsample`)."""
        return mvn_rsample(self, sample_shape, base_samples)

    def __getitem__(self, idx: Any) -> MultivariateNormal:
        """The distribution of ``X[idx]`` (see :mod:`~._indexing`)."""
        return mvn_getitem(self, idx)

    def expand(self, batch_size: torch.Size) -> MultivariateNormal:
        """The distribution expanded to ``batch_size`` (torch's rules; nothing factorised again)."""
        return mvn_expand(self, batch_size)

    def unsqueeze(self, dim: int) -> MultivariateNormal:
        """The distribution with a batch dimension of size 1 inserted at ``dim``."""
        return mvn_unsqueeze(self, dim)

    def entropy(self) -> Tensor:
        """The entropy, of shape ``batch_shape``."""
        return mvn_entropy(self) if self.islazy else super().entropy()


class MultitaskMultivariateNormal(gpytorch.distributions.MultitaskMultivariateNormal, MultivariateNormal):
    """:class:`gpytorch.distributions.MultitaskMultivariateNormal` with the behaviour of
    :class:`MultivariateNormal` above.

    The value of ``log_prob`` (`... x N x T`) is flattened in the distribution's own order (interleaved or not).
    Indexing returns a multitask normal (same interleaving) when the data and task dimensions are kept, else a
    :class:`MultivariateNormal` of this module.
    """

    def __init__(self, mean: Tensor, covariance_matrix, validate_args: bool = False, interleaved: bool = True) -> None:
        super().__init__(mean, covariance_matrix, validate_args=validate_args, interleaved=interleaved)

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-density of ``value`` (`... x N x T`); shape ``broadcast(value.shape[:-2], batch_shape)``."""
        return mtmvn_log_prob_method(self, value)

    def __getitem__(self, idx: Any) -> MultivariateNormal:
        """The distribution of ``X[idx]``, ``X`` of shape ``batch_shape x N x T`` (see :mod:`~._indexing`)."""
        return mtmvn_getitem(self, idx, MultivariateNormal)

    def expand(self, batch_size: torch.Size) -> MultitaskMultivariateNormal:
        """The distribution expanded to ``batch_size`` (torch's rules; nothing factorised again)."""
        return mvn_expand(self, batch_size)


@register_kl(MultivariateNormal, MultivariateNormal)
@register_kl(MultivariateNormal, gpytorch.distributions.MultivariateNormal)
@register_kl(gpytorch.distributions.MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p_dist: MultivariateNormal, q_dist: MultivariateNormal) -> Tensor:
    """KL divergence of the drop-in normals (and of a drop-in and a GPyTorch one), batch-safe."""
    return mvn_kl_divergence(p_dist, q_dist)
