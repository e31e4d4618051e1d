"""Shared fixtures.

Tests run against one implementation of the repairs, chosen with ``--impl``:

- ``monkeypatch`` (default): stock GPyTorch, repaired at run time by ``import gpytorch_ext``.
- ``source``: a GPyTorch source tree with ``patches/series`` applied, found first on ``PYTHONPATH``, with
  ``GPYTORCH_EXT_AUTOPATCH=0``; ``make test-source`` sets this up.

Tests of repaired behaviour call GPyTorch's own classes, so they check whichever implementation is active.
Tests that reproduce the upstream defect take the ``upstream`` fixture, which reverts a patch for the
duration of a ``with`` block (and skips under ``--impl=source``, where no unpatched GPyTorch exists).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import pytest

pytest_plugins = ("pytester",)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        choices=("monkeypatch", "source"),
        default="monkeypatch",
        help="which implementation of the repairs to test: the run-time patches, or the patched GPyTorch source",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--impl") == "source":
        os.environ["GPYTORCH_EXT_AUTOPATCH"] = "0"
    import gpytorch_ext  # noqa: F401  (applies the patches in monkeypatch mode)


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> str:
    """The implementation under test: ``"monkeypatch"`` or ``"source"``."""
    return request.config.getoption("--impl")


@pytest.fixture
def upstream(impl: str) -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with upstream("patch-name"):`` runs its block on stock GPyTorch (the named patches reverted)."""
    if impl == "source":
        pytest.skip("stock GPyTorch behaviour is not available against the patched source")
    import gpytorch_ext

    @contextlib.contextmanager
    def reverted(*names: str) -> Iterator[None]:
        before = gpytorch_ext.applied()
        gpytorch_ext.unpatch(*names)
        try:
            yield
        finally:
            gpytorch_ext.patch(*[n for n in before if n in (names or before)])

    return reverted
