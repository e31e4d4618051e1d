"""Lazy (multitask) normals whose mean and covariance batch shapes differ, against torch, for every covariance kind."""

from __future__ import annotations

import gpytorch_ext.testing.covariances as cov
from gpytorch_ext.testing.covariances import MVNBatchBattery


class TestDenseTensor(MVNBatchBattery):
    factory = cov.DenseTensor(n=6)


class TestDenseLinearOperator(MVNBatchBattery):
    factory = cov.Dense(n=6)


class TestDiagLinearOperator(MVNBatchBattery):
    factory = cov.Diag(n=6)


class TestConstantDiagLinearOperator(MVNBatchBattery):
    factory = cov.ConstantDiag(n=6)


class TestAddedDiagOfDiagonals(MVNBatchBattery):
    factory = cov.DiagPlusConstantDiag(n=6)


class TestLazyEvaluatedKernelTensor(MVNBatchBattery):
    factory = cov.LazyKernel(n=6)


class TestKernelLinearOperator(MVNBatchBattery):
    factory = cov.Kernel(n=6)


class TestAddedDiagLinearOperator(MVNBatchBattery):
    factory = cov.AddedDiag(n=6)


class TestLowRankRootAddedDiagLinearOperator(MVNBatchBattery):
    factory = cov.LowRankPlusDiag(n=6)


class TestRootPlusDiag(MVNBatchBattery):
    factory = cov.RootPlusDiag(n=6)


class TestKroneckerProductLinearOperator(MVNBatchBattery):
    factory = cov.Kronecker(n=6)


class TestBlockDiagLinearOperator(MVNBatchBattery):
    factory = cov.BlockDiag(n=6)


class TestKeOpsKernel(MVNBatchBattery):
    """KeOps compiles each formula once (seconds): two batch pairs, the plain layout."""

    factory = cov.KeOpsKernel(n=6)
    pairs = cov.BATCH_PAIRS[:2]
    layouts = cov.LAYOUTS[:1]
