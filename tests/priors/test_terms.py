"""One prior term per (parameter, prior) in ``named_priors`` and the exact MLL, lined up with the data term as torch
broadcasts. Every prior term is computed by hand from ``torch.distributions`` as the reference."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from gpytorch.priors import GammaPrior

from ._models import GP, fully_bayesian_model, module_twice_model, shared_prior_model

PATCH = "prior-terms"
DT = torch.float64


def _gamma(concentration, rate, value):
    """The reference: a Gamma log-density from torch.distributions, summed over every element."""
    return torch.distributions.Gamma(torch.tensor(concentration, dtype=DT), torch.tensor(rate, dtype=DT)).log_prob(
        value.detach()
    )


def _prior_part(mll, model, x, y):
    """``n * MLL - data term``: what the MLL adds for the priors."""
    model.train()
    with torch.no_grad():
        output = model(x)
        return mll(output, y) * y.shape[-1] - model.likelihood(output).log_prob(y)


# --- named_priors -------------------------------------------------------------------------------------


def test_a_module_reachable_twice_yields_its_prior_once(upstream):
    model, _ = module_twice_model()
    with upstream(PATCH):
        assert len(list(model.named_priors())) == 2
    assert [name for name, *_ in model.named_priors()] == ["covar_module.kernels.0.lengthscale_prior"]


def test_one_prior_object_on_two_modules_is_yielded_for_each():
    names = [name for name, *_ in shared_prior_model(shared=True).named_priors()]
    assert names == [name for name, *_ in shared_prior_model(shared=False).named_priors()]
    assert len(names) == 4


def test_one_prior_object_on_a_hand_shared_parameter_once_two_prior_objects_both(upstream):
    k1 = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    k2 = gpytorch.kernels.RBFKernel(lengthscale_prior=k1.lengthscale_prior)
    k2.raw_lengthscale = k1.raw_lengthscale  # one nn.Parameter, one prior object: one term
    with upstream(PATCH):
        assert len(list((k1 + k2).named_priors())) == 2
    assert len(list((k1 + k2).named_priors())) == 1
    k3 = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    k3.raw_lengthscale = k1.raw_lengthscale  # two prior objects on one parameter: both terms (conditioning)
    assert len(list((k1 + k3).named_priors())) == 2


# --- the exact MLL's prior term ---------------------------------------------------------------------


def test_a_module_reachable_twice_enters_the_mll_once(upstream):
    model, rbf = module_twice_model()
    x, y = model.train_inputs[0], model.train_targets
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    once = _gamma(3.0, 6.0, rbf.lengthscale).sum()
    with upstream(PATCH):
        torch.testing.assert_close(_prior_part(mll, model, x, y), 2 * once)
    torch.testing.assert_close(_prior_part(mll, model, x, y), once)


@pytest.mark.parametrize("shared", [True, False])
def test_every_parameter_has_its_prior_term(shared):
    model = shared_prior_model(shared)
    x, y = model.train_inputs[0], model.train_targets
    kernels = model.covar_module.base_kernel.kernels
    want = (
        _gamma(3.0, 6.0, kernels[0].lengthscale).sum()
        + _gamma(3.0, 6.0, kernels[1].lengthscale).sum()
        + _gamma(2.0, 0.5, model.covar_module.outputscale).sum()
        + _gamma(1.1, 10.0, model.likelihood.noise).sum()
    )
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    torch.testing.assert_close(_prior_part(mll, model, x, y), want)


class _BatchGP(GP):
    def __init__(self, x, y, batch: torch.Size):
        likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch, noise_prior=GammaPrior(1.1, 10.0))
        covar = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(batch_shape=batch, ard_num_dims=2, lengthscale_prior=GammaPrior(3.0, 6.0)),
            batch_shape=batch,
            outputscale_prior=GammaPrior(2.0, 0.15),
        )
        super().__init__(x, y, covar, likelihood, gpytorch.means.ConstantMean(batch_shape=batch))


def _batch_model(data_batch, parameter_batch, n=7):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(*data_batch, n, 2, generator=gen, dtype=DT)
    y = torch.sin(6 * x[..., 0])
    model = _BatchGP(x, y, torch.Size(parameter_batch)).to(DT)
    with torch.no_grad():  # distinct values per batch member, so that a misaligned term shows
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=DT) * 0.3)
    return model, x, y


def _per_batch_prior_terms(model):
    """Each parameter batch member's prior terms, by hand: shape = the parameters' batch shape."""
    covar = model.covar_module
    return (
        _gamma(3.0, 6.0, covar.base_kernel.lengthscale).sum((-2, -1))
        + _gamma(2.0, 0.15, covar.outputscale)
        + _gamma(1.1, 10.0, model.likelihood.noise).sum(-1)
    )


@pytest.mark.parametrize("parameter_batch", [(3,), ()], ids=["batch-3", "no-batch"])
def test_a_data_batch_over_parameter_batches_broadcasts_on_trailing_dimensions(upstream, parameter_batch):
    model, x, y = _batch_model((2, 3), parameter_batch)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with upstream(PATCH), pytest.raises(RuntimeError, match="must match"):
        mll(model(x), y)
    got = _prior_part(mll, model, x, y)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, _per_batch_prior_terms(model).expand(2, 3))


@pytest.mark.parametrize(
    ("data_batch", "parameter_batch"),
    [((), ()), ((3,), (3,)), ((2, 3), (2, 3)), ((4,), ())],
    ids=["no-batch", "batch", "2d-batch", "batch-data-shared-parameters"],
)
def test_shapes_that_worked_give_upstreams_numbers(upstream, data_batch, parameter_batch):
    model, x, y = _batch_model(data_batch, parameter_batch)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with upstream(PATCH):
        expected = mll(model(x), y)
    got = mll(model(x), y)
    assert got.shape == torch.Size(data_batch) and torch.equal(got, expected)
    want = _per_batch_prior_terms(model)
    torch.testing.assert_close(_prior_part(mll, model, x, y), want.expand(data_batch) if data_batch else want)


def test_a_parameter_batch_that_cannot_line_up_raises_a_value_error_naming_the_shapes():
    model, x, y = _batch_model((2,), (3,))
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    with pytest.raises(ValueError, match=r"noise_prior' of shape \(3, 1\).*\(3,\).*data term of shape \(2,\)"):
        mll._add_other_terms(torch.zeros(2, dtype=DT), [])


def test_batch_independent_multitask_priors_sum_into_the_joint_term(upstream):
    """A kernel batch of tasks under a MultitaskMultivariateNormal output: the data term has no batch."""
    x = torch.linspace(0, 1, 6, dtype=DT).unsqueeze(-1)
    y = torch.stack([torch.sin(6 * x[:, 0]), torch.cos(6 * x[:, 0])], -1)

    class MultitaskGP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=2))
            self.mean_module = gpytorch.means.ZeroMean(batch_shape=torch.Size([2]))
            self.covar_module = gpytorch.kernels.RBFKernel(
                batch_shape=torch.Size([2]), lengthscale_prior=GammaPrior(3.0, 6.0)
            )

        def forward(self, x):
            mvn = gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))
            return gpytorch.distributions.MultitaskMultivariateNormal.from_batch_mvn(mvn)

    model = MultitaskGP().to(DT)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with upstream(PATCH):
        expected = mll(model(x), y)
    assert torch.equal(mll(model(x), y), expected) and expected.shape == ()


def test_the_tutorial_model_gives_upstreams_mll(upstream):
    model = fully_bayesian_model()
    x, y = model.train_inputs[0], model.train_targets
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with upstream(PATCH):
        expected = mll(model(x), y)
    assert torch.equal(mll(model(x), y), expected)


# --- the drop-ins -------------------------------------------------------------------------------------


def test_drop_ins_count_each_prior_once_on_any_gpytorch(impl):
    """``gpytorch_ext.priors.named_priors`` and ``ExactMarginalLogLikelihood`` need no patch."""
    import gpytorch_ext

    before = gpytorch_ext.applied()
    if impl == "monkeypatch":
        gpytorch_ext.unpatch("prior-terms", "constraint-aware-priors")
    try:
        model, rbf = module_twice_model()
        names = [name for name, *_ in gpytorch_ext.priors.named_priors(model)]
        assert names == ["covar_module.kernels.0.lengthscale_prior"]
        x, y = model.train_inputs[0], model.train_targets
        mll = gpytorch_ext.priors.ExactMarginalLogLikelihood(model.likelihood, model)
        torch.testing.assert_close(_prior_part(mll, model, x, y), _gamma(3.0, 6.0, rbf.lengthscale).sum())
        batched, xb, yb = _batch_model((2, 3), (3,))
        bmll = gpytorch_ext.priors.ExactMarginalLogLikelihood(batched.likelihood, batched)
        torch.testing.assert_close(_prior_part(bmll, batched, xb, yb), _per_batch_prior_terms(batched).expand(2, 3))
    finally:
        if impl == "monkeypatch":
            gpytorch_ext.patch(*before)
