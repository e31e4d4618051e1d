r"""The cosine kernel in KeOps form, with period :math:`p`:

.. math::

    k(\mathbf x, \mathbf x') = \cos\left(\pi \lVert \mathbf x - \mathbf x' \rVert / p\right)
"""

from __future__ import annotations

import math
from typing import Any

from gpytorch.kernels.cosine_kernel import CosineKernel as GCosineKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class CosineKernel(KeOpsKernel, GCosineKernel):
    """KeOps drop-in for :class:`gpytorch.kernels.CosineKernel`: same arguments, parameters, constraints, priors."""

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return x1.div(self.period_length), x2.div(self.period_length), {}

    @staticmethod
    def _term(x1: Any, x2: Any) -> Any:
        return ((vsum((x1 - x2) ** 2) + 1e-30).sqrt() * math.pi).cos()
