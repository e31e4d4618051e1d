"""The ``prior-terms`` patch: one prior term per (parameter, prior), broadcast against the data term like torch.

Replaces ``gpytorch.module._extract_named_priors`` (behind ``Module.named_priors``, so behind every MAP objective
and Pyro factor built on it) and ``ExactMarginalLogLikelihood._add_other_terms``; the repair itself lives in
:mod:`gpytorch_ext.priors._terms`.
"""

from __future__ import annotations

import gpytorch.module as _gmodule
import torch
from gpytorch.mlls import ExactMarginalLogLikelihood

from gpytorch_ext._registry import Patch, Probe, Replacement

from ._terms import add_prior_terms, named_priors

__all__ = ["PATCH"]


def _replacements() -> list[Replacement]:
    def _extract_named_priors(module, prefix=""):
        return named_priors(module, prefix)

    def _add_other_terms(self, res, params):
        for added_loss_term in self.model.added_loss_terms():
            res = res.add(added_loss_term.loss(*params))
        return add_prior_terms(res, self.model)

    return [
        Replacement(_gmodule, "_extract_named_priors", _extract_named_priors),
        Replacement(ExactMarginalLogLikelihood, "_add_other_terms", _add_other_terms),
    ]


def _probe() -> Probe:
    """How often the prior of a kernel used twice (``rbf + rbf * periodic``) enters the exact MLL, and whether the
    MLL of a ``2 x 3`` data batch over parameters of batch ``3`` can be computed."""
    import gpytorch

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, covar_module, batch_shape=torch.Size()):  # noqa: B008
            likelihood = gpytorch.likelihoods.GaussianLikelihood(
                noise_prior=gpytorch.priors.GammaPrior(1.1, 10.0), batch_shape=batch_shape
            )
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = covar_module

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    x = torch.linspace(0, 1, 6, dtype=torch.float64).unsqueeze(-1)
    y = torch.sin(6 * x[:, 0])
    rbf = gpytorch.kernels.RBFKernel(lengthscale_prior=gpytorch.priors.GammaPrior(3.0, 6.0))
    model = GP(x, y, rbf + rbf * gpytorch.kernels.PeriodicKernel()).double()
    model.likelihood.noise_covar._priors.clear()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with torch.no_grad():
        output = model(x)
        data = model.likelihood(output).log_prob(y)
        one = rbf.lengthscale_prior.log_prob(rbf.lengthscale).sum()
        counted = round(float((mll(output, y) * y.numel() - data) / one), 2)

    batch = torch.Size([3])
    xb = torch.linspace(0, 1, 6, dtype=torch.float64).view(1, 1, 6, 1).expand(2, 3, 6, 1)
    kernel = gpytorch.kernels.ScaleKernel(
        gpytorch.kernels.RBFKernel(batch_shape=batch), outputscale_prior=gpytorch.priors.GammaPrior(2.0, 0.15)
    )
    batched = GP(xb, torch.sin(6 * xb[..., 0]), kernel, batch_shape=batch).double()
    bmll = gpytorch.mlls.ExactMarginalLogLikelihood(batched.likelihood, batched)
    batched.train()
    try:
        with torch.no_grad():
            shape = f"shape {tuple(bmll(batched(xb), batched.train_targets).shape)}"
        broadcast_ok = True
    except RuntimeError as exc:
        shape, broadcast_ok = type(exc).__name__, False
    return Probe(
        f"prior of a kernel used twice counted {counted:g}x; 2x3 data over batch-3 priors: {shape}",
        defect=counted != 1 or not broadcast_ok,
    )


PATCH = Patch(
    name="prior-terms",
    summary="one prior term per (parameter, prior) in named_priors and the MLL, broadcast like torch",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=_probe,
)
