"""``MultivariateNormal.log_prob`` against torch, for every covariance type GPyTorch produces."""

from __future__ import annotations

import torch

import gpytorch_ext.testing.covariances as cov
from gpytorch_ext.testing.covariances import MVNLogProbBattery


class TestDenseTensor(MVNLogProbBattery):
    factory = cov.DenseTensor()


class TestDenseLinearOperator(MVNLogProbBattery):
    factory = cov.Dense()


class TestDiagLinearOperator(MVNLogProbBattery):
    factory = cov.Diag()


class TestConstantDiagLinearOperator(MVNLogProbBattery):
    factory = cov.ConstantDiag()


class TestAddedDiagOfDiagonals(MVNLogProbBattery):
    factory = cov.DiagPlusConstantDiag()


class TestLazyEvaluatedKernelTensor(MVNLogProbBattery):
    factory = cov.LazyKernel()


class TestKernelLinearOperator(MVNLogProbBattery):
    factory = cov.Kernel()


class TestAddedDiagLinearOperator(MVNLogProbBattery):
    factory = cov.AddedDiag()


class TestLowRankRootAddedDiagLinearOperator(MVNLogProbBattery):
    factory = cov.LowRankPlusDiag()


class TestRootPlusDiag(MVNLogProbBattery):
    factory = cov.RootPlusDiag()


class TestKroneckerProductLinearOperator(MVNLogProbBattery):
    factory = cov.Kronecker()


class TestBlockDiagLinearOperator(MVNLogProbBattery):
    factory = cov.BlockDiag()


class TestKeOpsKernel(MVNLogProbBattery):
    """KeOps compiles each formula once (seconds), so only a few batch shapes are checked."""

    factory = cov.KeOpsKernel()
    triples = [((1,), (1,), (2,)), ((3,), (), ()), ((2, 1), (1,), (1, 3))]
    check_gradients = False

    def test_keops_is_used(self):
        from unittest import mock

        from gpytorch.kernels.keops import keops_kernel

        with mock.patch.object(keops_kernel, "LazyTensor", wraps=keops_kernel.LazyTensor) as spy:
            ours, reference, _ = self.log_prob(((3,), (), ()))
        assert spy.call_count > 0
        torch.testing.assert_close(ours, reference, rtol=1e-8, atol=1e-10)
