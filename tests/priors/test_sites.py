"""Which parameter a prior governs: found from the closure's autograd graph, never from names."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan, Positive
from gpytorch.priors import GammaPrior, NormalPrior

from gpytorch_ext.priors._sites import resolve, unique_sites

from ._models import fully_bayesian_model, module_twice_model, shared_prior_model

pytestmark = pytest.mark.filterwarnings("ignore:.*of the prior's mass lies outside")


def test_a_property_read_through_a_child_module_finds_the_childs_parameter():
    """GPyTorch's tutorial registers the noise prior on the likelihood, by the property name ``noise``."""
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    likelihood.register_prior("noise_prior", GammaPrior(0.5, 2.0), "noise")
    site = resolve(likelihood, "noise_prior")
    assert site.parameter is likelihood.noise_covar.raw_noise
    assert site.parameter_name == "noise_covar.raw_noise" and site.owner is likelihood.noise_covar
    assert site.constraint is likelihood.noise_covar.raw_noise_constraint
    assert site.shape == likelihood.noise.shape


@pytest.mark.parametrize(
    "register",
    [
        lambda k: k.register_prior("p", GammaPrior(3.0, 6.0), "lengthscale"),  # by property name
        lambda k: k.register_prior("p", GammaPrior(3.0, 6.0), lambda m: m.lengthscale, lambda m, v: None),
        lambda k: k.register_prior("p", GammaPrior(3.0, 6.0), lambda m: m.lengthscale.clone(), lambda m, v: None),
    ],
    ids=["by-name", "closure", "closure-of-a-copy"],
)
def test_every_way_of_reading_the_constrained_value_is_the_constrained_parameter(register):
    kernel = gpytorch.kernels.RBFKernel(ard_num_dims=3)
    register(kernel)
    site = resolve(kernel, "p")
    assert site.parameter is kernel.raw_lengthscale and site.constraint is kernel.raw_lengthscale_constraint


def test_other_functions_of_the_parameter_are_not_under_its_constraint():
    kernel = gpytorch.kernels.RBFKernel()
    kernel.register_prior("log_prior", NormalPrior(0.0, 1.0), lambda m: m.lengthscale.log(), lambda m, v: None)
    kernel.register_prior("raw_prior", NormalPrior(0.0, 1.0), "raw_lengthscale")  # the unconstrained raw value
    for name in ("log_prior", "raw_prior"):
        site = resolve(kernel, name)
        assert site.parameter is kernel.raw_lengthscale, name
        assert site.constraint is None, name


def test_an_unenforced_constraint_is_found_on_the_raw_value():
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(1e-4, transform=None))
    likelihood.register_prior("noise_prior", GammaPrior(1.1, 0.05), "noise")
    site = resolve(likelihood, "noise_prior")
    assert site.constraint is likelihood.noise_covar.raw_noise_constraint and not site.constraint.enforced


def test_a_closure_of_two_parameters_governs_no_single_parameter():
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    kernel.register_prior(
        "ratio_prior", GammaPrior(2.0, 1.0), lambda m: m.outputscale / m.base_kernel.lengthscale, lambda m, v: None
    )
    site = resolve(kernel, "ratio_prior")
    assert site.parameter is None and site.constraint is None and site.shape == torch.Size([1, 1])


def test_frozen_parameters_are_found_and_stay_frozen():
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(1.1, 0.05))
    likelihood.noise_covar.raw_noise.requires_grad_(False)
    site = resolve(likelihood.noise_covar, "noise_prior")
    assert site.parameter is likelihood.noise_covar.raw_noise and site.constraint is not None
    assert not likelihood.noise_covar.raw_noise.requires_grad


def test_resolution_works_under_no_grad_and_leaves_no_graph():
    kernel = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    with torch.no_grad():
        site = resolve(kernel, "lengthscale_prior")
    assert site.parameter is kernel.raw_lengthscale
    assert kernel.raw_lengthscale.grad is None


def test_a_closure_that_fails_gives_a_site_without_parameter():
    kernel = gpytorch.kernels.RBFKernel()
    kernel.register_prior("broken_prior", GammaPrior(1.0, 1.0), lambda m: m.no_such_thing, lambda m, v: None)
    site = resolve(kernel, "broken_prior")
    assert site.parameter is None and site.shape is None


# --- one site per (parameter, prior) -----------------------------------------------------------------


def test_a_module_reachable_twice_is_one_site():
    model, rbf = module_twice_model()
    sites = unique_sites(model)
    assert [s.name for s in sites] == ["covar_module.kernels.0.lengthscale_prior"]
    assert sites[0].parameter is rbf.raw_lengthscale
    assert sites[0].parameter_name == "covar_module.kernels.0.raw_lengthscale"


@pytest.mark.parametrize("shared", [True, False])
def test_one_prior_object_on_two_modules_is_two_sites(shared):
    model = shared_prior_model(shared)
    names = [s.name for s in unique_sites(model)]
    assert names == [
        "likelihood.noise_covar.noise_prior",
        "covar_module.outputscale_prior",
        "covar_module.base_kernel.kernels.0.lengthscale_prior",
        "covar_module.base_kernel.kernels.1.lengthscale_prior",
    ]


def test_one_prior_object_on_one_hand_shared_parameter_is_one_site_two_priors_are_two():
    k1 = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    k2 = gpytorch.kernels.RBFKernel(lengthscale_prior=k1.lengthscale_prior)
    k2.raw_lengthscale = k1.raw_lengthscale  # one nn.Parameter under two names
    assert len(unique_sites(k1 + k2)) == 1
    k3 = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    k3.raw_lengthscale = k1.raw_lengthscale  # the same parameter, another prior object: both are kept
    assert len(unique_sites(k1 + k3)) == 2


def test_the_tutorial_model_resolves_every_prior_to_its_parameter():
    model = fully_bayesian_model()
    by_name = {s.name: s for s in unique_sites(model)}
    assert {name: s.parameter_name for name, s in by_name.items()} == {
        "likelihood.noise_prior": "likelihood.noise_covar.raw_noise",
        "mean_module.mean_prior": "mean_module.raw_constant",
        "covar_module.outputscale_prior": "covar_module.raw_outputscale",
        "covar_module.base_kernel.lengthscale_prior": "covar_module.base_kernel.raw_lengthscale",
    }
    assert by_name["mean_module.mean_prior"].constraint is None  # an unconstrained parameter
    assert isinstance(by_name["covar_module.outputscale_prior"].constraint, Positive)
