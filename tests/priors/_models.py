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
