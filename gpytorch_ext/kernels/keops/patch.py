"""The ``keops-kernels`` patch: GPyTorch's own KeOps kernels computed by the formula families of this package.

It replaces

- ``forward`` of :class:`gpytorch.kernels.keops.RBFKernel`, ``MaternKernel`` and ``PeriodicKernel`` by the
  forward pass of the family in :data:`FAMILIES` (same formulas): O(N) diagonals under any
  ``max_cholesky_size``, sums, products and scalings that fuse into one exact KeOps reduction, and
  ``last_dim_is_batch=True``, so that GPyTorch's structure kernels (KISS-GP, additive and product structure)
  work around them;
- ``__call__`` of :class:`gpytorch.kernels.keops.KeOpsKernel`: one warning when KeOps is unavailable, instead of
  one per call;
- ``forward`` of :class:`gpytorch.kernels.ProductKernel`, which multiplies KeOps formula kernels as one formula
  also for ``x1 != x2`` (where it densified every factor) and keeps GPyTorch's behaviour for everything else;

and adds the five new families and :class:`~._availability.KeOpsUnavailableWarning` to ``gpytorch.kernels.keops``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gpytorch
import torch
from gpytorch.kernels import keops as gkeops
from torch import Tensor

from gpytorch_ext._registry import Patch, Probe, Replacement

from ._availability import KeOpsUnavailableWarning
from ._forward import formula_forward
from ._kernel import KeOpsKernel
from .composition import fused_product
from .cosine import CosineKernel
from .linear import LinearKernel
from .matern import MaternKernel
from .periodic import PeriodicKernel
from .polynomial import PolynomialKernel
from .rbf import RBFKernel
from .rq import RQKernel
from .spectral_mixture import SpectralMixtureKernel

#: GPyTorch's KeOps kernel classes, and the family whose formula computes each of them.
FAMILIES: dict[type, type[KeOpsKernel]] = {
    gkeops.RBFKernel: RBFKernel,
    gkeops.MaternKernel: MaternKernel,
    gkeops.PeriodicKernel: PeriodicKernel,
}

#: The families that the upstream patch adds to ``gpytorch.kernels.keops`` (with the warning class).
NEW_FAMILIES = (RQKernel, CosineKernel, LinearKernel, PolynomialKernel, SpectralMixtureKernel)

# GPyTorch's own ProductKernel.forward, as imported (before any patch)
_UPSTREAM_PRODUCT_FORWARD = vars(gpytorch.kernels.ProductKernel)["forward"]


def _family_forward(family: type[KeOpsKernel]) -> Callable[..., Any]:
    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Any:
        last_dim_is_batch = params.get("last_dim_is_batch", False)
        return formula_forward(self, family, x1, x2, diag=diag, last_dim_is_batch=last_dim_is_batch)

    return forward


_FORWARDS = {upstream: _family_forward(family) for upstream, family in FAMILIES.items()}


def _keops_call(self, *args, **kwargs):
    return KeOpsKernel.__call__(self, *args, **kwargs)


def _product_forward(self, x1, x2, diag=False, **params):
    res = fused_product(self, x1, x2, diag=diag, **params)
    return _UPSTREAM_PRODUCT_FORWARD(self, x1, x2, diag=diag, **params) if res is None else res


def _replacements() -> list[Replacement]:
    return [
        *(Replacement(upstream, "forward", forward) for upstream, forward in _FORWARDS.items()),
        Replacement(gkeops.KeOpsKernel, "__call__", _keops_call),
        Replacement(gpytorch.kernels.ProductKernel, "forward", _product_forward),
        *(Replacement(gkeops, cls.__name__, cls, create=True) for cls in NEW_FAMILIES),
        Replacement(gkeops, "KeOpsUnavailableWarning", KeOpsUnavailableWarning, create=True),
    ]


def _relative_error(got: Tensor, want: Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def _probe() -> Probe:
    """Diagonal under max_cholesky_size(0); matmul errors at n=300 of a product and a product structure kernel.

    ``use_keops(False)`` keeps the KeOps code paths (the same operators) without compiling KeOps formulas.
    """
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
        structure = gpytorch.kernels.ProductStructureKernel(gkeops.MaternKernel(nu=2.5), num_dims=2).double()
        dense_structure = gpytorch.kernels.ProductStructureKernel(gpytorch.kernels.MaternKernel(nu=2.5), num_dims=2)
        dense_structure.double().load_state_dict(structure.state_dict())
        with gpytorch.settings.max_cholesky_size(0), gpytorch.settings.use_keops(False), torch.no_grad():
            err = _relative_error(product(x) @ rhs, dense(x).to_dense() @ rhs)
            try:
                with gpytorch.settings.debug(True):
                    structure_err = _relative_error(structure(x) @ rhs, dense_structure(x).to_dense() @ rhs)
                structure_result = f"rel. error {structure_err:.0e}"
            except Exception as exc:
                structure_err, structure_result = float("nan"), type(exc).__name__
    summary = (
        f"diag at max_cholesky_size(0): {diag}; RBF*Periodic n=300 rel. error {err:.0e}; "
        f"ProductStructureKernel(Matern): {structure_result}"
    )
    return Probe(summary, defect=diag != "ok" or not err <= 1e-10 or not structure_err <= 1e-10)


PATCH = Patch(
    name="keops-kernels",
    summary="KeOps kernels: O(n) diagonals, exact fused sums/products, last_dim_is_batch for structure kernels",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=_probe,
)
