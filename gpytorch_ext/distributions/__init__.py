"""Multivariate normals that broadcast like torch (patches ``mvn-log-prob`` and ``mvn-batch``).

- :class:`MultivariateNormal`, :class:`MultitaskMultivariateNormal`: drop-in subclasses of GPyTorch's
  distributions whose mean and covariance batch shapes broadcast as in :class:`torch.distributions.MultivariateNormal`
  (``log_prob``, ``mean``, ``covariance_matrix``, sampling, indexing, ``expand``, entropy, KL divergence), with one
  factorisation per distinct covariance.
- :func:`diag_normal_log_prob`: the log-density of independent normals for tensors of any rank.
"""

from ._classes import MultitaskMultivariateNormal, MultivariateNormal
from ._log_prob import diag_normal_log_prob

__all__ = ["MultitaskMultivariateNormal", "MultivariateNormal", "diag_normal_log_prob"]
