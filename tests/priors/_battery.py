"""Shared checks ("battery") for truncated univariate priors, each against SciPy as the reference.

A test class mixes in :class:`TruncatedPriorBattery` and provides ``make_base()`` returning a GPyTorch prior (or
torch distribution) and the matching frozen SciPy distribution, plus ``bounds``: the ``(lower, upper)`` cases
to check (``None`` for an open end). ``mc_normaliser`` marks bases without a CDF, whose normaliser is a Monte
Carlo estimate (checked to 3%).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch

from gpytorch_ext.priors import TruncatedPrior


def _truncated_reference(ref, lower, upper):
    lo = -math.inf if lower is None else lower
    hi = math.inf if upper is None else upper
    f_lo, f_hi = ref.cdf(lo), ref.cdf(hi)

    def cdf(x):
        return np.clip((ref.cdf(np.clip(x, lo, hi)) - f_lo) / (f_hi - f_lo), 0.0, 1.0)

    def logpdf(x):
        x = np.asarray(x, dtype=float)
        inside = (x >= lo) & (x <= hi)
        return np.where(inside, ref.logpdf(np.clip(x, max(lo, -1e300), min(hi, 1e300))) - np.log(f_hi - f_lo), -np.inf)

    return lo, hi, cdf, logpdf


class TruncatedPriorBattery:
    bounds: tuple = ()
    mc_normaliser = False
    n_samples = 4000

    def make_base(self):
        raise NotImplementedError

    @pytest.fixture(params=range(4))
    def case(self, request):
        if request.param >= len(self.bounds):
            pytest.skip("no such bounds case")
        return self.bounds[request.param]

    def test_integrates_to_one(self, case):
        base, ref = self.make_base()
        lower, upper = case
        prior = TruncatedPrior(base, lower, upper)
        lo, hi, _, _ = _truncated_reference(ref, lower, upper)
        lo, hi = max(lo, ref.support()[0]), min(hi, ref.support()[1])

        def density(x):
            return math.exp(float(prior.log_prob(torch.tensor(x, dtype=torch.float64))))

        points = [float(p) for p in ref.ppf([0.001, 0.01, 0.1, 0.5, 0.9, 0.99]) if lo < p < hi]
        edges = [lo, *sorted(set(points)), hi]
        total = sum(scipy.integrate.quad(density, a, b, limit=200)[0] for a, b in zip(edges[:-1], edges[1:]))
        assert total == pytest.approx(1.0, abs=0.03 if self.mc_normaliser else 2e-3)

    def test_log_prob_matches_scipy_and_is_minus_inf_outside(self, case):
        base, ref = self.make_base()
        lower, upper = case
        prior = TruncatedPrior(base, lower, upper)
        lo, hi, _, logpdf = _truncated_reference(ref, lower, upper)
        s_lo, s_hi = ref.support()
        inner = ref.ppf(np.linspace(0.02, 0.98, 25))
        inner = inner[(inner > max(lo, s_lo)) & (inner < min(hi, s_hi))]
        got = prior.log_prob(torch.tensor(inner, dtype=torch.float32)).double().numpy()
        tol = 0.03 if self.mc_normaliser else 1e-3
        np.testing.assert_allclose(got, logpdf(inner), atol=tol, rtol=1e-4)
        outside = [x for x in (lo - 1.0, hi + 1.0, s_lo - 1.0) if math.isfinite(x) and not (max(lo, s_lo) <= x <= hi)]
        if outside:
            out = prior.log_prob(torch.tensor(outside))
            assert torch.all(out == -math.inf), out

    def test_samples_strictly_inside_and_ks(self, case):
        base, ref = self.make_base()
        lower, upper = case
        prior = TruncatedPrior(base, lower, upper)
        _, _, cdf, _ = _truncated_reference(ref, lower, upper)
        torch.manual_seed(1234)
        x = prior.sample(torch.Size([self.n_samples]))
        assert x.shape == (self.n_samples,) and torch.isfinite(x).all()
        if lower is not None:
            assert bool((x > lower).all())
        if upper is not None:
            assert bool((x < upper).all())
        assert prior.support.check(x).all()
        result = scipy.stats.kstest(x.double().numpy(), cdf)
        assert result.pvalue > 1e-3, result

    def test_batched_base_and_bounds(self):
        base, ref = self.make_base()
        lower, upper = self.bounds[0]
        batch = base.expand(torch.Size([3]))
        lows = None if lower is None else torch.tensor([lower, lower, lower])
        prior = TruncatedPrior(batch, lows, upper)
        assert prior.batch_shape == torch.Size([3])
        torch.manual_seed(0)
        x = prior.sample(torch.Size([5]))
        assert x.shape == (5, 3) and torch.isfinite(x).all()
        single = TruncatedPrior(self.make_base()[0], lower, upper)
        probe = x[:, 0]
        torch.testing.assert_close(
            prior.log_prob(x)[:, 0], single.log_prob(probe), atol=0.05 if self.mc_normaliser else 1e-5, rtol=0
        )
        expanded = TruncatedPrior(self.make_base()[0], lower, upper).expand(torch.Size([2, 3]))
        assert expanded.batch_shape == (2, 3) and expanded.sample().shape == (2, 3)

    def test_to_dtype(self):
        base, _ = self.make_base()
        lower, upper = self.bounds[0]
        prior = TruncatedPrior(base, lower, upper)
        if not isinstance(base, torch.nn.Module):
            pytest.skip("plain torch distributions do not move with .to()")
        double = prior.to(torch.float64)
        assert double.lower.dtype == torch.float64
        x = double.sample(torch.Size([10]))
        assert x.dtype == torch.float64
        assert double.log_prob(x).dtype == torch.float64
