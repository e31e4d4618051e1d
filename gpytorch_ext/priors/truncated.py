"""``TruncatedPrior``: a univariate GPyTorch prior truncated to an interval."""

from ._truncated import TruncatedPrior

__all__ = ["TruncatedPrior"]
