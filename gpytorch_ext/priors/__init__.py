"""Constraint-aware priors: audit priors against constraints, truncate or relax, NaN-free prior sampling.

- :func:`audit` lists the (parameter, prior) pairs whose prior and constraint disagree, as :class:`Finding`.
- :class:`TruncatedPrior` truncates a univariate prior to an interval (renormalised density, exact sampling).
- :func:`align` repairs a model: truncate its priors to their constraints, or relax the constraints.
- The ``constraint-aware-priors`` patch (:mod:`gpytorch_ext.priors.patch`) makes ``pyro_sample_from_prior()``
  sample each prior from its truncation to the parameter's constraint, warns at registration with
  :class:`PriorConstraintWarning`, and keeps the prior term of an unenforced constraint at ``-inf`` (not NaN).
"""

from ._intervals import PriorConstraintWarning
from .align import Change, align
from .audit import EXCLUDED_BY_PRIOR, MASS_OUTSIDE, NOT_ENFORCED, Finding, audit
from .truncated import TruncatedPrior

__all__ = [
    "EXCLUDED_BY_PRIOR",
    "MASS_OUTSIDE",
    "NOT_ENFORCED",
    "Change",
    "Finding",
    "PriorConstraintWarning",
    "TruncatedPrior",
    "align",
    "audit",
]
