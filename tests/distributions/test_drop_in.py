"""The drop-in classes ``gpytorch_ext.distributions.(Multitask)MultivariateNormal`` behave like the patched
GPyTorch classes, with the patches reverted."""

from __future__ import annotations

import contextlib

import pytest
import torch
from linear_operator.operators import DenseLinearOperator
from torch.distributions import MultivariateNormal as TorchMVN
from torch.distributions import kl_divergence

import gpytorch_ext.distributions as ext
import gpytorch_ext.testing.covariances as cov


@pytest.fixture
def without_patches(stock):
    """Stock GPyTorch where it exists (monkeypatch mode); the patched source otherwise (the classes still work)."""
    return stock("mvn-log-prob", "mvn-batch") if stock else contextlib.nullcontext()


@pytest.mark.parametrize("factory", [cov.Dense(n=6), cov.LazyKernel(n=6), cov.Kronecker(n=6)], ids=repr)
def test_drop_in_classes_pass_the_batch_checks(factory, without_patches):
    battery = cov.MVNBatchBattery()
    battery.factory = factory
    with without_patches:
        failures = [
            f
            for i, (pair, layout) in enumerate(zip(cov.BATCH_PAIRS, cov.LAYOUTS * 2))
            for f in battery.failures(battery.case(pair, layout, seed=i, classes=ext))
        ]
    assert not failures, "\n".join(failures)


def test_drop_in_results_keep_their_class(without_patches):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    covar = a @ a.mT / 6 + torch.eye(6, dtype=torch.float64)
    with without_patches:
        mt = ext.MultitaskMultivariateNormal(torch.zeros(2, 3, 2, dtype=torch.float64), DenseLinearOperator(covar))
        assert type(mt[0]) is ext.MultitaskMultivariateNormal
        assert type(mt[..., 0, :]) is ext.MultivariateNormal
        assert type(mt.expand(torch.Size((4, 2)))) is ext.MultitaskMultivariateNormal
        dist = ext.MultivariateNormal(torch.zeros(3, 6, dtype=torch.float64), DenseLinearOperator(covar))
        other = ext.MultivariateNormal(torch.ones(6, dtype=torch.float64), DenseLinearOperator(2 * covar))
        got = kl_divergence(dist, other)
    reference = TorchMVN(torch.zeros(3, 6, dtype=torch.float64), covar)
    torch.testing.assert_close(got, kl_divergence(reference, TorchMVN(torch.ones(6, dtype=torch.float64), 2 * covar)))
