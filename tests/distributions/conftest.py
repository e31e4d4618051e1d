"""Fixtures for the mvn-log-prob tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest


@pytest.fixture
def stock(request: pytest.FixtureRequest, impl: str) -> Callable[..., contextlib.AbstractContextManager[None]] | None:
    """Like ``upstream``, but ``None`` under ``--impl=source`` instead of skipping the test.

    A test that shows an upstream defect and then the repair uses it as ``if stock: with stock("mvn-log-prob"): ...``,
    so that its check of the repaired behaviour still runs against the patched source.
    """
    if impl == "source":
        return None
    return request.getfixturevalue("upstream")
