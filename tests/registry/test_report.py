"""``python -m gpytorch_ext``: the readable report, ``--json`` on a clean stdout, and the exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.registry._fake_dist import write_fake_dist

pytestmark = pytest.mark.slow  # every shipped self-check runs (KeOps compiles on a cold cache)


def _main(path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m gpytorch_ext ARGS`` in a fresh interpreter, with ``path`` first on ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "gpytorch_ext", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_json_report_is_one_document_with_a_row_per_patch(tmp_path):
    path = write_fake_dist(tmp_path)
    out = _main(path)
    text = _main(path, "--json")
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
    out = _main(write_fake_dist(tmp_path, patches=("FAILING_CHECK",)), "--json")
    report = json.loads(out.stdout)
    row = next(r for r in report["patches"] if r["name"] == "test-failing-check")
    assert row["self_check"]["passed"] is False and report["ok"] is False
    assert out.returncode == 1
