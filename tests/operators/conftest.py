"""Fixtures for the linear_operator repair tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest


@pytest.fixture
def upstream_or_none(request: pytest.FixtureRequest, impl: str) -> Callable[..., contextlib.AbstractContextManager]:
    """Like ``upstream``, but ``None`` under ``--impl=source`` (where the patched linear_operator is imported)."""
    return None if impl == "source" else request.getfixturevalue("upstream")
