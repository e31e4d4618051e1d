"""The patch series' state: from the files on disk alone (the report), or checked against the source (``status``)."""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path

from ._git import GitError, git
from ._sdist import PINNED_VERSION, FetchError, cached_sdist, fetch_sdist, unpack_sdist
from ._series import SeriesError, read_series
from ._tree import SeriesApplyError, check_series_in

__all__ = ["check_series", "series_status", "series_summary"]


def check_series(
    patches: list[Path], version: str = PINNED_VERSION, *, sdist: Path | None = None, timeout: float | None = None
) -> int:
    """``git apply --check`` the patches in order against the source distribution of GPyTorch ``version``.

    Works in a temporary directory that is removed afterwards; each patch is applied before checking the next.

    :param sdist: the source distribution (default: the cached one, fetched with pip if needed).
    :param timeout: seconds to allow for fetching the source distribution.
    :return: the number of patches checked.
    :raises SeriesApplyError: at the first patch that does not apply.
    :raises FetchError: when the source distribution is not cached and cannot be fetched.
    """
    archive = sdist if sdist is not None else fetch_sdist(version, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="gpytorch-ext-check-") as tmp:
        root = unpack_sdist(archive, Path(tmp))

        git(root, "init", "-q")
        check_series_in(root, patches, commit=False)
    return len(patches)


def series_summary(patches_dir: Path | None = None) -> tuple[bool | None, str]:
    """What can be said about the patch series from the files on disk alone: ``(applies, one-line message)``.

    This is the ``python -m gpytorch_ext`` report's row. It reads ``series`` and checks that the files it lists
    exist, and compares the installed GPyTorch with the release the series is written for; it starts no process
    (no git, no pip) and needs no source distribution. ``applies`` is ``None`` (not checked) for a readable series,
    ``True`` for an empty one and ``False`` when ``series`` is missing, malformed or names a missing file.
    :func:`series_status` (``python -m gpytorch_ext.staging status``) makes the real check.

    :param patches_dir: the directory with ``series`` (default :func:`~gpytorch_ext.staging.default_patches_dir`).
    """
    try:
        patches = read_series(patches_dir)
    except SeriesError as exc:
        return False, str(exc)
    try:
        installed = importlib.metadata.version("gpytorch")
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    if not patches:
        return True, "series is empty"
    counted = "1 patch" if len(patches) == 1 else f"{len(patches)} patches"
    against = "" if installed == PINNED_VERSION else f" (installed: gpytorch {installed})"
    where = patches[0].parent
    command = "python -m gpytorch_ext.staging status"
    return None, f"{counted} for gpytorch {PINNED_VERSION}{against} in {where}; `{command}` checks them"


def series_status(
    patches_dir: Path | None = None, *, version: str | None = None, timeout: float = 20.0
) -> tuple[bool, str]:
    """Whether ``patches/series`` applies to the installed GPyTorch version: ``(applies, one-line message)``.

    Checks against the cached source distribution of the installed version, fetching it with pip (at most
    ``timeout`` seconds) when it is not cached. It runs no tests and never raises: when the check cannot be made
    (no series, no source distribution, no git) it returns ``False`` and a message starting with ``"not checked:"``.

    :param patches_dir: the directory with ``series`` (default :func:`~gpytorch_ext.staging.default_patches_dir`).
    :param version: the GPyTorch version to check against (default: the installed one).
    :param timeout: seconds to allow for downloading the source distribution.
    """
    try:
        installed = version or importlib.metadata.version("gpytorch")
    except importlib.metadata.PackageNotFoundError:
        return False, "not checked: gpytorch is not installed"
    try:
        patches = read_series(patches_dir)
    except SeriesError as exc:
        return False, f"not checked: {exc}"
    against = "" if installed == PINNED_VERSION else f" (series written for {PINNED_VERSION})"
    if not patches:
        return True, f"series is empty: nothing to apply to gpytorch {installed}"
    if shutil.which("git") is None:
        return False, "not checked: git is not installed"
    try:
        sdist = cached_sdist(installed)
        if sdist is None:
            sdist = fetch_sdist(installed, timeout=timeout)
    except FetchError as exc:
        first = str(exc).splitlines()[0]
        hint = "python -m gpytorch_ext.staging fetch"
        if installed != PINNED_VERSION:
            hint += f" --gpytorch-version {installed}"
        return False, f"not checked: no source distribution of gpytorch {installed} ({first}); run {hint}"
    try:
        check_series(patches, installed, sdist=sdist)
    except SeriesApplyError as exc:
        return False, f"{exc.patch.name} does not apply to gpytorch {installed}{against}"
    except (GitError, OSError) as exc:
        return False, f"not checked: {str(exc).splitlines()[0]}"
    counted = "1 patch applies" if len(patches) == 1 else f"{len(patches)} patches apply"
    return True, f"{counted} to gpytorch {installed}{against}"
