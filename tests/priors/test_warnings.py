"""PriorConstraintWarning: only above the threshold, at the user's line, filtered by the warnings module alone."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan, Interval, Positive
from gpytorch.priors import GammaPrior, LogNormalPrior, NormalPrior, UniformPrior

import gpytorch_ext.priors

from ._impl import PriorConstraintWarning
from ._models import ExactGPModel, data

PATCH = "constraint-aware-priors"
#: the threshold setting GPyTorch's repaired code reads (the patch's, or the patched source's own)
threshold = getattr(gpytorch.settings, "prior_constraint_warning_threshold", None)


def _caught(build, action="always"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter(action)
        build()
    return [w for w in caught if issubclass(w.category, PriorConstraintWarning)]


def test_registration_warning_upstream_silent_patched_with_the_details(upstream):
    def build():
        return gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))

    with upstream(PATCH):
        assert _caught(build) == []
    (warning,) = _caught(build)
    message = str(warning.message)
    for part in (
        "noise_prior",
        "GammaPrior(concentration=0.5, rate=2)",
        "GreaterThan(1.000E-04)",
        "raw_noise",
        "1.6%",
        "Remedy: a TruncatedPrior",
    ):
        assert part in message, (part, message)


def test_the_tutorials_registration_warns(upstream):
    def build():
        likelihood = gpytorch.likelihoods.GaussianLikelihood()
        likelihood.register_prior("noise_prior", GammaPrior(0.5, 2.0), "noise")

    with upstream(PATCH):
        assert _caught(build) == []
    (warning,) = _caught(build)
    assert "GaussianLikelihood.noise_prior" in str(warning.message)
    assert "noise_covar.raw_noise" in str(warning.message)


@pytest.mark.parametrize(
    ("prior", "constraint", "mass"),
    [
        (GammaPrior(1.1, 0.05), None, 1.4e-6),  # the classic tutorial noise prior on the default constraint
        (GammaPrior(3.0, 6.0), GreaterThan(1e-4), 3.6e-11),
    ],
)
def test_negligible_mass_does_not_warn_but_is_audited(prior, constraint, mass):
    def build():
        return gpytorch.likelihoods.GaussianLikelihood(noise_prior=prior, noise_constraint=constraint)

    assert _caught(build) == []
    (finding,) = gpytorch_ext.priors.audit(build())
    assert finding.excluded_mass == pytest.approx(mass, rel=0.05)
    with threshold(0.0):
        (warning,) = _caught(build)
    assert "lies outside" in str(warning.message)


def test_the_threshold_is_a_setting():
    def build():
        return gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))

    assert threshold.value() == 1e-3
    with threshold(0.02):  # above the 1.6% excluded
        assert _caught(build) == []
    assert len(_caught(build)) == 1
    with pytest.raises(ValueError, match="probability"):
        threshold(1.5)


def test_the_warning_points_at_the_users_line():
    def build():
        return gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))  # <- this line

    (warning,) = _caught(build)
    assert warning.filename == __file__
    assert "<- this line" in open(__file__).read().splitlines()[warning.lineno - 1]


def test_the_warning_inside_a_users_model_points_at_the_model_code():
    class MyGP(ExactGPModel):
        def __init__(self, x, y):
            likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))  # <- here
            super().__init__(x, y, likelihood)

    (warning,) = _caught(lambda: MyGP(*data(5)))
    assert warning.filename == __file__
    assert "<- here" in open(__file__).read().splitlines()[warning.lineno - 1]


def test_repetitions_follow_the_warnings_filters():
    def build_three():
        for _ in range(3):
            gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))

    assert len(_caught(build_three, "always")) == 3
    assert len(_caught(build_three, "default")) == 1  # once per line, by the warnings module's own registry
    with pytest.warns(PriorConstraintWarning, match="1.6%"):
        gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))
    with pytest.warns(PriorConstraintWarning, match="1.6%"):  # again: nothing remembered across the process
        gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(0.5, 2.0))


def test_a_fresh_process_under_the_default_filters_shows_the_warning_once_at_the_users_line(tmp_path, impl):
    script = tmp_path / "user_model.py"
    script.write_text(
        textwrap.dedent(
            """
            import gpytorch_ext, gpytorch
            for _ in range(3):
                gpytorch.likelihoods.GaussianLikelihood(noise_prior=gpytorch.priors.GammaPrior(0.5, 2.0))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    lines = [line for line in out.stderr.splitlines() if "PriorConstraintWarning" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{script}:4:"), out.stderr


def test_registration_warning_prior_registered_after_constraint_and_by_name():
    def build():
        likelihood = gpytorch.likelihoods.GaussianLikelihood()
        likelihood.noise_covar.register_prior("noise_prior", NormalPrior(0.0, 1.0), "noise")

    (warning,) = _caught(build)
    assert "50%" in str(warning.message)


def test_a_constraint_registered_after_the_prior_warns():
    def build():
        kernel = gpytorch.kernels.RBFKernel(lengthscale_prior=LogNormalPrior(-1.0, 1.0))
        kernel.register_constraint("raw_lengthscale", GreaterThan(0.1))

    (warning,) = _caught(build)
    assert "GreaterThan(1.000E-01)" in str(warning.message)


def test_registration_warning_mass_matches_scipy():
    stats = pytest.importorskip("scipy.stats")

    def build():
        gpytorch.kernels.RBFKernel(lengthscale_prior=LogNormalPrior(-1.0, 1.0), lengthscale_constraint=GreaterThan(0.1))

    (warning,) = _caught(build)
    want = stats.lognorm(s=1.0, scale=math.exp(-1.0)).cdf(0.1)
    assert f"{100 * want:.3g}%" in str(warning.message)


@pytest.mark.parametrize(
    "build",
    [
        lambda: gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0)), outputscale_prior=GammaPrior(2.0, 0.15)
        ),
        lambda: gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(1.1, 0.05), noise_constraint=Positive()),
        lambda: gpytorch.kernels.RBFKernel(
            lengthscale_prior=UniformPrior(0.1, 2.0), lengthscale_constraint=Interval(0.05, 3.0)
        ),
        lambda: gpytorch.likelihoods.GaussianLikelihood(),
    ],
    ids=["gamma-positive", "gamma-noise-positive", "uniform-inside-interval", "no-prior"],
)
def test_no_registration_warning_when_the_prior_fits(build):
    assert _caught(build) == []


