"""Self-check of the ``mvn-batch`` patch: lazy normals whose mean and covariance batch shapes differ, versus torch.

A fixed sweep of (mean batch, covariance batch) pairs x covariance kinds (no KeOps: nothing compiles). Each case
compares ``mean``, ``covariance_matrix``, ``entropy``, ``kl_divergence``, ``expand``, batch and event indexing and
reparameterised samples (given base samples: the exact value :math:`\\mu_b + L_b \\epsilon_b`; drawn: the shape, and
that batch members sharing a covariance get different noise) with ``torch.distributions.MultivariateNormal`` on the
broadcast dense tensors.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import gpytorch
import torch
from linear_operator.operators import DenseLinearOperator
from torch.distributions import MultivariateNormal as TorchMVN
from torch.distributions import kl_divergence

from .._registry import Probe
from ._probe import _covariances

_N = 4
_PAIRS = [((), (2,)), ((2,), ()), ((1,), (2,)), ((2, 1), (3,)), ((3,), (1,))]


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    got = got.to_dense() if hasattr(got, "to_dense") and not isinstance(got, torch.Tensor) else got
    return got.shape == want.shape and torch.allclose(got, want, rtol=1e-6, atol=1e-8)


def _checks(dist, ref: TorchMVN, other, other_ref: TorchMVN) -> dict[str, Callable[[], bool]]:
    batch = ref.batch_shape

    def samples() -> bool:
        eps = torch.randn(3, *batch, _N, dtype=torch.float64)
        want = ref.loc + (ref.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
        return _close(dist.rsample(base_samples=eps), want)

    def independent() -> bool:
        draw = dist.sample(torch.Size([2]))
        flat = draw.reshape(2, -1, _N)
        distinct = all(
            not torch.equal(flat[:, i], flat[:, j]) for i, j in itertools.combinations(range(flat.size(1)), 2)
        )
        return draw.shape == ref.sample(torch.Size([2])).shape and distinct

    def index(idx, event: slice | None = None) -> Callable[[], bool]:
        def check() -> bool:
            sub = dist[idx] if event is None else dist[..., event]
            loc = ref.loc[idx] if event is None else ref.loc[..., event]
            cov = ref.covariance_matrix[idx] if event is None else ref.covariance_matrix[..., event, event]
            return _close(sub.mean, loc) and _close(sub.covariance_matrix, cov)

        return check

    return {
        "mean": lambda: _close(dist.mean, ref.mean),
        "covariance_matrix": lambda: _close(dist.covariance_matrix, ref.covariance_matrix),
        "variance": lambda: _close(dist.variance, ref.variance),
        "entropy": lambda: _close(dist.entropy(), ref.entropy()),
        "kl": lambda: _close(kl_divergence(dist, other), kl_divergence(ref, other_ref)),
        "expand": lambda: _close(dist.expand((5, *batch)).covariance_matrix, ref.expand((5, *batch)).covariance_matrix),
        "rsample(base_samples)": samples,
        "sample independence": independent,
        "batch index": index(batch[0] - 1 if batch else ...),
        "event slice": index(None, slice(0, 2)),
    }


def _multitask_fails(gen: torch.Generator) -> tuple[int, int]:
    """A multitask normal with a batch mean and one shared covariance: distinct noise per member, torch's shapes."""
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    covar = DenseLinearOperator(a @ a.mT / 6 + torch.eye(6, dtype=torch.float64))
    dist = gpytorch.distributions.MultitaskMultivariateNormal(torch.zeros(4, 3, 2, dtype=torch.float64), covar)
    try:
        draw = dist.sample(torch.Size([5]))
        ok = draw.shape == (5, 4, 3, 2) and not torch.equal(draw[:, 0], draw[:, 1])
    except Exception:
        ok = False
    return int(not ok), 1


def batch_probe() -> Probe:
    """Count the (case, operation) pairs where GPyTorch raises or disagrees with torch (shape or value)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    failures = total = 0
    for mean_batch, covar_batch in _PAIRS:
        covariances = _covariances(covar_batch, gen)
        mean = torch.randn(*mean_batch, _N, generator=gen, dtype=torch.float64)
        other_mean = torch.randn(_N, dtype=torch.float64)
        other_covar = torch.eye(_N, dtype=torch.float64) * 1.5
        for _, covar, dense in covariances:
            with torch.no_grad():
                dist = gpytorch.distributions.MultivariateNormal(mean, covar)
                other = gpytorch.distributions.MultivariateNormal(other_mean, DenseLinearOperator(other_covar))
                ref, other_ref = TorchMVN(mean, dense), TorchMVN(other_mean, other_covar)
                for check in _checks(dist, ref, other, other_ref).values():
                    total += 1
                    try:
                        failures += not check()
                    except Exception:
                        failures += 1
    mt_failures, mt_total = _multitask_fails(gen)
    failures, total = failures + mt_failures, total + mt_total
    return Probe(f"{failures} of {total} batch-shape operations fail", defect=failures > 0)
