"""The ``multitask-batched-inputs`` patch: batched inputs for the multitask variational strategies (gpytorch 2011)."""

from __future__ import annotations

from gpytorch.variational import IndependentMultitaskVariationalStrategy, LMCVariationalStrategy
from torch import Tensor

from .._registry import Patch, Replacement
from ._batched_inputs import align_inputs, base_batch_shape
from ._probe import probe

__all__ = ["PATCH"]


def _replacements() -> list[Replacement]:
    imvs_call = vars(IndependentMultitaskVariationalStrategy)["__call__"]
    lmc_call = vars(LMCVariationalStrategy)["__call__"]

    def _imvs_call(self, x: Tensor, task_indices: Tensor | None = None, prior: bool = False, **kwargs):
        batch_shape = base_batch_shape(self.base_variational_strategy, self.num_tasks, self.task_dim)
        x, task_indices = align_inputs(x, task_indices, batch_shape, self.task_dim, self.num_tasks, type(self).__name__)
        return imvs_call(self, x, task_indices=task_indices, prior=prior, **kwargs)

    def _lmc_call(self, x: Tensor, *, task_indices: Tensor | None = None, prior: bool = False, **kwargs):
        batch_shape = base_batch_shape(self.base_variational_strategy, self.num_latents, self.latent_dim)
        x, task_indices = align_inputs(
            x, task_indices, batch_shape, self.latent_dim, self.num_latents, type(self).__name__
        )
        return lmc_call(self, x, task_indices=task_indices, prior=prior, **kwargs)

    return [
        Replacement(IndependentMultitaskVariationalStrategy, "__call__", _imvs_call),
        Replacement(LMCVariationalStrategy, "__call__", _lmc_call),
    ]


PATCH = Patch(
    name="multitask-batched-inputs",
    summary="multitask variational strategies take batched inputs: a singleton task dim where the batch needs one",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=probe,
)
