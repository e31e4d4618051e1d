"""The constraint-aware-priors patch: each upstream defect reproduced with the patch reverted, gone with it applied.

Tests of repaired behaviour call GPyTorch's own classes and methods (``pyro_sample_from_prior``,
``register_prior``, ``named_priors``), so they also hold against a patched GPyTorch source tree.
"""

from __future__ import annotations

import math
import warnings

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan, Interval, LessThan, Positive
from gpytorch.priors import GammaPrior, HalfCauchyPrior, HalfNormalPrior, LogNormalPrior, NormalPrior, UniformPrior

from gpytorch_ext.priors import TruncatedPrior

from ._impl import PriorConstraintWarning
from ._models import ExactGPModel, data, gamma_model

pyro = pytest.importorskip("pyro")
PATCH = "constraint-aware-priors"

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


def _nan_draws(likelihood, rounds):
    return sum(int((~torch.isfinite(likelihood.pyro_sample_from_prior().noise)).sum()) for _ in range(rounds))


@pytest.mark.parametrize("constraint_name", list(CONSTRAINTS))
@pytest.mark.parametrize("prior_name", list(PRIORS))
def test_matrix_no_nan_draw_or_value_error_naming_the_parameter(prior_name, constraint_name):
    make_prior, (s_lo, s_hi) = PRIORS[prior_name]
    make_constraint, (c_lo, c_hi) = CONSTRAINTS[constraint_name]
    likelihood = _likelihood(make_prior(), make_constraint())
    torch.manual_seed(0)
    if max(s_lo, c_lo) >= min(s_hi, c_hi):
        with pytest.raises(ValueError, match=r"noise_covar\.raw_noise"):
            likelihood.pyro_sample_from_prior()
        return
    for _ in range(3):
        sampled = likelihood.pyro_sample_from_prior()
        noise = sampled.noise
        assert torch.isfinite(sampled.noise_covar.raw_noise).all()
        assert torch.isfinite(noise).all()
        assert bool(((noise > c_lo) & (noise < c_hi)).all()), (float(noise.min()), float(noise.max()))
        assert bool(((noise >= s_lo) & (noise <= s_hi)).all())


def test_gamma_noise_nan_upstream_and_fixed(upstream):
    """The upstream defect: GammaPrior(0.5, 2) under GreaterThan(1e-4) gives NaN noise in about 1.6% of draws."""
    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=1000)
    torch.manual_seed(0)
    with upstream(PATCH):
        assert _nan_draws(likelihood, 5) > 20
    torch.manual_seed(0)
    assert _nan_draws(likelihood, 5) == 0


def test_truncated_draws_follow_the_truncated_gamma():
    """Patched draws of the noise follow Gamma(0.5, 2) truncated to (1e-4, inf) (KS test against SciPy)."""
    stats = pytest.importorskip("scipy.stats")
    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=2000)
    torch.manual_seed(3)
    x = likelihood.pyro_sample_from_prior().noise.flatten().double().numpy()
    ref = stats.gamma(a=0.5, scale=0.5)
    lo = 1e-4
    result = stats.kstest(x, lambda v: (ref.cdf(v) - ref.cdf(lo)) / (1 - ref.cdf(lo)))
    assert result.pvalue > 1e-3 and x.min() > lo


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
        trace = pyro.poutine.trace(model.pyro_sample_from_prior).get_trace()
        names_upstream = {n for n, s in trace.nodes.items() if s["type"] == "sample"}
    trace = pyro.poutine.trace(model.pyro_sample_from_prior).get_trace()
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
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
    site = "noise_covar.noise_prior"
    edge = torch.full((1, 1), 1e-4)
    sampled = pyro.poutine.condition(likelihood.pyro_sample_from_prior, data={site: edge})()
    assert torch.isfinite(sampled.noise_covar.raw_noise).all()
    assert bool((sampled.noise > 1e-4).all())


@pytest.mark.parametrize(
    ("prior", "constraint", "parameter"),
    [
        (UniformPrior(0.0, 1.0), GreaterThan(2.0), "noise_covar.raw_noise"),
        (GammaPrior(1.0, 1.0), LessThan(-1.0), "noise_covar.raw_noise"),
    ],
)
def test_disjoint_prior_and_constraint_raise_naming_the_parameter(prior, constraint, parameter):
    likelihood = _likelihood(prior, constraint, batch=2)
    with pytest.raises(ValueError, match=parameter.replace(".", r"\.")) as info:
        likelihood.pyro_sample_from_prior()
    assert "does not overlap" in str(info.value)


