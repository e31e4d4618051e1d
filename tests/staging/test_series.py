"""patches/series: the format, and reading it from a patches directory."""

from __future__ import annotations

import importlib.resources
import subprocess
from pathlib import Path

import pytest

from gpytorch_ext.staging import (
    PINNED_VERSION,
    SERIES_PACKAGE,
    SeriesError,
    default_patches_dir,
    parse_series,
    read_series,
    series_summary,
    unlisted_patches,
)


def test_parse_series_skips_comments_and_blank_lines_and_keeps_order():
    text = "# header\n\n0002-b.patch\n   # indented comment\n0001-a.patch  \n\n"
    assert parse_series(text) == ["0002-b.patch", "0001-a.patch"]


def test_parse_series_of_only_comments_is_empty():
    assert parse_series("# nothing yet\n#\n") == []


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("a.patch -p1", "one patch file name per line"),
        ("sub/a.patch", "plain file name"),
        ("..", "plain file name"),
    ],
)
def test_parse_series_rejects_malformed_lines_with_the_line_number(line, fragment):
    with pytest.raises(SeriesError, match=fragment) as info:
        parse_series(f"# c\n{line}\n", source="patches/series")
    assert "patches/series:2" in str(info.value)


def test_parse_series_rejects_duplicates_naming_both_lines():
    with pytest.raises(SeriesError, match=r"series:3: 'a.patch' is already listed on line 1"):
        parse_series("a.patch\nb.patch\na.patch\n")


def test_read_series_returns_paths_in_order(tmp_path: Path):
    for name in ("x.patch", "y.patch"):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "series").write_text("y.patch\nx.patch\n", encoding="utf-8")
    assert read_series(tmp_path) == [tmp_path / "y.patch", tmp_path / "x.patch"]


def test_read_series_names_missing_patch_files(tmp_path: Path):
    (tmp_path / "series").write_text("gone.patch\n", encoding="utf-8")
    with pytest.raises(SeriesError, match="gone.patch"):
        read_series(tmp_path)


def test_read_series_without_a_series_file(tmp_path: Path):
    with pytest.raises(SeriesError, match="no series file"):
        read_series(tmp_path)


def test_unlisted_patches_finds_forgotten_files(tmp_path: Path):
    for name in ("listed.patch", "forgotten.patch"):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "series").write_text("listed.patch\n", encoding="utf-8")
    assert unlisted_patches(tmp_path) == [tmp_path / "forgotten.patch"]


def test_environment_variable_selects_the_patches_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GPYTORCH_EXT_PATCHES", str(tmp_path))
    assert default_patches_dir() == tmp_path


def test_the_shipped_series_is_well_formed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GPYTORCH_EXT_PATCHES", raising=False)
    patches_dir = Path(__file__).resolve().parents[2] / "patches"
    assert default_patches_dir() == patches_dir
    patches = read_series(patches_dir)  # every listed file exists
    assert all(p.suffix == ".patch" for p in patches)
    assert unlisted_patches(patches_dir) == []


def test_the_series_ships_as_package_data_of_the_installation():
    shipped = importlib.resources.files(SERIES_PACKAGE)
    assert (shipped / "series").is_file()
    assert [p.name for p in read_series(Path(str(shipped)))] == [p.name for p in read_series(_checkout_patches())]


def test_without_an_installed_series_the_checkout_is_used(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GPYTORCH_EXT_PATCHES", raising=False)

    def not_installed(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    assert default_patches_dir() == _checkout_patches()


def _checkout_patches() -> Path:
    return Path(__file__).resolve().parents[2] / "patches"


# -- series_summary: the report's row, from the files alone -----------------------------------------------------------


@pytest.fixture
def no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("series_summary started a process")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


def test_series_summary_counts_the_listed_patches_without_checking_them(tmp_path: Path, no_process):
    for name in ("0001-a.patch", "0002-b.patch"):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "series").write_text("0001-a.patch\n0002-b.patch\n", encoding="utf-8")
    applies, detail = series_summary(tmp_path)
    assert applies is None
    assert detail.startswith(f"2 patches for gpytorch {PINNED_VERSION}") and str(tmp_path) in detail


def test_series_summary_of_an_empty_series(tmp_path: Path, no_process):
    (tmp_path / "series").write_text("# nothing yet\n", encoding="utf-8")
    assert series_summary(tmp_path) == (True, "series is empty")


def test_series_summary_names_a_missing_patch_file(tmp_path: Path, no_process):
    (tmp_path / "series").write_text("0001-gone.patch\n", encoding="utf-8")
    applies, detail = series_summary(tmp_path)
    assert applies is False and "0001-gone.patch" in detail


def test_series_summary_says_when_the_installed_gpytorch_is_another_release(tmp_path, monkeypatch, no_process):
    from gpytorch_ext.staging import _status

    (tmp_path / "a.patch").write_text("", encoding="utf-8")
    (tmp_path / "series").write_text("a.patch\n", encoding="utf-8")
    monkeypatch.setattr(_status.importlib.metadata, "version", lambda name: "9.9.9")
    applies, detail = series_summary(tmp_path)
    assert applies is None and detail.startswith(f"1 patch for gpytorch {PINNED_VERSION} (installed: gpytorch 9.9.9)")
