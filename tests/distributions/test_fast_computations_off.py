"""``fast_computations(log_prob=False)``, the default BoTorch sets at import: torch's algorithm, batch-safe.

A diagonal covariance stays in closed form there too: no `N x N` Cholesky factor is formed.
"""

from __future__ import annotations

from unittest import mock

import gpytorch
import pytest
import torch
from linear_operator.operators import ConstantDiagLinearOperator, DiagLinearOperator, LinearOperator
from torch.distributions import Independent, Normal

F64 = torch.float64


def _diag(kind: str, n: int, batch: tuple[int, ...]) -> tuple[object, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    if kind == "diag":
        var = torch.rand(*batch, n, dtype=F64, generator=g) + 0.5
        return DiagLinearOperator(var), var
    var = torch.rand(*batch, 1, dtype=F64, generator=g) + 0.5
    return ConstantDiagLinearOperator(var, diag_shape=n), var.expand(*batch, n)


@pytest.mark.parametrize("kind", ["diag", "constant"])
def test_diagonal_covariance_is_closed_form_without_fast_log_prob(kind):
    n = 3000
    covar, var = _diag(kind, n, (2,))
    mean = torch.randn(n, dtype=F64)
    value = torch.randn(5, 1, n, dtype=F64)
    dist = gpytorch.distributions.MultivariateNormal(mean, covar)
    expected = Independent(Normal(mean, var.sqrt()), 1).log_prob(value)
    with (
        gpytorch.settings.fast_computations(log_prob=False),
        mock.patch.object(LinearOperator, "to_dense", side_effect=AssertionError("formed an N x N matrix")),
        mock.patch.object(type(covar), "to_dense", side_effect=AssertionError("formed an N x N matrix")),
        mock.patch.object(torch.linalg, "cholesky", side_effect=AssertionError("N x N Cholesky")),
        mock.patch.object(torch.linalg, "solve_triangular", side_effect=AssertionError("N x N solve")),
    ):
        got = dist.log_prob(value)
    assert got.shape == (5, 2)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_dense_covariance_without_fast_log_prob_matches_torch_on_broadcast_shapes():
    n = 6
    g = torch.Generator().manual_seed(4)
    root = torch.randn(2, n, n, dtype=F64, generator=g)
    cov = root @ root.mT + torch.eye(n, dtype=F64)
    x = torch.linspace(0, 1, n, dtype=F64).unsqueeze(-1)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])).double()
    lazy = kernel(x.expand(2, n, 1)).add_jitter(0.1)
    mean = torch.zeros(1, n, dtype=F64)
    value = torch.randn(3, 1, n, dtype=F64, generator=g)
    with gpytorch.settings.fast_computations(log_prob=False):
        for covariance in (cov, lazy):
            got = gpytorch.distributions.MultivariateNormal(mean, covariance).log_prob(value)
            dense = covariance if isinstance(covariance, torch.Tensor) else covariance.to_dense()
            want = torch.distributions.MultivariateNormal(mean, dense.detach()).log_prob(value)
            assert got.shape == want.shape == (3, 2)
            torch.testing.assert_close(got.detach(), want, rtol=1e-8, atol=0)
