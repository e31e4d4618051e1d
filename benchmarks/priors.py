"""Benchmark of the prior repairs: sampling, MLL training steps, and what each cache of ``gpytorch_ext.priors`` buys.

Run: ``.venv/bin/python benchmarks/priors.py`` (``--quick`` skips the slowest case). Every comparison alternates its
two sides round by round (the order flipped each round) and prints the median of the paired ratios of CPU times, so
that the drifts of a shared machine cancel.

1. Patched (``constraint-aware-priors`` + ``prior-terms``) against upstream (both reverted): target <= 1.05 for the
   sampling that upstream already does right (priors inside their constraints) and for MLL training steps.
   Where upstream is wrong (a truncated prior: NaN draws; ``sample_from_prior``: one draw for all elements) the
   ratio prices the repair.
2. Each cache switched off against it on, on the NUTS-like path (a Pyro trace of ``pyro_sample_from_prior`` and
   its log-density, a truncated Gamma noise prior): a cache stays only where switching it off costs time. (A third
   one, of which distribution classes have ``cdf``/``icdf``, measured 1.00 and was removed.)
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator

import gpytorch
import torch
from gpytorch.constraints import GreaterThan, Positive
from gpytorch.priors import GammaPrior

import gpytorch_ext
from gpytorch_ext.priors import _repair, _truncated

PATCHES = ("constraint-aware-priors", "prior-terms")
REPEATS = 21


class _Model(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0)), outputscale_prior=GammaPrior(2.0, 0.15)
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _model(n: int, noise_constraint=None, tutorial: bool = False) -> _Model:
    x = torch.linspace(0, 1, n)
    y = torch.sin(2 * math.pi * x) + 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    if tutorial:  # the noise prior registered as GPyTorch's fully Bayesian tutorial does
        likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=noise_constraint)
        likelihood.register_prior("noise_prior", GammaPrior(1.1, 0.5), "noise")
    else:
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(1.1, 0.5), noise_constraint=noise_constraint
        )
    return _Model(x, y, likelihood)


def _time(fn: Callable[[], object], number: int) -> float:
    """CPU seconds per call, with the garbage collector off while timing (as ``timeit`` does).

    CPU time, not wall time: on a shared machine the process is descheduled for long stretches, which wall time
    would count. Torch runs on one thread here, so the process's CPU time is the work of the call.
    """
    fn()
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        for _ in range(number):
            fn()
        return (time.process_time() - start) / number
    finally:
        gc.enable()


def _compare(label: str, sides: dict[str, Callable[[], contextlib.AbstractContextManager]], make_fn, number: int):
    """Time ``make_fn()`` under each of the two ``sides`` (context managers), alternately; print the medians and the
    median of the paired ratios second / first."""
    (first, enter_first), (second, enter_second) = sides.items()
    times: dict[str, list[float]] = {first: [], second: []}
    ratios = []
    for i in range(REPEATS):
        order = [(first, enter_first), (second, enter_second)]
        pair = {}
        for name, enter in order if i % 2 == 0 else order[::-1]:
            with enter():
                pair[name] = _time(make_fn(), number)
        times[first].append(pair[first])
        times[second].append(pair[second])
        ratios.append(pair[second] / pair[first])
    a, b, r = statistics.median(times[first]), statistics.median(times[second]), statistics.median(ratios)
    print(f"{label:<62} {first} {1e3 * a:8.3f} ms   {second} {1e3 * b:8.3f} ms   ratio {r:5.2f}", flush=True)
    return r


@contextlib.contextmanager
def _upstream() -> Iterator[None]:
    with gpytorch_ext.patched(*PATCHES):
        gpytorch_ext.unpatch(*PATCHES)
        yield


@contextlib.contextmanager
def _patched() -> Iterator[None]:
    with gpytorch_ext.patched(*PATCHES):
        yield


UPSTREAM_VS_PATCHED = {"upstream": _upstream, "patched": _patched}


# --- the cases ----------------------------------------------------------------------------------------


def _pyro_sampling(noise_constraint=None, tutorial=False):
    def make():
        return _model(20, noise_constraint, tutorial).pyro_sample_from_prior

    return make


def _nuts_like(noise_constraint=None):
    """One NUTS potential evaluation's prior part: trace pyro_sample_from_prior and sum the sites' log-densities."""
    import pyro

    def make():
        model = _model(20, noise_constraint)

        def step():
            trace = pyro.poutine.trace(model.pyro_sample_from_prior).get_trace()
            return trace.log_prob_sum()

        return step

    return make


def _sample_from_prior(batch: int):
    def make():
        lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(1.1, 0.5), noise_constraint=Positive(), batch_shape=torch.Size([batch])
        )
        return lambda: lik.noise_covar.sample_from_prior("noise_prior")

    return make


def _mll_step(n: int, noise_constraint=None):
    def make():
        model = _model(n, Positive() if noise_constraint is None else noise_constraint)
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


# --- switching a cache off ----------------------------------------------------------------------------


@contextlib.contextmanager
def _without_plan_cache() -> Iterator[None]:
    size = _repair._PLANS_SIZE
    _repair._PLANS_SIZE = -1  # every plan is evicted as soon as it is stored
    _repair._PLANS.clear()
    try:
        yield
    finally:
        _repair._PLANS_SIZE = size


@contextlib.contextmanager
def _without_state_cache() -> Iterator[None]:
    key = _truncated.TruncatedPrior._state_key
    _truncated.TruncatedPrior._state_key = lambda self: None  # the interval and CDF bounds recomputed at each use
    try:
        yield
    finally:
        _truncated.TruncatedPrior._state_key = key


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the ratios are about Python-side work; one thread keeps a shared machine's noise down
    print(f"gpytorch {gpytorch.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    quick = "--quick" in sys.argv
    print("-- patched against upstream (target <= 1.05 where upstream is right)")
    _compare("pyro_sample_from_prior, priors inside constraints", UPSTREAM_VS_PATCHED, _pyro_sampling(Positive()), 50)
    _compare("ExactMLL train step with 3 Gamma priors, n=200", UPSTREAM_VS_PATCHED, _mll_step(200), 20)
    unenforced = GreaterThan(1e-4, transform=None, initial_value=0.1)  # BoTorch's default noise constraint
    _compare(
        "  the same, n=50, noise under GreaterThan(transform=None)", UPSTREAM_VS_PATCHED, _mll_step(50, unenforced), 50
    )
    if not quick:
        _compare("ExactMLL train step with 3 Gamma priors, n=1000", UPSTREAM_VS_PATCHED, _mll_step(1000), 3)
    print("-- where upstream is wrong: the price of the repair")
    _compare("pyro_sample_from_prior, Gamma noise truncated to >1e-4", UPSTREAM_VS_PATCHED, _pyro_sampling(), 50)
    _compare(
        "  the same prior registered on the likelihood (tutorial)", UPSTREAM_VS_PATCHED, _pyro_sampling(None, True), 50
    )
    _compare("Module.sample_from_prior, 1000 noises (elementwise)", UPSTREAM_VS_PATCHED, _sample_from_prior(1000), 200)
    print("-- each cache off against on (patched; NUTS-like trace + log-density, truncated Gamma noise)")
    for label, off in (
        ("sampling-plan cache (_repair._PLANS)", _without_plan_cache),
        ("interval/CDF-bounds cache (TruncatedPrior._state)", _without_state_cache),
    ):
        with _patched():
            _compare(label, {"on": _nothing, "off": off}, _nuts_like(), 50)


if __name__ == "__main__":
    main()
