"""equalize / untie / tied: matching, one value, shapes, checks, priors, Pyro, BoTorch, state handling."""

from __future__ import annotations

import doctest

import gpytorch
import pytest
import torch
from gpytorch.priors import GammaPrior

import gpytorch_ext.tying._equalize as equalize_module
from gpytorch_ext.testing.tying import log_prior
from gpytorch_ext.tying import equalize, tied, untie

from ._models import ApproxGP, SharedSumKernel, SumKernel, data, rbf, shared_sum_gp, sum_gp

TWO = r"covar_module\.k\d\.lengthscale"


def two_kernels():
    x, y, _ = data()
    model = sum_gp(x, y)
    model.covar_module.k1.lengthscale = 0.3
    model.covar_module.k2.lengthscale = 0.7
    return model


# --------------------------------------------------------------------------------------------- 1. matching


def test_matches_raw_names_and_aliases_first_match_wins():
    for pattern in (r"covar_module\.k\d\.raw_lengthscale", TWO, [r"covar_module\.k1\..*", r".*k2\.lengthscale"]):
        model = two_kernels()
        assert equalize(model, pattern) is model
        assert tied(model) == [("covar_module.k1.raw_lengthscale", "covar_module.k2.raw_lengthscale")]
        for k in (model.covar_module.k1, model.covar_module.k2):
            torch.testing.assert_close(k.lengthscale, torch.tensor([[0.3]], dtype=torch.float64))


def test_fullmatch_only_and_second_call_adds_a_group():
    model = two_kernels()
    with pytest.raises(ValueError, match="matches no parameter"):
        equalize(model, "lengthscale")  # a full match is needed, as in Pyro
    equalize(model, TWO)
    equalize(model, [r"likelihood\.noise_covar\.noise", r"likelihood\..*raw_noise"], keep_dist=True)
    assert tied(model)[1] == ("likelihood.noise_covar.raw_noise",)


def test_hand_tied_defect_reproduced_then_repaired():
    """The reproduction of the issue: tying by sharing a Parameter counts the prior once per kernel."""
    a, b = rbf(), rbf()
    b.raw_lengthscale = a.raw_lengthscale
    k = a + b
    assert [n for n, *_ in k.named_priors()] == ["kernels.0.lengthscale_prior", "kernels.1.lengthscale_prior"]
    equalize(k, r"kernels\.\d\.lengthscale")
    assert [n for n, *_ in k.named_priors()] == ["kernels.0.lengthscale_prior"]
    expected = torch.distributions.Gamma(3.0, 6.0).log_prob(a.lengthscale.detach()).sum()
    torch.testing.assert_close(log_prior(k).detach(), expected)


# --------------------------------------------------------------------------------------------- 2. one value


