"""What the implementation under test provides: the run-time patch, or GPyTorch's patched source (``--impl=source``).

Against a GPyTorch source tree that carries the repair (``patches/0003-constraint-aware-priors.patch``), GPyTorch
itself emits the warnings, with its own class ``gpytorch.priors.PriorConstraintWarning``; with the run-time
patch, they are gpytorch-ext's (which the patch also exposes as ``gpytorch.priors.PriorConstraintWarning``).
"""

from __future__ import annotations

import gpytorch.priors

import gpytorch_ext.priors

#: the warning class that GPyTorch's repaired methods emit under the active implementation
PriorConstraintWarning: type[UserWarning] = getattr(
    gpytorch.priors, "PriorConstraintWarning", gpytorch_ext.priors.PriorConstraintWarning
)
