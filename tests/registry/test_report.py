"""``python -m gpytorch_ext``: the readable report, ``--json`` on a clean stdout, and the exit status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.registry._fake_dist import run_python, write_fake_dist

pytestmark = pytest.mark.slow  # every shipped self-check runs (KeOps compiles on a cold cache)


def test_json_report_is_one_document_with_a_row_per_patch(tmp_path):
    out = run_python("import runpy; runpy.run_module('gpytorch_ext', run_name='__main__')", write_fake_dist(tmp_path))
    text = run_python(
        "import sys, runpy; sys.argv=['x','--json']; runpy.run_module('gpytorch_ext', run_name='__main__')",
        tmp_path,
    )
    report = json.loads(text.stdout)  # the whole of stdout must be JSON (pykeops' notice goes to stderr)
    assert set(report["versions"]) == {"torch", "gpytorch", "linear-operator", "pykeops"}
    rows = {r["name"]: r for r in report["patches"]}
    assert {"test-alpha", "test-beta", "mvn-log-prob", "keops-kernels", "constraint-aware-priors"} <= set(rows)
    alpha = rows["test-alpha"]
    assert alpha["applied"] and alpha["self_check"] == {
        "upstream": "greets plainly",
        "patched": "greets patched",
        "reproduced": True,
        "passed": True,
    }
    assert report["ok"] is all(r["self_check"]["passed"] for r in rows.values() if r["applied"])
    assert text.returncode == (0 if report["ok"] else 1)
    # the readable form carries the same rows
    assert out.returncode == text.returncode
    for name in rows:
        assert any(line.strip().startswith(name) for line in out.stdout.splitlines())
    assert "upstream: greets plainly; patched: greets patched" in out.stdout


def test_a_failing_self_check_gives_exit_status_one(tmp_path):
    path = write_fake_dist(tmp_path, patches=("FAILING_CHECK",))
    out = subprocess.run(
        [sys.executable, "-m", "gpytorch_ext", "--json"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(path)},
        timeout=300,
    )
    report = json.loads(out.stdout)
    row = next(r for r in report["patches"] if r["name"] == "test-failing-check")
    assert row["self_check"]["passed"] is False and report["ok"] is False
    assert out.returncode == 1
