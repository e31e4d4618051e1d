"""Repairs of linear_operator (patch ``matmul-vector-backward``).

:func:`matmul_backward` is the backward pass of linear_operator's ``Matmul`` autograd function, correct for a batch
operator times a 1-D vector (the gradients equal ``torch.matmul``'s).
"""

from ._matmul import matmul_backward

__all__ = ["matmul_backward"]
