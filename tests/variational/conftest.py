"""Fixtures for the variational tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest


@pytest.fixture
def stock(request: pytest.FixtureRequest, impl: str) -> Callable[..., contextlib.AbstractContextManager[None]] | None:
    """Like ``upstream``, but ``None`` under ``--impl=source`` instead of skipping the test."""
    if impl == "source":
        return None
    return request.getfixturevalue("upstream")
