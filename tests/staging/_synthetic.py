"""A synthetic miniature "GPyTorch" source distribution and patches for it, made with git in a temporary directory.

The tree mimics the layout the staging tools expect (``gpytorch-<version>/gpytorch/`` and ``test/``) and has the
same kinds of results as the real suite: passing tests, one test that fails because of a defect the first patch
repairs, and one test whose fixture is broken (an error that the baseline knows about).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

VERSION = "9.9.9"

ARITH = '''def add(a, b):
    """Return a + b."""
    return a - b


def scale(a, k):
    """Return a * k."""
    return a * k
'''

TEST_ARITH = """import gpytorch


def test_add():
    assert gpytorch.add(2, 3) == 5


def test_scale():
    assert gpytorch.scale(2, 3) == 6


class TestArith:
    def test_zero(self):
        assert gpytorch.add(0, 0) == 0


def test_fixture_problem(self):
    pass
"""

TEST_ENV = """import os
import pathlib
import sys

import gpytorch


def test_environment(request):
    root = pathlib.Path(__file__).resolve().parents[1]
    imported = pathlib.Path(gpytorch.__file__).resolve()
    if request.config.getoption("--gpytorch-ext", default=None) is not None:
        assert "gpytorch_ext" in sys.modules
        assert not imported.is_relative_to(root), imported
    else:
        assert os.environ["GPYTORCH_EXT_AUTOPATCH"] == "0"
        assert imported.is_relative_to(root), imported
"""

FILES = {
    "PKG-INFO": f"Metadata-Version: 2.1\nName: gpytorch\nVersion: {VERSION}\n",
    "setup.py": "",
    "gpytorch/__init__.py": f'__version__ = "{VERSION}"\n\nfrom .arith import add, scale\n',
    "gpytorch/arith.py": ARITH,
    "test/__init__.py": "",
    "test/test_arith.py": TEST_ARITH,
    "test/test_env.py": TEST_ENV,
}

#: The synthetic suite's results on the unpatched tree (all of ``test/``).
BASELINE = {
    "counts": {"passed": 3, "failed": 1, "error": 1, "skipped": 0, "xfailed": 0},
    "known": {"test/test_arith.py::test_add": "failed", "test/test_arith.py::test_fixture_problem": "error"},
}

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.invalid",
}


def write_tree(root: Path, files: dict[str, str] = FILES) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def make_sdist(cache: Path, version: str = VERSION) -> Path:
    """Write ``gpytorch-<version>.tar.gz`` into the sdist cache directory ``cache``."""
    src = write_tree(cache.parent / f"src-{version}" / f"gpytorch-{version}")
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"gpytorch-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return archive


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    cmd = ["git", "-c", "commit.gpgsign=false", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout


class PatchMaker:
    """A git checkout of the synthetic release in which tests commit changes and export them as patches."""

    def __init__(self, where: Path) -> None:
        self.root = write_tree(where / f"gpytorch-{VERSION}")
        git(self.root, "init", "-q")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "release")
        git(self.root, "tag", "release")
        self.outbox = where / "outbox"

    def commit(self, message: str, changes: dict[str, str]) -> None:
        write_tree(self.root, changes)
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message)

    def edit(self, rel: str, old: str, new: str) -> dict[str, str]:
        text = (self.root / rel).read_text(encoding="utf-8")
        assert old in text
        return {rel: text.replace(old, new)}

    def format_patches(self, base: str = "release") -> list[Path]:
        out = git(self.root, "format-patch", "-o", str(self.outbox), f"{base}..HEAD")
        return [Path(line) for line in out.split()]

    def reset(self) -> None:
        git(self.root, "reset", "-q", "--hard", "release")


def fix_add(maker: PatchMaker) -> None:
    """Commit the repair of ``add`` plus a new upstream-style test."""
    changes = maker.edit("gpytorch/arith.py", "return a - b", "return a + b")
    test = "import gpytorch\n\n\ndef test_add_negative():\n    assert gpytorch.add(-1, 1) == 0\n"
    changes["test/test_add_negative.py"] = test
    maker.commit("Fix add: it subtracted\n\nadd(2, 3) returned -1.", changes)


def add_sub(maker: PatchMaker) -> None:
    """Commit a change whose context needs :func:`fix_add` first."""
    new = "    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    changes = maker.edit("gpytorch/arith.py", "    return a + b\n", new)
    changes["gpytorch/__init__.py"] = f'__version__ = "{VERSION}"\n\nfrom .arith import add, scale, sub\n'
    changes["test/test_sub.py"] = "import gpytorch\n\n\ndef test_sub():\n    assert gpytorch.sub(3, 2) == 1\n"
    maker.commit("Add sub", changes)


def break_scale(maker: PatchMaker) -> None:
    """Commit a change that applies cleanly but breaks a passing test."""
    maker.commit("Break scale", maker.edit("gpytorch/arith.py", "return a * k", "return a * k + 1"))


def write_series(patches_dir: Path, patches: list[Path], header: str = "# test series\n") -> Path:
    patches_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for patch in patches:
        target = patches_dir / patch.name
        target.write_bytes(patch.read_bytes())
        names.append(patch.name)
    (patches_dir / "series").write_text(header + "".join(n + "\n" for n in names), encoding="utf-8")
    return patches_dir


def write_baseline(path: Path, data: dict = BASELINE) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
