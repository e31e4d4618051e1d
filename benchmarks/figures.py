"""The README's figures, measured side by side (upstream GPyTorch vs the patched one) and written to ``docs/``.

1. ``docs/keops_product.png``: a product of KeOps kernels (RBF x Periodic, d = 2, float64) times a vector under
   ``max_cholesky_size(0)``: time and relative error (against the dense product) against n. Upstream evaluates the
   product as a ``MulLinearOperator`` of Lanczos root decompositions; the patch runs one exact fused KeOps
   reduction.
2. ``docs/keops_diagonal.png``: a KeOps RBF kernel's diagonal (d = 3, float32): time and peak memory against n.
   Upstream raises ``TypeError`` once KeOps is engaged (``max_cholesky_size(0)``), so its time and memory are those
   of its default settings; the patch is measured under ``max_cholesky_size(0)``.
3. ``docs/mvn_log_prob.png``: ``MultivariateNormal.log_prob`` time against the number of values evaluated against
   one covariance (n = 1000, float64): a dense covariance (Cholesky path, with ``torch.distributions`` beside it),
   and a lazily evaluated RBF kernel on the iterative path (``max_cholesky_size(100)``).

Every time is the best of interleaved rounds (upstream and patched alternate, so that a shared machine's load hits
both alike); the numbers are printed as a table with the ratios, then plotted. Peak memory is measured in a child
process (``VmHWM`` of ``/proc/self/status``, reset before each call; glibc's mmap threshold fixed so that freed
memory goes back to the system), Linux only.

Run: ``make figures`` (or ``make bench``, which runs every benchmark); about three minutes on two cores. Needs
matplotlib (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

os.environ.setdefault("GPYTORCH_EXT_AUTOPATCH", "0")

with contextlib.redirect_stdout(io.StringIO()):  # pykeops' CUDA notice
    import gpytorch
    from gpytorch.kernels import keops as gk
    from linear_operator.operators import DenseLinearOperator

    import gpytorch_ext

DOCS = Path(__file__).resolve().parents[1] / "docs"
F64 = torch.float64
COLORS = {"upstream": "tab:red", "patched": "tab:blue", "torch": "tab:gray"}

PRODUCT_N_UPSTREAM = (250, 500, 1000, 2000)  # Lanczos takes about 20 s at n = 2000 on two cores
PRODUCT_N_PATCHED = (250, 500, 1000, 2000, 4000, 8000)
DIAGONAL_N = (10**3, 10**4, 10**5, 10**6, 10**7)
LOG_PROB_VALUES = (1, 4, 16, 64, 256)
LOG_PROB_VALUES_ITERATIVE = (1, 4, 16, 64)


def _state(label: str, patch: str) -> None:
    (gpytorch_ext.patch if label == "patched" else gpytorch_ext.unpatch)(patch)


def _once(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = fn()
    return time.perf_counter() - start, out


def _interleaved(fns: dict[str, Callable[[], object]], patch: str, rounds: int) -> tuple[dict[str, float], dict]:
    """Best time of each labelled function over ``rounds`` alternating rounds (order flipped every round), and
    each function's last result. ``"patched"`` runs with ``patch`` applied, every other label with it reverted."""
    best, outputs = dict.fromkeys(fns, math.inf), {}
    labels = list(fns)
    for r in range(rounds):
        for label in labels if r % 2 == 0 else labels[::-1]:
            _state(label, patch)
            took, outputs[label] = _once(fns[label])
            best[label] = min(best[label], took)
    gpytorch_ext.patch(patch)
    return best, outputs


# --- 1. KeOps product -------------------------------------------------------------------------------------------


