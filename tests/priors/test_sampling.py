"""Every path that draws parameters from their priors: one site per (parameter, prior), each element an
independent draw inside the constraint. Each upstream defect is reproduced with the patch reverted.

Tests of repaired behaviour call GPyTorch's own methods (``pyro_sample_from_prior``, ``sample_from_prior``,
``pyro_load_from_samples``), so they also hold against a patched GPyTorch source tree.
"""

from __future__ import annotations

import math
import warnings

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan, Interval, LessThan, Positive
from gpytorch.priors import (
    GammaPrior,
    HalfCauchyPrior,
    HalfNormalPrior,
    LogNormalPrior,
    MultivariateNormalPrior,
    NormalPrior,
    UniformPrior,
)

from ._impl import PriorConstraintWarning
from ._models import ExactGPModel, data, fully_bayesian_model, gamma_model, module_twice_model, shared_prior_model

pyro = pytest.importorskip("pyro")
PATCH = "constraint-aware-priors"
pytestmark = pytest.mark.filterwarnings("ignore:.*of the prior's mass lies outside")

# prior factory and its support, written out by hand (the reference for "do they overlap")
PRIORS = {
    "Gamma": (lambda: GammaPrior(0.5, 2.0), (0.0, math.inf)),
    "LogNormal": (lambda: LogNormalPrior(0.0, 1.0), (0.0, math.inf)),
    "HalfCauchy": (lambda: HalfCauchyPrior(1.0), (0.0, math.inf)),
    "HalfNormal": (lambda: HalfNormalPrior(1.0), (0.0, math.inf)),
    "Normal": (lambda: NormalPrior(0.0, 1.0), (-math.inf, math.inf)),
    "Uniform": (lambda: UniformPrior(0.5, 2.0), (0.5, 2.0)),
}
CONSTRAINTS = {
    "Positive": (lambda: Positive(), (0.0, math.inf)),
    "GreaterThan(1)": (lambda: GreaterThan(1.0), (1.0, math.inf)),
    "GreaterThan(3)": (lambda: GreaterThan(3.0), (3.0, math.inf)),
    "LessThan(1)": (lambda: LessThan(1.0), (-math.inf, 1.0)),
    "LessThan(-1)": (lambda: LessThan(-1.0), (-math.inf, -1.0)),
    "Interval(0.2,3)": (lambda: Interval(0.2, 3.0), (0.2, 3.0)),
    "Interval(-3,-1)": (lambda: Interval(-3.0, -1.0), (-3.0, -1.0)),
}


def _likelihood(prior, constraint, batch=500):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        return gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=prior, noise_constraint=constraint, batch_shape=torch.Size([batch])
        )


def _tutorial_likelihood(prior=None):
    """The noise prior registered the way GPyTorch's fully Bayesian tutorial does: on the likelihood, by name."""
    likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=torch.Size([1000]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        likelihood.register_prior("noise_prior", prior or GammaPrior(0.5, 2.0), "noise")
    return likelihood


def _bad_draws(likelihood, rounds):
    return sum(int((~torch.isfinite(likelihood.pyro_sample_from_prior().noise)).sum()) for _ in range(rounds))


def _sites(fn, *args):
    trace = pyro.poutine.trace(fn).get_trace(*args)
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample"}


@pytest.mark.parametrize("constraint_name", list(CONSTRAINTS))
@pytest.mark.parametrize("prior_name", list(PRIORS))
def test_matrix_no_nan_draw_or_value_error_naming_the_parameter(prior_name, constraint_name):
    make_prior, (s_lo, s_hi) = PRIORS[prior_name]
    make_constraint, (c_lo, c_hi) = CONSTRAINTS[constraint_name]
    likelihood = _likelihood(make_prior(), make_constraint())
    torch.manual_seed(0)
    if max(s_lo, c_lo) >= min(s_hi, c_hi):
        for draw in (
            likelihood.pyro_sample_from_prior,
            lambda: likelihood.noise_covar.sample_from_prior("noise_prior"),
        ):
            with pytest.raises(ValueError, match=r"raw_noise' \(HomoskedasticNoise\)") as info:
                draw()
            assert "does not overlap" in str(info.value)
        return
    for noise in (likelihood.pyro_sample_from_prior().noise, _sample_from_prior(likelihood)):
        assert torch.isfinite(noise).all()
        assert bool(((noise > c_lo) & (noise < c_hi)).all()), (float(noise.min()), float(noise.max()))
        assert bool(((noise >= s_lo) & (noise <= s_hi)).all())
        assert noise.unique().numel() > 1  # elementwise draws


def _sample_from_prior(likelihood):
    likelihood.noise_covar.sample_from_prior("noise_prior")
    return likelihood.noise.detach().clone()


# --- pyro_sample_from_prior ---------------------------------------------------------------------------


def test_gamma_noise_nan_upstream_and_fixed(upstream):
    """GammaPrior(0.5, 2) under GreaterThan(1e-4) gives NaN noise in about 1.6% of draws."""
    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=1000)
    torch.manual_seed(0)
    with upstream(PATCH):
        assert _bad_draws(likelihood, 5) > 20
    torch.manual_seed(0)
    assert _bad_draws(likelihood, 5) == 0


