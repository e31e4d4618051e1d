"""Batteries for priors: every truncated base, and every (prior, constraint) pair, checked against SciPy.

Two mixins for pytest test classes; SciPy is the independent reference (imported lazily, inside the tests).

- :class:`TruncatedPriorBattery`: a univariate base prior truncated by
  :class:`~gpytorch_ext.priors.TruncatedPrior`: normalisation (quadrature), log-density, KS test of the samples,
  batches, dtypes. Provide ``make_base()`` and ``bounds``.
- :class:`PriorConstraintBattery`: a prior on a constrained parameter (a kernel's ARD lengthscale, batched): every
  path that draws the parameter (``Module.sample_from_prior``, ``pyro_sample_from_prior``,
  :func:`~gpytorch_ext.priors.sample_all_priors`) gives independent elements inside the constraint, distributed as
  the prior truncated to it (KS test); :func:`~gpytorch_ext.audit` reports the excluded mass; registration
  warns exactly when that mass exceeds ``prior_constraint_warning_threshold``. Provide ``make_prior()`` and
  ``make_constraint()``.

Example::

    class TestGammaOnGreaterThan(PriorConstraintBattery):
        def make_prior(self):
            return gpytorch.priors.GammaPrior(0.5, 2.0), scipy.stats.gamma(a=0.5, scale=0.5)

        def make_constraint(self):
            return gpytorch.constraints.GreaterThan(1e-4)
"""

from __future__ import annotations

import math
import warnings

import gpytorch
import numpy as np
import pytest
import torch

from ..priors import PriorConstraintWarning, TruncatedPrior, audit, prior_constraint_warning_threshold
from ..priors import sample_all_priors as _sample_all_priors

__all__ = ["PriorConstraintBattery", "TruncatedPriorBattery", "truncated_reference"]


def truncated_reference(ref, lower: float | None, upper: float | None):
    """``(lo, hi, cdf, logpdf)`` of the frozen SciPy distribution ``ref`` truncated to ``(lower, upper)``."""
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
    """A univariate base prior truncated to intervals, against SciPy.

    :cvar bounds: the ``(lower, upper)`` cases to check (``None`` for an open end), at most four.
    :cvar mc_normaliser: the base has no CDF; its normaliser is a Monte Carlo estimate (checked to 3%).
    """

    bounds: tuple = ()
    mc_normaliser = False
    n_samples = 4000

    def make_base(self):
        """``(prior or torch distribution, the matching frozen SciPy distribution)``."""
        raise NotImplementedError

    @pytest.fixture(params=range(4))
    def case(self, request):
        if request.param >= len(self.bounds):
            pytest.skip("no such bounds case")
        return self.bounds[request.param]

    def test_integrates_to_one(self, case):
        import scipy.integrate

        base, ref = self.make_base()
        lower, upper = case
        prior = TruncatedPrior(base, lower, upper)
        lo, hi, _, _ = truncated_reference(ref, lower, upper)
        lo, hi = max(lo, ref.support()[0]), min(hi, ref.support()[1])

        def density(x):
            return math.exp(float(prior.log_prob(torch.tensor(x, dtype=torch.float64))))

        points = [float(p) for p in ref.ppf([0.001, 0.01, 0.1, 0.5, 0.9, 0.99]) if lo < p < hi]
        edges = [lo, *sorted(set(points)), hi]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.integrate.IntegrationWarning)
            total = sum(scipy.integrate.quad(density, a, b, limit=200)[0] for a, b in zip(edges[:-1], edges[1:]))
        assert total == pytest.approx(1.0, abs=0.03 if self.mc_normaliser else 2e-3)

    def test_log_prob_matches_scipy_and_is_minus_inf_outside(self, case):
        base, ref = self.make_base()
        lower, upper = case
        prior = TruncatedPrior(base, lower, upper)
        lo, hi, _, logpdf = truncated_reference(ref, lower, upper)
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
        import scipy.stats

        base, ref = self.make_base()
        lower, upper = case
        prior = TruncatedPrior(base, lower, upper)
        _, _, cdf, _ = truncated_reference(ref, lower, upper)
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


def _active(name: str, ours):
    """GPyTorch's own object where the patched source (or the run-time patch) provides it, else ours."""
    return getattr(gpytorch.priors, name, None) or getattr(gpytorch.settings, name, None) or ours


