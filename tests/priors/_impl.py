"""What the implementation under test provides: the run-time patch, or GPyTorch's patched source (``--impl=source``).

Against a GPyTorch source tree that carries the repair (``patches/0003-constraint-aware-priors.patch``), GPyTorch
itself emits the warnings, with its own class ``gpytorch.priors.PriorConstraintWarning`` and its own
once-per-configuration registry; with the run-time patch, they are gpytorch-ext's.
"""

from __future__ import annotations

import gpytorch.priors

import gpytorch_ext.priors

#: the warning class that GPyTorch's repaired methods emit under the active implementation
PriorConstraintWarning: type[UserWarning] = getattr(
    gpytorch.priors, "PriorConstraintWarning", gpytorch_ext.priors.PriorConstraintWarning
)


def reset_warnings() -> None:
    """Forget the warned configurations of both implementations, so that each warns again once."""
    from gpytorch_ext.priors._repair import reset_warnings as reset_package

    reset_package()
    try:
        from gpytorch.priors._repair import reset_warnings as reset_source
    except ImportError:  # stock GPyTorch: the run-time patch is the implementation
        return
    reset_source()
