"""Self-check of the ``mvn-log-prob`` patch: a fixed sweep of batch shapes x covariance types versus torch.

A case fails when ``log_prob`` raises, disagrees with torch (shape or value), or repeats the covariance.
"""

from __future__ import annotations

import itertools
from unittest import mock

import gpytorch
import torch
from linear_operator.operators import (
    AddedDiagLinearOperator,
    BlockDiagLinearOperator,
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    DiagLinearOperator,
    KroneckerProductLinearOperator,
    LinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch.distributions import MultivariateNormal as TorchMVN

from .._registry import Probe

_N = 4
_SHAPES = [(), (1,), (2,), (2, 1)]  # covariance batch shapes (also used by the mvn-batch probe)
_VALUE_SHAPES = [(), (1,), (2, 1)]
_MEAN_SHAPES = [(), (1,)]


def _spd(batch, gen):
    a = torch.randn(*batch, _N, _N, generator=gen, dtype=torch.float64)
    return a @ a.mT / _N + torch.eye(_N, dtype=torch.float64)


def _covariances(batch, gen):
    """``(name, covariance, dense)`` for each covariance type of the sweep (KeOps excluded: no compiling)."""
    f64 = torch.float64
    dense = _spd(batch, gen)
    d = torch.rand(*batch, _N, generator=gen, dtype=f64) + 0.5
    c = torch.rand(*batch, 1, generator=gen, dtype=f64) + 0.5
    root = torch.randn(*batch, _N, 2, generator=gen, dtype=f64)
    small = _spd(batch, gen)[..., :2, :2]
    blocks = torch.stack([small, small + torch.eye(2, dtype=f64)], -3)
    x = (torch.arange(_N, dtype=f64) * 1.5 + 0.3 * torch.rand(*batch, _N, generator=gen, dtype=f64)).unsqueeze(-1)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size(batch)).to(f64)
    kron_dense = (small[..., :, None, :, None] * small[..., None, :, None, :]).reshape(*batch, _N, _N)
    block_dense = torch.zeros(*batch, _N, _N, dtype=f64)
    block_dense[..., :2, :2] = blocks[..., 0, :, :]
    block_dense[..., 2:, 2:] = blocks[..., 1, :, :]
    with torch.no_grad():
        kernel_dense = kernel(x).to_dense()
    return [
        ("Tensor", dense, dense),
        ("Dense", DenseLinearOperator(dense), dense),
        ("Diag", DiagLinearOperator(d), torch.diag_embed(d)),
        ("ConstantDiag", ConstantDiagLinearOperator(c, _N), c.unsqueeze(-1) * torch.eye(_N, dtype=f64)),
        ("Kernel", kernel(x), kernel_dense),
        (
            "AddedDiag",
            AddedDiagLinearOperator(DenseLinearOperator(dense), DiagLinearOperator(d)),
            dense.add(d.diag_embed()),
        ),
        (
            "LowRank+Diag",
            LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(root), DiagLinearOperator(d)),
            root @ root.mT + d.diag_embed(),
        ),
        (
            "Kronecker",
            KroneckerProductLinearOperator(DenseLinearOperator(small), DenseLinearOperator(small)),
            kron_dense,
        ),
        ("BlockDiag", BlockDiagLinearOperator(DenseLinearOperator(blocks)), block_dense),
    ]


def _case_fails(mean, covar, dense, value) -> bool:
    """Raises, disagrees with torch, or repeats the covariance (one copy per value: memory and factorisations)."""
    try:
        with torch.no_grad(), mock.patch.object(LinearOperator, "repeat", side_effect=_Repeated):
            got = gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(value)
    except Exception:
        return True
    want = TorchMVN(mean, dense).log_prob(value)
    return got.shape != want.shape or not torch.allclose(got, want, rtol=1e-6, atol=1e-8)


class _Repeated(Exception):
    """Raised by the spy on ``LinearOperator.repeat``."""


def _multitask_fails(gen) -> tuple[int, int]:
    """Non-interleaved / interleaved multitask normals (3 data x 2 tasks) against torch on the flat event."""
    failures = total = 0
    for interleaved, batch in itertools.product((True, False), ((), (2,))):
        a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        covar = a @ a.mT / 6 + torch.eye(6, dtype=torch.float64)
        mean = torch.randn(3, 2, generator=gen, dtype=torch.float64)
        value = torch.randn(*batch, 3, 2, generator=gen, dtype=torch.float64)
        flat = (lambda t: t.reshape(*t.shape[:-2], -1)) if interleaved else (lambda t: t.mT.reshape(*t.shape[:-2], -1))
        total += 1
        try:
            with torch.no_grad():
                dist = gpytorch.distributions.MultitaskMultivariateNormal(
                    mean, DenseLinearOperator(covar), interleaved=interleaved
                )
                got = dist.log_prob(value)
        except Exception:
            failures += 1
            continue
        want = TorchMVN(flat(mean), covar).log_prob(flat(value))
        failures += got.shape != want.shape or not torch.allclose(got, want, rtol=1e-6, atol=1e-8)
    return failures, total


def probe() -> Probe:
    """Count the cases where GPyTorch's ``log_prob`` raises or disagrees with torch (shape or value)."""
    gen = torch.Generator().manual_seed(0)
    failures = total = 0
    for covar_batch in _SHAPES:
        covariances = _covariances(covar_batch, gen)
        for value_batch, mean_batch in itertools.product(_VALUE_SHAPES, _MEAN_SHAPES):
            mean = torch.randn(*mean_batch, _N, generator=gen, dtype=torch.float64)
            value = torch.randn(*value_batch, _N, generator=gen, dtype=torch.float64)
            for _, covar, dense in covariances:
                total += 1
                failures += _case_fails(mean, covar, dense, value)
    mt_failures, mt_total = _multitask_fails(gen)
    failures, total = failures + mt_failures, total + mt_total
    return Probe(f"{failures} of {total} shape/covariance cases fail", defect=failures > 0)
