r"""The spectral mixture kernel in KeOps form, with weights :math:`w_q`, scales :math:`s_{qd}` and means
:math:`\mu_{qd}` of :math:`Q` mixtures, and :math:`\tau = \mathbf x - \mathbf x'`:

.. math::

    k(\mathbf x, \mathbf x') = \prod_d \sum_{q=1}^Q w_q \exp\left(-2\pi^2 \tau_d^2 s_{qd}^2\right)
    \cos\left(2\pi \tau_d \mu_{qd}\right)

(GPyTorch's definition: the mixture is summed per dimension, then multiplied over dimensions.)
"""

from __future__ import annotations

import math
from typing import Any

from gpytorch.kernels.spectral_mixture_kernel import SpectralMixtureKernel as GSpectralMixtureKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import cols, vdim


class SpectralMixtureKernel(KeOpsKernel, GSpectralMixtureKernel):
    """KeOps drop-in for :class:`gpytorch.kernels.SpectralMixtureKernel`: same arguments and parameters."""

    _dimension_params = frozenset({"scales", "means"})

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if x1.size(-1) != self.ard_num_dims:
            raise ValueError(
                f"SpectralMixtureKernel expected inputs with {self.ard_num_dims} dimensions (ard_num_dims), "
                f"got x1.shape={tuple(x1.shape)}"
            )
        batch = self.raw_mixture_scales.shape[:-3]
        flat = (*batch, 1, self.num_mixtures * self.ard_num_dims)  # *batch x Q x 1 x D -> *batch x 1 x (Q D)
        params = {
            "weights": self.mixture_weights.unsqueeze(-2),
            "scales": self.mixture_scales.transpose(-3, -2).reshape(flat),
            "means": self.mixture_means.transpose(-3, -2).reshape(flat),
        }
        return x1, x2, params

    def _term_options(self) -> dict[str, Any]:
        return {"num_mixtures": self.num_mixtures}

    @staticmethod
    def _term(x1: Any, x2: Any, weights: Any, scales: Any, means: Any, num_mixtures: int) -> Any:
        tau = x1 - x2
        dims = vdim(tau)
        per_dim = 0  # sum over mixtures, one value per dimension
        for q in range(num_mixtures):
            s, m = cols(scales, q * dims, (q + 1) * dims), cols(means, q * dims, (q + 1) * dims)
            per_dim = (
                per_dim
                + cols(weights, q, q + 1) * ((tau * s) ** 2 * (-2 * math.pi**2)).exp() * (tau * m * (2 * math.pi)).cos()
            )
        res = cols(per_dim, 0, 1)
        for d in range(1, dims):
            res = res * cols(per_dim, d, d + 1)
        return res
