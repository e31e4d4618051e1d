"""TruncatedPrior against SciPy: normalisation by quadrature, log-density, KS tests, batches, dtypes, Pyro."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from gpytorch.priors import GammaPrior, HalfCauchyPrior, HalfNormalPrior, LogNormalPrior, NormalPrior, UniformPrior

from gpytorch_ext.priors import TruncatedPrior
from gpytorch_ext.testing.priors import TruncatedPriorBattery


class TestTruncatedGamma(TruncatedPriorBattery):  # CDF, no icdf: bisection
    bounds = ((1e-4, None), (0.1, 1.5), (None, 0.5), (2.0, None))

    def make_base(self):
        return GammaPrior(0.5, 2.0), scipy.stats.gamma(a=0.5, scale=0.5)


class TestTruncatedNormal(TruncatedPriorBattery):
    bounds = ((0.0, None), (-1.0, 2.0), (None, -0.5), (1.5, None))

    def make_base(self):
        return NormalPrior(0.3, 1.2), scipy.stats.norm(0.3, 1.2)


class TestTruncatedLogNormal(TruncatedPriorBattery):
    bounds = ((0.025, None), (0.1, 3.0), (None, 1.0))

    def make_base(self):
        return LogNormalPrior(0.0, 1.0), scipy.stats.lognorm(s=1.0, scale=1.0)


class TestTruncatedHalfCauchy(TruncatedPriorBattery):
    bounds = ((1e-4, None), (0.5, 4.0), (None, 2.0))

    def make_base(self):
        return HalfCauchyPrior(1.0), scipy.stats.halfcauchy(scale=1.0)


class TestTruncatedHalfNormal(TruncatedPriorBattery):
    bounds = ((0.2, None), (0.1, 1.0), (None, 0.5))

    def make_base(self):
        return HalfNormalPrior(1.0), scipy.stats.halfnorm(scale=1.0)


class TestTruncatedUniform(TruncatedPriorBattery):
    bounds = ((0.5, None), (0.5, 1.5), (None, 1.0), (-3.0, 5.0))

    def make_base(self):
        return UniformPrior(0.0, 2.0), scipy.stats.uniform(loc=0.0, scale=2.0)


class TestTruncatedStudentT(TruncatedPriorBattery):  # no CDF in torch: rejection sampling, Monte Carlo normaliser
    bounds = ((0.0, None), (-1.0, 2.0))
    mc_normaliser = True

    def make_base(self):
        return torch.distributions.StudentT(3.0, 0.0, 1.0), scipy.stats.t(df=3.0)


def test_rsample_is_reparameterised_through_the_base():
    loc = torch.tensor(0.5, requires_grad=True)
    prior = TruncatedPrior(torch.distributions.Normal(loc, 1.0), 0.0, 2.0)
    assert prior.has_rsample
    torch.manual_seed(0)
    prior.rsample(torch.Size([64])).mean().backward()
    assert loc.grad is not None and torch.isfinite(loc.grad)


def test_gamma_has_no_rsample_but_samples():
    prior = TruncatedPrior(GammaPrior(2.0, 1.0), 0.5)
    assert not prior.has_rsample
    with pytest.raises(NotImplementedError):
        prior.rsample()
    assert prior.sample(torch.Size([3])).shape == (3,)


def test_cdf_and_icdf_agree_with_scipy():
    prior = TruncatedPrior(GammaPrior(0.5, 2.0), 0.1, 1.5)
    ref = scipy.stats.truncate if hasattr(scipy.stats, "truncate") else None
    gamma = scipy.stats.gamma(a=0.5, scale=0.5)
    xs = torch.tensor([0.05, 0.1, 0.3, 1.0, 1.5, 2.0], dtype=torch.float64)
    want = [(gamma.cdf(min(max(float(x), 0.1), 1.5)) - gamma.cdf(0.1)) / (gamma.cdf(1.5) - gamma.cdf(0.1)) for x in xs]
    torch.testing.assert_close(prior.cdf(xs).double(), torch.tensor(want, dtype=torch.float64), atol=1e-5, rtol=0)
    probs = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(prior.cdf(prior.icdf(probs)), probs, atol=1e-5, rtol=0)
    del ref


def test_samples_strictly_inside_even_when_the_interval_is_tiny_and_far_out():
    prior = TruncatedPrior(NormalPrior(0.0, 1.0), 3.0, 3.0001)
    torch.manual_seed(0)
    x = prior.sample(torch.Size([1000]))
    assert bool(((x > 3.0) & (x < 3.0001)).all())


@pytest.mark.parametrize(
    ("base", "lower", "upper"),
    [(GammaPrior(1.0, 1.0), -2.0, -1.0), (UniformPrior(0.0, 1.0), 2.0, None), (HalfNormalPrior(1.0), None, 0.0)],
)
def test_disjoint_interval_raises(base, lower, upper):
    with pytest.raises(ValueError, match="no mass"):
        TruncatedPrior(base, lower, upper)


def test_bad_arguments():
    with pytest.raises(ValueError, match="lower < upper"):
        TruncatedPrior(NormalPrior(0.0, 1.0), 1.0, 0.0)
    with pytest.raises(ValueError, match="univariate"):
        TruncatedPrior(torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2)), 0.0)
    with pytest.raises(TypeError, match="Distribution"):
        TruncatedPrior(1.0, 0.0)
    with pytest.raises(ValueError, match="underflows"):
        TruncatedPrior(NormalPrior(0.0, 1.0), 50.0, 60.0)


def test_support_kinds():
    from torch.distributions import constraints

    assert isinstance(TruncatedPrior(NormalPrior(0.0, 1.0), 0.0).support, constraints.greater_than)
    assert isinstance(TruncatedPrior(NormalPrior(0.0, 1.0), None, 0.0).support, constraints.less_than)
    assert isinstance(TruncatedPrior(NormalPrior(0.0, 1.0), -1.0, 1.0).support, constraints.interval)
    # the effective interval is cut to the base's support: a Gamma truncated above lives on (0, b)
    support = TruncatedPrior(GammaPrior(2.0, 1.0), None, 3.0).support
    assert isinstance(support, constraints.interval) and float(support.lower_bound) == 0.0


def test_state_dict_round_trip_and_module_registration():
    import gpytorch

    kernel = gpytorch.kernels.RBFKernel(lengthscale_prior=TruncatedPrior(GammaPrior(3.0, 6.0), 0.05, 2.0))
    state = kernel.state_dict()
    assert "lengthscale_prior.lower" in state and "lengthscale_prior.base_prior.concentration" in state
    other = gpytorch.kernels.RBFKernel(lengthscale_prior=TruncatedPrior(GammaPrior(1.0, 1.0), 0.0, 1.0))
    other.load_state_dict(state)
    assert float(other.lengthscale_prior.upper) == 2.0
    assert float(other.lengthscale_prior.base_prior.concentration) == 3.0


def test_pyro_sample_site_uses_the_truncated_support():
    pyro = pytest.importorskip("pyro")
    prior = TruncatedPrior(GammaPrior(0.5, 2.0), 1e-4)
    trace = pyro.poutine.trace(lambda: pyro.sample("x", prior.expand(torch.Size([100])))).get_trace()
    site = trace.nodes["x"]
    assert site["fn"].support.check(site["value"]).all()
    transform = torch.distributions.biject_to(prior.support)
    y = transform(torch.linspace(-30.0, 30.0, 7))
    assert bool((y >= 1e-4).all()) and torch.isfinite(prior.log_prob(y)).all()  # float rounding may hit the end
    assert math.isfinite(float(site["fn"].log_prob(site["value"]).sum()))


def test_cached_interval_follows_in_place_updates_of_the_base_and_bounds():
    """The interval and CDF bounds are cached; load_state_dict, in-place edits and ``.to`` must refresh them."""
    import gpytorch

    prior = TruncatedPrior(GammaPrior(2.0, 1.0), 0.5, 4.0)
    x = torch.tensor([0.7, 1.5, 3.0])
    prior.log_prob(x)  # fills the cache
    prior.base_prior.rate.fill_(3.0)  # in place, as load_state_dict does
    expected = TruncatedPrior(GammaPrior(2.0, 3.0), 0.5, 4.0).log_prob(x)
    assert torch.allclose(prior.log_prob(x), expected)

    kernel = gpytorch.kernels.RBFKernel(lengthscale_prior=TruncatedPrior(GammaPrior(1.0, 1.0), 0.1, 1.0))
    kernel.lengthscale_prior.log_prob(x)
    kernel.load_state_dict(
        gpytorch.kernels.RBFKernel(lengthscale_prior=TruncatedPrior(GammaPrior(3.0, 6.0), 0.05, 2.0)).state_dict()
    )
    reference = TruncatedPrior(GammaPrior(3.0, 6.0), 0.05, 2.0)
    assert torch.allclose(kernel.lengthscale_prior.log_prob(x), reference.log_prob(x))
    assert torch.allclose(kernel.lengthscale_prior.cdf(x), reference.cdf(x))

    moved = prior.to(torch.float64)
    assert moved.log_prob(x.double()).dtype == torch.float64
    assert torch.allclose(moved.log_prob(x.double()), expected.double())


def test_learnable_base_keeps_its_gradient_on_every_call():
    """A base with parameters that require grad is never served from the cache (each call has its own graph)."""
    rate = torch.nn.Parameter(torch.tensor(1.5))
    base = GammaPrior(2.0, 1.0)
    del base.rate
    base.rate = rate  # a learnable rate; TruncatedPrior reads it as a parameter of the base
    prior = TruncatedPrior(base, 0.5, 4.0)
    for _ in range(2):
        prior.log_prob(torch.tensor(1.0)).backward()
    assert rate.grad is not None and torch.isfinite(rate.grad)