def keops_product() -> dict[str, dict[int, tuple[float, float]]]:
    """``{label: {n: (seconds, relative error)}}`` of the product's matmul."""
    torch.manual_seed(0)
    product = (gk.RBFKernel() * gk.PeriodicKernel()).double()
    dense = (gpytorch.kernels.RBFKernel() * gpytorch.kernels.PeriodicKernel()).double()
    dense.load_state_dict(product.state_dict())
    out: dict[str, dict[int, tuple[float, float]]] = {"upstream": {}, "patched": {}}

    def matmul(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with gpytorch.settings.max_cholesky_size(0), torch.no_grad():
            return product(x) @ v

    for n in PRODUCT_N_PATCHED:
        x = torch.rand(n, 2, dtype=F64)
        v = torch.randn(n, 1, dtype=F64)
        with torch.no_grad():
            want = dense(x).to_dense() @ v
        labels = ["upstream", "patched"] if n in PRODUCT_N_UPSTREAM else ["patched"]
        for label in labels:  # compile the KeOps formulas (the same for every n) outside the timing
            _state(label, "keops-kernels")
            _once(lambda: matmul(x[:50], v[:50]))  # noqa: B023 (called at once)
        fns = {label: lambda x=x, v=v: matmul(x, v) for label in labels}
        times, results = _interleaved(fns, "keops-kernels", rounds=2 if n <= 1000 else 1)
        for label in labels:
            error = ((results[label] - want).norm() / want.norm()).item()
            out[label][n] = (times[label], error)
    return out


def plot_keops_product(data: dict[str, dict[int, tuple[float, float]]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(8.5, 3.3), layout="constrained")
    names = {"upstream": "upstream (Lanczos)", "patched": "patched (fused KeOps)"}
    for label, rows in data.items():
        ns = sorted(rows)
        ax_t.loglog(ns, [rows[n][0] for n in ns], "o-", color=COLORS[label], label=names[label])
        ax_e.loglog(ns, [max(rows[n][1], 1e-17) for n in ns], "o-", color=COLORS[label], label=names[label])
    ax_t.set(xlabel="n", ylabel="seconds", title="time of K @ v")
    ax_e.set(xlabel="n", ylabel="||Kv - Kv_dense|| / ||Kv_dense||", title="relative error")
    ax_t.legend(fontsize=8)
    for ax in (ax_t, ax_e):
        _x_ticks(ax, sorted(data["patched"]))
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle("KeOps RBF x Periodic product, d = 2, float64, max_cholesky_size(0)", fontsize=10)
    _save(fig, path)


# --- 2. KeOps diagonal ------------------------------------------------------------------------------------------


def _vm_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def diagonal_worker(ns: Sequence[int]) -> None:
    """In a child process: one JSON line per (n, label) with the diagonal's best time and peak memory growth."""
    kernel = gk.RBFKernel()
    for n in ns:
        x = torch.rand(n, 3)
        row: dict[str, object] = {"n": n}

        def diag(label: str, x: torch.Tensor = x) -> torch.Tensor:
            setting = gpytorch.settings.max_cholesky_size(0) if label == "patched" else contextlib.nullcontext()
            with setting, torch.no_grad():
                return kernel(x, diag=True)

        for label in ("upstream", "patched"):
            _state(label, "keops-kernels")
            diag(label)  # warm-up
            _reset_peak()
            before = _vm_kib("VmRSS")
            diag(label)
            row[f"{label}_mib"] = (_vm_kib("VmHWM") - before) / 1024
        fns = {label: lambda label=label: diag(label) for label in ("upstream", "patched")}
        times, _ = _interleaved(fns, "keops-kernels", rounds=6)
        row.update({f"{label}_s": t for label, t in times.items()})
        row["input_mib"] = x.numel() * x.element_size() / 2**20
        print(json.dumps(row), flush=True)


def keops_diagonal() -> list[dict[str, float]]:
    """Rows of ``n``, ``upstream_s``, ``patched_s``, ``upstream_mib``, ``patched_mib``, ``input_mib``."""
    if not Path("/proc/self/clear_refs").exists():
        raise SystemExit("the diagonal figure measures peak memory through /proc/self/clear_refs (Linux only)")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024), "GPYTORCH_EXT_AUTOPATCH": "0"}
    cmd = [sys.executable, __file__, "--diagonal-worker", ",".join(map(str, DIAGONAL_N))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the diagonal measurement failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def plot_keops_diagonal(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(8.5, 3.3), layout="constrained")
    ns = [r["n"] for r in rows]
    names = {"upstream": "upstream (default settings)", "patched": "patched (max_cholesky_size(0))"}
    for label in ("upstream", "patched"):
        ax_t.loglog(ns, [r[f"{label}_s"] for r in rows], "o-", color=COLORS[label], label=names[label])
        ax_m.loglog(ns, [max(r[f"{label}_mib"], 1e-2) for r in rows], "o-", color=COLORS[label], label=names[label])
    ax_m.loglog(ns, [r["input_mib"] for r in rows], "--", color=COLORS["torch"], label="size of x (n x 3)")
    ax_t.set(xlabel="n", ylabel="seconds", title="time of k(x, diag=True)")
    ax_m.set(xlabel="n", ylabel="MiB", title="peak memory above the inputs")
    for ax in (ax_t, ax_m):
        ax.legend(fontsize=8)
        _x_ticks(ax, ns)
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle("KeOps RBF kernel diagonal, d = 3, float32 (upstream raises TypeError under max_cholesky_size(0))",
                 fontsize=10)  # fmt: skip
    _save(fig, path)


# --- 3. log_prob against the number of values -------------------------------------------------------------------


def log_prob_values() -> dict[str, dict[str, dict[int, float]]]:
    """``{case: {label: {number of values: seconds}}}`` for one covariance, n = 1000."""
    n = 1000
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=F64)
    dense = a @ a.T / n + torch.eye(n, dtype=F64)
    mean = torch.zeros(n, dtype=F64)
    x = torch.linspace(0, 10, n, dtype=F64).unsqueeze(-1)
    kernel = gpytorch.kernels.RBFKernel().to(F64)
    noise = torch.tensor(0.1, dtype=F64)
    out: dict[str, dict[str, dict[int, float]]] = {"dense": {}, "iterative": {}}

    for m in LOG_PROB_VALUES:
        values = torch.randn(m, n, generator=gen, dtype=F64)

        def gp(values: torch.Tensor = values) -> torch.Tensor:
            with gpytorch.settings.max_cholesky_size(2000):  # the Cholesky path, a fresh factorisation each time
                return gpytorch.distributions.MultivariateNormal(mean, DenseLinearOperator(dense)).log_prob(values)

        def reference(values: torch.Tensor = values) -> torch.Tensor:
            return torch.distributions.MultivariateNormal(mean, dense).log_prob(values)

        times, _ = _interleaved({"upstream": gp, "patched": gp, "torch": reference}, "mvn-log-prob", rounds=8)
        for label, t in times.items():
            out["dense"].setdefault(label, {})[m] = t

    for m in LOG_PROB_VALUES_ITERATIVE:
        values = torch.randn(m, n, generator=gen, dtype=F64)

        def lazy(values: torch.Tensor = values) -> torch.Tensor:
            with gpytorch.settings.max_cholesky_size(100), torch.no_grad():
                covar = kernel(x).add_diagonal(noise)
                return gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(values)

        times, _ = _interleaved({"upstream": lazy, "patched": lazy}, "mvn-log-prob", rounds=5)
        for label, t in times.items():
            out["iterative"].setdefault(label, {})[m] = t
    gpytorch_ext.unpatch("mvn-log-prob")
    return out


