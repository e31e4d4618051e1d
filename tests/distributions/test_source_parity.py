"""The source patches ``patches/0001-mvn-log-prob.patch`` and ``patches/0004-mvn-batch.patch`` and the
monkey-patches are the same code.

The patches vendor the modules of :mod:`gpytorch_ext.distributions` named in :data:`PATCHES` into GPyTorch's tree
as ``gpytorch/distributions/<name>.py``. The only difference allowed is the documented import-line rewrite
(:func:`vendor`): top-level absolute ``from gpytorch... import ...`` lines become relative imports, placed in a
block of their own after the other imports (isort's order, as in GPyTorch's sources). If a package module
changes, regenerate the patch (see ``patches/README.md``) or these tests fail.
"""

from __future__ import annotations

import difflib
import importlib
import re
from pathlib import Path

import pytest

from tests._patchfile import added_files

ROOT = Path(__file__).resolve().parents[2]
PATCH_FILE = ROOT / "patches" / "0001-mvn-log-prob.patch"

#: patch file -> (vendored file -> the package module it vendors)
PATCHES = {
    "0001-mvn-log-prob.patch": {
        "gpytorch/distributions/_log_prob.py": "gpytorch_ext.distributions._log_prob",
        "gpytorch/distributions/_columns.py": "gpytorch_ext.distributions._columns",
    },
    "0004-mvn-batch.patch": {
        "gpytorch/distributions/_moments.py": "gpytorch_ext.distributions._moments",
        "gpytorch/distributions/_sampling.py": "gpytorch_ext.distributions._sampling",
        "gpytorch/distributions/_indexing.py": "gpytorch_ext.distributions._indexing",
    },
}
VENDORED = PATCHES["0001-mvn-log-prob.patch"]

#: what the repaired methods of GPyTorch's classes must do: the calls the replacements in ``patch.py`` make
METHOD_BODIES = {
    "0001-mvn-log-prob.patch": (
        "        keep_validate_args(self, validate_args)\n",  # MultivariateNormal.__init__ (appended)
        "        return mvn_log_prob_method(self, value)\n",  # MultivariateNormal.log_prob
        "        return mtmvn_log_prob_method(self, value)\n",  # MultitaskMultivariateNormal.log_prob
    ),
    "0004-mvn-batch.patch": (
        "            return dense_covariance(self)\n",  # MultivariateNormal.covariance_matrix
        "            self.__unbroadcasted_scale_tril = unbroadcasted_scale_tril(self)\n",
        "        return mvn_rsample(self, sample_shape, base_samples)\n",
        "        return mvn_getitem(self, idx)\n",
        "        return mtmvn_getitem(self, idx, MultivariateNormal)\n",
        "            return mvn_entropy(self)\n",
        "        return mvn_unsqueeze(self, dim)\n",
        "    return mvn_kl_divergence(p_dist, q_dist)\n",
    ),
}

_ABSOLUTE_GPYTORCH_IMPORT = re.compile(r"from (gpytorch(?:\.\w+)*) import (.+)\n")


def _relative(module: str, package: str) -> str:
    """``module`` (absolute) as seen from inside ``package``: ``gpytorch`` from ``gpytorch.distributions`` is ``..``."""
    target, here = module.split("."), package.split(".")
    common = 0
    while common < min(len(target), len(here)) and target[common] == here[common]:
        common += 1
    return "." * (len(here) - common + 1) + ".".join(target[common:])


def vendor(source: str, package: str) -> str:
    """The package module's text as vendored into GPyTorch's ``package`` (the documented import-line rewrite)."""
    lines = source.splitlines(keepends=True)
    kept, relative = [], []
    for line in lines:
        match = _ABSOLUTE_GPYTORCH_IMPORT.fullmatch(line)
        if match:
            relative.append(f"from {_relative(match.group(1), package)} import {match.group(2)}\n")
        else:
            kept.append(line)
    if not relative:
        return source
    last_import = max(i for i, line in enumerate(kept) if line.startswith(("import ", "from ")))
    return "".join(kept[: last_import + 1] + ["\n"] + sorted(relative) + kept[last_import + 1 :])


