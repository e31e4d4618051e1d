"""Benchmark of the ``keops-kernels`` patch: upstream GPyTorch vs patched, side by side in one run.

1. Product RBF x Periodic, n=3000, d=2, float64, under max_cholesky_size(0): matmul time and error against the
   dense product (upstream: MulLinearOperator with Lanczos roots; patched: one fused KeOps reduction).
2. Single RBF kernel matmul, n=20000, d=3, float32 (compilation excluded; interleaved runs, median of 3).
3. Diagonal, n=10^6, d=3: time and peak memory (patched, under max_cholesky_size(0); upstream fails there,
   so its default-setting time is shown).

Run: ``.venv/bin/python benchmarks/keops_kernels.py`` (about 1-3 minutes; KeOps compiles a few formulas once).
"""

from __future__ import annotations

import contextlib
import io
import resource
import statistics
import time

import torch

with contextlib.redirect_stdout(io.StringIO()):  # pykeops' CUDA notice
    import gpytorch
    from gpytorch.kernels import keops as gk

    import gpytorch_ext

NAME = "keops-kernels"


def _timed(fn, repeat=1):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def product() -> None:
    torch.manual_seed(0)
    x = torch.rand(3000, 2, dtype=torch.float64)
    v = torch.randn(3000, 1, dtype=torch.float64)
    k = (gk.RBFKernel() * gk.PeriodicKernel()).double()
    dense = (gpytorch.kernels.RBFKernel() * gpytorch.kernels.PeriodicKernel()).double()
    dense.load_state_dict(k.state_dict())
    with torch.no_grad():
        want = dense(x).to_dense() @ v
    rows = {}
    for label in ("upstream", "patched"):
        if label == "upstream":
            gpytorch_ext.unpatch(NAME)
        else:
            gpytorch_ext.patch(NAME)
        with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
            _quiet(lambda: k(x[:50]) @ v[:50])  # compile the formulas outside the timing
            took, got = _quiet(lambda: _timed(lambda: k(x) @ v))
        rows[label] = (took, ((got - want).abs().max() / want.abs().max()).item())
    gpytorch_ext.patch(NAME)
    (tu, eu), (tp, ep) = rows["upstream"], rows["patched"]
    print(f"product RBF*Periodic n=3000 d=2 f64 matmul: upstream {tu:7.2f} s (rel. max error {eu:.1e})")
    print(f"                                            patched  {tp:7.2f} s (rel. max error {ep:.1e})")
    print(f"                                            speed-up {tu / tp:7.1f}x")


def single() -> None:
    torch.manual_seed(0)
    x = torch.rand(20000, 3)
    v = torch.randn(20000, 1)
    k = gk.RBFKernel()
    times: dict[str, list[float]] = {"upstream": [], "patched": []}
    res = {}
    for rep in range(4):  # interleaved, so that load on a shared machine hits both alike; first round warms up
        for label in ("upstream", "patched"):
            (gpytorch_ext.unpatch if label == "upstream" else gpytorch_ext.patch)(NAME)
            with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
                took, res[label] = _quiet(lambda: _timed(lambda: k(x) @ v))
            if rep:
                times[label].append(took)
    gpytorch_ext.patch(NAME)
    tu, tp = statistics.median(times["upstream"]), statistics.median(times["patched"])
    diff = ((res["upstream"] - res["patched"]).abs().max() / res["upstream"].abs().max()).item()
    print(
        f"single RBF n=20000 d=3 f32 matmul: upstream {tu:6.3f} s, patched {tp:6.3f} s, "
        f"ratio {tu / tp:4.2f}x, rel. difference {diff:.1e}"
    )


def diagonal() -> None:
    k = gk.RBFKernel()
    n = 10**6
    x, x2 = torch.rand(n, 3), torch.rand(n, 3)
    for label, b in (("x1 is x2", x), ("x1 != x2", x2)):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
            k(x, b, diag=True)  # warm-up
            took, _ = _timed(lambda b=b: k(x, b, diag=True), repeat=5)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(
            f"diagonal n=10^6 d=3 f32, {label} (max_cholesky_size(0)): patched {took * 1e3:6.1f} ms, "
            f"peak RSS growth {grown:5.1f} MiB (one input: {x.numel() * 4 / 2**20:.1f} MiB)"
        )
    gpytorch_ext.unpatch(NAME)
    with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
        try:
            k(x, diag=True)
            status = "ok"
        except Exception as exc:
            status = type(exc).__name__
    with torch.no_grad():
        t_default, _ = _timed(lambda: k(x, diag=True), repeat=5)
    gpytorch_ext.patch(NAME)
    print(f"diagonal n=10^6 upstream: max_cholesky_size(0) -> {status}; default settings {t_default * 1e3:6.1f} ms")


if __name__ == "__main__":
    t0 = time.perf_counter()
    diagonal()
    single()
    product()
    print(f"total {time.perf_counter() - t0:.0f} s")
