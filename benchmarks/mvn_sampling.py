"""Benchmark of the ``mvn-batch`` patch's sampling: many batch members that share one covariance.

Run: ``.venv/bin/python benchmarks/mvn_sampling.py`` (about a minute on two cores). A lazy normal with a mean of
batch shape ``(64,)`` and one shared dense covariance (n = 1000, the Cholesky path) draws one sample per member;
the time is compared with one member (a mean of shape ``(N,)``), side by side in one run, each time including the
factorisation (a fresh distribution per draw). Target: 64 members at most 1.3x one member (one factorisation,
the 64 noise vectors as columns of one product). Also shown: 64 samples of one member (``rsample((64,))``), and
torch's ``MultivariateNormal`` on the same tensors.

Upstream GPyTorch takes about as long for 64 members as for one because it draws one noise vector and adds it to
all 64 means (every member gets the same noise); the line "identical noise" shows that.

Times are the best of alternating rounds, upstream and patched, so that a shared machine's load hits both alike.
"""

from __future__ import annotations

import math
import os
import time

import torch

os.environ.setdefault("GPYTORCH_EXT_AUTOPATCH", "0")

import gpytorch  # noqa: E402
from linear_operator.operators import DenseLinearOperator  # noqa: E402
from torch.distributions import MultivariateNormal as TorchMVN  # noqa: E402

import gpytorch_ext  # noqa: E402

F64 = torch.float64
PATCHES = ("mvn-log-prob", "mvn-batch")
N = 1000
SINGLE = torch.Size()


def best_of(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(N, N, generator=gen, dtype=F64)
    dense = a @ a.T / N + torch.eye(N, dtype=F64)
    means = {"1 member": torch.zeros(N, dtype=F64), "64 members": torch.randn(64, N, generator=gen, dtype=F64)}
    cases = {
        "1 member": lambda: draw(means["1 member"]),
        "64 members": lambda: draw(means["64 members"]),
        "1 member, 64 samples": lambda: draw(means["1 member"], torch.Size([64])),
    }

    def draw(mean, shape=SINGLE):
        with gpytorch.settings.max_cholesky_size(2000), torch.no_grad():  # the Cholesky path for everyone
            return gpytorch.distributions.MultivariateNormal(mean, DenseLinearOperator(dense)).rsample(shape)

    rows = {label: [math.inf, math.inf, math.inf] for label in cases}
    for _ in range(2):  # the first pass warms up; both count (best of)
        for _ in range(3):
            for label, fn in cases.items():
                gpytorch_ext.unpatch(*PATCHES)
                rows[label][0] = min(rows[label][0], best_of(fn))
                gpytorch_ext.patch(*PATCHES)
                rows[label][1] = min(rows[label][1], best_of(fn))
        for label, mean in (("1 member", means["1 member"]), ("64 members", means["64 members"])):
            rows[label][2] = min(rows[label][2], best_of(lambda mean=mean: TorchMVN(mean, dense).rsample()))
        rows["1 member, 64 samples"][2] = min(
            rows["1 member, 64 samples"][2],
            best_of(lambda: TorchMVN(means["1 member"], dense).rsample(torch.Size([64]))),
        )

    print(f"\nsampling with one shared dense covariance, n = {N} (Cholesky path), time incl. factorisation")
    print(f"{'':24}{'upstream':>12}{'patched':>12}{'torch':>12}")
    for label, times in rows.items():
        print(f"{label + ' [ms]':24}" + "".join(f"{t * 1e3:12.1f}" for t in times))
    ratio = [rows["64 members"][i] / rows["1 member"][i] for i in range(3)]
    print(f"{'64 members / 1 member':24}" + "".join(f"{r:12.2f}" for r in ratio))
    print(f"patched: 64 members / 1 member = {ratio[1]:.2f} (target <= 1.3)")

    gpytorch_ext.unpatch(*PATCHES)
    upstream = draw(means["64 members"])
    gpytorch_ext.patch(*PATCHES)
    patched = draw(means["64 members"])
    noise = {name: s - means["64 members"] for name, s in (("upstream", upstream), ("patched", patched))}
    for name, z in noise.items():
        print(f"{name}: identical noise for all 64 members: {bool(torch.allclose(z, z[:1].expand_as(z)))}")


if __name__ == "__main__":
    main()