def test_tutorial_noise_prior_nan_upstream_and_fixed(upstream):
    """The same prior registered on the likelihood by the property name ``noise`` (GPyTorch's tutorial)."""
    likelihood = _tutorial_likelihood()
    torch.manual_seed(0)
    with upstream(PATCH):
        assert _bad_draws(likelihood, 3) > 10
    torch.manual_seed(0)
    assert _bad_draws(likelihood, 3) == 0
    site = _sites(likelihood.pyro_sample_from_prior)["noise_prior"]
    assert isinstance(site["fn"], gpytorch.priors.TruncatedPrior)
    assert float(site["fn"].support.lower_bound.min()) == pytest.approx(1e-4)


def test_truncated_draws_follow_the_truncated_gamma():
    """Patched draws of the noise follow Gamma(0.5, 2) truncated to (1e-4, inf) (KS test against SciPy)."""
    stats = pytest.importorskip("scipy.stats")
    ref = stats.gamma(a=0.5, scale=0.5)
    torch.manual_seed(3)
    for likelihood in (_likelihood(GammaPrior(0.5, 2.0), None, batch=2000), _tutorial_likelihood()):
        x = likelihood.pyro_sample_from_prior().noise.flatten().double().numpy()
        result = stats.kstest(x, lambda v: (ref.cdf(v) - ref.cdf(1e-4)) / ref.sf(1e-4))
        assert result.pvalue > 1e-3 and x.min() > 1e-4


def test_priors_inside_their_constraint_sample_exactly_as_upstream(upstream):
    x, y = data(10)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(1.0, 1.0), noise_constraint=Positive())
    model = ExactGPModel(
        x, y, likelihood, lengthscale_prior=GammaPrior(3.0, 6.0), outputscale_prior=LogNormalPrior(0.0, 1.0)
    )

    def draws():
        torch.manual_seed(7)
        sampled = model.pyro_sample_from_prior()
        return [p.detach().clone() for p in sampled.parameters()]

    with upstream(PATCH):
        expected = draws()
    got = draws()
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_sample_sites_keep_names_and_declare_truncated_support(upstream):
    model = gamma_model(noise_prior=GammaPrior(0.5, 2.0))
    with upstream(PATCH):
        names_upstream = set(_sites(model.pyro_sample_from_prior))
    sites = _sites(model.pyro_sample_from_prior)
    assert (
        set(sites)
        == names_upstream
        == {
            "likelihood.noise_covar.noise_prior",
            "covar_module.outputscale_prior",
            "covar_module.base_kernel.lengthscale_prior",
        }
    )
    noise_site = sites["likelihood.noise_covar.noise_prior"]
    support = noise_site["fn"].support
    assert isinstance(support, torch.distributions.constraints.greater_than)
    assert float(support.lower_bound.min()) == pytest.approx(1e-4)
    assert support.check(noise_site["value"]).all()


