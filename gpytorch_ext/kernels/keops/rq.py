r"""The rational quadratic kernel in KeOps form:

.. math::

    k(\mathbf x, \mathbf x') = \left(1 + \frac{r^2}{2 \alpha}\right)^{-\alpha},
    \quad r = \lVert (\mathbf x - \mathbf x') / \ell \rVert
"""

from __future__ import annotations

from typing import Any

from gpytorch.kernels.rq_kernel import RQKernel as GRQKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class RQKernel(KeOpsKernel, GRQKernel):
    """KeOps drop-in for :class:`gpytorch.kernels.RQKernel`: same arguments, parameters, constraints and priors."""

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return x1.div(self.lengthscale), x2.div(self.lengthscale), {"alpha": self.alpha.unsqueeze(-1)}

    @staticmethod
    def _term(x1: Any, x2: Any, alpha: Any) -> Any:
        return ((vsum((x1 - x2) ** 2) / (alpha * 2) + 1).log() * -alpha).exp()