class PriorConstraintBattery:
    """A prior on a constrained parameter: every draw elementwise and inside, the mass audited, warned above
    the threshold. The parameter is the lengthscale of an RBF kernel of batch ``batch`` with ``dims`` ARD
    dimensions, so one draw has ``batch * dims`` elements.
    """

    batch = 400
    dims = 5
    ks_pvalue = 1e-3

    def make_prior(self):
        """``(prior, the matching frozen SciPy distribution)``."""
        raise NotImplementedError

    def make_constraint(self) -> gpytorch.constraints.Interval:
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------------------------------

    def kernel(self, prior=None) -> gpytorch.kernels.RBFKernel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _active("PriorConstraintWarning", PriorConstraintWarning))
            return gpytorch.kernels.RBFKernel(
                ard_num_dims=self.dims,
                batch_shape=torch.Size([self.batch]),
                lengthscale_prior=self.make_prior()[0] if prior is None else prior,
                lengthscale_constraint=self.make_constraint(),
            )

    def reference(self):
        """``(lo, hi, truncated cdf, excluded mass)`` from SciPy."""
        _, ref = self.make_prior()
        constraint = self.make_constraint()
        lo, hi = float(constraint.lower_bound), float(constraint.upper_bound)
        s_lo, s_hi = ref.support()
        lo_eff, hi_eff = max(lo, s_lo), min(hi, s_hi)
        _, _, cdf, _ = truncated_reference(ref, lo_eff if lo_eff > s_lo else None, hi_eff if hi_eff < s_hi else None)
        mass = (ref.cdf(lo) if lo > s_lo else 0.0) + (ref.sf(hi) if hi < s_hi else 0.0)
        return lo, hi, cdf, mass

    def check_draw(self, value: torch.Tensor) -> None:
        import scipy.stats

        lo, hi, cdf, _ = self.reference()
        assert value.shape == (self.batch, 1, self.dims), value.shape
        flat = value.detach().flatten().double()
        assert bool(torch.isfinite(flat).all())
        assert bool(((flat > lo) & (flat < hi)).all()), (float(flat.min()), float(flat.max()))
        # independent draws: (nearly) all distinct, up to coincidences of float32 values
        assert flat.unique().numel() >= 0.99 * flat.numel(), "the elements are not independent draws"
        result = scipy.stats.kstest(flat.numpy(), cdf)
        assert result.pvalue > self.ks_pvalue, result

    # --- the paths that draw the parameter ----------------------------------------------------------------

    def test_module_sample_from_prior_draws_each_element_inside(self):
        kernel = self.kernel()
        torch.manual_seed(11)
        kernel.sample_from_prior("lengthscale_prior")
        self.check_draw(kernel.lengthscale)

    def test_sample_all_priors_draws_each_element_inside(self):
        kernel = self.kernel()
        torch.manual_seed(12)
        _sample_all_priors(kernel)
        self.check_draw(kernel.lengthscale)

    def test_pyro_sample_from_prior_draws_each_element_inside(self):
        pytest.importorskip("pyro")
        kernel = self.kernel()
        torch.manual_seed(13)
        self.check_draw(kernel.pyro_sample_from_prior().lengthscale)

    # --- what is reported -----------------------------------------------------------------------------

    def test_audit_reports_the_excluded_mass(self):
        _, _, _, mass = self.reference()
        findings = [f for f in audit(self.kernel()) if f.prior is not None]
        mass_findings = [f for f in findings if "mass" in f.kind]
        if mass == 0.0:
            assert mass_findings == [], [str(f) for f in findings]
            return
        (finding,) = mass_findings
        assert finding.parameter == "raw_lengthscale"
        assert finding.excluded_mass == pytest.approx(mass, rel=1e-3, abs=1e-12)

    @pytest.mark.parametrize("threshold", [None, 0.0, 0.05])
    def test_registration_warns_exactly_above_the_threshold(self, threshold):
        _, _, _, mass = self.reference()
        setting = _active("prior_constraint_warning_threshold", prior_constraint_warning_threshold)
        category = _active("PriorConstraintWarning", PriorConstraintWarning)
        limit = setting.value() if threshold is None else threshold
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with setting(limit):
                gpytorch.kernels.RBFKernel(
                    lengthscale_prior=self.make_prior()[0], lengthscale_constraint=self.make_constraint()
                )
        ours = [w for w in caught if issubclass(w.category, category)]
        assert len(ours) == int(mass > limit), (mass, limit, [str(w.message) for w in ours])
        if ours:
            assert ours[0].filename == __file__, "the warning must point at the line that built the module"