def test_botorch_default_models_do_not_warn():
    pytest.importorskip("botorch")
    from botorch.models import SingleTaskGP
    from botorch.models.utils.gpytorch_modules import (
        get_gaussian_likelihood_with_gamma_prior,
        get_matern_kernel_with_gamma_prior,
    )

    def build():
        x = torch.rand(6, 3, dtype=torch.float64)
        SingleTaskGP(x, x.sum(-1, keepdim=True))
        get_matern_kernel_with_gamma_prior(3)
        get_gaussian_likelihood_with_gamma_prior()

    assert _caught(build) == []


# --- unenforced constraints ---------------------------------------------------------------------------


def _prior_terms(module):
    return {name: prior.log_prob(closure(m)) for name, m, prior, closure, _ in module.named_priors()}


@pytest.mark.parametrize("tutorial", [False, True], ids=["noise_prior-argument", "register_prior-on-likelihood"])
def test_unenforced_constraint_prior_term_nan_upstream_minus_inf_patched(upstream, tutorial):
    constraint = GreaterThan(1e-4, transform=None)
    if tutorial:
        likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=constraint)
        likelihood.register_prior("noise_prior", GammaPrior(1.1, 0.05), "noise")
        name = "noise_prior"
    else:
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(1.1, 0.05), noise_constraint=constraint
        )
        name = "noise_covar.noise_prior"
    with torch.no_grad():
        likelihood.noise_covar.raw_noise.fill_(-0.125)  # e.g. an unbounded optimiser step
    with upstream(PATCH):
        assert torch.isnan(_prior_terms(likelihood)[name]).all()
    caught = _caught(lambda: _prior_terms(likelihood))
    assert bool((_prior_terms(likelihood)[name] == -math.inf).all())
    assert len(caught) == 1 and "noise_covar.raw_noise" in str(caught[0].message)
    assert caught[0].filename == __file__


def test_unenforced_constraint_inside_gives_the_upstream_mll(upstream):
    x, y = data(12)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=GammaPrior(1.1, 0.05), noise_constraint=GreaterThan(1e-4, transform=None, initial_value=0.1)
    )
    model = ExactGPModel(
        x,
        y,
        likelihood,
        lengthscale_prior=LogNormalPrior(0.0, 1.0),
        lengthscale_constraint=GreaterThan(0.025, transform=None, initial_value=0.5),
    )
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    model.train()
    with upstream(PATCH):
        expected = mll(model(x), y)
    assert torch.equal(mll(model(x), y), expected)
    # and outside the interval the objective is -inf, not a number the optimiser would follow
    with torch.no_grad():
        model.covar_module.base_kernel.raw_lengthscale.fill_(0.01)
    with pytest.warns(PriorConstraintWarning, match="raw_lengthscale"):
        assert mll(model(x), y).item() == -math.inf
