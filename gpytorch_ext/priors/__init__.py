"""Priors and constraints: one prior term and one independent in-constraint draw per parameter.

- :func:`audit` lists the (parameter, prior) pairs whose prior and constraint disagree, as :class:`Finding`.
- :class:`TruncatedPrior` truncates a univariate prior to an interval (renormalised density, exact sampling).
- :func:`align` repairs a model: truncate its priors to their constraints, or relax the constraints.
- :func:`sample_from_prior` / :func:`sample_all_priors` draw parameters from their priors, one independent value
  per element, each inside the parameter's constraint.
- :func:`named_priors` and :class:`ExactMarginalLogLikelihood` count each prior once per parameter it governs.
- :class:`prior_constraint_warning_threshold`: the excluded mass above which :class:`PriorConstraintWarning`
  is emitted at registration.
- The ``constraint-aware-priors`` patch (:mod:`gpytorch_ext.priors.patch`) repairs GPyTorch's sampling paths
  (Pyro, ``Module.sample_from_prior``, BoTorch's ``sample_all_priors``) and warns at registration; the
  ``prior-terms`` patch (:mod:`gpytorch_ext.priors.terms_patch`) repairs ``named_priors`` and the exact MLL.
"""

from ._intervals import PriorConstraintWarning
from ._settings import prior_constraint_warning_threshold
from .align import Change, align
from .audit import EXCLUDED_BY_PRIOR, MASS_OUTSIDE, NOT_ENFORCED, Finding, audit
from .sampling import sample_all_priors, sample_from_prior
from .terms import ExactMarginalLogLikelihood, named_priors
from .truncated import TruncatedPrior

__all__ = [
    "EXCLUDED_BY_PRIOR",
    "MASS_OUTSIDE",
    "NOT_ENFORCED",
    "Change",
    "ExactMarginalLogLikelihood",
    "Finding",
    "PriorConstraintWarning",
    "TruncatedPrior",
    "align",
    "audit",
    "named_priors",
    "prior_constraint_warning_threshold",
    "sample_all_priors",
    "sample_from_prior",
]
