"""The iterative path (CG / stochastic Lanczos, above ``max_cholesky_size``): one solve with many columns."""

from __future__ import annotations

from unittest import mock

import gpytorch
import torch
from linear_operator.operators import LinearOperator
from torch.distributions import MultivariateNormal as TorchMVN

F64 = torch.float64


def _kernel_covariance(batch=()):
    x = torch.linspace(0, 5, 60, dtype=F64).expand(*batch, 60).unsqueeze(-1)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size(batch)).to(F64)
    return kernel(x).add_diagonal(torch.tensor(0.1, dtype=F64))


def _spy_inv_quad_logdet():
    calls = []
    original = LinearOperator.inv_quad_logdet

    def spy(self, inv_quad_rhs=None, logdet=False, reduce_inv_quad=True):
        inv_quad, logdet_term = original(self, inv_quad_rhs, logdet, reduce_inv_quad)
        calls.append((tuple(inv_quad_rhs.shape), tuple(logdet_term.shape)))
        return inv_quad, logdet_term

    return calls, mock.patch.object(LinearOperator, "inv_quad_logdet", spy)


def test_one_solve_with_one_column_per_value_and_one_logdet():
    covar = _kernel_covariance(batch=(1,))
    values = torch.randn(4, 4, 60, dtype=F64, generator=torch.Generator().manual_seed(0))
    dist = gpytorch.distributions.MultivariateNormal(torch.zeros(60, dtype=F64), covar)
    calls, spy = _spy_inv_quad_logdet()
    with gpytorch.settings.max_cholesky_size(0), torch.no_grad(), spy:
        result = dist.log_prob(values)
    assert result.shape == (4, 4)
    assert calls == [((1, 60, 16), (1,))], calls


def test_identical_covariances_identical_logdets_and_differences_match_torch():
    covar = _kernel_covariance()
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(8, 60, dtype=F64, generator=gen)
    values = torch.cat([values, values[:1].expand(8, 60)])  # rows 8..15 equal row 0
    dist = gpytorch.distributions.MultivariateNormal(torch.zeros(60, dtype=F64), covar)
    with gpytorch.settings.max_cholesky_size(0), gpytorch.settings.eval_cg_tolerance(1e-8), torch.no_grad():
        torch.manual_seed(0)
        result = dist.log_prob(values)
    # one log-determinant for the whole batch: identical values give identical densities (up to BLAS rounding)
    torch.testing.assert_close(result[8:], result[0].expand(8), rtol=1e-8, atol=0)
    # and the stochastic logdet cancels in differences, which match torch's to the CG tolerance
    reference = TorchMVN(torch.zeros(60, dtype=F64), covar.to_dense()).log_prob(values)
    torch.testing.assert_close(result - result[0], reference - reference[0], rtol=1e-5, atol=1e-5)


def test_iterative_gradients_flow_to_hyperparameters():
    kernel = gpytorch.kernels.RBFKernel().to(F64)
    x = torch.linspace(0, 5, 60, dtype=F64).unsqueeze(-1)
    values = torch.randn(3, 60, dtype=F64, generator=torch.Generator().manual_seed(2))
    with gpytorch.settings.max_cholesky_size(0):
        covar = kernel(x).add_diagonal(torch.tensor(0.1, dtype=F64))
        gpytorch.distributions.MultivariateNormal(torch.zeros(60, dtype=F64), covar).log_prob(values).sum().backward()
    grad = kernel.raw_lengthscale.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
