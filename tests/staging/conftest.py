"""Fixtures for the staging tests: a private sdist cache holding the synthetic release."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import _synthetic


@pytest.fixture
def synthetic_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$GPYTORCH_EXT_CACHE`` pointing at a fresh cache whose ``sdist/`` holds the synthetic release."""
    root = tmp_path / "cache"
    _synthetic.make_sdist(root / "sdist")
    monkeypatch.setenv("GPYTORCH_EXT_CACHE", str(root))
    monkeypatch.delenv("GPYTORCH_EXT_PATCHES", raising=False)
    return root


@pytest.fixture
def maker(tmp_path: Path) -> _synthetic.PatchMaker:
    """A git checkout of the synthetic release to write patches in."""
    return _synthetic.PatchMaker(tmp_path / "dev")
