"""Batch-safe multivariate normal log-densities (patch ``mvn-log-prob``).

- :class:`MultivariateNormal`, :class:`MultitaskMultivariateNormal`: drop-in subclasses of GPyTorch's
  distributions whose ``log_prob`` broadcasts like torch and factorises each covariance once.
- :func:`diag_normal_log_prob`: the log-density of independent normals for tensors of any rank.
"""

from ._classes import MultitaskMultivariateNormal, MultivariateNormal
from ._log_prob import diag_normal_log_prob

__all__ = ["MultitaskMultivariateNormal", "MultivariateNormal", "diag_normal_log_prob"]