def test_one_parameter_every_step():
    model = two_kernels()
    equalize(model, TWO)
    k1, k2 = model.covar_module.k1, model.covar_module.k2
    params = list(model.parameters())
    assert sum(p is k1.raw_lengthscale for p in params) == 1 and k1.raw_lengthscale is k2.raw_lengthscale
    assert len(params) == len(list(shared_sum_gp(*data()[:2]).parameters()))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    for _ in range(3):
        opt.zero_grad()
        (-mll(model(model.train_inputs[0]), model.train_targets)).backward()
        opt.step()
        assert torch.equal(k1.lengthscale, k2.lengthscale)
    assert not torch.allclose(k1.lengthscale, torch.tensor(0.3, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- 3. shapes


def test_batch_elements_share_one_value():
    k = rbf(torch.Size([3]), ard_num_dims=2)
    k.lengthscale = torch.tensor([[[0.2, 0.3]], [[0.4, 0.5]], [[0.6, 0.7]]])
    equalize(k, "lengthscale")
    (name, param), *rest = k.named_parameters()
    assert not rest and param.shape == (1, 1, 2)
    assert k.lengthscale.shape == (3, 1, 2)
    torch.testing.assert_close(k.lengthscale, torch.tensor([0.2, 0.3]).expand(3, 1, 2))  # first element wins
    k.lengthscale = torch.tensor([0.9, 1.1])
    torch.testing.assert_close(k.lengthscale, torch.tensor([0.9, 1.1]).expand(3, 1, 2))
    x = torch.rand(3, 4, 2)
    dense = torch.exp(-0.5 * ((x.unsqueeze(-2) - x.unsqueeze(-3)) / torch.tensor([0.9, 1.1])).pow(2).sum(-1))
    torch.testing.assert_close(k(x).to_dense(), dense, rtol=1e-5, atol=1e-6)


def test_broadcasting_shapes_and_not_broadcasting():
    ard, iso = rbf(ard_num_dims=2), rbf()
    k = ard + iso
    equalize(k, r"kernels\.\d\.lengthscale")
    assert dict(k.named_parameters())["kernels.0.raw_lengthscale"].shape == (1, 1)
    assert k.kernels[0].lengthscale.shape == (1, 2) and k.kernels[1].lengthscale.shape == (1, 1)
    assert torch.equal(k.kernels[0].lengthscale[0, 0], k.kernels[0].lengthscale[0, 1])
    bad = rbf(ard_num_dims=2) + rbf(ard_num_dims=3)
    with pytest.raises(ValueError, match=r"kernels\.0\.raw_lengthscale.*kernels\.1\.raw_lengthscale.*broadcast"):
        equalize(bad, r"kernels\.\d\.lengthscale")
    assert len(list(bad.parameters())) == 2  # nothing changed


# --------------------------------------------------------------------------------------------- 4. checks


@pytest.mark.parametrize(
    "constraint",
    [
        gpytorch.constraints.GreaterThan(1e-3),
        gpytorch.constraints.Interval(1e-4, 10.0),
        gpytorch.constraints.Positive(),
    ],
)
def test_constraints_must_agree(constraint):
    a = rbf(lengthscale_constraint=gpytorch.constraints.GreaterThan(1e-4))
    b = rbf(lengthscale_constraint=constraint)
    with pytest.raises(ValueError, match=r"kernels\.0\.raw_lengthscale.*kernels\.1\.raw_lengthscale.*constraints"):
        equalize(a + b, r"kernels\.\d\.lengthscale")


def test_no_match_lists_candidates_and_twice_tied_refused():
    model = two_kernels()
    with pytest.raises(ValueError, match=r"'lenghtscale'.*covar_module\.k1\.lengthscale.*mean_module\.raw_constant"):
        equalize(model, "lenghtscale")
    equalize(model, TWO)
    with pytest.raises(ValueError, match="already tied"):
        equalize(model, r"covar_module\.k2\.lengthscale|mean_module\.constant")
    with pytest.raises(ValueError, match="no pattern"):
        equalize(model, [])


def test_dtypes_must_agree_and_a_module_reachable_twice_is_one_member():
    with pytest.raises(ValueError, match=r"kernels\.0\.raw_lengthscale.*kernels\.1\.raw_lengthscale.*dtypes"):
        equalize(rbf() + rbf().double(), r"kernels\.\d\.lengthscale")
    k = rbf()
    twice = k + k
    priors = [n for n, *_ in twice.named_priors()]
    equalize(twice, r"kernels\.\d\.lengthscale")
    assert tied(twice) == [("kernels.0.raw_lengthscale",)]
    assert [n for n, *_ in twice.named_priors()] == priors and type(k) is gpytorch.kernels.RBFKernel


# --------------------------------------------------------------------------------------------- 5. priors


def test_keep_dist_false_counts_the_prior_once_and_true_keeps_every_prior():
    a = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    b = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(2.0, 1.0))
    a.lengthscale, b.lengthscale = 0.4, 0.9
    once, both = equalize(a + b, r"kernels\.\d\.lengthscale"), None
    value = torch.tensor(0.4)
    torch.testing.assert_close(log_prior(once).detach(), torch.distributions.Gamma(3.0, 6.0).log_prob(value))
    a2 = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    b2 = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(2.0, 1.0))
    a2.lengthscale, b2.lengthscale = 0.4, 0.9
    both = equalize(a2 + b2, r"kernels\.\d\.lengthscale", keep_dist=True)
    expected = torch.distributions.Gamma(3.0, 6.0).log_prob(value) + torch.distributions.Gamma(2.0, 1.0).log_prob(value)
    torch.testing.assert_close(log_prior(both).detach(), expected)
    assert len(list(both.named_priors())) == 2


