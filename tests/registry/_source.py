"""A copy of the project's source tree, so that a build (``build/``, ``*.egg-info``) never races another test's."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[2]

_SKIP = {".git", "build", "dist", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP or n.startswith(".venv") or n.endswith(".egg-info")}


def copy_source(dest: Path) -> Path:
    """Copy the project (without virtual environments, caches and build outputs) to ``dest``; return ``dest``."""
    shutil.copytree(ROOT, dest, ignore=_ignore)
    return dest


def declared_patches() -> set[str]:
    """The names in the ``gpytorch_ext.patches`` entry-point group of the checkout's ``pyproject.toml``."""
    if tomllib is None:  # the installed metadata, as of the last (editable) install
        eps = importlib.metadata.distribution("gpytorch-ext").entry_points
        return {ep.name for ep in eps if ep.group == "gpytorch_ext.patches"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return set(project["entry-points"]["gpytorch_ext.patches"])
