"""``patches/linear_operator/0001-matmul-vector-backward.patch`` and the ``matmul-vector-backward`` monkey-patch
are the same code: the patch vendors :mod:`gpytorch_ext.operators._matmul` into linear_operator's tree as
``linear_operator/functions/_matmul_backward.py``, and ``Matmul.backward`` calls it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.distributions.test_source_parity import assert_source_tree_carries, package_sources, parity_errors

ROOT = Path(__file__).resolve().parents[2]
PATCH_FILE = ROOT / "patches" / "linear_operator" / "0001-matmul-vector-backward.patch"
VENDORED = {"linear_operator/functions/_matmul_backward.py": "gpytorch_ext.operators._matmul"}
CALL = "        return matmul_backward(ctx, grad_output)\n"


def test_vendored_module_equals_the_package_module():
    errors = parity_errors(PATCH_FILE.read_text(), package_sources(VENDORED))
    assert not errors, "\n".join(errors)


def test_matmul_backward_calls_the_vendored_function_like_the_monkey_patch():
    added = {line[1:] + "\n" for line in PATCH_FILE.read_text().splitlines() if line.startswith("+")}
    assert CALL in added, "the source patch does not make Matmul.backward call matmul_backward"
    patch_py = Path(importlib.import_module("gpytorch_ext.operators.patch").__file__).read_text()
    assert CALL.strip() in patch_py


def test_patched_source_carries_the_same_module(impl):
    """Under ``--impl=source`` the imported linear_operator has the vendored module, identical to the package's."""
    if impl != "source":
        pytest.skip("checks the patched source tree")
    import linear_operator.functions._matmul as matmul

    assert_source_tree_carries(VENDORED)
    assert matmul.Matmul.backward.__code__.co_names[:1] == ("matmul_backward",)
