"""Every (prior, constraint) kind through the same battery: draws on every path, audit, registration warnings."""

from __future__ import annotations

import pytest
import torch
from gpytorch.constraints import GreaterThan, Interval, Positive
from gpytorch.priors import GammaPrior, HalfCauchyPrior, LogNormalPrior, NormalPrior, UniformPrior

from gpytorch_ext.testing.priors import PriorConstraintBattery

stats = pytest.importorskip("scipy.stats")


class TestGammaOnTheDefaultNoiseConstraint(PriorConstraintBattery):  # 1.6% outside: warns, truncated by bisection
    def make_prior(self):
        return GammaPrior(0.5, 2.0), stats.gamma(a=0.5, scale=0.5)

    def make_constraint(self):
        return GreaterThan(1e-4)


class TestTutorialGammaOnTheDefaultNoiseConstraint(PriorConstraintBattery):  # 1.4e-6 outside: silent by default
    def make_prior(self):
        return GammaPrior(1.1, 0.05), stats.gamma(a=1.1, scale=20.0)

    def make_constraint(self):
        return GreaterThan(1e-4)


class TestLogNormalAboveABound(PriorConstraintBattery):  # icdf: reparameterised inverse-CDF draws
    def make_prior(self):
        return LogNormalPrior(-1.0, 1.0), stats.lognorm(s=1.0, scale=float(torch.tensor(-1.0).exp()))

    def make_constraint(self):
        return GreaterThan(0.1)


class TestNormalInAnInterval(PriorConstraintBattery):  # both ends cut
    def make_prior(self):
        return NormalPrior(1.0, 1.0), stats.norm(1.0, 1.0)

    def make_constraint(self):
        return Interval(0.5, 3.0)


class TestHalfCauchyOnPositive(PriorConstraintBattery):  # inside: sampled as upstream, nothing reported
    def make_prior(self):
        return HalfCauchyPrior(1.0), stats.halfcauchy(scale=1.0)

    def make_constraint(self):
        return Positive()


class TestUniformInsideAnInterval(PriorConstraintBattery):
    def make_prior(self):
        return UniformPrior(0.5, 2.0), stats.uniform(loc=0.5, scale=1.5)

    def make_constraint(self):
        return Interval(0.2, 3.0)
