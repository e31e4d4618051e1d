"""Small GP models for the tying tests: each with separate parameters, and written by hand with one shared."""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.priors import GammaPrior, NormalPrior

NO_BATCH = torch.Size()


class SumKernel(gpytorch.kernels.Kernel):
    """``k1(x[..., :1]) + k2(x[..., 1:])`` with the two kernels as direct children (Pyro-friendly)."""

    def __init__(self, k1: gpytorch.kernels.Kernel, k2: gpytorch.kernels.Kernel):
        super().__init__()
        self.k1, self.k2 = k1, k2

    def forward(self, x1, x2, diag=False, **params):
        return self.k1(x1[..., :1], x2[..., :1], diag=diag) + self.k2(x1[..., 1:], x2[..., 1:], diag=diag)


class SharedSumKernel(gpytorch.kernels.Kernel):
    """The reference: one kernel (one lengthscale, one prior) used for both input dimensions."""

    def __init__(self, k: gpytorch.kernels.Kernel):
        super().__init__()
        self.k = k

    def forward(self, x1, x2, diag=False, **params):
        return self.k(x1[..., :1], x2[..., :1], diag=diag) + self.k(x1[..., 1:], x2[..., 1:], diag=diag)


def rbf(batch_shape: torch.Size = NO_BATCH, **kwargs) -> gpytorch.kernels.RBFKernel:
    return gpytorch.kernels.RBFKernel(batch_shape=batch_shape, lengthscale_prior=GammaPrior(3.0, 6.0), **kwargs)


class ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, covar_module, batch_shape=NO_BATCH):
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(1.1, 10.0), noise_constraint=gpytorch.constraints.Positive(), batch_shape=batch_shape
        )
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean(constant_prior=NormalPrior(0.0, 1.0), batch_shape=batch_shape)
        self.covar_module = covar_module

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def sum_gp(x, y) -> ExactGP:
    """Separate lengthscales (to be tied): ``covar_module.k1`` and ``covar_module.k2``."""
    return ExactGP(x, y, SumKernel(rbf(), rbf())).double()


def shared_sum_gp(x, y) -> ExactGP:
    return ExactGP(x, y, SharedSumKernel(rbf())).double()


class ApproxGP(gpytorch.models.ApproximateGP):
    def __init__(self, inducing, covar_module):
        distribution = gpytorch.variational.CholeskyVariationalDistribution(inducing.size(-2))
        strategy = gpytorch.variational.VariationalStrategy(self, inducing, distribution, learn_inducing_locations=True)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = covar_module

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def data(n: int = 12, batch_shape: torch.Size = NO_BATCH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(*batch_shape, n, 2, generator=generator, dtype=torch.float64)
    y = torch.sin(3 * x[..., 0]) + torch.cos(2 * x[..., 1]) + 0.05 * torch.randn(*batch_shape, n, generator=generator)
    test_x = torch.rand(*batch_shape, 5, 2, generator=generator, dtype=torch.float64)
    return x, y.double(), test_x


def rbf_without_prior(batch_shape: torch.Size = NO_BATCH, **kwargs) -> gpytorch.kernels.RBFKernel:
    return gpytorch.kernels.RBFKernel(batch_shape=batch_shape, **kwargs)


def two_gps(x, y, second_kernel=rbf) -> gpytorch.models.IndependentModelList:
    """Two GPs on ``y`` and ``2 y``, each with its own kernel (lengthscales to be tied across the models)."""
    return gpytorch.models.IndependentModelList(ExactGP(x, y, rbf()), ExactGP(x, 2 * y, second_kernel())).double()


def two_gps_sharing(x, y) -> gpytorch.models.IndependentModelList:
    """The reference: the second GP holds the first one's lengthscale parameter and no lengthscale prior."""
    model = two_gps(x, y, rbf_without_prior)
    first, second = (m.covar_module for m in model.models)
    second.raw_lengthscale = first.raw_lengthscale
    return model
