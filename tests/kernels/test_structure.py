"""GPyTorch's structure kernels around KeOps kernels, with KeOps really running: who computes what, and training.

References: the same structure kernels around GPyTorch's dense kernels (same parameters), and, for the additive
and product structure, the dense per-dimension matrices summed or multiplied by hand.
"""

from __future__ import annotations

from unittest import mock

import gpytorch
import pytest
import torch
from gpytorch.kernels import keops as gk
from linear_operator.operators import LinearOperator

from gpytorch_ext.testing.keops import keops_reductions, randomize, real_keops

D = 3  # the same formulas as the RBF case of the battery: compiled once


def _data(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _structures():
    return {
        "additive": lambda k: gpytorch.kernels.AdditiveStructureKernel(k, num_dims=D),
        "product": lambda k: gpytorch.kernels.ProductStructureKernel(k, num_dims=D),
        "kiss-gp": lambda k: gpytorch.kernels.GridInterpolationKernel(k, grid_size=6, num_dims=D),
    }


def _pair(name):
    wrap = _structures()[name]
    keops = wrap(randomize(gk.RBFKernel(ard_num_dims=D))).double()
    dense = wrap(gpytorch.kernels.RBFKernel(ard_num_dims=D)).double()
    dense.load_state_dict(keops.state_dict())
    return keops, dense


def _by_hand(name, dense, x):
    base = dense.base_kernel
    with torch.no_grad():
        per_dim = torch.stack([_rbf(base.lengthscale[..., d], x[:, d : d + 1]) for d in range(D)])  # D x N x N
    return per_dim.sum(0) if name == "additive" else per_dim.prod(0)


def _rbf(lengthscale, x):
    return torch.exp(-0.5 * ((x - x.T) / lengthscale) ** 2)


@pytest.mark.parametrize("name", ["additive", "product"])
def test_additive_and_product_structure_are_one_keops_reduction(name):
    keops, dense = _pair(name)
    x, rhs = _data(200, D), _data(200, 1, seed=1)
    want = _by_hand(name, dense, x) @ rhs
    with torch.no_grad():
        torch.testing.assert_close(dense(x) @ rhs, want, rtol=1e-10, atol=1e-12)  # the dense twin agrees
    roots = mock.patch.object(LinearOperator, "root_decomposition", side_effect=AssertionError("Lanczos roots"))
    with real_keops() as spy, keops_reductions() as reductions, roots, torch.no_grad():
        got = keops(x) @ rhs
    # the N x N reduction over all D dimensions is one KeOps call (a batch of D reductions for the sum)
    assert reductions.call_count == 1 and spy.call_count >= 2
    assert ((got - want).norm() / want.norm()).item() <= 1e-8


@pytest.mark.parametrize("toeplitz", [True, False], ids=["toeplitz", "dense-grid"])
def test_kiss_gp_grid_kernel_is_computed_by_keops(toeplitz):
    keops, dense = _pair("kiss-gp")
    x, rhs = _data(150, D), _data(150, 2, seed=1)
    with gpytorch.settings.use_toeplitz(toeplitz), torch.no_grad():
        want = dense(x) @ rhs
        with real_keops(), keops_reductions() as reductions:
            got = keops(x) @ rhs
    # the grid kernel (D x 1 x G with Toeplitz structure, D x G x G without) is what KeOps computes
    assert reductions.call_count >= 1
    assert ((got - want).norm() / want.norm()).item() <= 1e-8


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, kernel):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(kernel)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _train(kernel, x, y, steps=5):
    torch.manual_seed(0)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    model = _ExactGP(x, y, likelihood, kernel).double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    with gpytorch.settings.max_cholesky_size(0):
        for _ in range(steps):
            opt.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return torch.tensor(losses), torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["additive", "product", "kiss-gp"])
def test_training_follows_the_dense_twin(name):
    x = _data(120, D, seed=2)
    y = torch.sin(4 * x[:, 0]) * torch.cos(3 * x[:, 1]) + x[:, 2] + 0.05 * torch.randn(120, dtype=torch.float64)
    keops, dense = _pair(name)
    with real_keops():
        losses, params = _train(keops, x, y)
    dense_losses, dense_params = _train(dense, x, y)
    assert losses[-1] < losses[0]
    torch.testing.assert_close(losses, dense_losses, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(params, dense_params, rtol=1e-6, atol=1e-6)
