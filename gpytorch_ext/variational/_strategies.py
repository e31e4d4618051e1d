"""Drop-in multitask variational strategies that take batched inputs."""

from __future__ import annotations

import gpytorch
from torch import Tensor

from ._batched_inputs import align_inputs, base_batch_shape

__all__ = ["IndependentMultitaskVariationalStrategy", "LMCVariationalStrategy"]


class IndependentMultitaskVariationalStrategy(gpytorch.variational.IndependentMultitaskVariationalStrategy):
    """:class:`gpytorch.variational.IndependentMultitaskVariationalStrategy` for inputs ``... x N x D`` of any
    batch shape: a batch that does not broadcast with the task dimension gets a singleton task dimension."""

    def __call__(self, x: Tensor, task_indices: Tensor | None = None, prior: bool = False, **kwargs):
        batch_shape = base_batch_shape(self.base_variational_strategy, self.num_tasks, self.task_dim)
        x, task_indices = align_inputs(x, task_indices, batch_shape, self.task_dim, self.num_tasks, type(self).__name__)
        return super().__call__(x, task_indices=task_indices, prior=prior, **kwargs)


class LMCVariationalStrategy(gpytorch.variational.LMCVariationalStrategy):
    """:class:`gpytorch.variational.LMCVariationalStrategy` for inputs ``... x N x D`` of any batch shape: a batch
    that does not broadcast with the latent dimension gets a singleton latent dimension."""

    def __call__(self, x: Tensor, *, task_indices: Tensor | None = None, prior: bool = False, **kwargs):
        batch_shape = base_batch_shape(self.base_variational_strategy, self.num_latents, self.latent_dim)
        x, task_indices = align_inputs(
            x, task_indices, batch_shape, self.latent_dim, self.num_latents, type(self).__name__
        )
        return super().__call__(x, task_indices=task_indices, prior=prior, **kwargs)
