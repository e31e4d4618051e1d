"""Draw parameters from their priors: elementwise, inside their constraints, one draw per (parameter, prior).

Drop-ins for explicit opt-in; the ``constraint-aware-priors`` patch makes ``Module.sample_from_prior``,
``Module.pyro_sample_from_prior`` and BoTorch's ``sample_all_priors`` behave the same way.
"""

from __future__ import annotations

from ._repair import sample_all_priors, sample_from_prior

__all__ = ["sample_all_priors", "sample_from_prior"]
