"""Batched inputs for the multitask variational strategies: where the task (latent) dimension goes.

``IndependentMultitaskVariationalStrategy`` and ``LMCVariationalStrategy`` wrap a base variational strategy that
holds a batch of GPs, one batch dimension of which (``task_dim`` / ``latent_dim``) enumerates the tasks (latent
functions). Inputs ``x`` of shape ``... x N x D`` are broadcast against that batch shape. GPyTorch 1.15.2 fails when
a leading input batch does not broadcast with the task dimension (gpytorch issue 2011: ``x`` of shape
``5 x 20 x D`` for 3 tasks); the maintainers' suggestion there is to insert the singleton task dimension, which is
what :func:`align_inputs` does. The module imports only torch and gpytorch.

The rule, for input batch shape ``B`` and the base strategy's batch shape ``G`` (with the tasks at ``task_dim``):

1. ``B`` broadcasts with ``G``: the inputs keep today's meaning (per-task inputs ``T x N x D``, inputs that
   already carry a singleton task dimension ``... x 1 x N x D``, inputs shared by all tasks ``N x D``);
2. otherwise a singleton dimension is inserted into ``B`` at ``task_dim``: a batch of inputs, each evaluated for
   every task (``5 x 20 x D`` becomes ``5 x 1 x 20 x D``), which equals evaluating them one by one;
3. otherwise (neither broadcasts) a ``ValueError`` names the input shape, the number of tasks, ``task_dim`` and the
   base strategy's batch shape.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["align_inputs", "base_batch_shape"]


def base_batch_shape(base_strategy, num_tasks: int, task_dim: int) -> torch.Size:
    """The batch shape of the GPs the base strategy holds: its inducing points' and its variational distribution's,
    broadcast; without those, ``num_tasks`` at ``task_dim``."""
    shapes = []
    inducing_points = getattr(base_strategy, "inducing_points", None)
    if isinstance(inducing_points, Tensor):
        shapes.append(inducing_points.shape[:-2])
    # the variational distribution's batch shape: GPyTorch's own LMCVariationalStrategy reads it the same way
    variational = getattr(base_strategy, "_variational_distribution", None)
    if isinstance(getattr(variational, "batch_shape", None), torch.Size):
        shapes.append(variational.batch_shape)
    if not shapes:
        return torch.Size((num_tasks,) + (1,) * (-task_dim - 1)) if task_dim < 0 else torch.Size((num_tasks,))
    return torch.broadcast_shapes(*shapes)


def _broadcasts(*shapes: torch.Size) -> bool:
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return False
    return True


def align_inputs(
    x: Tensor,
    task_indices: Tensor | None,
    batch_shape: torch.Size,
    task_dim: int,
    num_tasks: int,
    owner: str,
) -> tuple[Tensor, Tensor | None]:
    """``x`` (``... x N x D``) with a singleton task dimension inserted where its batch shape does not broadcast
    with the base strategy's ``batch_shape`` (see the rule above), and ``task_indices`` (``... x N``, the task of
    each input) with the same dimension inserted where it has the inputs' batch dimensions.

    :param x: the inputs.
    :param task_indices: the task of each input, or ``None``.
    :param batch_shape: the base strategy's batch shape (:func:`base_batch_shape`).
    :param task_dim: the batch dimension of the tasks (latent functions) in ``batch_shape``; negative, or
        non-negative counted from the left of ``batch_shape``.
    :param num_tasks: the number of tasks (latent functions), named in errors.
    :param owner: the strategy's name, for error messages.
    :raises ValueError: when the inputs broadcast with the base strategy neither as they are nor with the singleton
        task dimension.
    """
    if x.dim() < 2:
        raise ValueError(f"{owner}: inputs must have shape ... x N x D, got {tuple(x.shape)}")
    inputs = x.shape[:-2]
    if _broadcasts(inputs, batch_shape):
        return x, task_indices
    from_right = task_dim if task_dim < 0 else task_dim - len(batch_shape)
    if -from_right <= len(inputs) + 1:
        aligned = x.unsqueeze(from_right - 2)
        if _broadcasts(aligned.shape[:-2], batch_shape):
            if task_indices is not None and task_indices.dim() - 1 >= -from_right:
                task_indices = task_indices.unsqueeze(from_right - 1)
            return aligned, task_indices
    raise ValueError(
        f"{owner}: inputs of shape {tuple(x.shape)} do not broadcast with the base variational strategy's batch "
        f"shape {tuple(batch_shape)} ({num_tasks} tasks at batch dimension {task_dim}), neither as they are "
        "(inputs per task) nor with a singleton task dimension inserted (inputs shared by all tasks)"
    )
