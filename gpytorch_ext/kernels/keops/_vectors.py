r"""The vector algebra shared by torch tensors and KeOps LazyTensors.

Every value in a formula carries its vector dimension last. A torch tensor keeps it as a real last dimension;
a KeOps LazyTensor has it as its (symbolic) dimension. These helpers read and reduce it the same way for both,
so that one formula serves the KeOps, the dense and the row-wise evaluation.
"""

from __future__ import annotations

from typing import Any

from ._availability import is_lazy

__all__ = ["cols", "vdim", "vsum"]


def vsum(x: Any) -> Any:
    """Sum over the vector (last) dimension, keeping it with size 1, for tensors and LazyTensors alike."""
    return x.sum(-1) if is_lazy(x) else x.sum(-1, keepdim=True)


def vdim(x: Any) -> int:
    """The size of the vector (last) dimension, for tensors and LazyTensors alike."""
    return x.ndim if is_lazy(x) else x.shape[-1]


def cols(x: Any, start: int, stop: int) -> Any:
    """Columns ``start:stop`` of the vector (last) dimension, for tensors and LazyTensors alike."""
    if start == 0 and stop == vdim(x):
        return x
    return x[start:stop] if is_lazy(x) else x[..., start:stop]
