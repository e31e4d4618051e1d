"""Self-check of the ``multitask-batched-inputs`` patch: batched inputs against the loop over the batch."""

from __future__ import annotations

import gpytorch
import torch

from .._registry import Probe

_TASKS, _LATENTS = 3, 2


class _Model(gpytorch.models.ApproximateGP):
    """A small multitask SVGP: ``"imvs"`` (independent tasks) or ``"lmc"`` (2 latent functions, 3 tasks)."""

    def __init__(self, kind: str, gps: int) -> None:
        gen = torch.Generator().manual_seed(0)
        inducing = torch.rand(gps, 4, 1, generator=gen, dtype=torch.float64)
        distribution = gpytorch.variational.CholeskyVariationalDistribution(4, batch_shape=torch.Size([gps]))
        base = gpytorch.variational.VariationalStrategy(self, inducing, distribution, learn_inducing_locations=False)
        if kind == "imvs":
            strategy = gpytorch.variational.IndependentMultitaskVariationalStrategy(base, num_tasks=gps)
        else:
            strategy = gpytorch.variational.LMCVariationalStrategy(base, num_tasks=_TASKS, num_latents=gps)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=torch.Size([gps]))
        self.covar_module = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([gps]))

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _fails(model: _Model, x: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            out = model(x)
            loop = [model(x[i]) for i in range(x.size(0))]
        mean = torch.stack([d.mean for d in loop])
        covar = torch.stack([d.covariance_matrix for d in loop])
        return not (
            torch.allclose(out.mean, mean, rtol=1e-6, atol=1e-8)
            and torch.allclose(out.covariance_matrix, covar, rtol=1e-6, atol=1e-8)
        )
    except Exception:
        return True


def probe() -> Probe:
    """Count the (strategy, input shape) cases where batched inputs raise or differ from the loop over the batch."""
    gen = torch.Generator().manual_seed(1)
    models = [_Model("imvs", _TASKS).double().eval(), _Model("lmc", _LATENTS).double().eval()]
    shapes = [(4, 5, 1), (2, 4, 5, 1)]
    failures = total = 0
    for model in models:
        for shape in shapes:
            total += 1
            failures += _fails(model, torch.rand(*shape, generator=gen, dtype=torch.float64))
    return Probe(f"{failures} of {total} batched-input cases fail", defect=failures > 0)