def parity_errors(patch_text: str, modules: dict[str, str]) -> list[str]:
    """Every difference between the patch's vendored files and the package modules they vendor (empty if none).

    :param patch_text: the patch file's text.
    :param modules: vendored path -> the package module's source text.
    """
    errors = []
    added = added_files(patch_text)
    for path in sorted(set(added) - set(modules)):
        if path.startswith("gpytorch/") and path.endswith(".py"):
            errors.append(f"{path} is added by the patch but not known as a vendored module (add it to VENDORED)")
    for path, source in modules.items():
        if path not in added:
            errors.append(f"{path}: not added by the patch")
            continue
        package = path.rsplit("/", 1)[0].replace("/", ".")
        expected = vendor(source, package)
        if added[path] != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    added[path].splitlines(keepends=True),
                    "package module (vendored)",
                    f"patch: {path}",
                    n=1,
                )
            )
            errors.append(f"{path} differs from the package module; regenerate the patch:\n{diff[:3000]}")
    return errors


def package_sources(vendored: dict[str, str] = VENDORED) -> dict[str, str]:
    """The package modules' sources, keyed by the path each is vendored to (``vendored``: path -> module name)."""
    return {path: Path(importlib.import_module(name).__file__).read_text() for path, name in vendored.items()}


def assert_source_tree_carries(vendored: dict[str, str]) -> None:
    """Under ``--impl=source``: each vendored path, imported from the patched tree, is its package module vendored."""
    for path, source in package_sources(vendored).items():
        module = importlib.import_module(path[: -len(".py")].replace("/", "."))
        assert Path(module.__file__).read_text() == vendor(source, path.rsplit("/", 1)[0].replace("/", ".")), path


@pytest.mark.parametrize("patch_name", sorted(PATCHES))
def test_vendored_modules_equal_the_package_modules(patch_name):
    errors = parity_errors((ROOT / "patches" / patch_name).read_text(), package_sources(PATCHES[patch_name]))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("patch_name", sorted(PATCHES))
def test_patched_methods_call_the_vendored_functions_like_the_monkey_patch(patch_name):
    text = (ROOT / "patches" / patch_name).read_text()
    added_lines = {line[1:] + "\n" for line in text.splitlines() if line.startswith("+")}
    missing = [body.strip() for body in METHOD_BODIES[patch_name] if body not in added_lines]
    assert not missing, f"the source patch does not add: {missing}"
    patch_py = Path(importlib.import_module("gpytorch_ext.distributions.patch").__file__).read_text()
    for body in METHOD_BODIES[patch_name]:
        call = body.strip().removeprefix("return ").removeprefix("self.__unbroadcasted_scale_tril = ")
        assert call in patch_py, f"patch.py no longer calls {call!r}: update METHOD_BODIES and the patch"


def test_parity_check_detects_a_changed_module():
    """The check can fail: a one-character change of the package module, or a new vendored file, is reported."""
    patch_text = PATCH_FILE.read_text()
    sources = package_sources()
    path, source = next(iter(sources.items()))
    changed = source.replace("_LOG_2PI = math.log(2 * math.pi)", "_LOG_2PI = math.log(2 * math.pi) ")
    assert changed != source
    errors = parity_errors(patch_text, {**sources, path: changed})
    assert len(errors) == 1 and "regenerate the patch" in errors[0] and "_LOG_2PI" in errors[0]
    assert parity_errors(patch_text, {}) and "not known as a vendored module" in parity_errors(patch_text, {})[0]


@pytest.mark.parametrize(
    ("module", "package", "expected"),
    [
        ("gpytorch", "gpytorch.distributions", ".."),
        ("gpytorch.settings", "gpytorch.distributions", "..settings"),
        ("gpytorch.distributions.delta", "gpytorch.distributions", ".delta"),
        ("gpytorch.utils.warnings", "gpytorch.kernels.keops", "...utils.warnings"),
    ],
)
def test_relative_import_rewrite(module, package, expected):
    assert _relative(module, package) == expected


def test_patched_source_carries_the_same_module(impl):
    """Under ``--impl=source`` the imported GPyTorch has the vendored module, identical to the package's."""
    if impl != "source":
        pytest.skip("checks the patched source tree")
    assert_source_tree_carries({p: m for v in PATCHES.values() for p, m in v.items()})
