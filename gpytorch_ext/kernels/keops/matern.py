r"""The Matern kernel (:math:`\nu \in \{1/2, 3/2, 5/2\}`) in KeOps form, with :math:`d = \lVert (\mathbf x -
\mathbf x') / \ell \rVert`:

.. math::

    k_{1/2} = e^{-d}, \quad k_{3/2} = (1 + \sqrt 3 d) e^{-\sqrt 3 d}, \quad
    k_{5/2} = (1 + \sqrt 5 d + \tfrac 5 3 d^2) e^{-\sqrt 5 d}
"""

from __future__ import annotations

import math
from typing import Any

from gpytorch.kernels.keops.matern_kernel import MaternKernel as KeOpsMaternKernel
from gpytorch.kernels.matern_kernel import MaternKernel as GMaternKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class MaternKernel(KeOpsKernel, KeOpsMaternKernel, GMaternKernel):
    """Drop-in for :class:`gpytorch.kernels.keops.MaternKernel` (and :class:`gpytorch.kernels.MaternKernel`) with
    an O(N) diagonal and fused sums/products. Same arguments (``nu`` in 0.5, 1.5, 2.5), parameters and priors.
    """

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        mean = x1.mean(dim=-2, keepdim=True)  # centring keeps float32 distances accurate
        return (x1 - mean).div(self.lengthscale), (x2 - mean).div(self.lengthscale), {}

    def _term_options(self) -> dict[str, Any]:
        return {"nu": self.nu}

    @staticmethod
    def _term(x1: Any, x2: Any, nu: float) -> Any:
        sq = vsum((x1 - x2) ** 2)
        d = (sq + 1e-30).sqrt()  # the epsilon keeps the gradient finite at d = 0
        decay = (d * -math.sqrt(2 * nu)).exp()
        if nu == 0.5:
            return decay
        if nu == 1.5:
            return (d * math.sqrt(3) + 1) * decay
        return (d * math.sqrt(5) + sq * (5.0 / 3.0) + 1) * decay
