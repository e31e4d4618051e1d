"""gpytorch-ext: repairs for GPyTorch, applied on import.

``import gpytorch_ext`` applies every registered patch (set ``GPYTORCH_EXT_AUTOPATCH=0`` to opt out); the
same repairs are available as explicit classes and functions in the sub-packages.
"""

import contextlib as _contextlib
import importlib.metadata as _metadata
import os as _os
import sys as _sys

# pykeops prints a notice on standard output when gpytorch imports it on a machine without CUDA; keep it on
# standard error, so that `python -m gpytorch_ext --json` writes nothing but JSON to standard output.
with _contextlib.redirect_stdout(_sys.stderr):
    from ._registry import (
        CheckResult,
        Patch,
        PatchWarning,
        Probe,
        Replacement,
        applied,
        available,
        patch,
        patched,
        register,
        unpatch,
    )
    from .priors import PriorConstraintWarning, TruncatedPrior, align, audit
    from .tying import equalize, tied, untie

__version__ = _metadata.version("gpytorch-ext")

__all__ = [
    "CheckResult",
    "Patch",
    "PatchWarning",
    "PriorConstraintWarning",
    "Probe",
    "Replacement",
    "TruncatedPrior",
    "__version__",
    "align",
    "applied",
    "audit",
    "available",
    "equalize",
    "patch",
    "patched",
    "register",
    "tied",
    "unpatch",
    "untie",
]

if _os.environ.get("GPYTORCH_EXT_AUTOPATCH", "1").strip() != "0":
    patch()
