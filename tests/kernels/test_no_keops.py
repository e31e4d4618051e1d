"""Without KeOps (not importable, no compiler, a formula failing to compile forward or backward): dense mode and
one warning."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import warnings
from unittest import mock

import gpytorch
import pytest
import torch
from linear_operator.operators import LinearOperator

from gpytorch_ext.kernels import keops as ext
from gpytorch_ext.kernels.keops import _availability, _cache, _operator
from gpytorch_ext.testing.keops import randomize

_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    sys.modules["pykeops"] = None  # any "import pykeops..." now raises ImportError
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import gpytorch_ext
        import gpytorch, torch
        from gpytorch_ext.kernels import keops as ext
        assert SOURCE or "keops-kernels" in gpytorch_ext.applied()
        torch.manual_seed(0)
        x = torch.randn(30, 2, dtype=torch.float64)
        pairs = [
            (ext.RBFKernel(), gpytorch.kernels.RBFKernel()),
            (gpytorch.kernels.keops.MaternKernel(nu=1.5), gpytorch.kernels.MaternKernel(nu=1.5)),
            (ext.RBFKernel() * ext.PeriodicKernel(), gpytorch.kernels.RBFKernel() * gpytorch.kernels.PeriodicKernel()),
        ]
        for size in (0, 800):
            with gpytorch.settings.max_cholesky_size(size):
                for k, d in pairs:
                    k.double(), d.double()
                    d.load_state_dict(k.state_dict())
                    torch.testing.assert_close(k(x).to_dense(), d(x).to_dense())
                    torch.testing.assert_close(k(x, diag=True), d(x, diag=True))
    ours = [str(w.message) for w in caught if w.category.__name__ == "KeOpsUnavailableWarning"]
    stock = [str(w.message) for w in caught if "KeOps is not installed" in str(w.message)]
    # one warning per implementation: ours, and GPyTorch's own where its source carries the repair
    assert len(ours) == (2 if SOURCE else 1), ours
    assert all("pykeops could not be imported" in m for m in ours), ours
    assert not stock, stock
    print("OK")
    """
)


def test_without_pykeops_dense_mode_and_one_warning(impl):
    script = f"SOURCE = {impl == 'source'}\n" + _SCRIPT
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def _availability_modules() -> list:
    """Our availability state, and GPyTorch's own where its source carries the repair (``--impl=source``)."""
    source = sys.modules.get("gpytorch.kernels.keops._availability")
    return [_availability] + ([source] if source is not None and source is not _availability else [])


@contextlib.contextmanager
def _fresh_state():
    """KeOps available and not warned about yet, as in a new process; the state is restored after."""
    with contextlib.ExitStack() as stack:
        for module in _availability_modules():
            stack.enter_context(mock.patch.dict(module._state, {"reason": None, "checked": False, "warned": False}))
        yield


def test_without_compiler_dense_mode_and_one_warning():
    k = randomize(ext.RBFKernel().double())
    x = torch.randn(25, 2, dtype=torch.float64)
    want = gpytorch.kernels.RBFKernel().double()
    want.load_state_dict(k.state_dict())
    no_compiler = mock.patch.object(
        _availability, "_check_availability", return_value="no C++ compiler for KeOps (g++)"
    )
    with _fresh_state(), no_compiler, gpytorch.settings.max_cholesky_size(0), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(3):
            torch.testing.assert_close(k(x).to_dense(), want(x).to_dense())
    msgs = [m for m in w if issubclass(m.category, ext.KeOpsUnavailableWarning)]
    assert len(msgs) == 1 and "no C++ compiler" in str(msgs[0].message)


def test_formula_failing_to_compile_falls_back_to_dense_once(failing_formulas):
    k = randomize(ext.PeriodicKernel().double())
    x = torch.randn(25, 2, dtype=torch.float64)
    want = gpytorch.kernels.PeriodicKernel().double()
    want.load_state_dict(k.state_dict())
    with (
        _fresh_state(),
        failing_formulas(lambda formula: True) as binder,
        gpytorch.settings.max_cholesky_size(0),
        warnings.catch_warnings(record=True) as w,
    ):
        warnings.simplefilter("always")
        for _ in range(3):
            torch.testing.assert_close(k(x).to_dense(), want(x).to_dense())
    assert binder.call_count == 1  # tried once, then dense mode for the process
    msgs = [m for m in w if issubclass(m.category, ext.KeOpsUnavailableWarning)]
    assert len(msgs) == 1 and "compilation" in str(msgs[0].message)


def test_an_error_outside_keops_is_raised_and_keeps_keops_on():
    k = randomize(ext.RBFKernel().double())
    x, rhs = torch.randn(25, 2, dtype=torch.float64), torch.randn(25, 1, dtype=torch.float64)
    broken = mock.patch.object(LinearOperator, "_bilinear_derivative", side_effect=RuntimeError("a shape error"))
    with _fresh_state(), broken, gpytorch.settings.max_cholesky_size(0), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="a shape error"):
            _gradients(k, x, rhs)
        assert _availability.keops_unavailable_reason() is None
    assert not [m for m in w if issubclass(m.category, ext.KeOpsUnavailableWarning)]


@pytest.fixture
def failing_formulas():
    """``with failing_formulas(predicate) as spy:`` KeOps fails to compile every formula the predicate selects,
    as KeOps reports it (from inside pykeops); the others compile as usual."""
    from pykeops.common import keops_io

    real = keops_io.keops_binder["cpp"]

    @contextlib.contextmanager
    def failing(predicate):
        def binder(*args, **kwargs):
            formula = args[5]  # (tagCPUGPU, tag1D2D, tagHostDevice, use_ranges, device_id, formula, ...)
            if predicate(formula):
                raise ValueError(f"[KeOps] Error : compilation of {formula[:40]}... failed")
            return real(*args, **kwargs)

        spy = mock.MagicMock(side_effect=binder)
        with mock.patch.dict(keops_io.keops_binder, {"cpp": spy}):
            yield spy

    return failing


