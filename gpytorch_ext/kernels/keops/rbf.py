r"""The RBF (squared exponential) kernel in KeOps form.

.. math::

    k(\mathbf x, \mathbf x') = \exp\left(-\tfrac{1}{2} \lVert (\mathbf x - \mathbf x') / \ell \rVert^2\right)
"""

from __future__ import annotations

from typing import Any

from gpytorch.kernels.keops.rbf_kernel import RBFKernel as KeOpsRBFKernel
from gpytorch.kernels.rbf_kernel import RBFKernel as GRBFKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class RBFKernel(KeOpsKernel, KeOpsRBFKernel, GRBFKernel):
    """Drop-in for :class:`gpytorch.kernels.keops.RBFKernel` (and :class:`gpytorch.kernels.RBFKernel`) with an
    O(N) diagonal and fused sums/products. Same arguments, parameters, constraints and priors.
    """

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return x1.div(self.lengthscale), x2.div(self.lengthscale), {}

    @staticmethod
    def _term(x1: Any, x2: Any) -> Any:
        return (-vsum((x1 - x2) ** 2) / 2).exp()
