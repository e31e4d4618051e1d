"""``prior_constraint_warning_threshold``: the setting that decides when a prior-constraint mismatch warns.

Upstream, the class lives in ``gpytorch/settings.py`` beside GPyTorch's other settings; the run-time patch
exposes this one as ``gpytorch.settings.prior_constraint_warning_threshold``.
"""

from __future__ import annotations

# GPyTorch's base class of every value setting (``max_cholesky_size``, ...): private, but it is what makes a
# setting both a context manager and a global value, exactly like GPyTorch's own settings.
from gpytorch.settings import _value_context

__all__ = ["prior_constraint_warning_threshold"]


class prior_constraint_warning_threshold(_value_context):
    """The excluded prior mass above which registering a prior warns with ``PriorConstraintWarning``.

    A prior whose support reaches outside its parameter's constraint is sampled from its truncation to the
    constraint, so a tiny excluded mass (``GammaPrior(1.1, 0.05)`` under ``GreaterThan(1e-4)`` excludes
    :math:`1.4 \\cdot 10^{-6}`) changes nothing worth a warning. Registration warns only when the mass outside
    exceeds this threshold (default ``1e-3``), or when it cannot be computed (a prior without a CDF).
    ``gpytorch_ext.audit`` lists every mismatch regardless of the threshold.

    Use it as a context manager around model construction, or set it globally::

        with gpytorch.settings.prior_constraint_warning_threshold(0.0):  # warn about any excluded mass
            model = MyGP(train_x, train_y, likelihood)

        gpytorch.settings.prior_constraint_warning_threshold._set_value(1e-2)

    :param value: a probability in ``[0, 1]``; ``1.0`` silences the mass warnings altogether.
    """

    _global_value = 1e-3

    def __init__(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"prior_constraint_warning_threshold must be a probability in [0, 1], got {value!r}")
        super().__init__(float(value))
