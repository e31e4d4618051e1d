"""The public test kit as a third party uses it: a few-line ``PatchTestCase`` subclass in its own test package.

The fake distribution registers its patches through the ``gpytorch_ext.patches`` entry point; its test module is
run by pytest in a fresh process (no conftest of this project, no ``--impl`` option), once for a patch that
repairs its defect and once for a patch whose defect stays.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from gpytorch_ext.testing import PatchTestCase
from tests.registry._fake_dist import write_fake_dist, write_fake_tests

KIT_TESTS = sorted(name for name in dir(PatchTestCase) if name.startswith("test_"))


@pytest.fixture
def run_third_party(pytester: pytest.Pytester, tmp_path_factory, monkeypatch) -> Callable[[str], pytest.RunResult]:
    """``run(PATCH)``: the fake distribution registering ``PATCH`` alone, and its tests, run by a fresh pytest."""

    def run(patch: str) -> pytest.RunResult:
        dist = write_fake_dist(tmp_path_factory.mktemp("fake"), patches=(patch,))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(dist), os.environ.get("PYTHONPATH")])))
        test_file = write_fake_tests(pytester.path, (patch,))
        assert len(test_file.read_text().strip().splitlines()) <= 6  # an import and a class of two lines
        return pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")

    return run


def test_the_kit_has_the_tests_the_issue_asks_for():
    assert {
        "test_defect_reproduced_with_the_patch_reverted",
        "test_defect_gone_with_the_patch_applied",
        "test_unpatch_restores_the_very_same_objects",
    } <= set(KIT_TESTS)


def test_a_patch_that_repairs_its_defect_passes_every_test(run_third_party):
    result = run_third_party("ALPHA")
    result.assert_outcomes(passed=len(KIT_TESTS))
    for name in KIT_TESTS:
        result.stdout.fnmatch_lines([f"*TestAlpha::{name} PASSED*"])


def test_a_patch_whose_defect_stays_fails_where_it_should(run_third_party):
    result = run_third_party("STUBBORN")
    failing = {"test_defect_gone_with_the_patch_applied", "test_self_check_passes"}
    result.assert_outcomes(passed=len(KIT_TESTS) - len(failing), failed=len(failing))
    for name in KIT_TESTS:
        result.stdout.fnmatch_lines([f"*TestStubborn::{name} {'FAILED' if name in failing else 'PASSED'}*"])
    result.stdout.fnmatch_lines(["*test-stubborn: the defect remains with the patch applied (greets plainly)*"])


def test_a_subclass_without_a_patch_name_says_what_is_missing(pytester: pytest.Pytester):
    pytester.makepyfile(
        "from gpytorch_ext.testing import PatchTestCase\n\nclass TestUnnamed(PatchTestCase):\n    pass\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=len(KIT_TESTS))
    result.stdout.fnmatch_lines(["*TestUnnamed: set the class attribute patch_name*"])
