"""Benchmark of the ``keops-kernels`` patch: upstream GPyTorch vs patched, side by side in one run.

1. Product RBF x Periodic, n=3000, d=2, float64, under max_cholesky_size(0): matmul time and error against the
   dense product (upstream: MulLinearOperator with Lanczos roots; patched: one fused KeOps reduction).
2. Single RBF kernel matmul, n=20000, d=3, float32 (compilation excluded; 8 interleaved rounds, order flipped
   each round; the median of the per-round speed ratios upstream / patched).
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
ROUNDS = 8  # timed rounds of the single-kernel comparison


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


def _formulas(fn) -> list[str]:
    """The KeOps formulas that ``fn()`` reduces with (recorded from ``pykeops.torch.Genred``)."""
    from pykeops.torch.generic import generic_red

    seen, init = [], generic_red.Genred.__init__

    def spy(self, formula, aliases, *args, **kwargs):
        seen.append(formula)
        return init(self, formula, aliases, *args, **kwargs)

    generic_red.Genred.__init__ = spy
    try:
        _quiet(fn)
    finally:
        generic_red.Genred.__init__ = init
    return seen


def single() -> None:
    torch.manual_seed(0)
    x = torch.rand(20000, 3)
    v = torch.randn(20000, 1)
    k = gk.RBFKernel()
    formulas = {}
    for label in ("upstream", "patched"):
        (gpytorch_ext.unpatch if label == "upstream" else gpytorch_ext.patch)(NAME)
        with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
            formulas[label] = _formulas(lambda: k(x[:100]) @ v[:100])
    times: dict[str, list[float]] = {"upstream": [], "patched": []}
    ratios, res = [], {}
    for rep in range(ROUNDS + 1):  # interleaved, order flipped each round; the first round warms up
        pair = {}
        for label in ("upstream", "patched") if rep % 2 else ("patched", "upstream"):
            (gpytorch_ext.unpatch if label == "upstream" else gpytorch_ext.patch)(NAME)
            with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
                pair[label], res[label] = _quiet(lambda: _timed(lambda: k(x) @ v))
        if rep:
            for label, took in pair.items():
                times[label].append(took)
            ratios.append(pair["upstream"] / pair["patched"])
    gpytorch_ext.patch(NAME)
    tu, tp = statistics.median(times["upstream"]), statistics.median(times["patched"])
    diff = ((res["upstream"] - res["patched"]).abs().max() / res["upstream"].abs().max()).item()
    print(
        f"single RBF n=20000 d=3 f32 matmul: upstream {tu:6.3f} s, patched {tp:6.3f} s, speed ratio (median of "
        f"{ROUNDS} paired rounds) {statistics.median(ratios):4.2f}x, rel. difference {diff:.1e}"
    )
    same = formulas["upstream"] == formulas["patched"]
    print(f"    the same KeOps reduction both ways: {'yes' if same else 'no'} ({formulas['patched']})")


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
