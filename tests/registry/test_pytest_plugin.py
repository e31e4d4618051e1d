"""The ``--gpytorch-ext`` pytest plugin, run through pytester in fresh pytest processes."""

from __future__ import annotations

import os

import pytest

from tests.registry._fake_dist import write_fake_dist

CHECK = """
import sys, fake_target

def test_state():
    applied = sys.modules["gpytorch_ext"].applied() if "gpytorch_ext" in sys.modules else None
    print("STATE", applied, fake_target.greet(), fake_target.Thing().value())
"""


@pytest.fixture
def fake(pytester: pytest.Pytester, tmp_path_factory, monkeypatch):
    path = write_fake_dist(tmp_path_factory.mktemp("fake"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH", "")])))
    pytester.makepyfile(test_state=CHECK)
    return pytester


def _state(result: pytest.RunResult) -> str:
    line = next(line for line in result.outlines if "STATE " in line)
    return line[line.index("STATE ") :].strip()


def test_without_the_option_nothing_is_imported_or_patched(fake):
    result = fake.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert _state(result) == "STATE None hello 1"


def test_option_alone_applies_every_patch(fake):
    result = fake.runpytest_subprocess("-s", "--gpytorch-ext")
    result.assert_outcomes(passed=1)
    state = _state(result)
    assert "'test-alpha'" in state and "'test-beta'" in state and state.endswith("patched hello 2")
    result.stdout.fnmatch_lines(["gpytorch-ext *: patches applied: *test-alpha*"])


def test_option_alone_does_not_swallow_the_test_path_after_it(fake):
    fake.makepyfile(test_other="def test_never_collected():\n    raise AssertionError('not asked for')\n")
    result = fake.runpytest_subprocess("-s", "--gpytorch-ext", "test_state.py")
    result.assert_outcomes(passed=1)
    assert _state(result).endswith("patched hello 2")


def test_option_with_names_applies_only_those(fake):
    result = fake.runpytest_subprocess("-s", "--gpytorch-ext=test-beta")
    result.assert_outcomes(passed=1)
    assert _state(result) == "STATE ('test-beta',) hello 2"


def test_unknown_name_is_a_usage_error_listing_the_names(fake):
    result = fake.runpytest_subprocess("--gpytorch-ext=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown gpytorch-ext patch 'nope'*test-alpha*"])
