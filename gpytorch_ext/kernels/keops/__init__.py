"""Diag-aware KeOps kernels (patch ``keops-kernels``).

Drop-ins for GPyTorch's KeOps kernels and their dense namesakes whose diagonal is computed in O(N) with plain
torch (never KeOps), whose sums, products and scalings fuse into one exact KeOps reduction, and which fall back
to dense mode with one warning when KeOps is unavailable.
"""

from .base import KeOpsFormulaOperator, KeOpsKernel, KeOpsUnavailableWarning, keops_unavailable_reason
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
