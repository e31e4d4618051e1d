"""BoTorch end to end on the repaired GPyTorch: model fitting and posteriors of the common model classes.

BoTorch's source distribution carries no tests, so these smoke tests check that BoTorch's everyday workflows run
on the repaired GPyTorch and give sensible numbers: the fitted marginal likelihood beats the initial one, the
posterior reproduces the (low-noise) training data and stays finite.
"""

from __future__ import annotations

import math

import pytest
import torch

botorch = pytest.importorskip("botorch")
pytest.importorskip("pyro")

from botorch.fit import fit_fully_bayesian_model_nuts, fit_gpytorch_mll  # noqa: E402
from botorch.models import ModelListGP, SingleTaskGP  # noqa: E402
from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP  # noqa: E402
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood  # noqa: E402

pytestmark = pytest.mark.slow

DTYPE = torch.float64


def _f(x: torch.Tensor) -> torch.Tensor:
    """A smooth test function on [0, 1]^d, ... x n x d -> ... x n x 1."""
    return (
        (torch.sin(6 * x[..., :1]) + torch.cos(4 * x[..., 1:2]).sum(-1, keepdim=True))
        if x.shape[-1] > 1
        else (torch.sin(6 * x))
    )


def _data(n: int, d: int, batch: tuple[int, ...] = (), noise: float = 0.01, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(*batch, n, d, generator=gen, dtype=DTYPE)
    y = _f(x) + noise * torch.randn(*batch, n, 1, generator=gen, dtype=DTYPE)
    return x, y


def _mll_value(mll) -> torch.Tensor:
    """The marginal log likelihood of the training data (per batch), in train mode."""
    model = mll.model
    model.train()
    with torch.no_grad():
        if isinstance(mll, SumMarginalLogLikelihood):
            outputs = [m(*m.train_inputs) for m in model.models]
            return mll(outputs, [m.train_targets for m in model.models])
        return mll(model(*model.train_inputs), model.train_targets)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


def test_single_task_gp_fit_and_posterior():
    torch.manual_seed(0)
    x, y = _data(24, 2)
    model = SingleTaskGP(x, y)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    before = _mll_value(mll)
    fit_gpytorch_mll(mll)
    after = _mll_value(mll)
    assert torch.isfinite(after) and after > before + 0.1
    posterior = model.posterior(x)
    assert _rms(posterior.mean, y) < 0.05 * y.std().item()  # low noise: the posterior interpolates the data
    x_test, y_test = _data(50, 2, seed=1, noise=0.0)
    posterior = model.posterior(x_test)
    assert posterior.mean.shape == (50, 1)
    assert torch.isfinite(posterior.variance).all() and (posterior.variance > 0).all()
    assert _rms(posterior.mean, y_test) < 0.25 * y_test.std().item()  # and generalises


def test_batched_single_task_gp_fits_each_batch_like_a_separate_model():
    torch.manual_seed(0)
    x, y = _data(16, 1, batch=(3,))
    y = y * torch.tensor([1.0, 2.0, -0.5], dtype=DTYPE).view(3, 1, 1)  # three different amplitudes
    model = SingleTaskGP(x, y)
    assert model.batch_shape == torch.Size([3])
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    before = _mll_value(mll)
    fit_gpytorch_mll(mll)
    after = _mll_value(mll)
    assert after.shape == (3,)
    assert (after > before).all()
    x_test = torch.linspace(0, 1, 25, dtype=DTYPE).view(1, 25, 1).expand(3, 25, 1)
    batched = model.posterior(x_test)
    assert batched.mean.shape == (3, 25, 1)
    assert torch.isfinite(batched.variance).all() and (batched.variance > 0).all()
    for i in range(3):  # the reference: each batch member fitted on its own
        single = SingleTaskGP(x[i], y[i])
        fit_gpytorch_mll(ExactMarginalLogLikelihood(single.likelihood, single))
        expected = single.posterior(x_test[i]).mean
        scale = y[i].abs().max().item()
        assert _rms(batched.mean[i], expected) < 0.02 * scale
        assert _rms(model.posterior(x[i : i + 1].expand(3, -1, -1)).mean[i], y[i]) < 0.05 * scale


def test_model_list_gp_fit_with_sum_marginal_log_likelihood():
    torch.manual_seed(0)
    x, y = _data(20, 2)
    y2 = torch.cos(3 * x[:, :1]) * x[:, 1:2]
    model = ModelListGP(SingleTaskGP(x, y), SingleTaskGP(x, y2))
    mll = SumMarginalLogLikelihood(model.likelihood, model)
    before = _mll_value(mll)
    fit_gpytorch_mll(mll)
    after = _mll_value(mll)
    assert torch.isfinite(after) and after > before + 0.1
    posterior = model.posterior(x)
    assert posterior.mean.shape == (20, 2)
    assert torch.isfinite(posterior.variance).all() and (posterior.variance > 0).all()
    for j, target in enumerate((y, y2)):
        assert _rms(posterior.mean[:, j : j + 1], target) < 0.1 * target.std().item()


def test_saas_fully_bayesian_gp_with_nuts_at_a_tiny_budget():
    # BoTorch >= 0.15 samples with NumPyro's NUTS on JAX, then loads the samples into GPyTorch modules.
    for name in ("jax", "numpyro"):
        pytest.importorskip(name, reason='BoTorch\'s fully Bayesian models need pip install "botorch[fully_bayesian]"')
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 4, generator=gen, dtype=DTYPE)
    y = torch.sin(3 * x[:, :1]) + 0.01 * torch.randn(12, 1, generator=gen, dtype=DTYPE)  # only x_0 matters
    y = (y - y.mean()) / y.std()
    model = SaasFullyBayesianSingleTaskGP(x, y)
    fit_fully_bayesian_model_nuts(model, warmup_steps=16, num_samples=8, thinning=4, disable_progbar=True, seed=0)
    assert model.num_mcmc_samples == 2
    lengthscale = model.median_lengthscale
    assert lengthscale.shape == (4,) and torch.isfinite(lengthscale).all() and (lengthscale > 0).all()
    x_test = torch.rand(5, 4, generator=gen, dtype=DTYPE)
    posterior = model.posterior(x_test)
    assert posterior.mean.shape == (2, 5, 1)  # one slice per MCMC sample
    assert torch.isfinite(posterior.mean).all()
    assert torch.isfinite(posterior.variance).all() and (posterior.variance > 0).all()
    assert torch.isfinite(posterior.mixture_mean).all() and torch.isfinite(posterior.mixture_variance).all()
    fitted = model.posterior(x).mixture_mean
    assert _rms(fitted, y) < 0.5 * math.sqrt(y.var().item())  # better than the prior mean (0) by a wide margin