@pytest.fixture
def gradient_formulas_fail_to_compile(failing_formulas):
    """KeOps compiles forward formulas as usual; every gradient formula fails to compile."""
    with failing_formulas(lambda formula: "Grad" in formula):
        yield


def _gradients(kernel, x, rhs):
    params = [p for _, p in kernel.named_parameters()]
    return torch.autograd.grad((kernel(x) @ rhs).sum(), params)


def test_upstream_gradient_formula_failing_to_compile_raises(upstream, gradient_formulas_fail_to_compile):
    k = randomize(gpytorch.kernels.keops.RBFKernel().double())
    x, rhs = torch.rand(40, 2, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    with upstream("keops-kernels"), gpytorch.settings.max_cholesky_size(0):
        with pytest.raises(ValueError, match="compilation"):
            _gradients(k, x, rhs)


@pytest.mark.parametrize("cls", [gpytorch.kernels.keops.RBFKernel, ext.RBFKernel], ids=["gpytorch-patched", "ext"])
def test_gradient_formula_failing_to_compile_falls_back_to_dense_once(cls, gradient_formulas_fail_to_compile):
    k = randomize(cls().double())
    dense = gpytorch.kernels.RBFKernel().double()
    dense.load_state_dict(k.state_dict())
    x, rhs = torch.rand(40, 2, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    want = _gradients(dense, x, rhs)
    with (
        _fresh_state(),
        gpytorch.settings.max_cholesky_size(0),
        warnings.catch_warnings(record=True) as w,
    ):
        warnings.simplefilter("always")
        for _ in range(2):
            for g, v in zip(_gradients(k, x, rhs), want):
                torch.testing.assert_close(g, v, rtol=1e-10, atol=1e-12)
        reasons = [m.keops_unavailable_reason() for m in _availability_modules()]
    # KeOps is off for the process, as after a forward failure
    assert any(r is not None and "Grad" in r for r in reasons)
    msgs = [m for m in w if m.category.__name__ == "KeOpsUnavailableWarning"]
    assert len(msgs) == 1 and "compilation" in str(msgs[0].message)


def test_a_formula_still_being_written_to_the_cache_is_retried_not_given_up():
    k = randomize(ext.RBFKernel().double())
    x = torch.randn(25, 2, dtype=torch.float64)
    rhs = torch.randn(25, 3, dtype=torch.float64)
    want = gpytorch.kernels.RBFKernel().double()
    want.load_state_dict(k.state_dict())
    real = _operator._keops_matmul
    outcomes = iter([ImportError("pykeops_cpp_0123.so: file too short")])

    def flaky(covar, rhs):
        for exc in outcomes:
            raise exc
        return real(covar, rhs)

    with (
        _fresh_state(),
        mock.patch.object(_operator, "_keops_matmul", side_effect=flaky) as spy,
        mock.patch.object(_cache.time, "sleep") as slept,
        gpytorch.settings.max_cholesky_size(0),
        warnings.catch_warnings(record=True) as w,
    ):
        warnings.simplefilter("always")
        got = k(x) @ rhs
        assert _availability.keops_unavailable_reason() is None  # KeOps stays on for the process
    torch.testing.assert_close(got, want(x).to_dense() @ rhs, rtol=1e-10, atol=1e-12)
    assert spy.call_count == 2 and slept.call_count == 1
    assert not [m for m in w if issubclass(m.category, ext.KeOpsUnavailableWarning)]


_INTERRUPTED_BUILD_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import pykeops
    pykeops.set_build_folder(sys.argv[1])
    import gpytorch, torch
    from gpytorch_ext.kernels import keops as ext
    torch.manual_seed(0)
    x, rhs = torch.rand(40, 2, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    k = ext.RBFKernel().double()
    want = gpytorch.kernels.RBFKernel().double()
    want.load_state_dict(k.state_dict())
    with warnings.catch_warnings(record=True) as caught, gpytorch.settings.max_cholesky_size(0):
        warnings.simplefilter("always")
        got = k(x) @ rhs
    print(json.dumps({
        "error": float((got - want(x).to_dense() @ rhs).abs().max()),
        "unavailable": any(issubclass(w.category, ext.KeOpsUnavailableWarning) for w in caught),
        "removed": [str(w.message) for w in caught if "truncated KeOps build" in str(w.message)],
    }))
    """
)


@pytest.mark.slow
def test_a_build_truncated_by_an_interrupted_compilation_is_rebuilt(tmp_path):
    """A compilation killed half-way leaves an empty module in KeOps' cache; it is rebuilt, KeOps stays on."""
    import json

    def run() -> dict:
        out = subprocess.run(
            [sys.executable, "-c", _INTERRUPTED_BUILD_SCRIPT, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run()  # compiles the formula into the empty build folder
    assert not first["unavailable"] and first["error"] < 1e-10 and not first["removed"]
    modules = list(tmp_path.rglob("pykeops_cpp_*.so"))
    assert modules
    for module in modules:
        module.write_bytes(b"")  # what a killed linker leaves behind
    second = run()
    assert not second["unavailable"] and second["error"] < 1e-10
    assert second["removed"]
    assert all(module.stat().st_size > 0 for module in modules)
