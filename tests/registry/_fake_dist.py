"""A throw-away third-party distribution that registers test-only patches through entry points.

It patches a module of its own (``fake_target``), never GPyTorch, so the registry is exercised through real
installed metadata without shipping a fake patch. Its test package (:func:`write_fake_tests`) checks its patches
with the public test kit, :class:`gpytorch_ext.testing.PatchTestCase`, as a third-party author would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TARGET = '''
def greet():
    """Say hello."""
    return "hello"

class Thing:
    def value(self):
        """The value."""
        return 1
'''

PLUGIN = """
import fake_target
from gpytorch_ext import Patch, Probe, Replacement

def _greet():
    return "patched hello"

def _value(self):
    return 2

def _probe():
    broken = fake_target.greet() == "hello"
    return Probe("greets plainly" if broken else "greets patched", defect=broken)

ALPHA = Patch(
    name="test-alpha", summary="test-only: patch fake_target.greet",
    replacements=lambda: [Replacement(fake_target, "greet", _greet)],
    verified_on=">=0", probe=_probe,
)
BETA = Patch(
    name="test-beta", summary="test-only: patch fake_target.Thing.value",
    replacements=lambda: [Replacement(fake_target.Thing, "value", _value)],
    verified_on=">=0",
)
BROKEN = Patch(
    name="test-broken", summary="test-only: targets an attribute that does not exist",
    replacements=lambda: [Replacement(fake_target, "renamed_in_a_future_release", _greet)],
    verified_on=">=0",
)
STUBBORN = Patch(
    name="test-stubborn", summary="test-only: replaces fake_target.greet, but the defect stays",
    replacements=lambda: [Replacement(fake_target, "greet", lambda: "hello")],
    verified_on=">=0", probe=_probe,
)
FAILING_CHECK = Patch(
    name="test-failing-check", summary="test-only: a self-check that still sees the defect",
    replacements=lambda: [], verified_on=">=0",
    probe=lambda: Probe("still broken", defect=True),
)
"""


NAMES = {
    "ALPHA": "test-alpha",
    "BETA": "test-beta",
    "BROKEN": "test-broken",
    "FAILING_CHECK": "test-failing-check",
    "STUBBORN": "test-stubborn",
}

TESTS = """
from gpytorch_ext.testing import PatchTestCase
{classes}
"""

TEST_CLASS = """

class Test{cls}(PatchTestCase):
    patch_name = "{name}"
"""


def write_fake_tests(root: Path, patches: tuple[str, ...]) -> Path:
    """Write the fake distribution's test module: a few-line ``PatchTestCase`` subclass per patch in ``patches``."""
    classes = "".join(TEST_CLASS.format(cls=p.title().replace("_", ""), name=NAMES[p]) for p in patches)
    path = root / "test_fake_ext_patches.py"
    path.write_text(TESTS.format(classes=classes))
    return path


def write_fake_dist(root: Path, patches: tuple[str, ...] = ("ALPHA", "BETA")) -> Path:
    """Write ``fake_target``, ``fake_ext`` and a ``fake_ext`` dist-info registering ``patches`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "fake_target.py").write_text(TARGET)
    (root / "fake_ext.py").write_text(PLUGIN)
    info = root / "fake_ext-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ext\nVersion: 0.1\n")
    lines = "\n".join(f"{NAMES[p]} = fake_ext:{p}" for p in patches)
    (info / "entry_points.txt").write_text(f"[gpytorch_ext.patches]\n{lines}\n")
    return root


def run_python(code: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``path`` first on ``PYTHONPATH`` and extra environment."""
    full_env = {**os.environ, **env}
    if path is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=300
    )
