"""The batch-safe paths never replace an operator's own algorithm: a low-rank plus diagonal covariance keeps the
Woodbury identity in ``log_prob``, a root covariance samples with its root; the factorisations are upstream's."""

from __future__ import annotations

import math

import gpytorch
import pytest
import torch
from linear_operator.operators import (
    DenseLinearOperator,
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
    RootLinearOperator,
)

from gpytorch_ext.testing.covariances import spy_linear_algebra

F64 = torch.float64
N, RANK = 50, 3


def _sizes(shapes: list[tuple[int, ...]]) -> list[tuple[int, int]]:
    """(number of matrices, matrix size) of each factorisation (a batch of one and a matrix are alike)."""
    return sorted((math.prod(shape[:-2]), shape[-1]) for shape in shapes)


def _factorisations(kind: str) -> dict[str, list]:
    """The Cholesky factorisations (input shapes) of ``log_prob`` and of ``rsample`` on a fresh distribution each."""
    gen = torch.Generator().manual_seed(0)
    root = torch.randn(N, RANK, generator=gen, dtype=F64)
    diag = torch.rand(N, generator=gen, dtype=F64) + 0.5
    a = torch.randn(N, N, generator=gen, dtype=F64)
    make = {
        "low rank + diag": lambda: LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(root), DiagLinearOperator(diag)
        ),
        "root": lambda: RootLinearOperator(root),
        "dense": lambda: DenseLinearOperator(a @ a.mT / N + torch.eye(N, dtype=F64)),
    }[kind]
    mean, values = torch.zeros(N, dtype=F64), torch.randn(4, N, generator=gen, dtype=F64)
    out = {}
    with torch.no_grad():
        if kind != "root":  # a rank-3 root covariance is singular: no log-density
            with spy_linear_algebra() as calls:
                gpytorch.distributions.MultivariateNormal(mean, make()).log_prob(values)
            out["log_prob"] = _sizes(calls["cholesky"])
        with spy_linear_algebra() as calls:
            gpytorch.distributions.MultivariateNormal(mean, make()).rsample(torch.Size([8]))
        out["rsample"] = _sizes(calls["cholesky"])
    return out


EXPECTED = {
    "low rank + diag": {"log_prob": [(1, RANK)], "rsample": [(1, N)]},  # Woodbury; a Cholesky root
    "root": {"rsample": []},  # the root itself
    "dense": {"log_prob": [(1, N)], "rsample": [(1, N)]},
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_the_same_factorisations_as_upstream(kind, stock):
    ours = _factorisations(kind)
    assert ours == EXPECTED[kind]
    if stock:
        with stock("mvn-log-prob", "mvn-batch"):
            assert _factorisations(kind) == ours
