"""The report as a new user meets it: in the environment ``make demo`` creates (torch, then ``pip install .`` alone).

The environment is built by ``make demo-env`` itself (from a copy of the source tree, into a temporary directory),
so it is exactly the demo's. The report then runs offline: with a guard that records (and refuses) every pip or
git child process and every network access, and with ``HOME`` pointing at an empty folder, so that no download
cache (GPyTorch's source distribution, KeOps' compiled formulas) can help.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpytorch_ext.staging import read_series
from tests.registry._guard.sitecustomize import forbidden
from tests.registry._source import ROOT, copy_source, declared_patches

pytestmark = pytest.mark.slow

GUARD = Path(__file__).resolve().parent / "_guard"
SERIES = len(read_series(ROOT / "patches"))


def _real_pip_cache() -> str:
    """pip's cache as the developer's environment has it (the install step must not lose it to another HOME)."""
    if os.environ.get("PIP_CACHE_DIR"):
        return os.environ["PIP_CACHE_DIR"]
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make demo-env`` into a temporary virtual environment; returns its ``bin/python``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = tmp_path_factory.mktemp("demo")
    source = copy_source(root / "src")
    venv = root / "venv"
    strip = ("PYTHON", "VIRTUAL_ENV", "GPYTORCH_EXT", "MAKE", "MFLAGS")  # a make calling pytest passes its jobserver
    env = {k: v for k, v in os.environ.items() if not k.startswith(strip)}
    env["PIP_CACHE_DIR"] = _real_pip_cache()
    proc = subprocess.run(
        ["make", "-C", str(source), "demo-env", f"DEMO_VENV={venv}", f"PYTHON={sys.executable}"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return venv / "bin" / "python"


def _guarded(python: Path, args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """Run ``python ARGS`` offline and guarded, from an empty folder with an empty HOME; return it and the log."""
    home, cwd, log = tmp_path / "home", tmp_path / "cwd", tmp_path / "guard.jsonl"
    home.mkdir()
    cwd.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(GUARD), "GPYTORCH_EXT_GUARD_LOG": str(log)}
    env.update({k: os.environ[k] for k in ("LANG", "LC_ALL", "TMPDIR") if k in os.environ})
    proc = subprocess.run([str(python), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, entries


def test_the_guard_sees_pip_and_git(demo_env: Path, tmp_path: Path):
    code = (
        "import os, subprocess\n"
        "for start in (lambda: subprocess.run(['git', '--version']), lambda: os.system('python -m pip --version')):\n"
        "    try:\n        start()\n    except PermissionError:\n        pass\n"
    )
    proc, entries = _guarded(demo_env, ["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    refused = [e["what"] for e in entries if e["kind"] == "process" and forbidden(e["what"])]
    assert refused == [["git", "--version"], ["python -m pip --version"]]


def test_the_report_is_offline_complete_and_passes(demo_env: Path, tmp_path: Path):
    proc, entries = _guarded(demo_env, ["-m", "gpytorch_ext", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # the whole of standard output is one JSON document

    assert [e for e in entries if e["kind"] == "process" and forbidden(e["what"])] == []
    assert [e for e in entries if e["kind"] == "network"] == []
    assert not (tmp_path / "home" / ".cache" / "gpytorch-ext").exists()  # nothing downloaded

    series = report["upstream_series"]  # read from the package data the wheel ships, not from a checkout
    assert series["applies"] is None and "site-packages" in series["detail"] and f"{SERIES} patches" in series["detail"]

    rows = {r["name"]: r for r in report["patches"]}
    assert set(rows) == declared_patches()
    features = {r["name"]: r for r in report["features"]}
    assert "equalize" in features
    for name, row in [*rows.items(), *features.items()]:
        check = row["self_check"]
        assert "skipped" not in (check["upstream"] + check["patched"]).lower(), (name, check)
        assert check["reproduced"] and check["passed"], (name, check)  # no row skipped: each defect shown, then gone
    assert all(row["applied"] for row in rows.values())
    assert report["ok"] is True


def test_staging_check_works_from_the_installed_wheel(demo_env: Path, tmp_path: Path):
    from gpytorch_ext.staging import PINNED_VERSION, cache_dir, cached_sdist

    if cached_sdist(PINNED_VERSION) is None:
        pytest.skip(f"the gpytorch {PINNED_VERSION} source distribution is not cached here")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GPYTORCH_EXT"))}
    env["GPYTORCH_EXT_CACHE"] = str(cache_dir().parent)
    proc = subprocess.run(
        [str(demo_env), "-m", "gpytorch_ext.staging", "check"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"OK: {SERIES} patches" in proc.stdout and "apply cleanly" in proc.stdout
