"""The ``matmul-vector-backward`` patch: a batch LinearOperator times a 1-D vector backpropagates like torch."""

from __future__ import annotations

from linear_operator.functions._matmul import Matmul

from .._registry import Patch, Replacement
from ._matmul import matmul_backward
from ._probe import probe

__all__ = ["PATCH"]


def _backward(ctx, grad_output):
    return matmul_backward(ctx, grad_output)


def _replacements() -> list[Replacement]:
    # linear_operator's autograd function behind LinearOperator.matmul; it has no public hook for its backward
    return [Replacement(Matmul, "backward", staticmethod(_backward))]


PATCH = Patch(
    name="matmul-vector-backward",
    summary="a batch LinearOperator times a 1-D vector: backward equals torch.matmul's (linear_operator)",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=probe,
)