def test_batched_prior_counted_once():
    k = rbf(torch.Size([4]), ard_num_dims=2)
    equalize(k, "lengthscale")
    expected = torch.distributions.Gamma(3.0, 6.0).log_prob(k.lengthscale[0].detach()).sum()
    torch.testing.assert_close(log_prior(k).detach(), expected)


# --------------------------------------------------------------------------------------------- 6. works with


def test_variational_elbo_training_equals_reference():
    x, y, _ = data(16)
    torch.manual_seed(0)
    kernels = [SumKernel(rbf(), rbf()), SharedSumKernel(rbf())]  # default starting values are equal
    models = [ApproxGP(x[:6].clone(), kernel).double() for kernel in kernels]
    equalize(models[0], TWO)
    for model in models:  # the variational distribution starts from a random draw on the first call
        torch.manual_seed(0)
        model(x)
    likelihoods = [gpytorch.likelihoods.GaussianLikelihood().double() for _ in models]
    opts = [torch.optim.Adam([*m.parameters(), *lik.parameters()], lr=0.05) for m, lik in zip(models, likelihoods)]
    mlls = [gpytorch.mlls.VariationalELBO(lik, m, num_data=16) for m, lik in zip(models, likelihoods)]
    for _ in range(10):
        losses = []
        for model, opt, mll in zip(models, opts, mlls):
            opt.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(models[0].covar_module.k2.lengthscale, models[1].covar_module.k.lengthscale)


def test_untied_checkpoint_takes_first_match_and_tied_loads_untied():
    untied = two_kernels()
    model = equalize(two_kernels(), TWO)
    with torch.no_grad():
        model.covar_module.k1.lengthscale = 0.5
    model.load_state_dict(untied.state_dict())
    for k in (model.covar_module.k1, model.covar_module.k2):
        torch.testing.assert_close(k.lengthscale, untied.covar_module.k1.lengthscale)  # 0.3, not k2's 0.7
    other = two_kernels()
    other.load_state_dict(model.state_dict())  # a tied checkpoint has the untied layout
    torch.testing.assert_close(other.covar_module.k2.lengthscale, untied.covar_module.k1.lengthscale)


def test_untied_batch_checkpoint_loads():
    k = rbf(torch.Size([3]), ard_num_dims=2)
    k.lengthscale = torch.tensor([[[0.2, 0.3]], [[0.4, 0.5]], [[0.6, 0.7]]])
    tied_k = equalize(rbf(torch.Size([3]), ard_num_dims=2), "lengthscale")
    tied_k.load_state_dict(k.state_dict())
    torch.testing.assert_close(tied_k.lengthscale, torch.tensor([0.2, 0.3]).expand(3, 1, 2))
    assert tied_k.state_dict()["raw_lengthscale"].shape == (3, 1, 2)


def test_pyro_sample_from_prior_one_site_per_group():
    pyro = pytest.importorskip("pyro")
    model = equalize(two_kernels(), TWO)
    trace = pyro.poutine.trace(model.pyro_sample_from_prior).get_trace()
    sites = sorted(n for n, s in trace.nodes.items() if s["type"] == "sample")
    expected = ["covar_module.k1.lengthscale_prior", "likelihood.noise_covar.noise_prior", "mean_module.mean_prior"]
    assert sites == expected
    sampled = trace.nodes["_RETURN"]["value"]
    value = trace.nodes["covar_module.k1.lengthscale_prior"]["value"]
    for k in (sampled.covar_module.k1, sampled.covar_module.k2):
        torch.testing.assert_close(k.lengthscale, value)
    assert model.covar_module.k1.raw_lengthscale is model.covar_module.k2.raw_lengthscale  # the model is untouched


def test_pyro_gradient_flows_through_every_member():
    pyro = pytest.importorskip("pyro")
    model = equalize(two_kernels(), TWO)
    value = torch.tensor([[0.6]], dtype=torch.float64, requires_grad=True)
    conditioned = pyro.poutine.condition(model.pyro_sample_from_prior, {"covar_module.k1.lengthscale_prior": value})
    sampled = conditioned()
    x = model.train_inputs[0]
    (grad,) = torch.autograd.grad(sampled.covar_module(x).to_dense().sum(), value)
    ref = shared_sum_gp(*data()[:2]).covar_module
    ref.k.lengthscale = 0.6
    ref.k.raw_lengthscale.requires_grad_(True)
    expected = torch.autograd.grad(ref(x).to_dense().sum(), ref.k.raw_lengthscale)[0]
    expected = expected / torch.sigmoid(ref.k.raw_lengthscale.detach())  # d raw / d lengthscale for softplus
    torch.testing.assert_close(grad, expected)


