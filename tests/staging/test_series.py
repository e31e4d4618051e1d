"""patches/series: the format, and reading it from a patches directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpytorch_ext.staging import SeriesError, default_patches_dir, parse_series, read_series, unlisted_patches


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
