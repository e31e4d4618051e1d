"""The built wheel: the package, the patch series, ``py.typed``, the test kit, metadata, and a warning-free build."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gpytorch_ext.staging import read_series
from tests.registry._source import ROOT, copy_source, declared_patches

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``python -m build --wheel`` (what ``make wheel`` runs) on a copy of the source: the wheel and the build log."""
    root = tmp_path_factory.mktemp("wheel")
    source = copy_source(root / "src")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (root / "dist").glob("gpytorch_ext-*.whl")
    return wheel, proc.stdout + proc.stderr


def _contents(wheel: Path) -> tuple[set[str], str, str]:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        return names, zf.read(f"{info}/METADATA").decode(), zf.read(f"{info}/entry_points.txt").decode()


def test_the_build_prints_no_deprecation_warning(built):
    _, log = built
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]


def test_every_package_of_the_source_tree_is_in_the_wheel(built):
    names, _, _ = _contents(built[0])
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gpytorch_ext").rglob("*.py")}
    assert modules - names == set()  # pyproject.toml lists the packages by name: none may be forgotten
    assert {"gpytorch_ext/__init__.py", "gpytorch_ext/_registry.py", "gpytorch_ext/__main__.py"} <= names
    assert "pytest_gpytorch_ext.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/", "patches/")) for n in names)


def test_the_wheel_ships_the_series_the_typing_marker_and_the_test_kit(built):
    names, _, _ = _contents(built[0])
    for project, folder in (("", ROOT / "patches"), ("linear_operator/", ROOT / "patches" / "linear_operator")):
        series = read_series(folder)
        assert series
        shipped = {f"gpytorch_ext/staging/series/{project}{p.name}" for p in series}
        assert shipped | {f"gpytorch_ext/staging/series/{project}series"} <= names
    assert {"gpytorch_ext/staging/baseline.json", "gpytorch_ext/staging/baseline_linear_operator.json"} <= names
    assert "gpytorch_ext/py.typed" in names
    kit = {"__init__", "patch_case", "covariances", "keops", "priors", "tying"}
    assert {f"gpytorch_ext/testing/{m}.py" for m in kit} <= names


def test_metadata_and_entry_points(built):
    names, metadata, entry_points = _contents(built[0])
    assert "Name: gpytorch-ext" in metadata and "Requires-Python: >=3.10" in metadata
    assert "License-Expression: MIT" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for requirement in ("torch", "gpytorch", "linear-operator", "pykeops"):
        assert f"Requires-Dist: {requirement}" in metadata
    assert "Provides-Extra: test" in metadata and "Provides-Extra: bench" in metadata
    assert "[gpytorch_ext.patches]" in entry_points and "[pytest11]" in entry_points
    for name in declared_patches():
        assert f"\n{name} = gpytorch_ext." in entry_points
    assert "gpytorch_ext = pytest_gpytorch_ext" in entry_points
