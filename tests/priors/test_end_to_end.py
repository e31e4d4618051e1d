"""End to end: gpytorch issue 2646's reproduction, and Pyro NUTS on fully Bayesian ExactGPs: GPyTorch's tutorial model
with its priors registered its way, and a model whose two kernels share one prior object."""

from __future__ import annotations

import warnings

import gpytorch
import pytest
import torch
from gpytorch.priors import GammaPrior

from ._impl import PriorConstraintWarning
from ._models import fully_bayesian_model, gamma_model, shared_prior_model

pyro = pytest.importorskip("pyro")
PATCH = "constraint-aware-priors"


def _issue_2646_nan_rounds(rounds: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(1.0, 0.5), batch_shape=torch.Size([100])
        )
    torch.manual_seed(0)
    return sum(bool(torch.isnan(likelihood.pyro_sample_from_prior().noise).any()) for _ in range(rounds))


@pytest.mark.slow
def test_issue_2646_reproduction_1000_rounds_without_nan(upstream):
    with upstream(PATCH):
        assert _issue_2646_nan_rounds(300) > 0  # upstream: NaN within a few hundred rounds (seed 0: round 206)
    assert _issue_2646_nan_rounds(1000) == 0


def _nuts(model, num_samples=10, seed=0):
    """Pyro NUTS on ``model``'s priors and Gaussian likelihood, as GPyTorch's fully Bayesian tutorial runs it."""
    from pyro.infer.mcmc import MCMC, NUTS

    x, y = model.train_inputs[0], model.train_targets

    def pyro_model(x, y):
        with gpytorch.settings.fast_computations(False, False, False):
            sampled = model.pyro_sample_from_prior()
            output = sampled.likelihood(sampled(x))
            pyro.sample("obs", output, obs=y)
        return y

    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(pyro_model, max_tree_depth=3), num_samples=num_samples, warmup_steps=10, disable_progbar=True)
    mcmc.run(x, y)
    return mcmc.get_samples()


def _assert_finite_predictions(model) -> None:
    """The model loaded with 10 posterior samples predicts finite means and variances at 5 test points."""
    model.eval()
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        test_x = torch.linspace(0, 1, 5, dtype=torch.float64).view(1, 5, 1).repeat(10, 1, 1)
        pred = model.likelihood(model(test_x))
    assert torch.isfinite(pred.mean).all() and torch.isfinite(pred.variance).all()


@pytest.mark.slow
def test_nuts_on_exact_gp_with_gamma_priors_under_default_constraints():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        model = gamma_model(n=16, noise_prior=GammaPrior(0.5, 2.0)).double()  # double: exp(u) overflows late
    samples = _nuts(model)
    assert set(samples) == {
        "likelihood.noise_covar.noise_prior",
        "covar_module.outputscale_prior",
        "covar_module.base_kernel.lengthscale_prior",
    }
    for name, value in samples.items():
        assert value.shape[0] == 10 and torch.isfinite(value).all(), name
    assert bool((samples["likelihood.noise_covar.noise_prior"] > 1e-4).all())

    model.pyro_load_from_samples(samples)
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter).all(), name
    assert model.likelihood.noise.shape[0] == 10
    torch.testing.assert_close(
        model.likelihood.noise.squeeze(-1),
        samples["likelihood.noise_covar.noise_prior"].squeeze(-1),
        rtol=1e-4,
        atol=1e-6,
    )
    _assert_finite_predictions(model)


@pytest.mark.slow
def test_nuts_on_the_tutorial_model_with_gamma_priors_registered_its_way():
    """GPyTorch's GP_Regression_Fully_Bayesian model, its priors registered with ``register_prior(..., "noise")``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        model = fully_bayesian_model(n=12)
    samples = _nuts(model, seed=1)
    assert set(samples) == {
        "likelihood.noise_prior",
        "mean_module.mean_prior",
        "covar_module.outputscale_prior",
        "covar_module.base_kernel.lengthscale_prior",
    }
    for name, value in samples.items():
        assert value.shape[0] == 10 and torch.isfinite(value).all(), name
    assert bool((samples["likelihood.noise_prior"] > 1e-4).all())
    model.pyro_load_from_samples(samples)
    torch.testing.assert_close(model.likelihood.noise, samples["likelihood.noise_prior"], rtol=1e-6, atol=1e-9)
    _assert_finite_predictions(model)


@pytest.mark.slow
def test_nuts_moves_every_lengthscale_when_two_kernels_share_a_prior_object():
    model = shared_prior_model(shared=True, n=16)
    samples = _nuts(model, num_samples=8)
    names = [f"covar_module.base_kernel.kernels.{i}.lengthscale_prior" for i in (0, 1)]
    assert set(names) <= set(samples)
    model.pyro_load_from_samples(samples)
    for name, kernel in zip(names, model.covar_module.base_kernel.kernels):
        lengthscale = kernel.lengthscale.flatten()
        assert lengthscale.shape == (8,) and float(lengthscale.std()) > 0, name  # it moved
        torch.testing.assert_close(lengthscale, samples[name].flatten())
