"""The ``mvn-log-prob`` patch: batch-safe ``log_prob`` on GPyTorch's (multitask) multivariate normals."""

from __future__ import annotations

import gpytorch
from torch import Tensor

from .._registry import Patch, Replacement
from ._log_prob import keep_validate_args, mtmvn_log_prob_method, mvn_log_prob_method
from ._probe import probe

__all__ = ["PATCH"]


def _mvn_log_prob(self, value: Tensor) -> Tensor:
    return mvn_log_prob_method(self, value)


def _mtmvn_log_prob(self, value: Tensor) -> Tensor:
    return mtmvn_log_prob_method(self, value)


def _mvn_init(self, mean: Tensor, covariance_matrix, validate_args: bool = False) -> None:
    _mvn_init.__wrapped__(self, mean, covariance_matrix, validate_args=validate_args)
    keep_validate_args(self, validate_args)


def _replacements() -> list[Replacement]:
    return [
        Replacement(gpytorch.distributions.MultivariateNormal, "__init__", _mvn_init),
        Replacement(gpytorch.distributions.MultivariateNormal, "log_prob", _mvn_log_prob),
        Replacement(gpytorch.distributions.MultitaskMultivariateNormal, "log_prob", _mtmvn_log_prob),
    ]


PATCH = Patch(
    name="mvn-log-prob",
    summary="MVN log_prob broadcasts like torch, one factorisation per covariance, closed-form diagonal",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=probe,
)
