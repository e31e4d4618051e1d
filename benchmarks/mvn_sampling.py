"""Benchmark of the ``mvn-batch`` patch's sampling: many batch members that share one covariance.

Run: ``.venv/bin/python benchmarks/mvn_sampling.py`` (about a minute on two cores). A lazy normal with a mean of
batch shape ``(64,)`` and one shared dense covariance (n = 1000, the Cholesky path) draws one sample per member;
the time is compared with one member (a mean of shape ``(N,)``), side by side in one run, each time including the
factorisation (a fresh distribution per draw). Target: 64 members at most 1.3x one member (one factorisation,
the 64 noise vectors as columns of one product). Also shown: 64 samples of one member (``rsample((64,))``), and
torch's ``MultivariateNormal`` on the same tensors.

The column "floor" is the least work in plain torch: one Cholesky factorisation, ``torch.randn`` of the noise and
one product with the factor (``1 x N`` noise: a matrix-vector product). Its ratio bounds what any implementation
can reach on this machine: 64 members cost 64 noise vectors more than one member, and torch draws float64 normals
about five times slower than float32 ones. Both float32 (GPyTorch's default dtype) and float64 are shown.

Upstream GPyTorch takes about as long for 64 members as for one because it draws one noise vector and adds it to
all 64 means (every member gets the same noise); the line "identical noise" shows that.

Times are the best of alternating rounds, upstream and patched, so that a shared machine's load hits both alike.
"""

from __future__ import annotations

import math
import os

import torch

os.environ.setdefault("GPYTORCH_EXT_AUTOPATCH", "0")

import gpytorch  # noqa: E402
from _timing import best_of  # noqa: E402  (benchmarks/, on the path of a script run from it)
from linear_operator.operators import DenseLinearOperator  # noqa: E402
from torch.distributions import MultivariateNormal as TorchMVN  # noqa: E402

import gpytorch_ext  # noqa: E402

PATCHES = ("mvn-log-prob", "mvn-batch")
N = 1000
SINGLE = torch.Size()
COLUMNS = ("upstream", "patched", "floor", "torch")


def floor(mean: torch.Tensor, dense: torch.Tensor, shape: torch.Size = SINGLE) -> torch.Tensor:
    """The least work in plain torch: one Cholesky factor, the noise, one product (members and samples as rows)."""
    factor, _ = torch.linalg.cholesky_ex(dense)
    rows = shape.numel() * mean.shape[:-1].numel()
    noise = torch.randn(rows, N, dtype=dense.dtype)
    return (noise[0] @ factor.mT if rows == 1 else noise @ factor.mT) + mean


def table(dtype: torch.dtype) -> float:
    """Print the table for one dtype; return patched 64 members / 1 member."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(N, N, generator=gen, dtype=dtype)
    dense = a @ a.T / N + torch.eye(N, dtype=dtype)
    means = {"1 member": torch.zeros(N, dtype=dtype), "64 members": torch.randn(64, N, generator=gen, dtype=dtype)}

    def draw(mean, shape=SINGLE):
        with gpytorch.settings.max_cholesky_size(2000), torch.no_grad():  # the Cholesky path for everyone
            return gpytorch.distributions.MultivariateNormal(mean, DenseLinearOperator(dense)).rsample(shape)

    cases = {  # label: (mean, sample shape)
        "1 member": (means["1 member"], SINGLE),
        "64 members": (means["64 members"], SINGLE),
        "1 member, 64 samples": (means["1 member"], torch.Size([64])),
    }
    rows = {label: dict.fromkeys(COLUMNS, math.inf) for label in cases}
    for _ in range(2):  # the first pass warms up; both count (best of)
        for _ in range(3):
            for label, (mean, shape) in cases.items():
                row = rows[label]
                gpytorch_ext.unpatch(*PATCHES)
                row["upstream"] = min(row["upstream"], best_of(lambda m=mean, s=shape: draw(m, s)))
                gpytorch_ext.patch(*PATCHES)
                row["patched"] = min(row["patched"], best_of(lambda m=mean, s=shape: draw(m, s)))
                row["floor"] = min(row["floor"], best_of(lambda m=mean, s=shape: floor(m, dense, s)))
        for label, (mean, shape) in cases.items():
            torch_time = best_of(lambda m=mean, s=shape: TorchMVN(m, dense).rsample(s))
            rows[label]["torch"] = min(rows[label]["torch"], torch_time)

    print(f"\n{dtype}: one shared dense covariance, n = {N} (Cholesky path), time incl. factorisation")
    print(f"{'':26}" + "".join(f"{c:>12}" for c in COLUMNS))
    for label, row in rows.items():
        print(f"{label + ' [ms]':26}" + "".join(f"{row[c] * 1e3:12.1f}" for c in COLUMNS))
    ratio = {c: rows["64 members"][c] / rows["1 member"][c] for c in COLUMNS}
    print(f"{'64 members / 1 member':26}" + "".join(f"{ratio[c]:12.2f}" for c in COLUMNS))
    print(f"patched: 64 members / 1 member = {ratio['patched']:.2f} (target <= 1.3; floor {ratio['floor']:.2f})")

    gpytorch_ext.unpatch(*PATCHES)
    upstream = draw(means["64 members"])
    gpytorch_ext.patch(*PATCHES)
    patched = draw(means["64 members"])
    for name, sample in (("upstream", upstream), ("patched", patched)):
        z = sample - means["64 members"]  # the noise, up to rounding of the mean's addition
        identical = bool(torch.allclose(z, z[:1].expand_as(z), atol=1e-4))
        print(f"{name}: identical noise for all 64 members: {identical}")
    return ratio["patched"]


def main() -> None:
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}")
    for dtype in (torch.float32, torch.float64):
        table(dtype)


if __name__ == "__main__":
    main()
