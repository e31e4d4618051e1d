"""``patches/0007-multitask-batched-inputs.patch`` and the ``multitask-batched-inputs`` monkey-patch are the same
code: the patch vendors :mod:`gpytorch_ext.variational._batched_inputs` into GPyTorch's tree as
``gpytorch/variational/_batched_inputs.py``, and both strategies call it before their base strategy."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.distributions.test_source_parity import assert_source_tree_carries, package_sources, parity_errors

ROOT = Path(__file__).resolve().parents[2]
PATCH_FILE = ROOT / "patches" / "0007-multitask-batched-inputs.patch"
VENDORED = {"gpytorch/variational/_batched_inputs.py": "gpytorch_ext.variational._batched_inputs"}
#: the calls the patched ``__call__`` methods make, as the monkey-patch makes them
CALLS = (
    "base_batch_shape(self.base_variational_strategy, self.num_tasks, self.task_dim)",
    "x, task_indices, batch_shape, self.task_dim, self.num_tasks, type(self).__name__",
    "base_batch_shape(self.base_variational_strategy, self.num_latents, self.latent_dim)",
    "x, task_indices, batch_shape, self.latent_dim, self.num_latents, type(self).__name__",
)


def test_vendored_module_equals_the_package_module():
    errors = parity_errors(PATCH_FILE.read_text(), package_sources(VENDORED))
    assert not errors, "\n".join(errors)


def test_strategies_call_the_vendored_functions_like_the_monkey_patch():
    added = "\n".join(line[1:] for line in PATCH_FILE.read_text().splitlines() if line.startswith("+"))
    patch_py = Path(importlib.import_module("gpytorch_ext.variational.patch").__file__).read_text()
    for call in CALLS:
        assert call in added, f"the source patch does not call {call}"
        assert call in patch_py, f"patch.py no longer calls {call}: update CALLS and the patch"


def test_patched_source_carries_the_same_module(impl):
    if impl != "source":
        pytest.skip("checks the patched source tree")
    assert_source_tree_carries(VENDORED)
