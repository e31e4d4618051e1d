"""Each upstream defect, reproduced with the patch reverted and shown fixed with it applied.

Under ``--impl=source`` (no stock GPyTorch) only the checks of the repaired behaviour run.
"""

from __future__ import annotations

import gpytorch
import pytest
import torch
from linear_operator.operators import DenseLinearOperator
from torch.distributions import MultivariateNormal as TorchMVN

from gpytorch_ext.testing.covariances import spy_linear_algebra

F64 = torch.float64


def _issue_example():
    """The issue's example: mean of batch shape (1,), kernel covariance (2,), value (1,)."""
    torch.manual_seed(0)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])).to(F64)
    covar = kernel(torch.rand(2, 4, 1, dtype=F64)).add_jitter(0.1)
    mean = torch.zeros(1, 4, dtype=F64)
    value = torch.randn(1, 4, dtype=F64)
    return mean, covar, value


def test_issue_example_batch_shapes(stock):
    mean, covar, value = _issue_example()
    reference = TorchMVN(mean, covar.to_dense()).log_prob(value)
    if stock:
        with stock("mvn-log-prob", "mvn-batch"), pytest.raises(RuntimeError, match="cannot be multiplied"):
            gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(value)
    got = gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(value)
    assert got.shape == reference.shape == torch.Size([2])
    torch.testing.assert_close(got, reference, rtol=1e-8, atol=1e-10)


def test_shared_covariance_is_repeated_upstream_and_factorised_once_patched(stock):
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=F64)
    covar = DenseLinearOperator(a @ a.T + torch.eye(6, dtype=F64))
    values = torch.randn(16, 6, dtype=F64)
    dist = gpytorch.distributions.MultivariateNormal(torch.zeros(6, dtype=F64), covar)
    if stock:
        with stock("mvn-log-prob", "mvn-batch"), spy_linear_algebra() as calls:
            dist.log_prob(values)
        assert calls["repeat"], "upstream no longer repeats the covariance"
    with spy_linear_algebra() as calls:
        got = dist.log_prob(values)
    assert calls["repeat"] == [] and calls["cholesky"] == [(6, 6)]
    torch.testing.assert_close(got, TorchMVN(torch.zeros(6, dtype=F64), covar.to_dense()).log_prob(values))


def test_multitask_non_interleaved_value_order(stock):
    """Upstream reshapes an N x T value with ``view(T, N)``: wrong whenever N != T."""
    torch.manual_seed(0)
    n, t = 3, 2
    a = torch.randn(n * t, n * t, dtype=F64)
    covar = a @ a.T + torch.eye(n * t, dtype=F64)
    mean, value = torch.randn(n, t, dtype=F64), torch.randn(n, t, dtype=F64)
    reference = TorchMVN(mean.T.reshape(-1), covar).log_prob(value.T.reshape(-1))
    dist = gpytorch.distributions.MultitaskMultivariateNormal(mean, DenseLinearOperator(covar), interleaved=False)
    if stock:
        with stock("mvn-log-prob", "mvn-batch"):
            wrong = dist.log_prob(value)
        assert not torch.allclose(wrong, reference)
    torch.testing.assert_close(dist.log_prob(value), reference, rtol=1e-8, atol=1e-10)
