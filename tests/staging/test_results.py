"""The JUnit results parser, checked against the node ids and outcomes pytest itself reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpytorch_ext.staging import Results, nodeid_from_junit, parse_junit

# A conftest that records what pytest reports for every test (the independent reference for the parser).
_RECORDER = """
import json, os

_seen = {}


def pytest_runtest_logreport(report):
    outcome = _seen.get(report.nodeid)
    if report.when == "call" and hasattr(report, "wasxfail"):
        new = "xfailed" if report.skipped else "passed"
    elif report.failed:
        new = "failed" if report.when == "call" else "error"
    elif report.skipped:
        new = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    else:
        new = "passed"
    rank = ["passed", "xfailed", "skipped", "error", "failed"]
    if outcome is None or rank.index(new) > rank.index(outcome):
        _seen[report.nodeid] = new


def pytest_collectreport(report):
    if report.failed:
        _seen[report.nodeid] = "error"


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open(os.environ["RECORD_TO"], "w") as fh:
            json.dump(_seen, fh)
"""

_TESTS = {
    "pkg/__init__.py": "",
    "pkg/sub/__init__.py": "",
    "pkg/sub/test_mod.py": """
import pytest


def test_pass():
    pass


def test_fail():
    assert 1 == 2


@pytest.mark.skip(reason="no")
def test_skip():
    pass


@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False


@pytest.mark.xfail(reason="not really")
def test_xpass():
    pass


def test_missing_fixture(self):
    pass


@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown")


def test_teardown_error(bad_teardown):
    pass


@pytest.mark.parametrize("x", [0.5, "a.b::c", "A.B"])
def test_param(x):
    assert x != "A.B"


class TestGroup:
    def test_method(self):
        pass

    class TestInner:
        def test_deep(self):
            assert False
""",
    "pkg/test_broken.py": "import does_not_exist_anywhere\n",
    "pkg/Sub/__init__.py": "",
    "pkg/Sub/test_cap.py": "def test_cap():\n    pass\n",
}


def _run(tmp_path: Path, *extra: str) -> tuple[Results, dict[str, str]]:
    for rel, text in _TESTS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    (tmp_path / "conftest.py").write_text(_RECORDER, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    record = tmp_path / "record.json"
    cmd = [sys.executable, "-m", "pytest", "pkg", "-p", "no:cacheprovider", "--junitxml", "out.xml", *extra]
    cmd.append("--continue-on-collection-errors")
    env = {**__import__("os").environ, "RECORD_TO": str(record), "GPYTORCH_EXT_AUTOPATCH": "0"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some tests fail
    return parse_junit(tmp_path / "out.xml", tmp_path), json.loads(record.read_text())


def test_parser_matches_pytests_own_reports(tmp_path: Path):
    results, reference = _run(tmp_path)
    assert dict(results.outcomes) == reference
    # spot checks of the trickier ids, written out by hand
    assert reference["pkg/sub/test_mod.py::TestGroup::TestInner::test_deep"] == "failed"
    assert reference["pkg/sub/test_mod.py::test_param[a.b::c]"] == "passed"
    assert reference["pkg/test_broken.py"] == "error"
    assert reference["pkg/Sub/test_cap.py::test_cap"] == "passed"
    assert results.counts == {"passed": 6, "failed": 3, "error": 3, "skipped": 1, "xfailed": 1}
    assert results.problems == {k: v for k, v in reference.items() if v in ("failed", "error")}


def test_parser_reads_reports_merged_by_xdist(tmp_path: Path):
    pytest.importorskip("xdist")
    results, reference = _run(tmp_path, "-n", "2")
    assert dict(results.outcomes) == reference


@pytest.mark.parametrize(
    ("classname", "name", "expected"),
    [
        ("test.kernels.test_rbf", "test_x", "test/kernels/test_rbf.py::test_x"),
        ("test.kernels.test_rbf.TestRBF", "test_x[1.5]", "test/kernels/test_rbf.py::TestRBF::test_x[1.5]"),
        ("", "test.kernels.test_rbf", "test/kernels/test_rbf.py"),
    ],
)
def test_nodeid_without_a_root_assumes_capitalized_classes(classname, name, expected):
    assert nodeid_from_junit(classname, name) == expected


def test_nodeid_with_a_root_uses_the_files_on_disk(tmp_path: Path):
    (tmp_path / "a" / "B").mkdir(parents=True)
    (tmp_path / "a" / "B" / "test_c.py").write_text("", encoding="utf-8")
    assert nodeid_from_junit("a.B.test_c.TestD", "test_e", tmp_path) == "a/B/test_c.py::TestD::test_e"
