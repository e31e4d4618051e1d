"""Covariance factories for the battery: each builds a GPyTorch covariance and, by hand, its dense matrix.

A factory turns leaf tensors (``params``) into ``(covariance, dense)``. ``dense`` is computed with plain torch
from the same leaves (never through the covariance object), so it is an independent reference and gradients
flow to the leaves through both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gpytorch
import torch
from linear_operator.operators import (
    AddedDiagLinearOperator,
    BlockDiagLinearOperator,
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    DiagLinearOperator,
    KernelLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
    RootLinearOperator,
)
from torch import Tensor

DTYPE = torch.float64


def _spd(a: Tensor) -> Tensor:
    """A well-conditioned SPD matrix from a square one: A A^T / n + I."""
    return a @ a.transpose(-1, -2) / a.size(-1) + torch.eye(a.size(-1), dtype=a.dtype)


def _positive(raw: Tensor) -> Tensor:
    return torch.nn.functional.softplus(raw) + 0.2


def _rbf(x: Tensor, lengthscale: Tensor) -> Tensor:
    """exp(-|x_i - x_j|^2 / 2 l^2) for x of shape ... x N x 1 and a lengthscale of shape ... x 1 x 1."""
    sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).div(lengthscale.unsqueeze(-1)).square().sum(-1)
    return sq.mul(-0.5).exp()


def _spread_points(batch: tuple[int, ...], n: int, gen: torch.Generator) -> Tensor:
    """Inputs 1.5 apart plus jitter: an RBF Gram matrix of them is well conditioned."""
    base = torch.arange(n, dtype=DTYPE) * 1.5
    return (base + 0.3 * torch.rand(*batch, n, generator=gen, dtype=DTYPE)).unsqueeze(-1)


class CovarianceFactory:
    """Base factory. ``n`` is the event size it supports."""

    name = "base"
    n = 4
    #: evaluated in closed form (no matrix may be formed)
    diagonal = False
    #: batch size of the Cholesky factorisation(s) of one covariance
    cholesky_batch_per_covariance = 1

    def params(self, batch: tuple[int, ...], gen: torch.Generator) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def build(self, *params: Tensor) -> tuple[Tensor | object, Tensor]:
        raise NotImplementedError

    def context(self) -> contextlib.AbstractContextManager:
        """Settings under which ``log_prob`` is evaluated (the Cholesky path by default)."""
        return contextlib.nullcontext()


class DenseTensor(CovarianceFactory):
    name = "Tensor"

    def params(self, batch, gen):
        return (torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),)

    def build(self, a):
        dense = _spd(a)
        return dense, dense


class Dense(CovarianceFactory):
    name = "DenseLinearOperator"

    def params(self, batch, gen):
        return (torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),)

    def build(self, a):
        return DenseLinearOperator(_spd(a)), _spd(a)


class Diag(CovarianceFactory):
    name = "DiagLinearOperator"
    diagonal = True

    def params(self, batch, gen):
        return (torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),)

    def build(self, raw):
        return DiagLinearOperator(_positive(raw)), torch.diag_embed(_positive(raw))


class ConstantDiag(CovarianceFactory):
    name = "ConstantDiagLinearOperator"
    diagonal = True

    def params(self, batch, gen):
        return (torch.randn(*batch, 1, generator=gen, dtype=DTYPE),)

    def build(self, raw):
        c = _positive(raw)
        return ConstantDiagLinearOperator(c, diag_shape=self.n), c.unsqueeze(-1) * torch.eye(self.n, dtype=DTYPE)


class DiagPlusConstantDiag(CovarianceFactory):
    """``Diag + ConstantDiag`` (linear_operator refuses an AddedDiagLinearOperator of two diagonals)."""

    name = "Diag + ConstantDiag"
    diagonal = True

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
            torch.randn(*batch, 1, generator=gen, dtype=DTYPE),
        )

    def build(self, raw_d, raw_c):
        d, c = _positive(raw_d), _positive(raw_c)
        covar = DiagLinearOperator(d) + ConstantDiagLinearOperator(c, diag_shape=self.n)
        return covar, torch.diag_embed(d + c)


class LazyKernel(CovarianceFactory):
    """``RBFKernel(batch_shape=...)(x)``: a lazily evaluated kernel tensor; the lengthscale enters via ``x``."""

    name = "LazyEvaluatedKernelTensor(RBF)"

    def params(self, batch, gen):
        return _spread_points(batch, self.n, gen), torch.rand(*batch, 1, 1, generator=gen, dtype=DTYPE) + 0.8

    def build(self, x, lengthscale):
        kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size(x.shape[:-2])).to(DTYPE)
        kernel.lengthscale = 1.0
        return kernel(x / lengthscale), _rbf(x, lengthscale)


class Kernel(CovarianceFactory):
    name = "KernelLinearOperator"

    @staticmethod
    def _covar_func(x1: Tensor, x2: Tensor, lengthscale: Tensor) -> Tensor:
        return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).div(lengthscale.unsqueeze(-1)).square().sum(-1).mul(-0.5).exp()

    def params(self, batch, gen):
        return _spread_points(batch, self.n, gen), torch.rand(*batch, 1, 1, generator=gen, dtype=DTYPE) + 0.8

    def build(self, x, lengthscale):
        return KernelLinearOperator(x, x, covar_func=self._covar_func, lengthscale=lengthscale), _rbf(x, lengthscale)


class AddedDiag(CovarianceFactory):
    name = "AddedDiagLinearOperator"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
        )

    def build(self, a, raw):
        s = a @ a.transpose(-1, -2) / self.n
        return AddedDiagLinearOperator(
            DenseLinearOperator(s), DiagLinearOperator(_positive(raw))
        ), s + torch.diag_embed(_positive(raw))


class LowRankPlusDiag(CovarianceFactory):
    name = "LowRankRootAddedDiagLinearOperator"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, 2, generator=gen, dtype=DTYPE),
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
        )

    def build(self, root, raw):
        covar = LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(root), DiagLinearOperator(_positive(raw)))
        return covar, root @ root.transpose(-1, -2) + torch.diag_embed(_positive(raw))


class RootPlusDiag(CovarianceFactory):
    name = "RootLinearOperator + diag"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, 3, generator=gen, dtype=DTYPE),
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
        )

    def build(self, root, raw):
        covar = RootLinearOperator(root).add_diagonal(_positive(raw))
        return covar, root @ root.transpose(-1, -2) + torch.diag_embed(_positive(raw))


class Kronecker(CovarianceFactory):
    name = "KroneckerProductLinearOperator"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, 2, 2, generator=gen, dtype=DTYPE),
            torch.randn(*batch, 2, 2, generator=gen, dtype=DTYPE),
        )

    def build(self, a, b):
        ka, kb = _spd(a), _spd(b)
        dense = (ka[..., :, None, :, None] * kb[..., None, :, None, :]).reshape(*ka.shape[:-2], 4, 4)
        return KroneckerProductLinearOperator(DenseLinearOperator(ka), DenseLinearOperator(kb)), dense


class BlockDiag(CovarianceFactory):
    name = "BlockDiagLinearOperator"
    cholesky_batch_per_covariance = 2  # the blocks are factorised as a batch

    def params(self, batch, gen):
        return (torch.randn(*batch, 2, 2, 2, generator=gen, dtype=DTYPE),)

    def build(self, a):
        blocks = _spd(a)  # ... x 2 blocks x 2 x 2
        top = torch.cat([blocks[..., 0, :, :], torch.zeros_like(blocks[..., 0, :, :])], -1)
        bottom = torch.cat([torch.zeros_like(blocks[..., 1, :, :]), blocks[..., 1, :, :]], -1)
        return BlockDiagLinearOperator(DenseLinearOperator(blocks)), torch.cat([top, bottom], -2)


class KeOpsKernel(CovarianceFactory):
    """``gpytorch.kernels.keops.RBFKernel(...)(x)``. Evaluated with ``max_cholesky_size(n)``: KeOps is used
    (``n >= max_cholesky_size``) and so is the exact Cholesky path (``n <= max_cholesky_size``)."""

    name = "KeOps RBFKernel"

    def params(self, batch, gen):
        return _spread_points(batch, self.n, gen), torch.rand(*batch, 1, 1, generator=gen, dtype=DTYPE) + 0.8

    def build(self, x, lengthscale):
        kernel = gpytorch.kernels.keops.RBFKernel(batch_shape=torch.Size(x.shape[:-2])).to(DTYPE)
        kernel.lengthscale = 1.0
        return kernel(x / lengthscale), _rbf(x, lengthscale)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        with gpytorch.settings.max_cholesky_size(self.n):
            yield
