"""The backward pass of linear_operator's ``Matmul``, correct for a batch operator times a 1-D vector.

``LinearOperator.matmul`` computes :math:`\\mathbf A \\mathbf v` through the autograd function
``linear_operator.functions._matmul.Matmul``. For a 1-D right-hand side the forward pass appends a column dimension
and squeezes it off the result; linear_operator 0.6.1's backward pass restored it only when the incoming gradient
was 1-D, i.e. only for a non-batch operator. For a batch operator (``b x N x N @ N``) the gradient ``b x N`` was
taken for a matrix, and the backward pass crashed (or, for operators with their own bilinear derivative, could
silently mix batch and row dimensions). Here the column dimension is restored whenever the right-hand side was a
vector, so that the gradients equal ``torch.matmul``'s. The module imports only torch.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["matmul_backward"]


def matmul_backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
    """``Matmul.backward``: the gradients of the right-hand side and of the operator's representation tensors.

    :param ctx: the autograd context the forward pass filled (``representation_tree``, the saved right-hand side
        and representation, optionally the operator itself as ``_linear_op``).
    :param grad_output: the gradient of the result, ``... x M`` for a 1-D right-hand side, else ``... x M x P``.
    """
    rhs = ctx.saved_tensors[0]
    matrix_args = ctx.saved_tensors[1:]
    rhs_shape = rhs.shape
    if rhs.dim() == 1:  # the forward pass squeezed the column dimension off the result, whatever its batch shape
        rhs = rhs.unsqueeze(-1)
        grad_output = grad_output.unsqueeze(-1)

    rhs_grad = None
    arg_grads = [None] * len(matrix_args)

    # input_1 gradient
    if any(ctx.needs_input_grad[2:]):
        arg_grads = ctx.representation_tree(*matrix_args)._bilinear_derivative(grad_output, rhs)

    # input_2 gradient
    if ctx.needs_input_grad[1]:
        if hasattr(ctx, "_linear_op"):
            linear_op = ctx._linear_op
        else:
            linear_op = ctx.representation_tree(*matrix_args)
        rhs_grad = linear_op._t_matmul(grad_output)
        if len(rhs_shape) == 1:
            rhs_grad = rhs_grad.squeeze(-1)
        # For broadcasting
        if rhs_grad.dim() > len(rhs_shape):
            rhs_grad = rhs_grad.reshape(-1, *rhs_shape).sum(0)

    return tuple([None] + [rhs_grad] + list(arg_grads))
