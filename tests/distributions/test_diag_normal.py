"""``diag_normal_log_prob`` and the closed-form diagonal path of ``MultivariateNormal.log_prob``."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from linear_operator.operators import ConstantDiagLinearOperator, DiagLinearOperator
from torch.distributions import Independent, Normal

from gpytorch_ext.distributions import diag_normal_log_prob

F64 = torch.float64

SHAPES = [
    # value, loc, scale, event_dim
    ((5,), (5,), (5,), 1),  # a BNN bias
    ((7, 5), (7, 5), (7, 5), 2),  # a BNN weight matrix
    ((3, 7, 5), (7, 5), (1,), 2),  # samples of a weight matrix, shared scalar scale
    ((4, 3), (3,), (), 1),
    ((2, 3, 4), (1, 4), (3, 1), 1),
    ((2, 3), (2, 3), (2, 3), 0),
    ((6, 2, 3, 4), (4,), (3, 4), 3),
]


@pytest.mark.parametrize("value_shape, loc_shape, scale_shape, event_dim", SHAPES, ids=str)
def test_matches_independent_normal(value_shape, loc_shape, scale_shape, event_dim):
    gen = torch.Generator().manual_seed(0)
    value = torch.randn(value_shape, generator=gen, dtype=F64, requires_grad=True)
    loc = torch.randn(loc_shape, generator=gen, dtype=F64, requires_grad=True)
    scale = (torch.rand(scale_shape, generator=gen, dtype=F64) + 0.3).requires_grad_(True)
    got = diag_normal_log_prob(value, loc, scale, event_dim=event_dim)
    shape = torch.broadcast_shapes(value_shape, loc_shape, scale_shape)
    want = Independent(Normal(loc.expand(shape), scale.expand(shape)), event_dim).log_prob(value)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    w = torch.randn(got.shape, generator=gen, dtype=F64)
    g_got = torch.autograd.grad((got * w).sum(), (value, loc, scale))
    g_want = torch.autograd.grad((want * w).sum(), (value, loc, scale))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gradcheck():
    gen = torch.Generator().manual_seed(1)
    args = (
        torch.randn(3, 4, generator=gen, dtype=F64, requires_grad=True),
        torch.randn(4, generator=gen, dtype=F64, requires_grad=True),
        (torch.rand(3, 1, generator=gen, dtype=F64) + 0.5).requires_grad_(True),
    )
    assert torch.autograd.gradcheck(lambda v, m, s: diag_normal_log_prob(v, m, s, event_dim=2), args)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_invalid_scale_raises_when_validating(bad):
    scale = torch.tensor([1.0, bad, 2.0], dtype=F64)
    with pytest.raises(ValueError, match="scale must be positive and finite"):
        diag_normal_log_prob(torch.zeros(3, dtype=F64), 0.0, scale, validate_args=True)
    # torch's global default (on) applies when validate_args is not given
    with pytest.raises(ValueError):
        diag_normal_log_prob(torch.zeros(3, dtype=F64), 0.0, scale)
    # validation off: no check (like torch.distributions with validate_args=False)
    diag_normal_log_prob(torch.zeros(3, dtype=F64), 0.0, scale, validate_args=False)


def test_bad_shapes_and_event_dim():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        diag_normal_log_prob(torch.zeros(3), torch.zeros(4), torch.ones(1))
    with pytest.raises(ValueError, match="event_dim"):
        diag_normal_log_prob(torch.zeros(3), 0.0, 1.0, event_dim=2)
    with pytest.raises(ValueError, match="event_dim"):
        diag_normal_log_prob(torch.zeros(3), 0.0, 1.0, event_dim=-1)


@pytest.mark.parametrize("make", ["diag", "constant"])
def test_mvn_diagonal_path_equals_independent_normal_without_a_matrix(make):
    gen = torch.Generator().manual_seed(2)
    n = 1000
    variance = torch.rand(2, 1, n, generator=gen, dtype=F64) + 0.1
    if make == "diag":
        covar = DiagLinearOperator(variance)
    else:
        variance = variance[..., :1]
        covar = ConstantDiagLinearOperator(variance, diag_shape=n)
    mean = torch.randn(n, generator=gen, dtype=F64)
    value = torch.randn(3, n, generator=gen, dtype=F64)
    from gpytorch_ext.testing.covariances import spy_linear_algebra

    with spy_linear_algebra() as calls:
        got = gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(value)
    assert calls["to_dense"] == [] and calls["cholesky"] == []
    want = Independent(Normal(mean, variance.sqrt().expand(2, 1, n)), 1).log_prob(value)
    assert got.shape == want.shape == (2, 3)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-8)


def test_mvn_diagonal_non_positive_variance_with_validation():
    covar = DiagLinearOperator(torch.tensor([1.0, -1.0, 2.0], dtype=F64))
    dist = gpytorch.distributions.MultivariateNormal(torch.zeros(3, dtype=F64), covar, validate_args=True)
    with pytest.raises(ValueError, match="positive and finite"):
        dist.log_prob(torch.zeros(3, dtype=F64))
