"""End to end with KeOps really running (spied): exact GP training and fast_pred_var, and an LMC variational GP.

References: the same models with GPyTorch's dense kernels, same seeds and settings.
"""

from __future__ import annotations

import gpytorch
import pytest
import torch
from gpytorch.kernels import keops as gk

from gpytorch_ext.testing.keops import real_keops

pytestmark = pytest.mark.slow


def _adam_losses(mll, model, x, y, params, steps: int) -> list[float]:
    """``steps`` Adam steps on ``-mll(model(x), y)`` with KeOps engaged (``max_cholesky_size(0)``); the losses."""
    opt = torch.optim.Adam(params, lr=0.05)
    losses = []
    with gpytorch.settings.max_cholesky_size(0):
        for _ in range(steps):
            opt.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def _data(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, ns):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(ns.RBFKernel() * ns.PeriodicKernel()) + ns.MaternKernel(
            nu=1.5, active_dims=[1]
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _train_exact(ns, x, y, steps=20):
    torch.manual_seed(0)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    model = _ExactGP(x, y, likelihood, ns).double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    model.train()
    losses = _adam_losses(mll, model, x, y, model.parameters(), steps)
    return model, likelihood, torch.tensor(losses)


def test_exact_gp_fused_keops_follows_dense_trajectory_and_predicts():
    x = _data(120, 2)
    y = torch.sin(6 * x[:, 0]) + torch.cos(4 * x[:, 1]) + 0.05 * torch.randn(120, dtype=torch.float64)
    with real_keops():
        model, likelihood, losses = _train_exact(gk, x, y)
    dense_model, dense_likelihood, dense_losses = _train_exact(gpytorch.kernels, x, y)
    torch.testing.assert_close(losses, dense_losses, rtol=1e-6, atol=1e-6)
    assert losses[-1] < losses[0]

    # (c) fast_pred_var predictions with KeOps running (iterative solves made tight), against the dense
    # model's exact (Cholesky) predictions
    test_x = _data(30, 2, seed=5)
    model.eval(), likelihood.eval(), dense_model.eval(), dense_likelihood.eval()
    with torch.no_grad():
        want = dense_likelihood(dense_model(test_x))
        with (
            gpytorch.settings.fast_pred_var(),
            gpytorch.settings.max_cholesky_size(0),
            gpytorch.settings.eval_cg_tolerance(1e-10),
            gpytorch.settings.max_cg_iterations(1000),
            gpytorch.settings.max_root_decomposition_size(400),
            real_keops(),
        ):
            pred = likelihood(model(test_x))
    assert torch.isfinite(pred.variance).all() and (pred.variance > 0).all()
    torch.testing.assert_close(pred.mean, want.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pred.variance, want.variance, rtol=1e-3, atol=1e-4)


class _LMC(gpytorch.models.ApproximateGP):
    def __init__(self, kernel_class):
        inducing = _data(3, 16, 1, seed=3)
        dist = gpytorch.variational.CholeskyVariationalDistribution(16, batch_shape=torch.Size([3]))
        base = gpytorch.variational.VariationalStrategy(self, inducing, dist, learn_inducing_locations=True)
        strategy = gpytorch.variational.LMCVariationalStrategy(base, num_tasks=4, num_latents=3, latent_dim=-1)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=torch.Size([3]))
        self.covar_module = gpytorch.kernels.ScaleKernel(
            kernel_class(nu=2.5, batch_shape=torch.Size([3])), batch_shape=torch.Size([3])
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _train_lmc(kernel_class, x, y, steps=20):
    torch.manual_seed(0)
    model = _LMC(kernel_class).double()
    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=4).double()
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=y.size(0))
    losses = _adam_losses(mll, model, x, y, [*model.parameters(), *likelihood.parameters()], steps)
    with gpytorch.settings.max_cholesky_size(0):
        model.eval(), likelihood.eval()
        with torch.no_grad():
            variance = likelihood(model(_data(25, 1, seed=9))).variance
    return torch.tensor(losses), variance


def _lmc_data():
    x = _data(40, 1, seed=4)
    y = torch.cat([torch.sin(6 * x + k) for k in range(4)], dim=-1)
    return x, y


def test_lmc_variational_gp_crashes_upstream(upstream):
    x, y = _lmc_data()
    with upstream("keops-kernels"), pytest.raises(TypeError, match="LazyTensor"):
        _train_lmc(gk.MaternKernel, x, y, steps=1)


def test_lmc_variational_gp_with_keops_matern_trains_and_predicts():
    x, y = _lmc_data()
    with real_keops():
        losses, variance = _train_lmc(gk.MaternKernel, x, y)
    dense_losses, dense_variance = _train_lmc(gpytorch.kernels.MaternKernel, x, y)
    assert variance.shape == (25, 4) and torch.isfinite(variance).all() and (variance > 0).all()
    assert losses[-1] < losses[0]
    torch.testing.assert_close(losses, dense_losses, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(variance, dense_variance, rtol=1e-6, atol=1e-6)
