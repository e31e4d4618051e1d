"""The ``keops-kernels`` patch: O(N) diagonals and fused sums/products for GPyTorch's own KeOps kernels.

It replaces ``forward`` of :class:`gpytorch.kernels.keops.RBFKernel`, ``MaternKernel`` and ``PeriodicKernel``
(same formulas, evaluated by :mod:`.base`), ``__call__`` of :class:`gpytorch.kernels.keops.KeOpsKernel`
(one warning when KeOps is unavailable, instead of one per call), and ``forward`` of
:class:`gpytorch.kernels.AdditiveKernel`, :class:`~gpytorch.kernels.ProductKernel` and
:class:`~gpytorch.kernels.ScaleKernel`, which fuse trees of KeOps formula kernels into one reduction and keep
GPyTorch's behaviour for everything else.
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.kernels import keops as gkeops

from gpytorch_ext._registry import Patch, Probe, Replacement

from .base import KeOpsKernel, formula_forward
from .composition import UPSTREAM_FORWARDS, fused_forward
from .cosine import CosineKernel
from .linear import LinearKernel
from .matern import MaternKernel
from .periodic import PeriodicKernel
from .polynomial import PolynomialKernel
from .rbf import RBFKernel
from .rq import RQKernel
from .spectral_mixture import SpectralMixtureKernel

_NEW_FAMILIES = (RQKernel, CosineKernel, LinearKernel, PolynomialKernel, SpectralMixtureKernel)

# GPyTorch's own forward of each patched KeOps kernel, by the family class that replaces it
_LEAF_FORWARDS = {
    impl: vars(upstream)["forward"]
    for impl, upstream in (
        (RBFKernel, gkeops.RBFKernel),
        (MaternKernel, gkeops.MaternKernel),
        (PeriodicKernel, gkeops.PeriodicKernel),
    )
}


def _leaf(self, impl, x1, x2, diag, params):
    if params.get("last_dim_is_batch", False):  # deprecated; keep GPyTorch's behaviour
        return _LEAF_FORWARDS[impl](self, x1, x2, diag=diag, **params)
    return formula_forward(self, impl, x1, x2, diag=diag)


def _rbf_forward(self, x1, x2, diag=False, **params):
    return _leaf(self, RBFKernel, x1, x2, diag, params)


def _matern_forward(self, x1, x2, diag=False, **params):
    return _leaf(self, MaternKernel, x1, x2, diag, params)


def _periodic_forward(self, x1, x2, diag=False, **params):
    return _leaf(self, PeriodicKernel, x1, x2, diag, params)


def _keops_call(self, *args, **kwargs):
    return KeOpsKernel.__call__(self, *args, **kwargs)


def _additive_forward(self, x1, x2, diag=False, **params):
    res = fused_forward(self, x1, x2, diag=diag, **params)
    if res is None:
        return UPSTREAM_FORWARDS[gpytorch.kernels.AdditiveKernel](self, x1, x2, diag=diag, **params)
    return res


def _product_forward(self, x1, x2, diag=False, **params):
    res = fused_forward(self, x1, x2, diag=diag, **params)
    if res is None:
        return UPSTREAM_FORWARDS[gpytorch.kernels.ProductKernel](self, x1, x2, diag=diag, **params)
    return res


def _scale_forward(self, x1, x2, last_dim_is_batch=False, diag=False, **params):
    res = None if last_dim_is_batch else fused_forward(self, x1, x2, diag=diag, **params)
    if res is None:
        upstream = UPSTREAM_FORWARDS[gpytorch.kernels.ScaleKernel]
        return upstream(self, x1, x2, last_dim_is_batch=last_dim_is_batch, diag=diag, **params)
    return res


def _replacements() -> list[Replacement]:
    return [
        Replacement(gkeops.RBFKernel, "forward", _rbf_forward),
        Replacement(gkeops.MaternKernel, "forward", _matern_forward),
        Replacement(gkeops.PeriodicKernel, "forward", _periodic_forward),
        Replacement(gkeops.KeOpsKernel, "__call__", _keops_call),
        Replacement(gpytorch.kernels.AdditiveKernel, "forward", _additive_forward),
        Replacement(gpytorch.kernels.ProductKernel, "forward", _product_forward),
        Replacement(gpytorch.kernels.ScaleKernel, "forward", _scale_forward),
        # the KeOps families that the upstream patch adds to gpytorch.kernels.keops
        *(Replacement(gkeops, cls.__name__, cls, create=True) for cls in _NEW_FAMILIES),
    ]


def _probe() -> Probe:
    """Diagonal under max_cholesky_size(0), and a product's matmul error at n=300 (dense KeOps fallback off)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.rand(300, 2, dtype=torch.float64)
        rhs = torch.randn(300, 1, dtype=torch.float64)
        try:
            with gpytorch.settings.max_cholesky_size(0):
                gkeops.RBFKernel()(x[:50], diag=True)
            diag = "ok"
        except Exception as exc:
            diag = type(exc).__name__
        product = (gkeops.RBFKernel() * gkeops.PeriodicKernel()).double()
        dense = (gpytorch.kernels.RBFKernel() * gpytorch.kernels.PeriodicKernel()).double()
        dense.load_state_dict(product.state_dict())
        # use_keops(False): the product path is the same, without compiling KeOps formulas for the report
        with gpytorch.settings.max_cholesky_size(0), gpytorch.settings.use_keops(False), torch.no_grad():
            want = dense(x).to_dense() @ rhs
            err = ((product(x) @ rhs - want).norm() / want.norm()).item()
    summary = f"diag at max_cholesky_size(0): {diag}; RBF*Periodic n=300 rel. error {err:.0e}"
    return Probe(summary, defect=diag != "ok" or not err <= 1e-10)


PATCH = Patch(
    name="keops-kernels",
    summary="KeOps kernels: O(n) diagonals under any max_cholesky_size, exact fused sums/products",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=_probe,
)
