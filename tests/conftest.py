"""Shared fixtures.

Tests run against one implementation of the repairs, chosen with ``--impl``:

- ``monkeypatch`` (default): stock GPyTorch, repaired at run time by ``import gpytorch_ext``.
- ``source``: a GPyTorch source tree with ``patches/series`` applied, found first on ``PYTHONPATH``, with
  ``GPYTORCH_EXT_AUTOPATCH=0``; ``make test-source`` sets this up.

Tests of repaired behaviour call GPyTorch's own classes, so they check whichever implementation is active.
Tests that reproduce the upstream defect take the ``upstream`` fixture, which reverts a patch for the
duration of a ``with`` block (and skips under ``--impl=source``, where no unpatched GPyTorch exists).

``import botorch`` changes global GPyTorch / linear_operator defaults (fast log_prob off, a larger
``max_cholesky_size``, ...). So that no test depends on which tests ran before it in the same process, every
test runs under GPyTorch's own defaults, except tests in modules that use BoTorch, which run under the defaults
BoTorch sets at import, as BoTorch users get them.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Callable, Iterator
from typing import Any

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


# --- global settings isolation ---------------------------------------------------------------------------------

_SETTING_ATTRIBUTES = ("_default", "_global_value", "_state")


def _settings_snapshot() -> dict[tuple[type, str], Any]:
    import gpytorch
    import linear_operator

    snapshot = {}
    for module in (gpytorch.settings, linear_operator.settings):
        for obj in vars(module).values():
            if isinstance(obj, type):
                for attr in _SETTING_ATTRIBUTES:
                    if attr in vars(obj):
                        snapshot[(obj, attr)] = vars(obj)[attr]
    return snapshot


def _settings_restore(snapshot: dict[tuple[type, str], Any]) -> None:
    for (cls, attr), value in snapshot.items():
        setattr(cls, attr, value)


_GPYTORCH_DEFAULTS = _settings_snapshot()
_BOTORCH_DEFAULTS: dict[tuple[type, str], Any] = {}


def _botorch_defaults() -> dict[tuple[type, str], Any]:
    if not _BOTORCH_DEFAULTS:
        import botorch  # noqa: F401  (sets its defaults at import)

        _BOTORCH_DEFAULTS.update(_settings_snapshot())
    return _BOTORCH_DEFAULTS


def _uses_botorch(module: types.ModuleType | None) -> bool:
    return (
        any(
            (getattr(obj, "__module__", None) or getattr(obj, "__name__", "") or "").startswith("botorch")
            for obj in vars(module).values()
            if isinstance(obj, (type, types.FunctionType, types.ModuleType))
        )
        if module is not None
        else False
    )


@pytest.fixture(autouse=True)
def _isolated_global_settings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run each test under GPyTorch's defaults, or BoTorch's where its module uses BoTorch; restore after."""
    _settings_restore(_botorch_defaults() if _uses_botorch(getattr(request, "module", None)) else _GPYTORCH_DEFAULTS)
    yield
    _settings_restore(_GPYTORCH_DEFAULTS)
