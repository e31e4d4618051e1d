"""Benchmark of the constraint-aware-priors patch: prior sampling and an MLL training step, upstream vs patched.

Run: ``.venv/bin/python benchmarks/priors.py``. Each case is timed alternately with the patch reverted and
applied (median of several repeats of a timed loop); the ratio patched / upstream is printed (target <= 1.05).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

import gpytorch
import torch
from gpytorch.constraints import Positive
from gpytorch.priors import GammaPrior

import gpytorch_ext

PATCH = "constraint-aware-priors"
REPEATS = 5


class _Model(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0)), outputscale_prior=GammaPrior(2.0, 0.15)
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _model(n: int, noise_constraint=None) -> _Model:
    x = torch.linspace(0, 1, n)
    y = torch.sin(2 * math.pi * x) + 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=GammaPrior(1.1, 0.5), noise_constraint=noise_constraint
    )
    return _Model(x, y, likelihood)


def _time(fn, number: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _compare(label: str, make_fn, number: int) -> None:
    upstream, patched = [], []
    for _ in range(REPEATS):
        with gpytorch_ext.patched(PATCH):
            gpytorch_ext.unpatch(PATCH)
            upstream.append(_time(make_fn(), number))
        with gpytorch_ext.patched(PATCH):
            patched.append(_time(make_fn(), number))
    u, p = statistics.median(upstream), statistics.median(patched)
    print(f"{label:<58} upstream {1e3 * u:8.3f} ms   patched {1e3 * p:8.3f} ms   ratio {p / u:5.2f}")


def _sampling(noise_constraint):
    def make():
        model = _model(20, noise_constraint)
        return model.pyro_sample_from_prior

    return make


def _mll_step(n: int):
    def make():
        model = _model(n, Positive())
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        x, y = model.train_inputs[0], model.train_targets
        model.train()

        def step():
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            optimizer.step()

        return step

    return make


def main() -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    print(f"gpytorch {gpytorch.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    _compare("pyro_sample_from_prior, priors inside constraints", _sampling(Positive()), 100)
    _compare("pyro_sample_from_prior, Gamma noise truncated to >1e-4", _sampling(None), 100)
    _compare("ExactMLL train step with 3 Gamma priors, n=200", _mll_step(200), 30)
    _compare("ExactMLL train step with 3 Gamma priors, n=1000", _mll_step(1000), 3)


if __name__ == "__main__":
    main()
