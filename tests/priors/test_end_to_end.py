"""End to end: gpytorch issue 2646's reproduction, and Pyro NUTS on a fully Bayesian ExactGP."""

from __future__ import annotations

import warnings

import gpytorch
import pytest
import torch
from gpytorch.priors import GammaPrior

from ._impl import PriorConstraintWarning
from ._models import gamma_model

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


@pytest.mark.slow
def test_nuts_on_exact_gp_with_gamma_priors_under_default_constraints():
    from pyro.infer.mcmc import MCMC, NUTS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        model = gamma_model(n=16, noise_prior=GammaPrior(0.5, 2.0)).double()  # double: exp(u) overflows late
    x, y = model.train_inputs[0], model.train_targets

    def pyro_model(x, y):
        with gpytorch.settings.fast_computations(False, False, False):
            sampled = model.pyro_sample_from_prior()
            output = sampled.likelihood(sampled(x))
            pyro.sample("obs", output, obs=y)
        return y

    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    kernel = NUTS(pyro_model, max_tree_depth=3)
    mcmc = MCMC(kernel, num_samples=10, warmup_steps=10, disable_progbar=True)
    mcmc.run(x, y)
    samples = mcmc.get_samples()
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
    model.eval()
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        test_x = torch.linspace(0, 1, 5, dtype=torch.float64).view(1, 5, 1).repeat(10, 1, 1)
        pred = model.likelihood(model(test_x))
    assert torch.isfinite(pred.mean).all() and torch.isfinite(pred.variance).all()
