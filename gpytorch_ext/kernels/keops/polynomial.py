r"""The polynomial kernel in KeOps form, with offset :math:`c` and integer power :math:`p`:

.. math::

    k(\mathbf x, \mathbf x') = (\mathbf x^\top \mathbf x' + c)^p
"""

from __future__ import annotations

from typing import Any

from gpytorch.kernels.polynomial_kernel import PolynomialKernel as GPolynomialKernel
from torch import Tensor

from ._kernel import KeOpsKernel
from ._vectors import vsum


class PolynomialKernel(KeOpsKernel, GPolynomialKernel):
    """KeOps drop-in for :class:`gpytorch.kernels.PolynomialKernel`: same arguments, parameters, constraints,
    priors. The power must be a non-negative integer (as a real power of a negative base is undefined).
    """

    def __init__(self, power: int, **kwargs: Any):
        super().__init__(power=power, **kwargs)
        if float(self.power) != int(self.power) or self.power < 0:
            raise ValueError(f"PolynomialKernel needs a non-negative integer power, got power={self.power!r}")

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return x1, x2, {"offset": self.offset.unsqueeze(-1)}

    def _term_options(self) -> dict[str, Any]:
        return {"power": int(self.power)}

    @staticmethod
    def _term(x1: Any, x2: Any, offset: Any, power: int) -> Any:
        return (vsum(x1 * x2) + offset) ** power
