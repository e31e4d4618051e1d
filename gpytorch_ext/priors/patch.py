"""The ``constraint-aware-priors`` patch: every prior draw is elementwise and inside the parameter's constraint.

Replaces ``gpytorch.module._pyro_sample_from_prior`` and ``_pyro_load_from_samples``, ``Module.sample_from_prior``
and ``Module.local_load_samples``, wraps ``Module.register_prior``, ``Module.register_constraint`` and
``Module.named_priors``, and replaces BoTorch's ``sample_all_priors`` where BoTorch is (or gets) imported. The
repair itself lives in :mod:`gpytorch_ext.priors._repair`.
"""

from __future__ import annotations

import warnings

import gpytorch.module as _gmodule
import gpytorch.priors
import gpytorch.settings
import torch

from gpytorch_ext._registry import Patch, Probe, Replacement

from . import _botorch
from ._intervals import PriorConstraintWarning
from ._repair import (
    check_constraint_registered,
    check_prior_registered,
    guard_priors,
    local_load_samples,
    pyro_load_from_samples,
    pyro_sample_from_prior,
    sample_from_prior,
)
from ._settings import prior_constraint_warning_threshold
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
        return guard_priors(self, named_priors_orig(self))

    def _sample_from_prior(self, prior_name):
        return sample_from_prior(self, prior_name)

    def _local_load_samples(self, samples_dict, memo, prefix):
        return local_load_samples(self, samples_dict, memo, prefix)

    def _pyro_sample_from_prior(module, memo=None, prefix=""):
        return pyro_sample_from_prior(module, memo, prefix)

    def _pyro_load_from_samples(module, samples_dict, memo=None, prefix=""):
        return pyro_load_from_samples(module, samples_dict, memo, prefix)

    return [
        # the public names the upstream patch adds to gpytorch.priors and gpytorch.settings
        Replacement(gpytorch.priors, "TruncatedPrior", TruncatedPrior, create=True),
        Replacement(gpytorch.priors, "PriorConstraintWarning", PriorConstraintWarning, create=True),
        Replacement(
            gpytorch.settings, "prior_constraint_warning_threshold", prior_constraint_warning_threshold, create=True
        ),
        Replacement(_gmodule, "_pyro_sample_from_prior", _pyro_sample_from_prior),
        Replacement(_gmodule, "_pyro_load_from_samples", _pyro_load_from_samples),
        Replacement(Module, "register_prior", register_prior),
        Replacement(Module, "register_constraint", register_constraint),
        Replacement(Module, "named_priors", named_priors),
        Replacement(Module, "sample_from_prior", _sample_from_prior),
        Replacement(Module, "local_load_samples", _local_load_samples),
        *_botorch.replacements(),
    ]


_PROBE_BATCH = 64
_PROBE_CALLS = 400


def _probe() -> Probe:
    """``Module.sample_from_prior`` on a batch of 64 noises under ``GammaPrior(0.5, 2.0)`` and ``GreaterThan(1e-4)``:
    calls that fail (out of bounds) or give NaN, and whether the 64 elements are independent draws."""
    import gpytorch

    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mismatch warning (of this package, or of a patched GPyTorch)
        torch.manual_seed(0)
        lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=gpytorch.priors.GammaPrior(0.5, 2.0), batch_shape=torch.Size([_PROBE_BATCH])
        )
        failed, distinct = 0, 0
        for _ in range(_PROBE_CALLS):
            try:
                lik.noise_covar.sample_from_prior("noise_prior")
            except RuntimeError:
                failed += 1
                continue
            noise = lik.noise
            failed += int(not bool(torch.isfinite(noise).all()))
            distinct = max(distinct, int(noise.unique().numel()))
    return Probe(
        f"{failed} of {_PROBE_CALLS} sample_from_prior draws out of bounds; "
        f"{distinct} distinct of {_PROBE_BATCH} noise values",
        defect=failed > 0 or distinct < _PROBE_BATCH,
    )


PATCH = Patch(
    name="constraint-aware-priors",
    summary="prior draws (Pyro, sample_from_prior, BoTorch) elementwise, inside constraints, one per parameter",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=_probe,
)