def test_pyro_keep_dist_observes_the_other_priors():
    pyro = pytest.importorskip("pyro")
    model = equalize(two_kernels(), TWO, keep_dist=True)
    trace = pyro.poutine.trace(model.pyro_sample_from_prior).get_trace()
    site = trace.nodes["covar_module.k2.lengthscale_prior"]
    assert site["is_observed"] and not trace.nodes["covar_module.k1.lengthscale_prior"]["is_observed"]
    torch.testing.assert_close(site["value"], trace.nodes["covar_module.k1.lengthscale_prior"]["value"])
    samples = {"covar_module.k1.lengthscale_prior": torch.rand(4, 1, 1, dtype=torch.float64) + 0.1}
    samples["mean_module.mean_prior"] = torch.zeros(4, dtype=torch.float64)
    samples["likelihood.noise_covar.noise_prior"] = torch.full((4, 1), 0.1, dtype=torch.float64)
    model.pyro_load_from_samples(samples)
    torch.testing.assert_close(model.covar_module.k2.lengthscale, samples["covar_module.k1.lengthscale_prior"])


@pytest.mark.slow
def test_pyro_nuts_one_site_per_group():
    pyro = pytest.importorskip("pyro")
    model = equalize(two_kernels(), TWO)
    x, y = model.train_inputs[0], model.train_targets

    def pyro_model(x, y):
        with gpytorch.settings.fast_computations(False, False, False):
            sampled = model.pyro_sample_from_prior()
            pyro.sample("obs", sampled.likelihood(sampled(x)), obs=y)

    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(pyro.infer.NUTS(pyro_model), num_samples=10, warmup_steps=10, disable_progbar=True)
    mcmc.run(x, y)
    samples = mcmc.get_samples()
    assert "covar_module.k1.lengthscale_prior" in samples and "covar_module.k2.lengthscale_prior" not in samples
    model.pyro_load_from_samples(samples)
    assert model.covar_module.k2.lengthscale.shape == (10, 1, 1)
    torch.testing.assert_close(model.covar_module.k2.lengthscale, samples["covar_module.k1.lengthscale_prior"])


# --------------------------------------------------------------------------------------------- 7. untie, tied


def test_untie_restores_independent_parameters_and_priors():
    model = two_kernels()
    priors_before = [n for n, *_ in model.named_priors()]
    equalize(model, TWO)
    equalize(model, r"likelihood\.noise_covar\.noise")
    untie(model, r"covar_module\.k2\.lengthscale")
    assert tied(model) == [("likelihood.noise_covar.raw_noise",)]
    assert [n for n, *_ in model.named_priors()] == priors_before  # order too
    k1, k2 = model.covar_module.k1, model.covar_module.k2
    assert k1.raw_lengthscale is not k2.raw_lengthscale
    torch.testing.assert_close(k2.lengthscale, k1.lengthscale)  # starts from the shared value
    untie(model)
    assert tied(model) == [] and len(list(model.parameters())) == 4
    with pytest.raises(ValueError, match="matches no parameter"):
        untie(model, "covar_module.k1.lengthscale")


def test_untie_batch_restores_full_shape_and_class():
    k = rbf(torch.Size([3]), ard_num_dims=2)
    cls, hooks = type(k), dict(k._load_state_dict_pre_hooks)
    attributes = set(vars(k))
    equalize(k, "lengthscale")
    untie(k)
    assert type(k) is cls and k.raw_lengthscale.shape == (3, 1, 2) and k.raw_lengthscale.is_leaf
    assert not k._state_dict_hooks and dict(k._load_state_dict_pre_hooks) == hooks
    assert set(vars(k)) == attributes  # no hook handle, tie record or entry point left on the instance


# --------------------------------------------------------------------------------------------- 8. docs


def test_docstring_example_runs():
    result = doctest.testmod(equalize_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
