"""Small GPyTorch models shared by the prior tests."""

from __future__ import annotations

import math

import gpytorch
import torch
from gpytorch.priors import GammaPrior


class ExactGPModel(gpytorch.models.ExactGP):
    """The shape of GPyTorch's fully Bayesian GP example: constant mean, scaled RBF kernel, Gaussian likelihood."""

    def __init__(self, train_x, train_y, likelihood, lengthscale_prior=None, outputscale_prior=None, **kernel_kwargs):
        super().__init__(train_x, train_y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(lengthscale_prior=lengthscale_prior, **kernel_kwargs),
            outputscale_prior=outputscale_prior,
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def data(n: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, n)
    y = torch.sin(2 * math.pi * x) + 0.1 * torch.randn(n, generator=gen)
    return x, y


def gamma_model(n: int = 20, noise_prior=None) -> ExactGPModel:
    """Gamma priors on lengthscale, outputscale and noise, GPyTorch's default constraints."""
    x, y = data(n)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_prior=noise_prior or GammaPrior(1.1, 0.5))
    return ExactGPModel(
        x, y, likelihood, lengthscale_prior=GammaPrior(3.0, 6.0), outputscale_prior=GammaPrior(2.0, 0.15)
    )


class GP(gpytorch.models.ExactGP):
    """A zero-mean exact GP around any covariance module."""

    def __init__(self, x, y, covar_module, likelihood=None, mean_module=None):
        super().__init__(x, y, likelihood or gpytorch.likelihoods.GaussianLikelihood())
        self.mean_module = mean_module or gpytorch.means.ZeroMean()
        self.covar_module = covar_module

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def shared_prior_model(shared: bool = True, n: int = 20, dtype: torch.dtype = torch.float64) -> GP:
    """``ScaleKernel(RBF(dim 0) * RBF(dim 1))`` whose two lengthscales get one prior object (``shared``) or two."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, generator=gen, dtype=dtype)
    y = torch.sin(6 * x[:, 0]) + 0.5 * x[:, 1] + 0.05 * torch.randn(n, generator=gen, dtype=dtype)
    p1 = GammaPrior(3.0, 6.0)
    p2 = p1 if shared else GammaPrior(3.0, 6.0)
    covar = gpytorch.kernels.ScaleKernel(
        gpytorch.kernels.RBFKernel(active_dims=[0], lengthscale_prior=p1)
        * gpytorch.kernels.RBFKernel(active_dims=[1], lengthscale_prior=p2),
        outputscale_prior=GammaPrior(2.0, 0.5),
    )
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=GammaPrior(1.1, 10.0), noise_constraint=gpytorch.constraints.Positive()
    )
    return GP(x, y, covar, likelihood).to(dtype)


def module_twice_model(n: int = 10, dtype: torch.dtype = torch.float64) -> tuple[GP, gpytorch.kernels.RBFKernel]:
    """``rbf + rbf * periodic``: one RBF module (and its lengthscale prior) reachable on two paths."""
    x = torch.linspace(0, 1, n, dtype=dtype).unsqueeze(-1)
    y = torch.sin(6 * x[:, 0])
    rbf = gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0))
    return GP(x, y, rbf + rbf * gpytorch.kernels.PeriodicKernel()).to(dtype), rbf


class FullyBayesianGP(gpytorch.models.ExactGP):
    """GPyTorch's ``GP_Regression_Fully_Bayesian`` example: priors registered with ``register_prior``."""

    def __init__(self, train_x, train_y, likelihood):
        super().__init__(train_x, train_y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def fully_bayesian_model(n: int = 12, dtype: torch.dtype = torch.float64) -> FullyBayesianGP:
    """The tutorial's model and priors (``UniformPrior`` mean, Gamma priors on noise, lengthscale, outputscale),
    the noise prior registered on the likelihood by its property name ``"noise"``."""
    x = torch.linspace(0, 1, n, dtype=dtype)
    y = torch.sin(2 * math.pi * x) + 0.2 * torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=dtype)
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = FullyBayesianGP(x, y, likelihood)
    model.mean_module.register_prior("mean_prior", gpytorch.priors.UniformPrior(-1, 1), "constant")
    model.covar_module.base_kernel.register_prior("lengthscale_prior", GammaPrior(3.0, 6.0), "lengthscale")
    model.covar_module.register_prior("outputscale_prior", GammaPrior(2.0, 0.15), "outputscale")
    likelihood.register_prior("noise_prior", GammaPrior(0.5, 2.0), "noise")
    return model.to(dtype)
