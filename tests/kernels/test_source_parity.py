"""The source patch ``patches/0002-keops-kernels.patch`` vendors this package's KeOps modules verbatim.

Every file the patch adds under ``gpytorch/`` must equal the corresponding module of
``gpytorch_ext.kernels.keops`` byte for byte, after the one documented rewrite: ``from ... import`` lines
that name a GPyTorch module absolutely become relative imports inside ``gpytorch/kernels/keops/`` (and the
package's sibling module names become the vendored file names). No other line may differ. When a package
module changes, regenerate the patch (see ``patches/README.md``); this test fails until then.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests._patchfile import added_files

ROOT = Path(__file__).resolve().parents[2]
PATCH_FILE = ROOT / "patches" / "0002-keops-kernels.patch"
PACKAGE = ROOT / "gpytorch_ext" / "kernels" / "keops"
VENDORED_DIR = "gpytorch/kernels/keops/"

#: package module -> vendored file in GPyTorch's ``gpytorch/kernels/keops/``
VENDORED = {
    "_availability.py": "_availability.py",
    "_vectors.py": "_vectors.py",
    "_nodes.py": "_nodes.py",
    "_formula.py": "_formula.py",
    "_cache.py": "_cache.py",
    "_operator.py": "_operator.py",
    "_forward.py": "_forward.py",
    "_kernel.py": "_kernel.py",
    "composition.py": "_composition.py",
    "rbf.py": "_rbf.py",
    "matern.py": "_matern.py",
    "periodic.py": "_periodic.py",
    "rq.py": "rq_kernel.py",
    "cosine.py": "cosine_kernel.py",
    "linear.py": "linear_kernel.py",
    "polynomial.py": "polynomial_kernel.py",
    "spectral_mixture.py": "spectral_mixture_kernel.py",
}
_SIBLINGS = {src.removesuffix(".py"): dst.removesuffix(".py") for src, dst in VENDORED.items()}
_FROM = re.compile(r"^(?P<indent>\s*)from (?P<module>\S+) import (?P<names>.*)$")


def vendor_import(line: str) -> str:
    """The line as it reads in ``gpytorch/kernels/keops/``: only ``from X import ...`` lines change."""
    match = _FROM.match(line)
    if match is None:
        return line
    module = match["module"]
    if module.startswith("."):  # a sibling module of the package
        module = "." + _SIBLINGS[module[1:]]
    elif module == "gpytorch.kernels.keops" or module.startswith("gpytorch.kernels.keops."):
        module = "." + module.removeprefix("gpytorch.kernels.keops").lstrip(".")
    elif module.startswith("gpytorch.kernels."):
        module = ".." + module.removeprefix("gpytorch.kernels.")
    elif module == "gpytorch":
        module = "..."
    elif module.startswith("gpytorch."):
        module = "..." + module.removeprefix("gpytorch.")
    return f"{match['indent']}from {module} import {match['names']}"


def vendor(text: str) -> str:
    """A package module's text as the patch must add it."""
    return "\n".join(vendor_import(line) for line in text.split("\n"))


def mismatches(package_texts: dict[str, str], patch_text: str) -> list[str]:
    """What differs between the package modules and the files the patch vendors (empty: in step)."""
    added = {p: t for p, t in added_files(patch_text).items() if p.startswith("gpytorch/")}
    problems = []
    expected_paths = {VENDORED_DIR + dst for dst in VENDORED.values()}
    for path in sorted(set(added) - expected_paths):
        problems.append(f"{path}: added by the patch but not mapped to a package module")
    for src, dst in VENDORED.items():
        path = VENDORED_DIR + dst
        if path not in added:
            problems.append(f"{path}: not added by the patch (vendored from {src})")
        elif added[path] != vendor(package_texts[src]):
            problems.append(f"{path}: differs from gpytorch_ext/kernels/keops/{src}; regenerate the patch")
    return problems


@pytest.fixture(scope="module")
def patch_text() -> str:
    return PATCH_FILE.read_text()


@pytest.fixture(scope="module")
def package_texts() -> dict[str, str]:
    return {src: (PACKAGE / src).read_text() for src in VENDORED}


def test_vendored_modules_equal_the_package(package_texts, patch_text):
    assert mismatches(package_texts, patch_text) == []


def test_every_core_module_is_vendored():
    # a new module of the repair must be vendored (or be one of the package-only modules)
    package_only = {"__init__.py", "patch.py"}
    assert {p.name for p in PACKAGE.glob("*.py")} - package_only == set(VENDORED)


@pytest.mark.parametrize("src", sorted(VENDORED))
def test_a_changed_package_module_is_detected(package_texts, patch_text, src):
    changed = dict(package_texts)
    changed[src] = changed[src].replace("\n\n", "\n\n# changed\n", 1)
    assert mismatches(changed, patch_text) == [
        f"{VENDORED_DIR}{VENDORED[src]}: differs from gpytorch_ext/kernels/keops/{src}; regenerate the patch"
    ]


def test_only_import_lines_are_rewritten():
    assert vendor_import("from gpytorch import settings") == "from ... import settings"
    assert vendor_import("from gpytorch.kernels.kernel import Kernel") == "from ..kernel import Kernel"
    assert vendor_import("from gpytorch.kernels.keops import keops_kernel as k") == "from . import keops_kernel as k"
    assert vendor_import("        from .composition import A") == "        from ._composition import A"
    assert vendor_import("from torch import Tensor") == "from torch import Tensor"
    assert vendor_import("x = gpytorch.kernels.keops") == "x = gpytorch.kernels.keops"
