"""``--project linear_operator``: the staging commands on a second project's release (a synthetic one here; the real
linear_operator series in a slow test)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gpytorch_ext.staging import BASELINE_PATH, FetchError, default_patches_dir, fetch_sdist
from gpytorch_ext.staging._cli import _parser, _resolve_project, main
from gpytorch_ext.staging._sdist import PINNED_VERSIONS

from . import _synthetic
from ._synthetic import VERSION, write_baseline

PROJECT = "linear_operator"


def _renamed(text: str) -> str:
    return (
        text.replace("gpytorch", PROJECT)
        .replace(f"{PROJECT}-ext", "gpytorch-ext")
        .replace(f"{PROJECT}_ext", "gpytorch_ext")
    )


@pytest.fixture
def project_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sdist cache holding a synthetic ``linear_operator-<VERSION>`` release (the synthetic GPyTorch, renamed)."""
    files = {_renamed(path): _renamed(text) for path, text in _synthetic.FILES.items()}
    src = _synthetic.write_tree(tmp_path / "src" / f"{PROJECT}-{VERSION}", files)
    cache = tmp_path / "cache"
    (cache / "sdist").mkdir(parents=True)
    with tarfile.open(cache / "sdist" / f"{PROJECT}-{VERSION}.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=src.name)
    monkeypatch.setenv("GPYTORCH_EXT_CACHE", str(cache))
    monkeypatch.delenv("GPYTORCH_EXT_PATCHES", raising=False)
    return cache


def test_a_project_release_comes_from_the_cache(project_cache: Path):
    archive = project_cache / "sdist" / f"{PROJECT}-{VERSION}.tar.gz"
    assert fetch_sdist(VERSION, timeout=0.001, project=PROJECT) == archive
    with pytest.raises(FetchError):  # no gpytorch release of that version in this cache, and no time for pip
        fetch_sdist(VERSION, timeout=0.001)


def test_project_defaults_follow_the_project():
    args = _parser().parse_args(["verify", "--project", PROJECT])
    _resolve_project(args)
    assert args.gpytorch_version == PINNED_VERSIONS[PROJECT] == "0.6.1"
    assert args.patches == default_patches_dir() / PROJECT
    assert args.baseline == BASELINE_PATH.with_name(f"baseline_{PROJECT}.json") and args.baseline.is_file()
    args = _parser().parse_args(["verify"])
    _resolve_project(args)
    assert (args.project, args.patches, args.baseline) == ("gpytorch", None, None)


def test_verify_runs_the_project_suite_on_its_patched_source(project_cache, tmp_path, capsys):
    baseline = write_baseline(tmp_path / "baseline.json")
    series = tmp_path / "patches"
    series.mkdir()
    (series / "series").write_text("# empty\n")
    code = main(
        ["verify", "--project", PROJECT, "--gpytorch-version", VERSION, "--patches", str(series)]
        + ["--baseline", str(baseline), "--jobs", "0", "--quiet"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    imported = next(line for line in out.splitlines() if line.startswith(f"{PROJECT} imported from: "))
    assert f"{PROJECT}-{VERSION}/{PROJECT}/__init__.py" in imported
    assert f"== {PROJECT} {VERSION} test suite: patched source" in out and "RESULT: OK" in out


@pytest.mark.slow
def test_the_linear_operator_series_passes_linear_operators_matmul_tests():
    """The shipped series on linear_operator 0.6.1: its own test of Matmul, with the tests the series adds."""
    try:
        fetch_sdist(PINNED_VERSIONS[PROJECT], timeout=300, project=PROJECT)
    except FetchError as exc:
        pytest.skip(f"the linear_operator source distribution is not available: {exc}")
    cmd = [sys.executable, "-m", "gpytorch_ext.staging", "verify", "--project", PROJECT, "--quiet", "--jobs", "0"]
    cmd += ["--tests", "test/functions/test_matmul.py"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT: OK" in proc.stdout and "new failures/errors: none" in proc.stdout
    passed = next(line.split() for line in proc.stdout.splitlines() if line.startswith("passed "))
    assert int(passed[-1]) >= 4  # the release's three matmul tests and the series' batch-times-vector test
