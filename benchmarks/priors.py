"""Benchmark of the constraint-aware-priors patch: prior sampling and an MLL training step, upstream vs patched.

Run: ``.venv/bin/python benchmarks/priors.py``. Each case is timed alternately with the patch reverted and
applied (median of several repeats of a timed loop); the ratio patched / upstream is printed (target <= 1.05).
"""

from __future__ import annotations

import gc
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
REPEATS = 15


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
    """Seconds per call, with the garbage collector off while timing (as ``timeit`` does)."""
    fn()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        gc.enable()


def _compare(label: str, make_fn, number: int) -> None:
    """Alternate upstream and patched rounds (order flipped each round); print medians and the median ratio.

    The ratio of each round's pair is taken before the median, so that slow drifts of a shared machine cancel.
    """
    upstream, patched, ratios = [], [], []
    for i in range(REPEATS):
        pair = {}
        for which in ("upstream", "patched") if i % 2 == 0 else ("patched", "upstream"):
            with gpytorch_ext.patched(PATCH):
                if which == "upstream":
                    gpytorch_ext.unpatch(PATCH)
                pair[which] = _time(make_fn(), number)
        upstream.append(pair["upstream"])
        patched.append(pair["patched"])
        ratios.append(pair["patched"] / pair["upstream"])
    u, p, r = statistics.median(upstream), statistics.median(patched), statistics.median(ratios)
    print(f"{label:<58} upstream {1e3 * u:8.3f} ms   patched {1e3 * p:8.3f} ms   ratio {r:5.2f}")


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
    _compare("pyro_sample_from_prior, priors inside constraints", _sampling(Positive()), 50)
    _compare("pyro_sample_from_prior, Gamma noise truncated to >1e-4", _sampling(None), 50)
    _compare("ExactMLL train step with 3 Gamma priors, n=200", _mll_step(200), 20)
    _compare("ExactMLL train step with 3 Gamma priors, n=1000", _mll_step(1000), 3)


if __name__ == "__main__":
    main()
