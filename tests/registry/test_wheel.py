"""The built wheel carries the package, the plugin module and both entry-point groups."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contents_and_metadata(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("gpytorch_ext-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert {"gpytorch_ext/__init__.py", "gpytorch_ext/_registry.py", "gpytorch_ext/__main__.py"} <= names
    assert "pytest_gpytorch_ext.py" in names
    assert not any(n.startswith("tests/") for n in names)
    assert "Name: gpytorch-ext" in metadata and "Requires-Python: >=3.10" in metadata
    for requirement in ("torch", "gpytorch", "linear-operator", "pykeops"):
        assert f"Requires-Dist: {requirement}" in metadata
    assert "Provides-Extra: test" in metadata
    assert "[gpytorch_ext.patches]" in entry_points and "[pytest11]" in entry_points
    for line in (
        "mvn-log-prob = gpytorch_ext.distributions.patch:PATCH",
        "keops-kernels = gpytorch_ext.kernels.keops.patch:PATCH",
        "constraint-aware-priors = gpytorch_ext.priors.patch:PATCH",
        "gpytorch_ext = pytest_gpytorch_ext",
    ):
        assert line in entry_points