def plot_log_prob(data: dict[str, dict[str, dict[int, float]]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.3), layout="constrained")
    titles = {
        "dense": "dense covariance (Cholesky path)",
        "iterative": "lazy RBF kernel (iterative path)",
    }
    names = {"upstream": "upstream", "patched": "patched", "torch": "torch.distributions"}
    for ax, (case, rows) in zip(axes, data.items()):
        for label, times in rows.items():
            ms = sorted(times)
            ax.semilogx(ms, [times[m] for m in ms], "o-", color=COLORS[label], label=names[label])
        ax.set(xlabel="number of values m (value: m x n)", ylabel="seconds", title=titles[case])
        ax.set_ylim(bottom=0)
        _x_ticks(ax, sorted(rows["patched"]))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("MultivariateNormal.log_prob of m values against one covariance, n = 1000, float64", fontsize=10)
    _save(fig, path)


# --- output ------------------------------------------------------------------------------------------------------


def _x_ticks(ax, values: Sequence[int]) -> None:  # type: ignore[no-untyped-def]
    """Label a logarithmic x axis at the measured values only (``10^k`` for powers of ten above 1000)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    def label(v: int) -> str:
        k = round(math.log10(v))
        return f"$10^{k}$" if v >= 10**4 and v == 10**k else str(v)

    ax.xaxis.set_major_locator(FixedLocator(list(values)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([label(v) for v in values])


def _save(fig, path: Path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})  # no version stamp: unchanged data, unchanged file
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def _print_product(data: dict[str, dict[int, tuple[float, float]]]) -> None:
    print("\n1. KeOps RBF x Periodic product, matmul, max_cholesky_size(0)")
    print(f"{'n':>6}{'upstream s':>12}{'patched s':>12}{'speed-up':>10}{'upstream err':>14}{'patched err':>13}")
    for n in sorted(data["patched"]):
        tp, ep = data["patched"][n]
        if n in data["upstream"]:
            tu, eu = data["upstream"][n]
            print(f"{n:>6}{tu:>12.3f}{tp:>12.3f}{tu / tp:>9.0f}x{eu:>14.1e}{ep:>13.1e}")
        else:
            print(f"{n:>6}{'-':>12}{tp:>12.3f}{'-':>10}{'-':>14}{ep:>13.1e}")


def _print_diagonal(rows: list[dict[str, float]]) -> None:
    print("\n2. KeOps RBF diagonal (upstream: default settings; patched: max_cholesky_size(0))")
    print(f"{'n':>10}{'upstream ms':>13}{'patched ms':>12}{'speed-up':>10}{'upstream MiB':>14}{'patched MiB':>13}")
    for r in rows:
        up, new = r["upstream_s"], r["patched_s"]
        print(
            f"{r['n']:>10}{up * 1e3:>13.2f}{new * 1e3:>12.2f}{up / new:>9.1f}x"
            f"{r['upstream_mib']:>14.1f}{r['patched_mib']:>13.1f}"
        )


def _print_log_prob(data: dict[str, dict[str, dict[int, float]]]) -> None:
    for case, rows in data.items():
        print(f"\n3. log_prob of m values, one covariance, n = 1000: {case} (time relative to m = 1 in brackets)")
        labels = list(rows)
        print(f"{'m':>6}" + "".join(f"{label + ' ms':>22}" for label in labels))
        for m in sorted(rows["patched"]):
            cells = "".join(f"{rows[lb][m] * 1e3:>12.1f} ({rows[lb][m] / rows[lb][1]:5.2f}x)" for lb in labels)
            print(f"{m:>6}{cells}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="directory for the PNG files (default: docs/)")
    parser.add_argument("--diagonal-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.diagonal_worker:
        diagonal_worker([int(n) for n in args.diagonal_worker.split(",")])
        return 0
    try:
        import matplotlib
    except ImportError:
        print('benchmarks/figures.py needs matplotlib: pip install -e ".[bench]" (make bench does)', file=sys.stderr)
        return 1
    matplotlib.use("Agg")
    start = time.perf_counter()
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}")

    product = keops_product()
    _print_product(product)
    plot_keops_product(product, args.out / "keops_product.png")

    diagonal = keops_diagonal()
    _print_diagonal(diagonal)
    plot_keops_diagonal(diagonal, args.out / "keops_diagonal.png")

    log_prob = log_prob_values()
    _print_log_prob(log_prob)
    plot_log_prob(log_prob, args.out / "mvn_log_prob.png")

    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
