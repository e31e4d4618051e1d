"""``python -m gpytorch_ext``: the readable report, ``--json`` on a clean stdout, the exit status, and the offline
upstream-series row (the report in a fresh ``pip install .`` environment: ``test_demo_env.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpytorch_ext import __main__ as report_main
from gpytorch_ext.staging import read_series
from tests.registry._fake_dist import write_fake_dist
from tests.registry._source import ROOT

slow = pytest.mark.slow  # every shipped self-check runs (KeOps compiles on a cold cache)


def _main(path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m gpytorch_ext ARGS`` in a fresh interpreter, with ``path`` first on ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "gpytorch_ext", *args], capture_output=True, text=True, env=env, timeout=300
    )


@slow
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
    features = {r["name"]: r for r in report["features"]}
    assert features["equalize"]["self_check"]["reproduced"] and features["equalize"]["self_check"]["passed"]
    assert report["upstream_series"]["applies"] is None  # not checked: the report never reaches for the source
    checks = [r["self_check"]["passed"] for r in rows.values() if r["applied"]]
    assert report["ok"] is all(checks + [r["self_check"]["passed"] for r in features.values()])
    assert text.returncode == (0 if report["ok"] else 1)
    # the readable form carries the same rows
    assert out.returncode == text.returncode
    for name in rows:
        assert any(line.strip().startswith(name) for line in out.stdout.splitlines())
    assert "upstream: greets plainly; patched: greets patched" in out.stdout
    assert any(line.strip().startswith("equalize") for line in out.stdout.splitlines())


@slow
def test_a_failing_self_check_gives_exit_status_one(tmp_path):
    out = _main(write_fake_dist(tmp_path, patches=("FAILING_CHECK",)), "--json")
    report = json.loads(out.stdout)
    row = next(r for r in report["patches"] if r["name"] == "test-failing-check")
    assert row["self_check"]["passed"] is False and report["ok"] is False
    assert out.returncode == 1


def _no_process(*args, **kwargs):
    raise AssertionError(f"the report started a process: {args[:2]}")


def test_the_series_row_comes_from_the_files_alone(monkeypatch):
    monkeypatch.delenv("GPYTORCH_EXT_PATCHES", raising=False)
    monkeypatch.setenv("GPYTORCH_EXT_CACHE", "/nonexistent")  # no source distribution to lean on
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _no_process)
    monkeypatch.setattr(os, "system", _no_process)
    row = report_main._series_row()
    count = len(read_series(ROOT / "patches"))
    assert row["applies"] is None, row
    assert row["detail"].startswith(f"{count} patches for gpytorch 1.15.2") and "staging status" in row["detail"]


def test_a_broken_series_shows_in_the_report_row(tmp_path, monkeypatch):
    (tmp_path / "series").write_text("0001-gone.patch\n")
    monkeypatch.setenv("GPYTORCH_EXT_PATCHES", str(tmp_path))
    row = report_main._series_row()
    assert row["applies"] is False and "0001-gone.patch" in row["detail"]


def test_render_shows_patches_features_and_the_series():
    check = {"upstream": "broken", "patched": "fine", "reproduced": True, "passed": True}
    report = {
        "gpytorch_ext": "0",
        "versions": dict.fromkeys(report_main._PACKAGES, "1"),
        "patches": [{"name": "p", "summary": "", "applied": True, "self_check": check}],
        "features": [{"name": "equalize", "summary": "", "self_check": {**check, "passed": False}}],
        "upstream_series": {"applies": None, "detail": "2 patches for gpytorch 1.15.2"},
        "ok": False,
    }
    lines = report_main.render(report).splitlines()
    assert any(line.split()[:4] == ["p", "yes", "ok", "upstream:"] for line in lines)
    assert any(line.split()[:3] == ["equalize", "FAIL", "without:"] for line in lines)
    assert "  upstream patch series: not checked (2 patches for gpytorch 1.15.2)" in lines
    assert lines[-1] == "SOME SELF-CHECKS FAILED"
