"""Benchmark of the ``mvn-log-prob`` patch: upstream vs patched vs torch, measured side by side in one run.

Run: ``.venv/bin/python benchmarks/mvn_log_prob.py`` (about two minutes on two cores). Prints three tables:

1. a shared dense covariance (n = 1000) and 64 values: upstream, patched, torch, and the algebraic limit (one
   Cholesky factorisation and one triangular solve, in plain torch); time relative to one value (of shape ``(N,)``; a
   ``(1, N)`` value is shown too);
2. a diagonal covariance (n = 10^6) and 4 values, and the peak memory of n = 10^7 in float64 (in a subprocess,
   from ``resource.getrusage`` max RSS above the inputs' baseline);
3. the iterative path (lazily evaluated RBF kernel, n = 4000, ``max_cholesky_size(100)``): 16 values vs one.

Times are the best of alternating rounds, upstream and patched, so that a shared machine's load hits both alike.
"Patched" is what ``import gpytorch_ext`` gives (the ``mvn-log-prob`` and ``mvn-batch`` patches), "upstream" stock
GPyTorch.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import torch

os.environ.setdefault("GPYTORCH_EXT_AUTOPATCH", "0")

import gpytorch  # noqa: E402
from _timing import best_of  # noqa: E402  (benchmarks/, on the path of a script run from it)
from linear_operator.operators import DenseLinearOperator, DiagLinearOperator  # noqa: E402
from torch.distributions import Independent, Normal  # noqa: E402
from torch.distributions import MultivariateNormal as TorchMVN  # noqa: E402

import gpytorch_ext  # noqa: E402

F64 = torch.float64
DENSE_CASES = (("1 value (N,)", (1000,)), ("1 value (1, N)", (1, 1000)), ("64 values", (64, 1000)))


PATCHES = ("mvn-log-prob", "mvn-batch")


def timed_both(fn, repeats: int = 5, rounds: int = 3, limit=None) -> tuple[float, ...]:
    """(upstream seconds, patched seconds[, limit seconds]) of ``fn``: the best of ``rounds`` alternations."""
    up, new, lim = math.inf, math.inf, math.inf
    for _ in range(rounds):
        gpytorch_ext.unpatch(*PATCHES)
        up = min(up, best_of(fn, repeats))
        gpytorch_ext.patch(*PATCHES)
        new = min(new, best_of(fn, repeats))
        if limit is not None:
            lim = min(lim, best_of(limit, repeats))
    return (up, new) if limit is None else (up, new, lim)


def algebraic_limit(values, mean, dense):
    """One Cholesky factorisation and one triangular solve with every value as a column: the least work possible."""
    factor, _ = torch.linalg.cholesky_ex(dense)
    whitened = torch.linalg.solve_triangular(factor, (values - mean).reshape(-1, dense.size(-1)).mT, upper=False)
    logdet = 2 * factor.diagonal().log().sum()
    return -0.5 * (whitened.square().sum(0) + logdet + dense.size(-1) * math.log(2 * math.pi))


def dense_shared() -> None:
    n = 1000
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=F64)
    dense = a @ a.T / n + torch.eye(n, dtype=F64)
    mean = torch.zeros(n, dtype=F64)
    rows = {}
    cases = [(label, torch.randn(*shape, generator=gen, dtype=F64)) for label, shape in DENSE_CASES]
    for _ in range(2):  # the first pass warms up (its first calls were consistently slower here); the second counts
        for label, values in cases:

            def gp(values=values):
                # a fresh distribution each time: the factorisation is part of the cost
                return gpytorch.distributions.MultivariateNormal(mean, DenseLinearOperator(dense)).log_prob(values)

            with gpytorch.settings.max_cholesky_size(2000):  # the Cholesky path for everyone
                up, new, lim = timed_both(gp, limit=lambda values=values: algebraic_limit(values, mean, dense))
            tr = best_of(lambda values=values: TorchMVN(mean, dense).log_prob(values))
            rows[label] = (up, new, tr, lim)
    print("\n1. shared dense covariance, n = 1000 (Cholesky path), time incl. factorisation")
    print(f"{'':24}{'upstream':>12}{'patched':>12}{'torch':>12}{'limit':>12}")
    for label, times in rows.items():
        print(f"{label + ' [ms]':24}" + "".join(f"{t * 1e3:12.1f}" for t in times))
    ratio = [rows["64 values"][i] / rows["1 value (N,)"][i] for i in range(4)]
    print(f"{'64 values / 1 value (N,)':24}" + "".join(f"{r:12.2f}" for r in ratio))
    up, new, tr, lim = rows["64 values"]
    print(
        f"64 values: patched / upstream {new / up:.2f} (target <= 1.0), patched / limit {new / lim:.2f} "
        f"(goal 1.3), patched / torch {new / tr:.2f}"
    )
    print(
        "(a value of shape (1, N) makes upstream repeat the covariance to batch shape (1,); torch then copies the\n"
        " N x N Cholesky factor to contiguous memory on a 3-D path that is faster than its 2-D one, which the\n"
        " (N,) value takes both ways: the same linear_operator calls, one Cholesky each)"
    )


def diagonal() -> None:
    n = 10**6
    gen = torch.Generator().manual_seed(1)
    var = torch.rand(n, generator=gen, dtype=F64) + 0.1
    mean = torch.randn(n, generator=gen, dtype=F64)
    values = torch.randn(4, n, generator=gen, dtype=F64)

    def gp():
        return gpytorch.distributions.MultivariateNormal(mean, DiagLinearOperator(var)).log_prob(values)

    up, new = timed_both(gp)
    ind = best_of(lambda: Independent(Normal(mean, var.sqrt()), 1).log_prob(values))
    print("\n2. diagonal covariance, n = 10^6, 4 values")
    print(f"{'':24}{'upstream':>12}{'patched':>12}{'Indep(Normal)':>14}")
    print(f"{'time [ms]':24}{up * 1e3:12.1f}{new * 1e3:12.1f}{ind * 1e3:14.1f}")
    print(f"patched / upstream: {new / up:.2f}; patched / Independent(Normal): {new / ind:.2f}")
    for label, state in (("patched", "1"), ("upstream", "0")):
        out = subprocess.run(
            [sys.executable, __file__, "--memory", state], capture_output=True, text=True, check=False
        ).stdout.strip()
        print(f"n = 10^7 float64, 1 value, {label}: {out.splitlines()[-1] if out else 'failed'}")


def memory_child(patched: bool) -> None:
    import resource

    n = 10**7
    var = torch.rand(n, dtype=F64) + 0.1
    mean = torch.zeros(n, dtype=F64)
    value = torch.randn(n, dtype=F64)
    if patched:
        gpytorch_ext.patch(*PATCHES)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        gpytorch.distributions.MultivariateNormal(mean, DiagLinearOperator(var)).log_prob(value)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS above the inputs {(peak - base) / 1024:.0f} MB (inputs {3 * n * 8 / 2**20:.0f} MB)")


def iterative() -> None:
    n = 4000
    x = torch.linspace(0, 10, n, dtype=F64).unsqueeze(-1)
    kernel = gpytorch.kernels.RBFKernel().to(F64)
    noise = torch.tensor(0.1, dtype=F64)
    mean = torch.zeros(n, dtype=F64)
    gen = torch.Generator().manual_seed(2)
    rows = {}
    for label, shape in (("1 value (N,)", (n,)), ("1 value (1, N)", (1, n)), ("16 values", (16, n))):
        values = torch.randn(*shape, generator=gen, dtype=F64)

        def gp(values=values):
            with torch.no_grad():
                covar = kernel(x).add_diagonal(noise)
                return gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(values)

        with gpytorch.settings.max_cholesky_size(100):
            rows[label] = timed_both(gp, repeats=2)
    print("\n3. iterative path: lazily evaluated RBF kernel, n = 4000, max_cholesky_size(100)")
    print(f"{'':24}{'upstream':>12}{'patched':>12}")
    for label, times in rows.items():
        print(f"{label + ' [ms]':24}" + "".join(f"{t * 1e3:12.1f}" for t in times))
    print(
        f"{'16 values / 1 value (N,)':24}"
        + "".join(f"{rows['16 values'][i] / rows['1 value (N,)'][i]:12.2f}" for i in range(2))
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        memory_child(sys.argv[2] == "1")
        sys.exit(0)
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}")
    dense_shared()
    diagonal()
    iterative()
