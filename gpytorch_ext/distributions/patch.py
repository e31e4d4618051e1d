"""The distribution patches.

- ``mvn-log-prob``: batch-safe ``log_prob`` on GPyTorch's (multitask) multivariate normals.
- ``mvn-batch``: everything else a lazy normal does with different mean and covariance batch shapes follows torch
  (mean, covariance matrix, sampling, indexing, ``expand``/``unsqueeze``, entropy, KL divergence), with one
  factorisation per distinct covariance.
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from torch import Tensor
from torch.distributions.kl import register_kl
from torch.distributions.utils import lazy_property

from .._registry import Patch, Replacement
from ._batch_probe import batch_probe
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
from ._probe import probe
from ._sampling import mvn_rsample

__all__ = ["BATCH_PATCH", "PATCH"]

# --- mvn-log-prob ----------------------------------------------------------------------------------------------


def _mvn_log_prob(self, value: Tensor) -> Tensor:
    return mvn_log_prob_method(self, value)


def _mtmvn_log_prob(self, value: Tensor) -> Tensor:
    return mtmvn_log_prob_method(self, value)


def _replacements() -> list[Replacement]:
    init = vars(MultivariateNormal)["__init__"]

    def _mvn_init(self, mean: Tensor, covariance_matrix, validate_args: bool = False) -> None:
        init(self, mean, covariance_matrix, validate_args=validate_args)
        keep_validate_args(self, validate_args)

    return [
        Replacement(MultivariateNormal, "__init__", _mvn_init),
        Replacement(MultivariateNormal, "log_prob", _mvn_log_prob),
        Replacement(MultitaskMultivariateNormal, "log_prob", _mtmvn_log_prob),
    ]


PATCH = Patch(
    name="mvn-log-prob",
    summary="MVN log_prob broadcasts like torch, one factorisation per covariance, closed-form diagonal",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=probe,
)

# --- mvn-batch -------------------------------------------------------------------------------------------------

# GPyTorch keeps the Cholesky factor of a lazy distribution in this private, name-mangled attribute
# (``MultivariateNormal.__unbroadcasted_scale_tril``); no public hook replaces how it is computed.
_SCALE_TRIL = "_MultivariateNormal__unbroadcasted_scale_tril"


def _get_loc(self) -> Tensor:
    loc = self.__dict__["loc"]
    batch_shape = self.__dict__.get("_batch_shape")  # unset while __init__ computes it from loc
    return loc if batch_shape is None else broadcast_loc(loc, batch_shape)


def _set_loc(self, value: Tensor) -> None:
    self.__dict__["loc"] = value


_NO_SAMPLE_SHAPE = torch.Size()

_LOC_DOC = "The mean, ``batch_shape x N`` (expanded like torch's; the distribution keeps the tensor it was given)."


def _get_scale_tril(self) -> Tensor:
    if self.islazy and getattr(self, _SCALE_TRIL) is None:
        setattr(self, _SCALE_TRIL, unbroadcasted_scale_tril(self))
    return getattr(self, _SCALE_TRIL)


def _mvn_rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE, base_samples: Tensor | None = None) -> Tensor:
    return mvn_rsample(self, sample_shape, base_samples)


def _mvn_getitem(self, idx) -> MultivariateNormal:
    return mvn_getitem(self, idx)


def _mtmvn_getitem(self, idx) -> MultivariateNormal:
    return mtmvn_getitem(self, idx, MultivariateNormal)


def _mvn_expand(self, batch_size: torch.Size) -> MultivariateNormal:
    return mvn_expand(self, batch_size)


def _mtmvn_expand(self, batch_size: torch.Size) -> MultitaskMultivariateNormal:
    return mvn_expand(self, batch_size)


def _mvn_unsqueeze(self, dim: int) -> MultivariateNormal:
    return mvn_unsqueeze(self, dim)


def _kl_mvn_mvn(p_dist: MultivariateNormal, q_dist: MultivariateNormal) -> Tensor:
    return mvn_kl_divergence(p_dist, q_dist)


class _KLRegistration:
    """torch's KL registry entry for ``(MultivariateNormal, MultivariateNormal)`` as an attribute ``function``.

    Setting the attribute registers the function with :func:`torch.distributions.kl.register_kl` (the public way
    to replace a registration; it also clears torch's dispatch cache), so that the patch registry swaps and
    restores it like any other attribute.
    """

    def __init__(self, function) -> None:
        self.__dict__["function"] = function

    def __setattr__(self, name: str, value) -> None:
        register_kl(MultivariateNormal, MultivariateNormal)(value)
        self.__dict__[name] = value


_KL = _KLRegistration(gpytorch.distributions.multivariate_normal.kl_mvn_mvn)


def _batch_replacements() -> list[Replacement]:
    mvn = vars(MultivariateNormal)
    original_scale_tril = mvn["_unbroadcasted_scale_tril"]
    original_covariance_matrix = mvn["covariance_matrix"]
    original_entropy = MultivariateNormal.entropy  # inherited from torch

    def _mvn_entropy(self) -> Tensor:
        return mvn_entropy(self) if self.islazy else original_entropy(self)

    def covariance_matrix(self) -> Tensor:  # named as the lazy property caches it on the instance
        return dense_covariance(self) if self.islazy else original_covariance_matrix.wrapped(self)

    covariance_matrix.__doc__ = "The covariance, ``batch_shape x N x N`` (expanded, as torch gives it)."
    covariance_matrix_property = lazy_property(covariance_matrix)
    covariance_matrix_property.__wrapped__ = original_covariance_matrix  # what the replacement falls back on
    return [
        Replacement(MultivariateNormal, "loc", property(_get_loc, _set_loc, doc=_LOC_DOC), create=True),
        Replacement(
            MultivariateNormal,
            "_unbroadcasted_scale_tril",
            property(_get_scale_tril, original_scale_tril.fset, doc=original_scale_tril.__doc__),
        ),
        Replacement(MultivariateNormal, "covariance_matrix", covariance_matrix_property),
        Replacement(MultivariateNormal, "rsample", _mvn_rsample),
        Replacement(MultivariateNormal, "__getitem__", _mvn_getitem),
        Replacement(MultivariateNormal, "expand", _mvn_expand),
        Replacement(MultivariateNormal, "unsqueeze", _mvn_unsqueeze),
        Replacement(MultivariateNormal, "entropy", _mvn_entropy),
        Replacement(MultitaskMultivariateNormal, "__getitem__", _mtmvn_getitem),
        Replacement(MultitaskMultivariateNormal, "expand", _mtmvn_expand),
        Replacement(_KL, "function", _kl_mvn_mvn),
    ]


BATCH_PATCH = Patch(
    name="mvn-batch",
    summary="lazy MVN sampling, moments, indexing, expand, entropy, KL broadcast like torch; one root per covariance",
    replacements=_batch_replacements,
    verified_on="==1.15.2",
    probe=batch_probe,
)
