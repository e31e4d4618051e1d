"""``MultitaskMultivariateNormal.log_prob`` against torch on the flattened event (interleaved or not)."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator
from torch.distributions import MultivariateNormal as TorchMVN

import gpytorch_ext.distributions as ext

F64 = torch.float64
N, T = 3, 2


def _spd(k, batch, gen):
    a = torch.randn(*batch, k, k, generator=gen, dtype=F64)
    return a @ a.mT / k + torch.eye(k, dtype=F64)


def _flat(t, interleaved):
    return t.reshape(*t.shape[:-2], -1) if interleaved else t.mT.reshape(*t.shape[:-2], -1)


CASES = [((), (), ()), ((4,), (), ()), ((1,), (1,), (2,)), ((2, 1), (3,), (1,)), ((3,), (3,), (3,))]


@pytest.mark.parametrize("cls", [gpytorch.distributions.MultitaskMultivariateNormal, ext.MultitaskMultivariateNormal])
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("kind", ["dense", "kronecker"])
@pytest.mark.parametrize("triple", CASES, ids=str)
def test_multitask_matches_torch(cls, interleaved, kind, triple):
    gen = torch.Generator().manual_seed(0)
    value_batch, mean_batch, covar_batch = triple
    if kind == "dense":
        dense = _spd(N * T, covar_batch, gen)
        covar = DenseLinearOperator(dense)
    else:
        # data-major Kronecker for interleaved, task-major for non-interleaved
        kd, kt = _spd(N, covar_batch, gen), _spd(T, covar_batch, gen)
        first, second = (kd, kt) if interleaved else (kt, kd)
        covar = KroneckerProductLinearOperator(DenseLinearOperator(first), DenseLinearOperator(second))
        dense = (first[..., :, None, :, None] * second[..., None, :, None, :]).reshape(*covar_batch, N * T, N * T)
    mean = torch.randn(*mean_batch, N, T, generator=gen, dtype=F64)
    value = torch.randn(*value_batch, N, T, generator=gen, dtype=F64)
    got = cls(mean, covar, interleaved=interleaved).log_prob(value)
    reference = TorchMVN(_flat(mean, interleaved), dense).log_prob(_flat(value, interleaved))
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=1e-8, atol=1e-10)


def test_multitask_bad_value_shape_is_a_value_error():
    dist = gpytorch.distributions.MultitaskMultivariateNormal(
        torch.zeros(N, T, dtype=F64), DenseLinearOperator(torch.eye(N * T, dtype=F64))
    )
    with pytest.raises(ValueError, match=r"3 x 2"):
        dist.log_prob(torch.zeros(T, N, dtype=F64))


def test_multitask_gradcheck_non_interleaved():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(N * T, N * T, generator=gen, dtype=F64, requires_grad=True)
    mean = torch.randn(N, T, generator=gen, dtype=F64, requires_grad=True)
    value = torch.randn(2, N, T, generator=gen, dtype=F64, requires_grad=True)

    def f(value, mean, a):
        covar = DenseLinearOperator(a @ a.T / 6 + torch.eye(N * T, dtype=F64))
        return gpytorch.distributions.MultitaskMultivariateNormal(mean, covar, interleaved=False).log_prob(value)

    assert torch.autograd.gradcheck(f, (value, mean, a))
