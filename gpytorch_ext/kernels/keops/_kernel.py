r"""The base class of the KeOps formula kernels.

A family subclasses :class:`KeOpsKernel` (and GPyTorch's namesake, for the constructor, parameters and priors)
and states its formula once in :meth:`~KeOpsKernel._term`, with the input preparation in
:meth:`~KeOpsKernel._prepare`; :func:`~._forward.formula_forward` evaluates it.

This module imports only torch, linear_operator and gpytorch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from gpytorch.kernels.keops import keops_kernel as _gkeops
from gpytorch.kernels.kernel import Kernel
from torch import Tensor

from ._availability import warn_unavailable
from ._forward import formula_forward
from ._operator import KeOpsFormulaOperator
from .composition import Fusing

__all__ = ["KeOpsKernel"]


class KeOpsKernel(Fusing, _gkeops.KeOpsKernel):
    r"""Base class of the diag-aware KeOps kernels.

    - ``kernel(x1, x2)`` is a :class:`~._operator.KeOpsFormulaOperator`: KeOps reductions when both inputs have
      at least :class:`gpytorch.settings.max_cholesky_size` rows (and :class:`gpytorch.settings.use_keops` is
      on), dense tensors otherwise;
    - ``kernel(x1, x2, diag=True)`` and ``kernel(x1, x2).diagonal()`` evaluate the formula row-wise in O(N)
      with plain torch, never KeOps;
    - ``k1 + k2``, ``k1 * k2`` and :class:`~gpytorch.kernels.ScaleKernel` fuse into one formula;
    - ``last_dim_is_batch=True`` (GPyTorch's structure kernels pass it) gives ``... x D x N x M``.

    Without KeOps (not installed, or no compiler), everything runs in dense mode after one
    :class:`~._availability.KeOpsUnavailableWarning`.

    :cvar _dimension_params: the names of the parameters :meth:`_prepare` returns with one value (or ``Q``
        values, dimension fastest) per input dimension, rather than values shared by all dimensions.
    """

    _dimension_params: ClassVar[frozenset[str]] = frozenset()

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Transform the inputs (``... x N x D`` to ``... x N x D'``) and return the formula's tensor parameters.

        :return: ``x1_``, ``x2_`` and a dict of parameters, each of shape ``*batch_shape x 1 x K``.
        """
        raise NotImplementedError

    def _term_options(self) -> dict[str, Any]:
        """Non-tensor settings of the formula (e.g. ``nu``), passed to :meth:`_term` as keywords."""
        return {}

    @staticmethod
    def _term(x1: Any, x2: Any, **params: Any) -> Any:
        """The kernel formula on broadcast inputs (tensors or LazyTensors); the vector dimension is last."""
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        warn_unavailable()
        args = [a.contiguous() if torch.is_tensor(a) else a for a in args]
        kwargs = {k: v.contiguous() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        return Kernel.__call__(self, *args, **kwargs)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Tensor | KeOpsFormulaOperator:
        last_dim_is_batch = params.get("last_dim_is_batch", False)
        return formula_forward(self, type(self), x1, x2, diag=diag, last_dim_is_batch=last_dim_is_batch)