# --- registration warnings ----------------------------------------------------------------------------


def _registration_warnings(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [w for w in caught if issubclass(w.category, PriorConstraintWarning)]


def test_registration_warning_upstream_silent_patched_once(upstream):
    def build():
        return gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))

    with upstream(PATCH):
        assert _registration_warnings(build) == []
    caught = _registration_warnings(build)
    assert len(caught) == 1
    message = str(caught[0].message)
    for part in (
        "noise_prior",
        "GammaPrior(concentration=0.5, rate=2)",
        "GreaterThan(1.000E-04)",
        "raw_noise",
        "1.6%",
        "Remedy: a TruncatedPrior",
    ):
        assert part in message, (part, message)
    assert _registration_warnings(build) == []  # once per configuration, not once per model


def test_registration_warning_prior_registered_after_constraint_and_by_name():
    def build():
        lik = gpytorch.likelihoods.GaussianLikelihood()
        lik.noise_covar.register_prior("noise_prior", NormalPrior(0.0, 1.0), "noise")

    caught = _registration_warnings(build)
    assert len(caught) == 1 and "50%" in str(caught[0].message)


def test_registration_warning_mass_matches_scipy():
    stats = pytest.importorskip("scipy.stats")

    def build():
        gpytorch.kernels.RBFKernel(lengthscale_prior=LogNormalPrior(-1.0, 1.0), lengthscale_constraint=GreaterThan(0.1))

    caught = _registration_warnings(build)
    want = stats.lognorm(s=1.0, scale=math.exp(-1.0)).cdf(0.1)
    assert f"{100 * want:.3g}%" in str(caught[0].message)


@pytest.mark.parametrize(
    "build",
    [
        lambda: gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0)), outputscale_prior=GammaPrior(2.0, 0.15)
        ),
        lambda: gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(1.1, 0.05), noise_constraint=Positive()),
        lambda: gpytorch.kernels.RBFKernel(
            lengthscale_prior=UniformPrior(0.1, 2.0), lengthscale_constraint=Interval(0.05, 3.0)
        ),
        lambda: gpytorch.likelihoods.GaussianLikelihood(),
    ],
    ids=["gamma-positive", "gamma-noise-positive", "uniform-inside-interval", "no-prior"],
)
def test_no_registration_warning_when_the_prior_fits(build):
    assert _registration_warnings(build) == []


def test_botorch_default_models_do_not_warn():
    pytest.importorskip("botorch")
    from botorch.models import SingleTaskGP
    from botorch.models.utils.gpytorch_modules import (
        get_gaussian_likelihood_with_gamma_prior,
        get_matern_kernel_with_gamma_prior,
    )

    def build():
        x = torch.rand(6, 3, dtype=torch.float64)
        SingleTaskGP(x, x.sum(-1, keepdim=True))
        get_matern_kernel_with_gamma_prior(3)
        get_gaussian_likelihood_with_gamma_prior()

    assert _registration_warnings(build) == []


# --- unenforced constraints ---------------------------------------------------------------------------


def _prior_terms(module):
    return {name: prior.log_prob(closure(m)) for name, m, prior, closure, _ in module.named_priors()}


def test_unenforced_constraint_prior_term_nan_upstream_minus_inf_patched(upstream):
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=GammaPrior(1.1, 0.05), noise_constraint=GreaterThan(1e-4, transform=None)
    )
    with torch.no_grad():
        likelihood.noise_covar.raw_noise.fill_(-0.125)  # e.g. an unbounded optimiser step
    with upstream(PATCH):
        assert torch.isnan(_prior_terms(likelihood)["noise_covar.noise_prior"]).all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        term = _prior_terms(likelihood)["noise_covar.noise_prior"]
        _prior_terms(likelihood)
    assert bool((term == -math.inf).all())
    messages = [str(w.message) for w in caught if issubclass(w.category, PriorConstraintWarning)]
    assert len(messages) == 1
    assert "noise_covar.raw_noise" in messages[0] and "-0.125" in messages[0]


