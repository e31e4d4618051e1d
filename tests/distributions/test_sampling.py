"""Sampling a lazy normal whose mean and covariance batch shapes differ (issue 15's examples), and upstream's numbers
wherever upstream was right."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from linear_operator.operators import DenseLinearOperator

from gpytorch_ext.testing.covariances import spy_linear_algebra

F64 = torch.float64


def _kernel(batch=()):
    x = torch.linspace(0, 1, 6, dtype=F64).unsqueeze(-1)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size(batch)).to(F64)
    with torch.no_grad():
        kernel.lengthscale = torch.full((*batch, 1, 1), 0.4, dtype=F64)
    return kernel(x).add_jitter(1e-4)


def test_batch_kernel_with_a_shared_mean(stock):
    """The batch-GP prior: mean (n,), covariance (2, n, n)."""
    dist = gpytorch.distributions.MultivariateNormal(torch.zeros(6, dtype=F64), _kernel((2,)))
    if stock:
        with stock("mvn-batch"), pytest.raises(RuntimeError, match="invalid for input"):
            dist.sample()
    assert dist.sample().shape == (2, 6) and dist.rsample(torch.Size([3])).shape == (3, 2, 6)
    assert dist.mean.shape == (2, 6) and dist[1].mean.shape == (6,) and dist[1].covariance_matrix.shape == (6, 6)
    assert dist[..., :3].covariance_matrix.shape == (2, 3, 3)


def test_batch_mean_with_a_shared_kernel_draws_independent_noise(stock):
    dist = gpytorch.distributions.MultivariateNormal(torch.zeros(2, 6, dtype=F64), _kernel())
    torch.manual_seed(0)
    if stock:
        with stock("mvn-batch"):
            assert all(torch.equal(*dist.sample()) for _ in range(10)), "upstream no longer repeats the noise"
            with pytest.raises(RuntimeError):
                dist.sample(torch.Size([5]))
    assert not any(torch.equal(*dist.sample()) for _ in range(10))
    assert dist.sample(torch.Size([5])).shape == (5, 2, 6)


def test_multitask_batch_mean_with_a_shared_covariance(stock):
    a = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    covar = DenseLinearOperator(a @ a.mT + torch.eye(6, dtype=F64))
    dist = gpytorch.distributions.MultitaskMultivariateNormal(torch.zeros(4, 3, 2, dtype=F64), covar)
    if stock:
        with stock("mvn-batch"):
            draw = dist.sample()
        assert torch.equal(draw[0], draw[1]), "upstream no longer repeats the noise"
    draw = dist.sample(torch.Size([3]))
    assert draw.shape == (3, 4, 3, 2) and not torch.equal(draw[:, 0], draw[:, 1])


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("batch", [(), (3,)], ids=str)
def test_upstream_numbers_where_upstream_was_right(batch, interleaved, stock):
    """Mean and covariance of one batch shape: the same seed draws the same samples as stock GPyTorch."""
    if not stock:
        pytest.skip("compares with stock GPyTorch")
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(*batch, 6, 6, generator=gen, dtype=F64)
    covar = DenseLinearOperator(a @ a.mT + torch.eye(6, dtype=F64))
    mvn = gpytorch.distributions.MultivariateNormal(torch.randn(*batch, 6, generator=gen, dtype=F64), covar)
    mtmvn = gpytorch.distributions.MultitaskMultivariateNormal(
        torch.randn(*batch, 3, 2, generator=gen, dtype=F64), covar, interleaved=interleaved
    )
    for dist in (mvn, mtmvn):
        for shape in (torch.Size(), torch.Size([40])):
            with stock("mvn-batch"):
                torch.manual_seed(7)
                want = dist.rsample(shape)
            torch.manual_seed(7)
            torch.testing.assert_close(dist.rsample(shape), want, rtol=1e-12, atol=1e-12)


def test_many_members_sampled_with_one_factorisation_of_a_large_shared_covariance():
    """n = 300 (the blocked triangular product): 32 members, one Cholesky, the exact mu + L eps."""
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(300, 300, generator=gen, dtype=F64)
    dense = a @ a.mT / 300 + torch.eye(300, dtype=F64)
    mean = torch.randn(32, 300, generator=gen, dtype=F64)
    dist = gpytorch.distributions.MultivariateNormal(mean, DenseLinearOperator(dense))
    eps = torch.randn(2, 32, 300, generator=gen, dtype=F64)
    with spy_linear_algebra() as calls:
        got = dist.rsample(base_samples=eps)
    assert calls["cholesky"] == [(300, 300)] and calls["repeat"] == []
    want = mean + (torch.linalg.cholesky(dense) @ eps.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
