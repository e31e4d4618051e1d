"""Fixtures for the constraint-aware-priors tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_warning_registry():
    """Each test sees every once-per-configuration warning afresh (of the run-time patch and the patched source)."""
    from ._impl import reset_warnings

    reset_warnings()
    yield
    reset_warnings()
