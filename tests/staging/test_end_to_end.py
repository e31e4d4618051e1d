"""check / verify / suite / prepare / develop on a synthetic release, without the network or GPyTorch's suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpytorch_ext.staging import (
    FetchError,
    SeriesApplyError,
    build_tree,
    cached_sdist,
    check_series,
    fetch_sdist,
    series_status,
)
from gpytorch_ext.staging._cli import main

from . import _synthetic
from ._synthetic import VERSION, add_sub, break_scale, fix_add, write_baseline, write_series


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main([*args[:1], "--gpytorch-version", VERSION, *args[1:]])
    return code, capsys.readouterr().out


def _verify_args(patches: Path, baseline: Path, *extra: str) -> list[str]:
    return ["verify", "--patches", str(patches), "--baseline", str(baseline), "--jobs", "0", "--quiet", *extra]


@pytest.fixture
def fixed_series(tmp_path: Path, maker: _synthetic.PatchMaker) -> Path:
    """A two-patch series: the repair of ``add``, then ``sub`` on top of it."""
    fix_add(maker)
    add_sub(maker)
    return write_series(tmp_path / "patches", maker.format_patches())


# -- sdist cache ------------------------------------------------------------------------------------------------------


def test_a_cached_sdist_is_used_without_pip(synthetic_cache: Path):
    archive = synthetic_cache / "sdist" / f"gpytorch-{VERSION}.tar.gz"
    assert fetch_sdist(VERSION, timeout=0.001) == archive  # no time to run pip: it must come from the cache


def test_a_corrupt_cached_sdist_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from gpytorch_ext.staging import _sdist

    (tmp_path / "gpytorch-1.15.2.tar.gz").write_bytes(b"truncated")
    monkeypatch.setattr(_sdist, "cache_dir", lambda: tmp_path)
    with pytest.raises(FetchError, match="does not match the sha256"):
        cached_sdist("1.15.2")


def test_a_fetch_that_cannot_finish_in_time_raises(tmp_path: Path):
    with pytest.raises(FetchError, match="did not finish within"):
        fetch_sdist("0.0.0.dev0", cache=tmp_path, timeout=0.2)
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


# -- check ------------------------------------------------------------------------------------------------------------


def test_check_accepts_a_series_that_applies_in_order(synthetic_cache, fixed_series, capsys):
    code, out = _cli(capsys, "check", "--patches", str(fixed_series))
    assert code == 0, out
    assert "OK: 2 patches" in out and "0001-Fix-add-it-subtracted.patch" in out


def test_check_names_the_patch_that_does_not_apply(synthetic_cache, fixed_series, capsys):
    series = fixed_series / "series"
    names = [line for line in series.read_text().splitlines() if not line.startswith("#")]
    series.write_text("\n".join(reversed(names)) + "\n")  # sub's context needs the fix first
    code, out = _cli(capsys, "check", "--patches", str(fixed_series))
    assert code == 1
    assert "FAILED: 0002-Add-sub.patch does not apply" in out
    assert "patch failed" in out  # git's own explanation


def test_check_series_raises_with_the_patches_applied_so_far(synthetic_cache, fixed_series, maker):
    maker.reset()
    break_scale(maker)
    conflicting = maker.format_patches()[0]
    patches = [fixed_series / "0001-Fix-add-it-subtracted.patch", conflicting, fixed_series / "0002-Add-sub.patch"]
    assert check_series(patches[:2], VERSION) == 2
    bad = maker.root / "bad.patch"
    bad.write_text(conflicting.read_text().replace("return a * k", "return a ** k"))
    with pytest.raises(SeriesApplyError) as info:
        check_series([patches[0], bad], VERSION)
    assert info.value.patch == bad and info.value.applied == (patches[0],)


def test_check_warns_about_patch_files_missing_from_the_series(synthetic_cache, fixed_series, capsys):
    (fixed_series / "series").write_text("0001-Fix-add-it-subtracted.patch\n")
    code, out = _cli(capsys, "check", "--patches", str(fixed_series))
    assert code == 0
    assert "0002-Add-sub.patch is not listed" in out


def test_bare_diffs_apply_and_are_committed_under_their_file_name(synthetic_cache, tmp_path, maker):
    fix_add(maker)
    diff = tmp_path / "fix.diff"
    diff.write_text(_synthetic.git(maker.root, "diff", "release", "HEAD"))
    tree = build_tree(tmp_path / "work", [diff], version=VERSION)
    assert "return a + b" in (tree.root / "gpytorch" / "arith.py").read_text()
    assert _synthetic.git(tree.root, "log", "-1", "--format=%s").strip() == "Apply fix.diff"


# -- verify -----------------------------------------------------------------------------------------------------------


def test_verify_passes_when_the_series_repairs_a_known_failure(synthetic_cache, fixed_series, tmp_path, capsys):
    baseline = write_baseline(tmp_path / "baseline.json")
    code, out = _cli(capsys, *_verify_args(fixed_series, baseline))
    assert code == 0, out
    assert "new failures/errors: none" in out
    assert "known failures/errors that no longer fail (1):" in out and "test/test_arith.py::test_add" in out
    assert "RESULT: OK" in out
    imported = next(line for line in out.splitlines() if line.startswith("gpytorch imported from: "))
    assert "gpytorch-ext-staging-" in imported  # the patched tree's package, not the installed GPyTorch
    table = [line.split() for line in out.splitlines() if line.startswith("passed ")]
    assert table == [["passed", "3", "6"]]  # test_add, test_add_negative and test_sub pass too


def test_verify_fails_on_a_new_failure_and_names_it(synthetic_cache, tmp_path, maker, capsys):
    break_scale(maker)
    patches = write_series(tmp_path / "patches", maker.format_patches())
    code, out = _cli(capsys, *_verify_args(patches, write_baseline(tmp_path / "b.json")))
    assert code == 1
    assert "NEW failures/errors (1):" in out
    assert "failed test/test_arith.py::test_scale" in out
    assert "RESULT: FAILED" in out


def test_verify_fails_when_the_series_does_not_apply(synthetic_cache, fixed_series, tmp_path, capsys):
    (fixed_series / "series").write_text("0002-Add-sub.patch\n0001-Fix-add-it-subtracted.patch\n")
    code, out = _cli(capsys, *_verify_args(fixed_series, write_baseline(tmp_path / "b.json")))
    assert code == 1
    assert "the series does not apply" in out and "0002-Add-sub.patch" in out


def test_verify_with_tests_compares_by_id_only(synthetic_cache, tmp_path, capsys):
    empty = write_series(tmp_path / "patches", [])
    baseline = write_baseline(tmp_path / "b.json")
    tests = ["--tests", "test/test_env.py", "test/test_arith.py::test_scale"]
    code, out = _cli(capsys, *_verify_args(empty, baseline, *tests))
    assert code == 0, out
    assert "compared by test id only" in out
    code, out = _cli(capsys, *_verify_args(empty, baseline, "--tests", "test/nonexistent.py"))
    assert code == 2 and "no such test path" in out


def test_verify_records_a_baseline_that_a_second_run_accepts(synthetic_cache, tmp_path, capsys):
    empty = write_series(tmp_path / "patches", [])
    recorded = tmp_path / "recorded.json"
    old = write_baseline(tmp_path / "old.json", {"counts": {}, "known": {}})
    code, out = _cli(capsys, *_verify_args(empty, old, "--write-baseline", str(recorded)))
    assert code == 1  # the unpatched synthetic suite has a failure and an error the empty baseline does not know
    from gpytorch_ext.staging import load_baseline

    assert dict(load_baseline(recorded).known) == _synthetic.BASELINE["known"]
    code, out = _cli(capsys, *_verify_args(empty, recorded))
    assert code == 0, out


def test_verify_keeps_the_workdir_when_asked(synthetic_cache, fixed_series, tmp_path, capsys):
    workdir = tmp_path / "wd"
    baseline = write_baseline(tmp_path / "b.json")
    code, out = _cli(capsys, *_verify_args(fixed_series, baseline, "--workdir", str(workdir)))
    assert code == 0, out
    assert (workdir / "junit.xml").is_file() and (workdir / "pytest.log").is_file()
    assert f"work directory kept: {workdir}" in out


@pytest.mark.skipif(pytest.importorskip("xdist") is None, reason="pytest-xdist")
def test_verify_with_xdist_workers(synthetic_cache, fixed_series, tmp_path, capsys):
    args = _verify_args(fixed_series, write_baseline(tmp_path / "b.json"))
    args[args.index("--jobs") + 1] = "2"
    code, out = _cli(capsys, *args)
    assert code == 0, out


# -- suite --monkeypatch ----------------------------------------------------------------------------------------------


def test_suite_monkeypatch_imports_the_installed_gpytorch_with_the_plugin(synthetic_cache, tmp_path, capsys):
    empty = write_series(tmp_path / "patches", [])
    baseline = write_baseline(tmp_path / "b.json")
    code, out = _cli(
        capsys, "suite", "--monkeypatch", "--patches", str(empty), "--baseline", str(baseline), "--jobs", "0",
        "--quiet", "--tests", "test/test_env.py",
    )  # fmt: skip
    assert code == 0, out
    import gpytorch  # the installed one

    assert f"gpytorch imported from: {gpytorch.__file__}" in out
    assert "patches applied:" in out  # the gpytorch-ext plugin's header


def test_suite_requires_the_monkeypatch_flag(synthetic_cache, capsys):
    code, out = _cli(capsys, "suite")
    assert code == 2 and "--monkeypatch" in out


# -- prepare / develop ------------------------------------------------------------------------------------------------


def test_prepare_writes_an_importable_patched_tree(synthetic_cache, fixed_series, tmp_path, capsys):
    dest = tmp_path / "src"
    for _ in range(2):  # a second run replaces the first
        code, out = _cli(capsys, "prepare", "--patches", str(fixed_series), "--dest", str(dest))
        assert code == 0, out
    env = {**os.environ, "PYTHONPATH": str(dest), "GPYTORCH_EXT_AUTOPATCH": "0"}
    code = "import gpytorch; print(gpytorch.__file__, gpytorch.add(2, 3), gpytorch.sub(3, 2))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.stdout.split() == [str(dest / "gpytorch" / "__init__.py"), "5", "1"], proc.stderr
    assert _synthetic.git(dest, "status", "--porcelain") == ""


def test_prepare_never_overwrites_a_foreign_directory(synthetic_cache, fixed_series, tmp_path, capsys):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep")
    code, out = _cli(capsys, "prepare", "--patches", str(fixed_series), "--dest", str(dest))
    assert code == 2 and "not touching it" in out
    assert (dest / "precious.txt").read_text() == "keep"


def test_develop_round_trips_the_series_through_format_patch(synthetic_cache, fixed_series, tmp_path, capsys):
    dest = tmp_path / "checkout"
    code, out = _cli(capsys, "develop", "--patches", str(fixed_series), "--dest", str(dest))
    assert code == 0, out
    assert "format-patch" in out
    subjects = _synthetic.git(dest, "log", "--reverse", "--format=%s", "pristine..HEAD").splitlines()
    assert subjects == ["Fix add: it subtracted", "Add sub"]
    assert _synthetic.git(dest, "log", "-1", "--format=%an", "HEAD").strip() == "Test Author"  # git am kept it
    command = next(line.split() for line in out.splitlines() if "format-patch" in line and "pristine..HEAD" in line)
    assert command[:4] == ["git", "-C", str(dest), "format-patch"]
    options = command[4 : command.index("-o")]
    out = _synthetic.git(dest, "format-patch", *options, "-o", str(tmp_path / "again"), "pristine..HEAD")
    regenerated = [Path(p) for p in out.split()]
    originals = [fixed_series / n for n in ("0001-Fix-add-it-subtracted.patch", "0002-Add-sub.patch")]
    assert len(regenerated) == len(originals)
    for old, new in zip(originals, regenerated):
        assert old.name == new.name
        assert _body(old) == _body(new)
    code, out = _cli(capsys, "develop", "--patches", str(fixed_series), "--dest", str(dest))
    assert code == 2 and "already exists" in out


def _body(patch: Path) -> str:
    """A patch from its ``From:`` header to the end of the diff (without commit id, subject prefix or signature)."""
    text = patch.read_text().rsplit("\n-- \n", 1)[0].rstrip("\n")
    return text[text.index("From: ") :].replace("[PATCH 1/2] ", "").replace("[PATCH 2/2] ", "").replace("[PATCH] ", "")


# -- series_status ----------------------------------------------------------------------------------------------------


def test_series_status_reports_a_series_that_applies(synthetic_cache, fixed_series):
    ok, message = series_status(fixed_series, version=VERSION)
    assert ok
    assert message == f"2 patches apply to gpytorch {VERSION} (series written for 1.15.2)"


def test_series_status_names_the_patch_that_does_not_apply(synthetic_cache, fixed_series):
    (fixed_series / "series").write_text("0002-Add-sub.patch\n")
    ok, message = series_status(fixed_series, version=VERSION)
    assert not ok and message.startswith("0002-Add-sub.patch does not apply to gpytorch 9.9.9")


def test_series_status_is_fast_and_says_so_when_the_sdist_is_unavailable(tmp_path, fixed_series, monkeypatch):
    monkeypatch.setenv("GPYTORCH_EXT_CACHE", str(tmp_path / "empty-cache"))
    ok, message = series_status(fixed_series, version="0.0.0.dev0", timeout=0.2)
    assert not ok
    assert message.startswith("not checked: no source distribution of gpytorch 0.0.0.dev0")


def test_series_status_of_an_empty_series(tmp_path):
    patches = write_series(tmp_path / "patches", [])
    ok, message = series_status(patches)
    assert ok and message.startswith("series is empty")


def test_series_status_without_a_series(tmp_path):
    ok, message = series_status(tmp_path)
    assert not ok and message.startswith("not checked: no series file")


def test_develop_keeps_a_partial_checkout_when_a_patch_does_not_apply(synthetic_cache, fixed_series, tmp_path, capsys):
    (fixed_series / "series").write_text("0002-Add-sub.patch\n0001-Fix-add-it-subtracted.patch\n")
    dest = tmp_path / "checkout"
    code, out = _cli(capsys, "develop", "--patches", str(fixed_series), "--dest", str(dest))
    assert code == 1
    assert "0002-Add-sub.patch does not apply" in out and "git am -3" in out
    assert _synthetic.git(dest, "rev-list", "--count", "pristine..HEAD").strip() == "0"
    assert "return a - b" in (dest / "gpytorch" / "arith.py").read_text()


def test_status_command_prints_the_report_row(tmp_path, capsys):
    patches = write_series(tmp_path / "patches", [])
    assert main(["status", "--patches", str(patches)]) == 0
    assert capsys.readouterr().out.startswith("series is empty")
