"""Diag-aware KeOps kernels (patch ``keops-kernels``).

Drop-ins for GPyTorch's KeOps kernels and their dense namesakes whose diagonal is computed in O(N) with plain
torch (never KeOps), whose sums, products and scalings fuse into one exact KeOps reduction, which work inside
GPyTorch's structure kernels (``last_dim_is_batch``), and which fall back to dense mode with one warning when
KeOps is unavailable.

The modules, bottom up: ``_availability`` (may KeOps be used?), ``_vectors`` (one vector algebra for tensors and
KeOps LazyTensors), ``_nodes`` (what formulas are built from), ``_formula`` (a formula evaluated with KeOps,
densely, or row-wise), ``_cache`` (repair of KeOps' build cache), ``_operator`` (the formula operator, its
dense fallback and its algebra), ``composition`` (sums, products, scalings), ``_forward`` (one family's forward
pass), ``_kernel`` (the family base class), one module per family, and ``patch`` (the run-time patch).
"""

from ._availability import KeOpsUnavailableWarning, keops_unavailable_reason
from ._kernel import KeOpsKernel
from ._operator import KeOpsFormulaOperator
from .composition import AdditiveKernel, ProductKernel, ScaleKernel
from .cosine import CosineKernel
from .linear import LinearKernel
from .matern import MaternKernel
from .periodic import PeriodicKernel
from .polynomial import PolynomialKernel
from .rbf import RBFKernel
from .rq import RQKernel
from .spectral_mixture import SpectralMixtureKernel

__all__ = [
    "AdditiveKernel",
    "CosineKernel",
    "KeOpsFormulaOperator",
    "KeOpsKernel",
    "KeOpsUnavailableWarning",
    "LinearKernel",
    "MaternKernel",
    "PeriodicKernel",
    "PolynomialKernel",
    "ProductKernel",
    "RBFKernel",
    "RQKernel",
    "ScaleKernel",
    "SpectralMixtureKernel",
    "keops_unavailable_reason",
]
