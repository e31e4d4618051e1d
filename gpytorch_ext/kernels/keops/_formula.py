r"""A covariance formula, stated once and evaluated three ways.

A :class:`Formula` wraps a root node (see :mod:`._nodes`), a function of two broadcast input blocks and some
parameters whose vector dimension is last. It is evaluated

- *pairwise with KeOps*: on symbolic :class:`pykeops.torch.LazyTensor` variables ``x1[..., :, None, :]`` and
  ``x2[..., None, :, :]``; matrix products are then single KeOps reductions;
- *pairwise dense*: on the same views as plain torch tensors (small problems, or KeOps unavailable);
- *row-wise*: on ``x1[..., i, :]`` and ``x2[..., i, :]``, which is the diagonal in O(n) time and memory with
  plain torch. KeOps is never touched there.

This module imports only torch and gpytorch.
"""

from __future__ import annotations

from typing import Any

from gpytorch.kernels.keops import keops_kernel as _gkeops
from torch import Tensor

from ._availability import is_lazy, use_keops
from ._nodes import Node

__all__ = ["Formula"]


class Formula:
    r"""A covariance function given by a root node; the ``covar_func`` of a KeOps formula operator.

    :param root: a node ``(x1, x2, params) -> value`` on broadcast inputs whose vector dimension is last.
    """

    def __init__(self, root: Node):
        self.root = root

    def __call__(self, x1: Tensor, x2: Tensor, **params: Tensor) -> Any:
        """The ``... x N x M`` kernel matrix: a KeOps LazyTensor when :func:`use_keops`, else a tensor.

        :param x1: ``... x N x D``
        :param x2: ``... x M x D``
        :param params: each ``... x 1 x K``
        """
        if not use_keops(x1, x2):
            return self.dense(x1, x2, **params)
        lazy = _gkeops.LazyTensor  # looked up at call time, so tests can spy on it
        a, b = lazy(x1[..., :, None, :].contiguous()), lazy(x2[..., None, :, :].contiguous())
        p = {k: lazy(v[..., None, :, :].contiguous()) for k, v in params.items()}
        out = self.root(a, b, p)
        return out if is_lazy(out) else out.squeeze(-1)  # a plain tensor while a test stubs out LazyTensor

    def dense(self, x1: Tensor, x2: Tensor, **params: Tensor) -> Tensor:
        """The ``... x N x M`` kernel matrix as a plain tensor, never using KeOps."""
        p = {k: v[..., None, :, :] for k, v in params.items()}
        return self.root(x1[..., :, None, :], x2[..., None, :, :], p).squeeze(-1)

    def rowwise(self, x1: Tensor, x2: Tensor, **params: Tensor) -> Tensor:
        r"""The values :math:`k(\mathbf x_{1,i}, \mathbf x_{2,i})`, shape ``... x N``, in O(N) with plain torch.

        :param x1: ``... x N x D``
        :param x2: ``... x N x D`` (the same N)
        """
        if x1.size(-2) != x2.size(-2):
            raise ValueError(
                "the diagonal of a kernel needs x1 and x2 with the same number of rows, got "
                f"x1.shape={tuple(x1.shape)} and x2.shape={tuple(x2.shape)}"
            )
        return self.root(x1, x2, params).squeeze(-1)

    def __repr__(self) -> str:
        return f"Formula({self.root!r})"
