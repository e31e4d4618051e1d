r"""The periodic kernel in KeOps form, with period :math:`p_d` and lengthscale :math:`\ell_d`:

.. math::

    k(\mathbf x, \mathbf x') = \exp\left(-2 \sum_d \sin^2\left(\pi (x_d - x'_d) / p_d\right) / \ell_d\right)
"""

from __future__ import annotations

import math
from typing import Any

from gpytorch.kernels.keops.periodic_kernel import PeriodicKernel as KeOpsPeriodicKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class PeriodicKernel(KeOpsKernel, KeOpsPeriodicKernel):
    """Drop-in for :class:`gpytorch.kernels.keops.PeriodicKernel` (and :class:`gpytorch.kernels.PeriodicKernel`)
    with an O(N) diagonal and fused sums/products. Same arguments, parameters, constraints and priors.
    """

    _dimension_params = frozenset({"lengthscale"})

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        scale = self.period_length / math.pi
        return x1.div(scale), x2.div(scale), {"lengthscale": self.lengthscale}

    @staticmethod
    def _term(x1: Any, x2: Any, lengthscale: Any) -> Any:
        return (vsum((x1 - x2).sin() ** 2 / lengthscale) * -2).exp()
