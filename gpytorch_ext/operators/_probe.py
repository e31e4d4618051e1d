"""Self-check of the ``matmul-vector-backward`` patch: gradients of ``batch operator @ vector`` versus torch."""

from __future__ import annotations

import gpytorch
import torch
from linear_operator.operators import DenseLinearOperator, KernelLinearOperator, RootLinearOperator

from .._registry import Probe

_F64 = torch.float64


def _rbf(x1, x2, lengthscale):
    """exp(-|x1_i - x2_j|^2 / 2 l^2) for inputs ``... x N x 1`` and a lengthscale ``... x 1 x 1``."""
    return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).div(lengthscale.unsqueeze(-1)).square().sum(-1).mul(-0.5).exp()


def _cases(gen: torch.Generator):
    """``(operator from leaves, dense from leaves, leaves)`` of batch shape (2,), event size 5."""
    a = torch.randn(2, 5, 5, generator=gen, dtype=_F64)
    r = torch.randn(2, 5, 3, generator=gen, dtype=_F64)
    x = torch.rand(2, 5, 1, generator=gen, dtype=_F64)
    lengthscale = torch.full((2, 1, 1), 0.7, dtype=_F64)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])).to(_F64)
    return [
        (DenseLinearOperator, lambda a: a, (a,)),
        (RootLinearOperator, lambda r: r @ r.mT, (r,)),
        (
            lambda x: KernelLinearOperator(x, x, covar_func=_rbf, lengthscale=lengthscale),
            lambda x: _rbf(x, x, lengthscale),
            (x,),
        ),
        (lambda x: kernel(x), lambda x: _rbf(x, x, kernel.lengthscale), (x,)),
    ]


def probe() -> Probe:
    """Count the operator kinds whose ``(2 x 5 x 5 operator @ 5-vector)`` backward raises or differs from torch's."""
    gen = torch.Generator().manual_seed(0)
    failures = total = 0
    for build, dense, leaves in _cases(gen):
        total += 1
        vector = torch.randn(5, generator=gen, dtype=_F64, requires_grad=True)
        leaves = tuple(t.clone().requires_grad_(True) for t in leaves)
        weights = torch.randn(2, 5, generator=gen, dtype=_F64)
        try:
            got = torch.autograd.grad(((build(*leaves) @ vector) * weights).sum(), (vector, *leaves))
        except Exception:
            failures += 1
            continue
        want = torch.autograd.grad((torch.matmul(dense(*leaves), vector) * weights).sum(), (vector, *leaves))
        failures += not all(torch.allclose(g, w, rtol=1e-8, atol=1e-10) for g, w in zip(got, want))
    return Probe(f"{failures} of {total} operator kinds fail", defect=failures > 0)