def test_nuts_style_replay_at_the_float_end_of_the_support_gives_finite_parameters():
    """A value Pyro maps to the float end of the support (exp(u) + 1e-4 == 1e-4) still sets a finite raw noise."""
    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=1)
    edge = torch.full((1, 1), 1e-4)
    sampled = pyro.poutine.condition(likelihood.pyro_sample_from_prior, data={"noise_covar.noise_prior": edge})()
    assert torch.isfinite(sampled.noise_covar.raw_noise).all()
    assert bool((sampled.noise > 1e-4).all())


def test_one_prior_object_on_two_modules_gets_a_site_per_module(upstream):
    model = shared_prior_model(shared=True)
    lengthscale_sites = {
        "covar_module.base_kernel.kernels.0.lengthscale_prior",
        "covar_module.base_kernel.kernels.1.lengthscale_prior",
    }
    with upstream(PATCH):
        assert len(set(_sites(model.pyro_sample_from_prior)) & lengthscale_sites) == 1
    sites = _sites(model.pyro_sample_from_prior)
    assert len(sites) == 4 and lengthscale_sites <= set(sites)
    # each site sets its own kernel's lengthscale
    torch.manual_seed(0)
    sampled = model.pyro_sample_from_prior()
    values = [k.lengthscale for k in sampled.covar_module.base_kernel.kernels]
    assert not torch.equal(values[0], values[1])


def test_a_module_reachable_twice_gets_one_site():
    model, _ = module_twice_model()
    assert set(_sites(model.pyro_sample_from_prior)) == {"covar_module.kernels.0.lengthscale_prior"}


def test_a_multivariate_prior_draws_one_event_per_batch_element():
    """One independent event per batch element, even where the prior's ``expand`` fails (MultivariateNormalPrior)."""
    kernel = gpytorch.kernels.RBFKernel(ard_num_dims=3, batch_shape=torch.Size([4]))
    prior = MultivariateNormalPrior(torch.zeros(3), torch.eye(3))
    kernel.register_prior(
        "log_ls_prior", prior, lambda m: m.lengthscale.log(), lambda m, v: m._set_lengthscale(v.exp())
    )
    torch.manual_seed(0)
    kernel.sample_from_prior("log_ls_prior")
    assert kernel.lengthscale.shape == (4, 1, 3) and kernel.lengthscale.unique().numel() == 12


# --- pyro_load_from_samples -------------------------------------------------------------------------


def test_load_fills_every_module_that_shares_a_prior_object(upstream):
    samples = {
        "covar_module.base_kernel.kernels.0.lengthscale_prior": torch.full((4, 1, 1), 0.3, dtype=torch.float64),
        "covar_module.base_kernel.kernels.1.lengthscale_prior": torch.full((4, 1, 1), 2.0, dtype=torch.float64),
        "covar_module.outputscale_prior": torch.ones(4, dtype=torch.float64),
        "likelihood.noise_covar.noise_prior": torch.full((4, 1), 0.1, dtype=torch.float64),
    }
    with upstream(PATCH):
        model = shared_prior_model(shared=True)
        model.pyro_load_from_samples(samples)
        assert model.covar_module.base_kernel.kernels[1].lengthscale.flatten().tolist() == pytest.approx([math.log(2)])
    model = shared_prior_model(shared=True)
    model.pyro_load_from_samples(samples)
    kernels = model.covar_module.base_kernel.kernels
    torch.testing.assert_close(kernels[0].lengthscale, torch.full((4, 1, 1), 0.3, dtype=torch.float64))
    torch.testing.assert_close(kernels[1].lengthscale, torch.full((4, 1, 1), 2.0, dtype=torch.float64))
    assert kernels[1].batch_shape == torch.Size([4])


