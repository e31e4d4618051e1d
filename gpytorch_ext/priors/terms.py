"""One prior term per (parameter, prior): ``named_priors`` and an exact MLL that count each prior once.

Drop-ins for explicit opt-in; the ``prior-terms`` patch makes GPyTorch's own ``Module.named_priors`` and
``ExactMarginalLogLikelihood`` behave the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import gpytorch
import torch

from ._repair import guard_priors
from ._terms import add_prior_terms
from ._terms import named_priors as _named_priors

__all__ = ["ExactMarginalLogLikelihood", "named_priors"]


def named_priors(module: torch.nn.Module) -> Iterator[tuple]:
    """``Module.named_priors()`` with each prior once per parameter it governs.

    Yields ``(name, module, prior, closure, setting_closure)``: a module reachable on two paths (``rbf + rbf *
    periodic``) contributes its priors once; one prior object given to two modules contributes once per module;
    one prior object on two names of one shared ``nn.Parameter`` contributes once. A prior on a parameter whose
    constraint is not enforced (``transform=None``) is wrapped so that its term is ``-inf`` outside the interval.

    Example:
        >>> rbf = gpytorch.kernels.RBFKernel(lengthscale_prior=gpytorch.priors.GammaPrior(3.0, 6.0))
        >>> [name for name, *_ in named_priors(rbf + rbf * gpytorch.kernels.PeriodicKernel())]
        ['kernels.0.lengthscale_prior']
    """
    return guard_priors(module, _named_priors(module))


class ExactMarginalLogLikelihood(gpytorch.mlls.ExactMarginalLogLikelihood):
    r"""GPyTorch's exact marginal log likelihood with each prior counted once, lined up like torch broadcasting.

    The prior terms are those of :func:`named_priors`. Each is summed over its parameter's own dimensions and
    broadcast against the data term on trailing batch dimensions: a data batch ``2 x 3`` over parameters of
    batch ``3`` gives a ``2 x 3`` objective. Otherwise the value is GPyTorch's.
    """

    def _add_other_terms(self, res: torch.Tensor, params) -> torch.Tensor:
        for added_loss_term in self.model.added_loss_terms():
            res = res.add(added_loss_term.loss(*params))
        return add_prior_terms(res, self.model, named_priors(self.model))
