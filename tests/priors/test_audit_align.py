"""audit() and align(): findings per (parameter, prior) pair, and the two repairs."""

from __future__ import annotations

import math
import warnings

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan, Interval, LessThan, Positive
from gpytorch.priors import GammaPrior, LogNormalPrior, NormalPrior, UniformPrior

from gpytorch_ext.priors import (
    EXCLUDED_BY_PRIOR,
    MASS_OUTSIDE,
    NOT_ENFORCED,
    PriorConstraintWarning,
    TruncatedPrior,
    align,
    audit,
)

from ._models import ExactGPModel, data

pytestmark = [
    pytest.mark.filterwarnings("ignore::gpytorch_ext.priors.PriorConstraintWarning"),
    # against the patched source (--impl=source) GPyTorch warns with its own class
    pytest.mark.filterwarnings("ignore:.*of the prior's mass lies outside"),
]
stats = pytest.importorskip("scipy.stats")


def _model(
    noise_prior=None,
    noise_constraint=None,
    lengthscale_prior=None,
    outputscale_prior=None,
    batch_shape=torch.Size([]),  # noqa: B008
):
    x, y = data(8)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=noise_prior, noise_constraint=noise_constraint, batch_shape=batch_shape
    )
    return ExactGPModel(
        x,
        y,
        likelihood,
        lengthscale_prior=lengthscale_prior,
        outputscale_prior=outputscale_prior,
        batch_shape=batch_shape,
    )


def test_clean_model_has_no_findings():
    model = _model(GammaPrior(1.1, 0.05), Positive(), GammaPrior(3.0, 6.0), GammaPrior(2.0, 0.15))
    assert audit(model) == []
    assert audit(_model()) == []


def test_findings_name_parameter_prior_intervals_kind_and_mass():
    model = _model(GammaPrior(0.5, 2.0), None, UniformPrior(0.0, 2.0), NormalPrior(1.0, 1.0))
    findings = {f.parameter: f for f in audit(model)}
    assert set(findings) == {
        "likelihood.noise_covar.raw_noise",
        "covar_module.raw_outputscale",
        "covar_module.base_kernel.raw_lengthscale",
    }
    noise = findings["likelihood.noise_covar.raw_noise"]
    assert noise.prior_name == "likelihood.noise_covar.noise_prior"
    assert noise.kinds == (MASS_OUTSIDE,)
    assert noise.excluded_mass == pytest.approx(stats.gamma(a=0.5, scale=0.5).cdf(1e-4), rel=1e-4)
    assert float(noise.prior_support[0]) == 0.0 and math.isinf(float(noise.prior_support[1]))
    assert float(noise.constraint_interval[0]) == pytest.approx(1e-4)
    assert findings["covar_module.raw_outputscale"].excluded_mass == pytest.approx(
        stats.norm(1.0, 1.0).cdf(0.0), rel=1e-4
    )
    assert findings["covar_module.base_kernel.raw_lengthscale"].kinds == (EXCLUDED_BY_PRIOR,)
    line = str(noise)
    assert "\n" not in line
    for part in (
        "likelihood.noise_covar.raw_noise",
        "GammaPrior(concentration=0.5, rate=2)",
        "(0, inf)",
        "GreaterThan",
        "(0.0001, inf)",
        MASS_OUTSIDE,
        "1.6%",
    ):
        assert part in line, (part, line)


def test_closure_priors_by_name_and_unrelated_closures():
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    likelihood.noise_covar.register_prior("noise_prior", NormalPrior(0.0, 1.0), "noise")  # by parameter name
    kernel = gpytorch.kernels.RBFKernel()
    # a prior on log(lengthscale) has full support by design: not a mismatch with Positive()
    kernel.register_prior(
        "lengthscale_prior",
        NormalPrior(0.0, 1.0),
        lambda m: m.lengthscale.log(),
        lambda m, v: m._set_lengthscale(v.exp()),
    )
    assert [f.parameter for f in audit(likelihood)] == ["noise_covar.raw_noise"]
    assert audit(kernel) == []


def test_unenforced_constraints_are_listed_with_and_without_prior():
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=LogNormalPrior(-4.0, 1.0), noise_constraint=GreaterThan(1e-4, transform=None)
    )
    kernel = gpytorch.kernels.RBFKernel(lengthscale_constraint=GreaterThan(0.025, transform=None))
    finding = audit(likelihood)[0]
    assert finding.kinds == (MASS_OUTSIDE, NOT_ENFORCED)
    assert finding.excluded_mass == pytest.approx(stats.lognorm(s=1.0, scale=math.exp(-4.0)).cdf(1e-4), rel=1e-3)
    (bare,) = audit(kernel)
    assert bare.prior is None and bare.kinds == (NOT_ENFORCED,) and "no prior" in str(bare)


def test_batched_model_reports_the_largest_mass():
    prior = GammaPrior(torch.tensor([0.5, 2.0]), torch.tensor([2.0, 2.0]))
    model = _model(prior, None, batch_shape=torch.Size([2]))
    (finding,) = audit(model)
    want = max(stats.gamma(a=a, scale=0.5).cdf(1e-4) for a in (0.5, 2.0))
    assert finding.excluded_mass == pytest.approx(want, rel=1e-4)
    assert "[0.5..2]" in str(finding)


