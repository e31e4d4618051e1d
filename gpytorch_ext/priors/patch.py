"""The ``constraint-aware-priors`` patch: NaN-free prior sampling, registration warnings, -inf (not NaN) prior terms.

Replaces ``gpytorch.module._pyro_sample_from_prior`` and wraps ``Module.register_prior``,
``Module.register_constraint`` and ``Module.named_priors``; the repair itself lives in
:mod:`gpytorch_ext.priors._repair`.
"""

from __future__ import annotations

import warnings

import gpytorch.module as _gmodule
import gpytorch.priors
import torch

from gpytorch_ext._registry import Patch, Probe, Replacement

from ._intervals import PriorConstraintWarning
from ._repair import check_constraint_registered, check_prior_registered, guard_prior, pyro_sample_from_prior
from ._truncated import TruncatedPrior

__all__ = ["PATCH"]


def _replacements() -> list[Replacement]:
    Module = _gmodule.Module
    register_prior_orig = Module.__dict__["register_prior"]
    register_constraint_orig = Module.__dict__["register_constraint"]
    named_priors_orig = Module.__dict__["named_priors"]

    def register_prior(self, name, prior, param_or_closure, setting_closure=None):
        register_prior_orig(self, name, prior, param_or_closure, setting_closure)
        try:
            check_prior_registered(self, name)
        except Exception:  # a diagnostic must never break registration
            pass

    def register_constraint(self, param_name, constraint, replace=True):
        register_constraint_orig(self, param_name, constraint, replace)
        try:
            check_constraint_registered(self, param_name)
        except Exception:  # a diagnostic must never break registration
            pass

    def named_priors(self):
        for name, module, prior, closure, setting_closure in named_priors_orig(self):
            yield name, module, guard_prior(name, module, prior, closure), closure, setting_closure

    def _pyro_sample_from_prior(module, memo=None, prefix=""):
        return pyro_sample_from_prior(module, memo, prefix)

    return [
        # the public names the upstream patch adds to gpytorch.priors
        Replacement(gpytorch.priors, "TruncatedPrior", TruncatedPrior, create=True),
        Replacement(gpytorch.priors, "PriorConstraintWarning", PriorConstraintWarning, create=True),
        Replacement(_gmodule, "_pyro_sample_from_prior", _pyro_sample_from_prior),
        Replacement(Module, "register_prior", register_prior),
        Replacement(Module, "register_constraint", register_constraint),
        Replacement(Module, "named_priors", named_priors),
    ]


_PROBE_BATCH = 1000
_PROBE_ROUNDS = 5


def _probe() -> Probe:
    """NaN noise values among 5000 draws of ``pyro_sample_from_prior()`` under ``GammaPrior(0.5, 2.0)``."""
    try:
        import pyro  # noqa: F401
    except ImportError:
        return Probe("skipped (pyro-ppl not installed)", defect=False)
    import gpytorch

    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        torch.manual_seed(0)
        lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=gpytorch.priors.GammaPrior(0.5, 2.0), batch_shape=torch.Size([_PROBE_BATCH])
        )
        nan = sum(int(torch.isnan(lik.pyro_sample_from_prior().noise).sum()) for _ in range(_PROBE_ROUNDS))
    return Probe(f"{nan} of {_PROBE_BATCH * _PROBE_ROUNDS} Gamma(0.5, 2) noise draws NaN", defect=nan > 0)


PATCH = Patch(
    name="constraint-aware-priors",
    summary="pyro_sample_from_prior() samples priors truncated to their constraints (no NaN); mismatch warnings",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=_probe,
)
