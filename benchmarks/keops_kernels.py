"""Benchmark of the ``keops-kernels`` patch: upstream GPyTorch vs patched, side by side in one run.

1. Product RBF x Periodic, n=3000, d=2, float64, under max_cholesky_size(0): matmul time and error against the
   dense product (upstream: MulLinearOperator with Lanczos roots; patched: one fused KeOps reduction).
2. Single RBF kernel matmul, n=20000, d=3, float32 (compilation excluded; 8 interleaved rounds, order flipped
   each round; the median of the per-round speed ratios upstream / patched).
3. Diagonal, n=10^6, d=3: time and peak memory (patched, under max_cholesky_size(0); upstream fails there,
   so its default-setting time is shown).
4. Structure kernels (additive and product structure over d=3 dimensions), n=4000, float32, matmul: upstream
   fails with KeOps kernels, so the comparison is with the same structure kernel around GPyTorch's dense kernel
   (what a user has to use today): the speed ratio (median of paired, order-flipped rounds), the peak memory
   growth of the first matmul of each, and the relative difference.

Run: ``.venv/bin/python benchmarks/keops_kernels.py`` (about 1-3 minutes; KeOps compiles a few formulas once).
"""

from __future__ import annotations

import contextlib
import io
import resource
import statistics
import subprocess
import sys
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


STRUCTURES = {
    "AdditiveStructureKernel": lambda k: gpytorch.kernels.AdditiveStructureKernel(k, num_dims=3),
    "ProductStructureKernel": lambda k: gpytorch.kernels.ProductStructureKernel(k, num_dims=3),
}
STRUCTURE_N = 4000


def _structure_runs(name: str):
    """The matmuls to compare: the structure kernel around keops.RBFKernel (patched) and around the dense kernel."""
    torch.manual_seed(0)
    x, v = torch.rand(STRUCTURE_N, 3), torch.randn(STRUCTURE_N, 1)
    wrap = STRUCTURES[name]
    keops_kernel = wrap(gk.RBFKernel(ard_num_dims=3))
    dense_kernel = wrap(gpytorch.kernels.RBFKernel(ard_num_dims=3))
    dense_kernel.load_state_dict(keops_kernel.state_dict())
    with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
        _quiet(lambda: keops_kernel(x[:100]) @ v[:100])  # compile outside the timing
    return {"keops": lambda: keops_kernel(x) @ v, "dense": lambda: dense_kernel(x) @ v}, keops_kernel, x, v


def _peak_memory_mib(name: str, label: str) -> float:
    """Peak memory growth of one matmul, measured in a fresh process (peak RSS only grows within a process)."""
    out = subprocess.run(
        [sys.executable, __file__, "--peak-memory", name, label], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _high_water_mib() -> float:
    """This process's peak resident memory. Linux carries ``ru_maxrss`` over from the parent process through exec;
    ``VmHWM`` belongs to the process's own address space."""
    try:
        with open("/proc/self/status") as status:
            return next(float(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure_peak(name: str, label: str) -> None:
    runs, *_ = _structure_runs(name)
    with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
        before = _high_water_mib()
        runs[label]()
    print(_high_water_mib() - before)


def structure() -> None:
    rounds = 4
    for name in STRUCTURES:
        runs, keops_kernel, x, v = _structure_runs(name)
        gpytorch_ext.unpatch(NAME)
        try:
            with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
                _quiet(lambda: keops_kernel(x[:100]) @ v[:100])  # noqa: B023
            status = "ok"
        except Exception as exc:
            status = type(exc).__name__
        gpytorch_ext.patch(NAME)
        ratios, res = [], {}
        with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
            for rep in range(rounds + 1):  # interleaved, order flipped each round; the first round warms up
                pair = {}
                for label in ("keops", "dense") if rep % 2 else ("dense", "keops"):
                    pair[label], res[label] = _timed(runs[label])
                if rep:
                    ratios.append(pair["dense"] / pair["keops"])
        memory = {label: _peak_memory_mib(name, label) for label in runs}
        diff = ((res["keops"] - res["dense"]).norm() / res["dense"].norm()).item()
        print(
            f"{name}(RBF) n={STRUCTURE_N} d=3 f32 matmul: upstream with keops.RBFKernel -> {status}; patched vs the "
            f"dense kernel: speed ratio {statistics.median(ratios):4.1f}x (median of {rounds} paired rounds), peak "
            f"memory growth {memory['keops']:5.1f} vs {memory['dense']:6.1f} MiB, rel. difference {diff:.1e}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peak-memory"]:
        _measure_peak(*sys.argv[2:4])
        sys.exit(0)
    t0 = time.perf_counter()
    diagonal()
    single()
    product()
    structure()
    print(f"total {time.perf_counter() - t0:.0f} s")
