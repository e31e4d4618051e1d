"""BoTorch's ``sample_all_priors`` (``fit_gpytorch_mll``'s restart path): never fails on a batch, draws elementwise
inside the constraints; the patch reaches BoTorch however late it is imported, and reverts to BoTorch's function."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import gpytorch
import pytest
import torch
from gpytorch.priors import GammaPrior

botorch = pytest.importorskip("botorch")
from botorch.models import SingleTaskGP  # noqa: E402
from botorch.optim.utils import model_utils  # noqa: E402

from ._impl import PriorConstraintWarning  # noqa: E402

PATCH = "constraint-aware-priors"


def _batched_model(batch=1000):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 2, dtype=torch.float64, generator=gen)
    y = torch.rand(batch, 10, 1, dtype=torch.float64, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(0.5, 2.0), batch_shape=torch.Size([batch])
        )
    return SingleTaskGP(x.expand(batch, 10, 2), y, likelihood=likelihood)


def test_a_batch_of_noises_fails_upstream_and_is_drawn_elementwise_inside(upstream):
    stats = pytest.importorskip("scipy.stats")
    model = _batched_model()
    torch.manual_seed(0)
    with upstream(PATCH), pytest.raises(RuntimeError, match="after 100 attempts"):
        model_utils.sample_all_priors(model)
    torch.manual_seed(0)
    model_utils.sample_all_priors(model)
    noise = model.likelihood.noise.detach().flatten().numpy()
    assert noise.min() > 1e-4 and len(set(noise.tolist())) == noise.size
    ref = stats.gamma(a=0.5, scale=0.5)
    assert stats.kstest(noise, lambda v: (ref.cdf(v) - ref.cdf(1e-4)) / ref.sf(1e-4)).pvalue > 1e-3
    lengthscale = model.covar_module.lengthscale  # BoTorch's default prior, drawn per element as well
    assert lengthscale.unique().numel() == lengthscale.numel()


def test_every_name_botorch_calls_it_by_is_repaired(impl):
    if impl == "source":
        pytest.skip("the BoTorch repair is a run-time patch only")
    import botorch.fit
    import botorch.optim.utils

    from gpytorch_ext.priors._botorch import sample_all_priors

    for module in (model_utils, botorch.optim.utils, botorch.fit):
        assert module.sample_all_priors.__code__ is sample_all_priors.__code__  # the repair (installed as a copy)


_LATE_IMPORT = """
import gpytorch_ext, gpytorch, torch, sys
assert "botorch" not in sys.modules  # gpytorch_ext never imports BoTorch (it changes GPyTorch's settings)
import botorch.fit, botorch.optim.utils
from botorch.optim.utils import model_utils
from gpytorch_ext.priors._botorch import sample_all_priors
modules = (model_utils, botorch.optim.utils, botorch.fit)
print(all(m.sample_all_priors.__code__ is sample_all_priors.__code__ for m in modules))
lik = gpytorch.likelihoods.GaussianLikelihood(
    noise_prior=gpytorch.priors.GammaPrior(0.5, 2.0), batch_shape=torch.Size([1000]))
botorch.fit.sample_all_priors(lik)
print(bool((lik.noise > 1e-4).all()))
original = botorch.fit.sample_all_priors.__wrapped__
bound = botorch.optim.utils.sample_all_priors
gpytorch_ext.unpatch("constraint-aware-priors")
print(model_utils.sample_all_priors is original)
botorch.optim.utils.sample_all_priors = bound
try:  # a name bound to the repair while it was applied behaves as BoTorch's function once reverted
    botorch.optim.utils.sample_all_priors(lik)
    print("no error")
except RuntimeError as exc:
    print("after 100 attempts" in str(exc))
"""


def test_botorch_imported_after_gpytorch_ext_is_repaired_and_reverted(impl):
    if impl == "source":
        pytest.skip("the BoTorch repair is a run-time patch only")
    script = textwrap.dedent(_LATE_IMPORT)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stdout + out.stderr
