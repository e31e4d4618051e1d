"""The source patches vendor the repairs' core modules verbatim: the monkey-patches and the source patches are one code.

``patches/0003-constraint-aware-priors.patch`` adds four modules to GPyTorch's tree and
``patches/0005-prior-terms.patch`` one more. Each must equal the package's module byte for byte once its import
lines are rewritten for GPyTorch's layout (relative imports, ``_truncated`` -> ``truncated_prior``, the threshold
setting from ``gpytorch.settings``); :data:`VENDORED` lists those rewrites, and nothing else may differ. After a
change to one of the package's modules, regenerate the patch (see patches/README.md) or this test fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._patchfile import added_files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gpytorch_ext" / "priors"
_INTERVAL = ("from gpytorch.constraints import Interval", "from ..constraints import Interval")
_MODULE = ("from gpytorch.module import Module", "from ..module import Module")

#: patch file -> {upstream path -> (package module, [(package import line, upstream import line), ...])}
VENDORED: dict[str, dict[str, tuple[str, list[tuple[str, str]]]]] = {
    "0003-constraint-aware-priors.patch": {
        "gpytorch/priors/_intervals.py": (
            "_intervals.py",
            [
                _INTERVAL,
                (
                    "from ._settings import prior_constraint_warning_threshold",
                    "from ..settings import prior_constraint_warning_threshold",
                ),
            ],
        ),
        "gpytorch/priors/_sites.py": ("_sites.py", [_INTERVAL, _MODULE]),
        "gpytorch/priors/truncated_prior.py": (
            "_truncated.py",
            [
                ("from gpytorch.priors import Prior", "from .prior import Prior"),
                (
                    "from gpytorch.priors.utils import _load_transformed_to_base_dist",
                    "from .utils import _load_transformed_to_base_dist",
                ),
            ],
        ),
        "gpytorch/priors/_repair.py": (
            "_repair.py",
            [
                _INTERVAL,
                _MODULE,
                ("from ._truncated import TruncatedPrior", "from .truncated_prior import TruncatedPrior"),
            ],
        ),
    },
    "0005-prior-terms.patch": {"gpytorch/priors/_terms.py": ("_terms.py", [])},
}
PATCHES = list(VENDORED)


def vendored_text(source: str, rewrites: list[tuple[str, str]]) -> str:
    """The package module's text as vendored: each import line rewritten, every other byte unchanged."""
    lines = source.split("\n")
    for package_line, upstream_line in rewrites:
        hits = [i for i, line in enumerate(lines) if line == package_line]
        if len(hits) != 1:
            raise AssertionError(f"expected the import line {package_line!r} exactly once, found it {len(hits)} times")
        lines[hits[0]] = upstream_line
    return "\n".join(lines)


def mismatches(patch_text: str, package_dir: Path, patch: str = PATCHES[0]) -> list[str]:
    """What differs between the patch's vendored files and the package's modules (empty: in sync)."""
    vendored = VENDORED[patch]
    added = added_files(patch_text)
    problems = []
    unexpected = sorted(p for p in added if p.startswith("gpytorch/") and p not in vendored)
    missing = sorted(p for p in vendored if p not in added)
    if unexpected:
        problems.append(f"the patch adds {unexpected}, not listed in VENDORED")
    if missing:
        problems.append(f"the patch does not add {missing}")
    for path, (module, rewrites) in vendored.items():
        if path not in added:
            continue
        want = vendored_text((package_dir / module).read_text(), rewrites)
        if added[path] != want:
            got_lines, want_lines = added[path].split("\n"), want.split("\n")
            line = next(
                (i + 1 for i, (a, b) in enumerate(zip(got_lines, want_lines)) if a != b),
                min(len(got_lines), len(want_lines)) + 1,
            )
            problems.append(f"{path} differs from gpytorch_ext/priors/{module} (first at line {line})")
    return problems


def _text(patch: str) -> str:
    path = ROOT / "patches" / patch
    assert path.is_file(), f"{path} is missing"
    return path.read_text()


@pytest.fixture(scope="module")
def patch_text() -> str:
    return _text(PATCHES[0])


@pytest.mark.parametrize("patch", PATCHES)
def test_vendored_modules_equal_the_package_modules(patch):
    assert mismatches(_text(patch), PACKAGE, patch) == []


def test_both_patches_are_in_the_series():
    series = (ROOT / "patches" / "series").read_text().split()
    assert all(patch in series for patch in PATCHES)
    assert series.index(PATCHES[0]) < series.index(PATCHES[1])  # prior-terms builds on _sites.py


@pytest.mark.parametrize("patch", PATCHES)
def test_each_vendored_module_differs_only_in_its_import_lines(patch):
    added = added_files(_text(patch))
    for path, (module, rewrites) in VENDORED[patch].items():
        package_lines = (PACKAGE / module).read_text().split("\n")
        upstream_lines = added[path].split("\n")
        assert len(package_lines) == len(upstream_lines), path
        changed = [(a, b) for a, b in zip(package_lines, upstream_lines) if a != b]
        assert changed == rewrites, path
        assert all(b.startswith(("from ", "import ")) for _, b in changed)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda text: text.replace("_MC_SAMPLES = 16384", "_MC_SAMPLES = 8192"),  # a changed constant
        lambda text: text + "\n# a trailing comment\n",  # an added line
        lambda text: text.replace("from gpytorch.priors import Prior\n", "from gpytorch.priors.prior import Prior\n"),
    ],
    ids=["changed-constant", "added-line", "changed-import"],
)
def test_a_package_module_changed_without_regenerating_the_patch_is_caught(patch_text, tmp_path, mutate):
    for _, (module, _) in VENDORED[PATCHES[0]].items():
        (tmp_path / module).write_text((PACKAGE / module).read_text())
    target = tmp_path / "_truncated.py"
    changed = mutate(target.read_text())
    assert changed != target.read_text()
    target.write_text(changed)
    try:
        problems = mismatches(patch_text, tmp_path)
    except AssertionError as exc:  # a rewritten import line that no longer exists
        problems = [str(exc)]
    assert problems and any("truncated" in p or "Prior" in p for p in problems), problems


def test_a_patch_that_stops_vendoring_a_module_is_caught(patch_text):
    broken = patch_text.replace("gpytorch/priors/_repair.py", "gpytorch/priors/_repair_renamed.py")
    problems = mismatches(broken, PACKAGE)
    assert any("_repair_renamed.py" in p for p in problems) and any("does not add" in p for p in problems)
