"""Multitask variational strategies that take batched inputs (patch ``multitask-batched-inputs``, gpytorch 2011).

:class:`IndependentMultitaskVariationalStrategy` and :class:`LMCVariationalStrategy` are drop-in subclasses of
GPyTorch's: inputs whose leading batch does not broadcast with the task (latent) dimension get the singleton task
dimension inserted, so ``model(x)`` for ``x`` of shape ``b x N x D`` equals stacking ``model(x[i])``; inputs that
work today keep their meaning, and inputs that fit neither way raise a ``ValueError`` naming the shapes.
"""

from ._strategies import IndependentMultitaskVariationalStrategy, LMCVariationalStrategy

__all__ = ["IndependentMultitaskVariationalStrategy", "LMCVariationalStrategy"]