def test_unenforced_constraint_inside_gives_the_upstream_mll(upstream):
    x, y = data(12)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=GammaPrior(1.1, 0.05), noise_constraint=GreaterThan(1e-4, transform=None, initial_value=0.1)
    )
    model = ExactGPModel(
        x,
        y,
        likelihood,
        lengthscale_prior=LogNormalPrior(0.0, 1.0),
        lengthscale_constraint=GreaterThan(0.025, transform=None, initial_value=0.5),
    )
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    model.train()
    with upstream(PATCH):
        expected = mll(model(x), y)
    assert torch.equal(mll(model(x), y), expected)
    # and outside the interval the objective is -inf, not a number the optimiser would follow
    with torch.no_grad():
        model.covar_module.base_kernel.raw_lengthscale.fill_(0.01)
    with pytest.warns(PriorConstraintWarning, match="raw_lengthscale"):
        assert mll(model(x), y).item() == -math.inf


# --- MAP objectives ---------------------------------------------------------------------------------


@pytest.mark.parametrize("truncated", [False, True], ids=["plain-priors", "truncated-prior"])
def test_exact_mll_and_gradients_identical_to_upstream(upstream, truncated):
    noise_prior = TruncatedPrior(GammaPrior(0.5, 2.0), 1e-4) if truncated else GammaPrior(0.5, 2.0)
    model = gamma_model(noise_prior=noise_prior)
    x, y = model.train_inputs[0], model.train_targets
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()

    def value_and_grads():
        model.zero_grad()
        loss = mll(model(x), y)
        loss.backward()
        return loss.detach().clone(), [p.grad.clone() for p in model.parameters()]

    with upstream(PATCH):
        expected, expected_grads = value_and_grads()
    got, got_grads = value_and_grads()
    assert torch.equal(got, expected)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, expected_grads))


def test_botorch_fit_objective_identical_to_upstream(upstream):
    pytest.importorskip("botorch")
    from botorch.models import SingleTaskGP

    x = torch.rand(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = SingleTaskGP(x, (x**2).sum(-1, keepdim=True))
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with upstream(PATCH):
        expected = mll(model(*model.train_inputs), model.train_targets)
    assert torch.equal(mll(model(*model.train_inputs), model.train_targets), expected)


def test_probe_reports_the_defect_and_its_repair(impl):
    if impl == "source":
        pytest.skip("the self-check reverts and applies the run-time patch; not applicable to the patched source")
    from gpytorch_ext.priors.patch import PATCH as patch_object

    result = patch_object.self_check()
    assert result.reproduced and result.passed
    assert result.patched.startswith("0 of 5000")


def test_reused_truncation_follows_the_prior_it_was_built_for():
    """Sampling plans are reused across calls for equal priors; a changed prior must get its own."""

    def noise_site(likelihood):
        trace = pyro.poutine.trace(likelihood.pyro_sample_from_prior).get_trace()
        return trace.nodes["noise_covar.noise_prior"]["fn"]

    first = noise_site(_likelihood(GammaPrior(0.5, 2.0), None, batch=3))
    again = noise_site(_likelihood(GammaPrior(0.5, 2.0), None, batch=3))
    other_rate = noise_site(_likelihood(GammaPrior(0.5, 7.0), None, batch=3))
    other_bound = noise_site(_likelihood(GammaPrior(0.5, 2.0), GreaterThan(1e-3), batch=3))
    other_shape = noise_site(_likelihood(GammaPrior(0.5, 2.0), None, batch=4))
    for fn in (first, again, other_rate, other_bound, other_shape):
        assert isinstance(fn, gpytorch.priors.TruncatedPrior)  # the patch's class, or the patched source's
    assert float(other_rate.base_prior.rate) == 7.0 and float(first.base_prior.rate) == 2.0
    assert float(other_bound.lower.min()) == pytest.approx(1e-3) and float(first.lower.min()) == pytest.approx(1e-4)
    assert other_shape.batch_shape == torch.Size([4, 1]) and first.batch_shape == torch.Size([3, 1])

    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=3)
    likelihood.noise_covar.noise_prior.rate.fill_(9.0)  # the same prior object, changed in place
    assert float(noise_site(likelihood).base_prior.rate) == 9.0

    # what a call returns is the caller's to change; a later call must not see that change
    sampled = _likelihood(GammaPrior(0.5, 2.1), None, batch=5).pyro_sample_from_prior()  # a new plan
    sampled.noise_covar.noise_prior.rate.fill_(100.0)
    sampled.double()
    fn = noise_site(_likelihood(GammaPrior(0.5, 2.1), None, batch=5))
    assert float(fn.base_prior.rate) == pytest.approx(2.1) and fn.base_prior.rate.dtype == torch.float32
