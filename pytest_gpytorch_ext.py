"""pytest plugin: ``pytest --gpytorch-ext[=name1,name2]`` runs a test session against patched GPyTorch.

This module lives outside the ``gpytorch_ext`` package on purpose: pytest imports every ``pytest11`` plugin at
start-up, and importing ``gpytorch_ext`` applies its patches. Without the option this plugin imports nothing
and changes nothing.
"""

from __future__ import annotations

import os

import pytest

_ALL = "all"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("gpytorch-ext").addoption(
        "--gpytorch-ext",
        action="store",
        nargs="?",
        const=_ALL,
        default=None,
        metavar="NAMES",
        help="apply gpytorch-ext patches for the session: all of them, or a comma-separated list of names",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Spell a bare ``--gpytorch-ext`` as ``--gpytorch-ext=all``.

    The option takes an optional value, so argparse would otherwise read the next word as the patch names:
    ``pytest --gpytorch-ext test/`` must run ``test/`` with every patch, not look for a patch called ``test/``.
    """
    args[:] = [f"--gpytorch-ext={_ALL}" if arg == "--gpytorch-ext" else arg for arg in args]


def pytest_configure(config: pytest.Config) -> None:
    value = config.getoption("--gpytorch-ext", default=None)
    if value is None:
        return
    previous = os.environ.get("GPYTORCH_EXT_AUTOPATCH")
    os.environ["GPYTORCH_EXT_AUTOPATCH"] = "0"  # apply exactly the selection below, not everything
    try:
        import gpytorch_ext
    finally:
        if previous is None:
            del os.environ["GPYTORCH_EXT_AUTOPATCH"]
        else:
            os.environ["GPYTORCH_EXT_AUTOPATCH"] = previous
    names = () if value == _ALL else tuple(n.strip() for n in value.split(",") if n.strip())
    try:
        selected = names or gpytorch_ext.available()
        before = {name: name in gpytorch_ext.applied() for name in selected}
        gpytorch_ext.patch(*names)
    except ValueError as exc:
        raise pytest.UsageError(f"--gpytorch-ext: {exc}") from None
    config.stash[_STATE] = before


def pytest_unconfigure(config: pytest.Config) -> None:
    before = config.stash.get(_STATE, None)
    if before is None:
        return
    import gpytorch_ext

    for name, was_applied in before.items():
        (gpytorch_ext.patch if was_applied else gpytorch_ext.unpatch)(name)


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.stash.get(_STATE, None) is None:
        return None
    import gpytorch_ext

    return f"gpytorch-ext {gpytorch_ext.__version__}: patches applied: {', '.join(gpytorch_ext.applied()) or 'none'}"


_STATE = pytest.StashKey[dict]()
