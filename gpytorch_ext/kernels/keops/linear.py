r"""The linear kernel in KeOps form, with variances :math:`v_d`:

.. math::

    k(\mathbf x, \mathbf x') = \sum_d v_d\, x_d x'_d
"""

from __future__ import annotations

from typing import Any

from gpytorch.kernels.linear_kernel import LinearKernel as GLinearKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class LinearKernel(KeOpsKernel, GLinearKernel):
    """KeOps drop-in for :class:`gpytorch.kernels.LinearKernel`: same arguments, parameters, constraints, priors."""

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        root = self.variance.sqrt()
        return x1 * root, x2 * root, {}

    @staticmethod
    def _term(x1: Any, x2: Any) -> Any:
        return vsum(x1 * x2)