def test_load_visits_a_module_reachable_twice_once(upstream):
    samples = {"covar_module.kernels.0.lengthscale_prior": torch.full((3, 1, 1), 0.5, dtype=torch.float64)}
    with upstream(PATCH):
        model, rbf = module_twice_model()
        model.pyro_load_from_samples(samples)
        assert rbf.batch_shape == torch.Size([3, 3])  # the samples' dimension, once per path
    model, rbf = module_twice_model()
    model.pyro_load_from_samples(samples)
    assert rbf.batch_shape == torch.Size([3])
    torch.testing.assert_close(rbf.lengthscale, torch.full((3, 1, 1), 0.5, dtype=torch.float64))


def test_the_tutorial_model_loads_the_noise_site():
    model = fully_bayesian_model()
    samples = {
        "likelihood.noise_prior": torch.full((2, 1), 0.05, dtype=torch.float64),
        "mean_module.mean_prior": torch.zeros(2, dtype=torch.float64),
        "covar_module.outputscale_prior": torch.ones(2, dtype=torch.float64),
        "covar_module.base_kernel.lengthscale_prior": torch.full((2, 1, 1), 0.4, dtype=torch.float64),
    }
    assert set(_sites(model.pyro_sample_from_prior)) == set(samples)
    model.pyro_load_from_samples(samples)
    torch.testing.assert_close(model.likelihood.noise, torch.full((2, 1), 0.05, dtype=torch.float64))


# --- Module.sample_from_prior -----------------------------------------------------------------------


def _sample_from_prior_failures(likelihood, calls):
    failed = 0
    for _ in range(calls):
        try:
            likelihood.noise_covar.sample_from_prior("noise_prior")
        except RuntimeError as exc:
            assert "out of bounds" in str(exc)
            failed += 1
    return failed


def test_sample_from_prior_out_of_bounds_upstream_never_patched(upstream):
    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=1)
    torch.manual_seed(0)
    with upstream(PATCH):
        assert _sample_from_prior_failures(likelihood, 600) > 2  # about 1.6% of the calls
    torch.manual_seed(0)
    assert _sample_from_prior_failures(likelihood, 600) == 0


def test_sample_from_prior_draws_each_element_upstream_one_value(upstream):
    kernel = gpytorch.kernels.RBFKernel(
        ard_num_dims=5, batch_shape=torch.Size([3]), lengthscale_prior=GammaPrior(3.0, 6.0)
    )
    with upstream(PATCH):
        kernel.sample_from_prior("lengthscale_prior")
        assert kernel.lengthscale.unique().numel() == 1  # gpytorch issue 1317
    kernel.sample_from_prior("lengthscale_prior")
    assert kernel.lengthscale.shape == (3, 1, 5) and kernel.lengthscale.unique().numel() == 15


def test_sample_from_prior_of_the_tutorial_noise_prior():
    likelihood = _tutorial_likelihood()
    torch.manual_seed(0)
    for _ in range(20):
        likelihood.sample_from_prior("noise_prior")
        assert bool((likelihood.noise > 1e-4).all()) and likelihood.noise.unique().numel() == 1000


def test_sample_from_prior_errors_are_gpytorchs():
    kernel = gpytorch.kernels.RBFKernel()
    with pytest.raises(RuntimeError, match="Unknown prior name 'nope'"):
        kernel.sample_from_prior("nope")
    kernel.register_prior("log_prior", NormalPrior(0.0, 1.0), lambda m: m.lengthscale.log())
    with pytest.raises(RuntimeError, match="inverse transform"):
        kernel.sample_from_prior("log_prior")


def test_sample_from_prior_keeps_a_scalar_parameters_draw(upstream):
    """Where upstream already drew one value for one element, the draw is the same."""
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(), outputscale_prior=GammaPrior(2.0, 0.15))
    torch.manual_seed(5)
    with upstream(PATCH):
        kernel.sample_from_prior("outputscale_prior")
        expected = kernel.outputscale.clone()
    torch.manual_seed(5)
    kernel.sample_from_prior("outputscale_prior")
    assert torch.equal(kernel.outputscale, expected)
