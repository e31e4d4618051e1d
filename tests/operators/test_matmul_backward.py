"""A (batch) LinearOperator times a vector or matrix: gradients equal ``torch.matmul``'s (patch
``matmul-vector-backward``, a linear_operator repair)."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DenseLinearOperator, RootLinearOperator

import gpytorch_ext.testing.covariances as cov
from gpytorch_ext.testing import PatchTestCase
from gpytorch_ext.testing.covariances import MatmulBattery

F64 = torch.float64


class TestDenseLinearOperator(MatmulBattery):
    factory = cov.Dense()


class TestDiagLinearOperator(MatmulBattery):
    factory = cov.Diag()
    reproduces_upstream = False  # DiagLinearOperator.matmul multiplies elementwise


class TestConstantDiagLinearOperator(MatmulBattery):
    factory = cov.ConstantDiag()
    reproduces_upstream = False


class TestLazyEvaluatedKernelTensor(MatmulBattery):
    factory = cov.LazyKernel()


class TestKernelLinearOperator(MatmulBattery):
    factory = cov.Kernel()


class TestAddedDiagLinearOperator(MatmulBattery):
    factory = cov.AddedDiag()


class TestLowRankRootAddedDiagLinearOperator(MatmulBattery):
    factory = cov.LowRankPlusDiag()


class TestRootPlusDiag(MatmulBattery):
    factory = cov.RootPlusDiag()


class TestKroneckerProductLinearOperator(MatmulBattery):
    factory = cov.Kronecker()


class TestBlockDiagLinearOperator(MatmulBattery):
    factory = cov.BlockDiag()


class TestKeOpsKernel(MatmulBattery):
    factory = cov.KeOpsKernel()
    cases = cov.MATMUL_CASES[:1]


@pytest.mark.parametrize("make", [DenseLinearOperator, lambda a: RootLinearOperator(a)], ids=["Dense", "Root"])
def test_the_issue_example(make, upstream_or_none):
    """``(2 x n x n operator) @ n-vector``: backward crashed upstream; now it equals torch.matmul's."""
    a = torch.randn(2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    v = torch.randn(5, dtype=F64, requires_grad=True)
    if upstream_or_none is not None:
        with upstream_or_none("matmul-vector-backward"), pytest.raises(RuntimeError):
            (make(a.clone().requires_grad_(True)) @ v).pow(2).sum().backward()
    leaf = a.clone().requires_grad_(True)
    got = torch.autograd.grad((make(leaf) @ v).pow(2).sum(), (leaf, v))
    dense = leaf @ leaf.mT if make is not DenseLinearOperator else leaf
    want = torch.autograd.grad(torch.matmul(dense, v).pow(2).sum(), (leaf, v))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


class TestMatmulVectorBackwardPatch(PatchTestCase):
    patch_name = "matmul-vector-backward"
    upstream_summary = "fail"
    patched_summary = "0 of "


def test_keops_kernel_backward_runs_keops():
    """The KeOps case above really multiplies with KeOps (n >= max_cholesky_size), forward and backward."""
    from unittest import mock

    from gpytorch.kernels.keops import keops_kernel

    battery = TestKeOpsKernel()
    with mock.patch.object(keops_kernel, "LazyTensor", wraps=keops_kernel.LazyTensor) as spy:
        failures = battery._failures()
    assert not failures and spy.call_count > 0, failures
