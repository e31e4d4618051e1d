"""The self-checks of the capabilities that are not patches (``equalize``), as the report runs them."""

from __future__ import annotations

from gpytorch_ext import equalize
from gpytorch_ext._features import EQUALIZE, Feature, _measure_tie, _two_kernels, features
from gpytorch_ext._registry import Probe


def test_equalize_is_among_the_features():
    assert EQUALIZE in features()


def test_equalize_check_shows_the_prior_counted_twice_by_hand_and_once_with_equalize():
    result = EQUALIZE.self_check()
    assert result.reproduced and result.passed, result
    assert result.upstream == "shared nn.Parameter: prior counted 2x (2 terms), one value yes"
    assert result.patched == "equalize: prior counted 1x (1 term), one value yes"


def test_the_measurement_catches_a_prior_kept_per_member():
    # keep_dist=True conditions on equality: every member's prior stays, so the one-parameter model differs
    probe = _measure_tie(equalize(_two_kernels(), r"kernels\.\d+\.lengthscale", keep_dist=True), "keep_dist")
    assert probe.defect and "counted 2x (2 terms)" in probe.summary


def test_the_measurement_catches_values_that_are_not_shared():
    probe = _measure_tie(_two_kernels(), "untied")
    assert probe.defect and "one value no" in probe.summary


def test_a_model_written_with_one_parameter_and_one_prior_passes_the_measurement():
    from gpytorch.kernels import RBFKernel
    from gpytorch.priors import GammaPrior

    first, second = RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0)), RBFKernel()  # the prior once, by hand
    second.raw_lengthscale = first.raw_lengthscale
    probe = _measure_tie(first + second, "by construction")
    assert not probe.defect, probe.summary
    assert probe.summary == "by construction: prior counted 1x (1 term), one value yes"


def test_a_raising_measurement_fails_the_check_without_crashing_the_report():
    def boom() -> Probe:
        raise RuntimeError("no model")

    result = Feature("f", "", without=lambda: Probe("broken", defect=True), with_feature=boom).self_check()
    assert result.reproduced and not result.passed
    assert result.patched == "self-check raised RuntimeError: no model"
