"""Comparing a run with the baseline, and the baseline files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpytorch_ext.staging import Baseline, Results, compare, load_baseline

KNOWN_ID = "test/kernels/keops/test_periodic_kernel.py::test_prior_type"


def _baseline() -> Baseline:
    return Baseline(
        counts={"passed": 3, "failed": 1, "error": 1, "skipped": 1, "xfailed": 0},
        known={"t.py::known_error": "error", "t.py::known_fail": "failed"},
    )


def test_no_new_problems_is_ok_and_lists_the_known_ones():
    results = Results({"t.py::a": "passed", "t.py::known_error": "error", "t.py::known_fail": "failed"})
    comparison = compare(_baseline(), results, full=True)
    assert comparison.ok
    assert comparison.new_problems == {}
    assert comparison.still_known == {"t.py::known_error": "error", "t.py::known_fail": "failed"}
    assert "RESULT: OK" in comparison.report()


def test_a_new_failure_or_error_fails_and_is_named():
    results = Results({"t.py::a": "failed", "t.py::b": "error", "t.py::known_error": "error"})
    comparison = compare(_baseline(), results, full=False)
    assert not comparison.ok
    assert comparison.new_problems == {"t.py::a": "failed", "t.py::b": "error"}
    report = comparison.report()
    assert "NEW failures/errors (2)" in report and "t.py::a" in report and "t.py::b" in report
    assert "RESULT: FAILED" in report


def test_a_known_test_that_now_passes_is_reported_as_fixed():
    results = Results({"t.py::known_fail": "passed", "t.py::known_error": "error"})
    comparison = compare(_baseline(), results, full=True)
    assert comparison.ok
    assert comparison.fixed == {"t.py::known_fail": "passed"}


def test_known_tests_that_did_not_run_are_only_reported_for_a_full_run():
    results = Results({"t.py::a": "passed"})
    assert compare(_baseline(), results, full=True).not_run == ("t.py::known_error", "t.py::known_fail")
    assert compare(_baseline(), results, full=False).not_run == ()


def test_a_full_run_with_fewer_passes_warns_but_is_judged_by_ids():
    comparison = compare(_baseline(), Results({"t.py::a": "passed", "t.py::b": "skipped"}), full=True)
    assert comparison.ok
    assert "fewer tests passed (1) than in the baseline (3)" in comparison.report()


def test_an_empty_run_is_not_ok():
    comparison = compare(_baseline(), Results({}), full=False)
    assert not comparison.ok
    assert "no test ran" in comparison.report()


def test_table_shows_baseline_and_current_counts():
    table = compare(_baseline(), Results({"t.py::a": "passed", "t.py::b": "skipped"}), full=True).table()
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows["passed"] == ["3", "1"]
    assert rows["skipped"] == ["1", "1"]
    assert rows["total"] == ["6", "2"]


def test_baseline_round_trips_through_json(tmp_path: Path):
    results = Results({"a::x": "passed", "a::y": "failed", "a::z": "skipped"})
    baseline = Baseline.from_results(results, gpytorch="1.15.2", wall_time_s=3)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(baseline.to_json()), encoding="utf-8")
    loaded = load_baseline(path)
    assert loaded.known == {"a::y": "failed"}
    assert loaded.counts == results.counts
    assert loaded.info == {"gpytorch": "1.15.2", "wall_time_s": 3}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [({"counts": {}}, "needs 'counts'"), ({"counts": {}, "known": {"a": "passed"}}, "must be one of")],
)
def test_malformed_baselines_are_rejected(tmp_path: Path, data, fragment):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=fragment):
        load_baseline(path)


def test_the_shipped_baseline_describes_the_1_15_2_suite():
    baseline = load_baseline()
    assert baseline.info["gpytorch"] == "1.15.2"
    assert baseline.known.get(KNOWN_ID) == "error"
    assert baseline.counts["passed"] > 2000
    assert baseline.counts["failed"] + baseline.counts["error"] == len(baseline.known)
