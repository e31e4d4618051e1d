"""The patch series: ``patches/series`` lists the patch files to apply, in order.

Format: one patch file name per line (a file in the same directory as ``series``); blank lines and lines whose
first non-blank character is ``#`` are ignored. Names are plain file names: no directories, no options.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

__all__ = ["SERIES_PACKAGE", "SeriesError", "default_patches_dir", "parse_series", "read_series", "unlisted_patches"]

#: The package that ships the repository's ``patches/`` directory (mapped at build time, see ``pyproject.toml``).
SERIES_PACKAGE = "gpytorch_ext.staging.series"


class SeriesError(ValueError):
    """``patches/series`` is malformed or names a patch file that does not exist."""


def default_patches_dir() -> Path:
    """The directory with ``series``: ``$GPYTORCH_EXT_PATCHES``, else the series shipped with the package.

    The package ships the repository's ``patches/`` as :data:`SERIES_PACKAGE`, found with :mod:`importlib.resources`
    in a wheel and in an editable install alike. Without an installation (a source tree on ``PYTHONPATH``) the
    ``patches/`` next to the ``gpytorch_ext`` package is used, and as a last resort ``./patches``.
    """
    env = os.environ.get("GPYTORCH_EXT_PATCHES")
    if env:
        return Path(env).expanduser()
    shipped = _shipped_series_dir()
    if shipped is not None:
        return shipped
    beside = Path(__file__).resolve().parents[2] / "patches"
    if (beside / "series").is_file():
        return beside
    return Path.cwd() / "patches"


def _shipped_series_dir() -> Path | None:
    try:
        root = importlib.resources.files(SERIES_PACKAGE)
    except ModuleNotFoundError:  # a source tree that was not installed
        return None
    series = root / "series"
    # git needs the patch files on disk: a zipped installation (no real path) falls through to the other choices
    return series.parent if isinstance(series, Path) and series.is_file() else None


def parse_series(text: str, source: str = "series") -> list[str]:
    """Parse the text of a series file into the list of patch file names, in order.

    :param text: the file's contents.
    :param source: how to name the file in error messages.
    :raises SeriesError: on a name with a directory part or whitespace, or a duplicate.
    """
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if any(ch.isspace() for ch in line):
            raise SeriesError(f"{source}:{lineno}: expected one patch file name per line, got {line!r}")
        if "/" in line or "\\" in line or line in (".", ".."):
            raise SeriesError(f"{source}:{lineno}: {line!r} must be a plain file name in the patches directory")
        if line in seen:
            raise SeriesError(f"{source}:{lineno}: {line!r} is already listed on line {seen[line]}")
        seen[line] = lineno
        names.append(line)
    return names


def read_series(patches_dir: Path | None = None) -> list[Path]:
    """The patch files listed in ``patches_dir/series``, in order.

    :param patches_dir: the directory with ``series`` (default :func:`default_patches_dir`).
    :raises SeriesError: when ``series`` is missing or malformed, or names a missing file.
    """
    patches_dir = Path(patches_dir) if patches_dir is not None else default_patches_dir()
    series = patches_dir / "series"
    if not series.is_file():
        raise SeriesError(f"no series file at {series}")
    names = parse_series(series.read_text(encoding="utf-8"), source=str(series))
    missing = [n for n in names if not (patches_dir / n).is_file()]
    if missing:
        raise SeriesError(f"{series} lists patch files that do not exist in {patches_dir}: {', '.join(missing)}")
    return [patches_dir / n for n in names]


def unlisted_patches(patches_dir: Path | None = None) -> list[Path]:
    """``*.patch`` files in ``patches_dir`` that ``series`` does not list (probably forgotten)."""
    patches_dir = Path(patches_dir) if patches_dir is not None else default_patches_dir()
    listed = {p.name for p in read_series(patches_dir)}
    return sorted(p for p in patches_dir.glob("*.patch") if p.name not in listed)