def test_align_truncate_replaces_the_prior_and_fixes_the_audit():
    model = _model(GammaPrior(0.5, 2.0), None, None, NormalPrior(1.0, 1.0))
    changes = align(model, how="truncate")
    assert sorted(c.parameter for c in changes) == ["covar_module.raw_outputscale", "likelihood.noise_covar.raw_noise"]
    prior = model.likelihood.noise_covar.noise_prior
    assert isinstance(prior, TruncatedPrior) and float(prior.lower) == pytest.approx(1e-4)
    assert model.likelihood.noise_covar._priors["noise_prior"][0] is prior
    assert audit(model) == []
    assert align(model) == []
    # the MLL's prior term now uses the renormalised density
    x = torch.tensor(0.5)
    ref = stats.gamma(a=0.5, scale=0.5)
    assert float(prior.log_prob(x)) == pytest.approx(ref.logpdf(0.5) - math.log(ref.sf(1e-4)), abs=1e-5)


def test_align_relax_widens_the_constraint_and_keeps_values():
    model = _model(GammaPrior(0.5, 2.0), GreaterThan(1e-4), None, UniformPrior(0.5, 3.0))
    model.covar_module.outputscale = 1.2
    model.covar_module.raw_outputscale_constraint  # noqa: B018
    model.covar_module.register_constraint("raw_outputscale", Interval(1.0, 2.0))
    model.covar_module.outputscale = 1.2
    before = (model.likelihood.noise.detach().clone(), model.covar_module.outputscale.detach().clone())
    changes = align(model, how="relax")
    assert len(changes) == 2
    noise_constraint = model.likelihood.noise_covar.raw_noise_constraint
    assert type(noise_constraint) is Positive
    scale_constraint = model.covar_module.raw_outputscale_constraint
    assert type(scale_constraint) is Interval
    assert float(scale_constraint.lower_bound) == 0.5 and float(scale_constraint.upper_bound) == 3.0
    torch.testing.assert_close(model.likelihood.noise, before[0])
    torch.testing.assert_close(model.covar_module.outputscale, before[1])
    assert [f for f in audit(model) if MASS_OUTSIDE in f.kinds] == []


def test_align_relax_keeps_less_than_and_refuses_the_real_line():
    kernel = gpytorch.kernels.RBFKernel(lengthscale_prior=UniformPrior(0.1, 2.0), lengthscale_constraint=LessThan(1.0))
    (change,) = align(kernel, how="relax")
    assert (
        type(kernel.raw_lengthscale_constraint) is LessThan
        and float(kernel.raw_lengthscale_constraint.upper_bound) == 2.0
    )
    normal = gpytorch.kernels.RBFKernel(lengthscale_prior=NormalPrior(0.0, 1.0))
    before = normal.raw_lengthscale_constraint
    with pytest.raises(ValueError, match="raw_lengthscale"):
        align(normal, how="relax")
    assert normal.raw_lengthscale_constraint is before
    with pytest.raises(ValueError, match="how"):
        align(normal, how="squash")


def test_align_then_sampling_needs_no_truncation():
    model = _model(GammaPrior(0.5, 2.0))
    align(model, how="relax")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriorConstraintWarning)
        assert audit(model) == []


def test_the_tutorials_likelihood_level_prior_is_audited_and_aligned():
    """``likelihood.register_prior("noise_prior", prior, "noise")``: the constraint lives on noise_covar."""
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    likelihood.register_prior("noise_prior", GammaPrior(0.5, 2.0), "noise")
    (finding,) = audit(likelihood)
    assert finding.parameter == "noise_covar.raw_noise" and finding.prior_name == "noise_prior"
    assert finding.excluded_mass == pytest.approx(stats.gamma(a=0.5, scale=0.5).cdf(1e-4), rel=1e-4)
    (change,) = align(likelihood, how="truncate")
    assert change.prior_name == "noise_prior" and isinstance(likelihood.noise_prior, TruncatedPrior)
    assert audit(likelihood) == []

    relaxed = gpytorch.likelihoods.GaussianLikelihood()
    relaxed.register_prior("noise_prior", GammaPrior(0.5, 2.0), "noise")
    align(relaxed, how="relax")
    assert type(relaxed.noise_covar.raw_noise_constraint) is Positive


def test_a_module_reachable_twice_is_audited_once():
    kernel = gpytorch.kernels.RBFKernel(lengthscale_prior=NormalPrior(1.0, 1.0))
    findings = audit(kernel + kernel * gpytorch.kernels.PeriodicKernel())
    assert [f.parameter for f in findings] == ["kernels.0.raw_lengthscale"]


def test_compare_the_one_home_of_prior_support_versus_constraint():
    """audit, align, the samplers and the warnings all decide through ``_intervals.compare``."""
    from gpytorch_ext.priors import _intervals

    fit = _intervals.compare(GammaPrior(0.5, 2.0), GreaterThan(1e-4))
    assert (fit.inside, fit.overlaps, fit.covers) == (False, True, True)
    fit = _intervals.compare(UniformPrior(0.0, 1.0), GreaterThan(2.0))
    assert (fit.inside, fit.overlaps, fit.covers) == (False, False, False)
    fit = _intervals.compare(UniformPrior(0.1, 2.0), Interval(0.05, 3.0))
    assert (fit.inside, fit.overlaps, fit.covers) == (True, True, False)
