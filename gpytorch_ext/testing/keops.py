"""The KeOps battery: the tests every KeOps formula kernel family passes, on CPU and (when present) CUDA.

Two ``unittest`` mixins, each combined with :class:`unittest.TestCase` in a test module:

- :class:`KeOpsStructureBattery`: ``last_dim_is_batch=True`` (``... x D x N x M``) and GPyTorch's structure
  kernels (``AdditiveStructureKernel``, ``ProductStructureKernel``, ``GridInterpolationKernel``, ``GridKernel``)
  around the kernel, against the dense twin, with KeOps engaged and not, and one product structure that really
  runs KeOps (one reduction, no Lanczos roots). It needs nothing of the kernel class but a dense twin with the same
  parameter names, so it also checks GPyTorch's own KeOps classes; :class:`PatchedStructureBattery` adds the
  upstream defect, reproduced with a run-time patch reverted.
- :class:`KeOpsFamilyBattery` (which includes the structure battery): the diagonal (closed form, KeOps never
  touched), values against a matrix built by hand on the KeOps code path and in dense mode, batch shapes, ARD,
  ``active_dims``, float32 and float64, gradients, one product that really runs KeOps, and the drop-in contract.

A case states ``kernel_class``, ``dense_class`` (GPyTorch's dense namesake, the *dense twin*), ``kwargs``, ``ard``
and, for the family battery, ``reference(kernel, x1, x2)``: the kernel matrix built by hand from the kernel's
parameter values. ``device`` runs the case on another device; :func:`on_every_device` adds a CUDA copy of a case,
skipped where no GPU is present.

The KeOps code path is exercised without compiling by replacing KeOps' ``LazyTensor`` constructor with the
identity (GPyTorch's own ``BaseKeOpsTestCase`` does the same); the ``real_keops`` tests compile one formula each.
"""

from __future__ import annotations

import contextlib
import unittest
from collections.abc import Iterator
from typing import Any
from unittest import mock

import gpytorch
import pytest
import torch
from gpytorch.utils.grid import create_data_from_grid
from linear_operator.operators import LinearOperator

__all__ = [
    "KeOpsFamilyBattery",
    "KeOpsStructureBattery",
    "PatchedStructureBattery",
    "keops_forbidden",
    "keops_path_without_compiling",
    "keops_reductions",
    "on_every_device",
    "randomize",
    "real_keops",
    "reverted",
]

#: KeOps' LazyTensor constructor as GPyTorch's KeOps module (and the KeOps formula kernels) look it up.
LAZY = "gpytorch.kernels.keops.keops_kernel.LazyTensor"


@contextlib.contextmanager
def keops_forbidden() -> Iterator[mock.MagicMock]:
    """Any use of KeOps inside the block fails the test."""
    with mock.patch(LAZY, side_effect=AssertionError("KeOps was used")) as spy:
        yield spy
    assert not spy.called


@contextlib.contextmanager
def keops_path_without_compiling() -> Iterator[mock.MagicMock]:
    """The KeOps code path with plain tensors (GPyTorch's mixin trick); asserts the path was taken."""
    with gpytorch.settings.max_cholesky_size(0), mock.patch(LAZY, wraps=lambda x: x) as spy:
        yield spy
    assert spy.called, "the KeOps code path was not taken"


@contextlib.contextmanager
def real_keops() -> Iterator[mock.MagicMock]:
    """Real KeOps under max_cholesky_size(0), with a spy asserting the LazyTensor constructor ran."""
    from pykeops.torch import LazyTensor

    with gpytorch.settings.max_cholesky_size(0), mock.patch(LAZY, wraps=LazyTensor) as spy:
        yield spy
    assert spy.called, "KeOps was not used"


@contextlib.contextmanager
def keops_reductions() -> Iterator[mock.MagicMock]:
    """Count the KeOps reductions (``LazyTensor @ tensor``) run inside the block: ``spy.call_count``."""
    from pykeops.common.lazy_tensor import GenericLazyTensor

    original = GenericLazyTensor.__matmul__
    with mock.patch.object(GenericLazyTensor, "__matmul__", autospec=True, side_effect=original) as spy:
        yield spy


@contextlib.contextmanager
def reverted(patch_name: str) -> Iterator[None]:
    """Stock GPyTorch inside the block: the registered run-time patch ``patch_name`` reverted, then restored."""
    from .._registry import get

    patch = get(patch_name)
    was_applied = patch.is_applied
    patch.revert()
    try:
        yield
    finally:
        if was_applied:
            patch.apply()


def randomize(kernel: gpytorch.kernels.Kernel, seed: int = 0) -> gpytorch.kernels.Kernel:
    """Give every raw parameter a reproducible random value (so that ARD/batch entries differ)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in kernel.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype).mul(0.5))
    return kernel


def on_every_device(case: type) -> dict[str, type]:
    """``case`` and a copy of it on CUDA (``device = "cuda"``), skipped where no GPU is present.

    :return: ``{name: case, name + "CUDA": the CUDA copy}``, to put into a test module's namespace.
    """
    skip = unittest.skipUnless(torch.cuda.is_available(), "no CUDA device")
    cuda = skip(type(f"{case.__name__}CUDA", (case,), {"device": "cuda"}))
    return {case.__name__: case, cuda.__name__: cuda}


def _share_parameters(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Make ``target``'s parameters the very ``nn.Parameter`` objects of ``source`` (same names)."""
    for name, p in source.named_parameters():
        *path, attr = name.split(".")
        module = target
        for part in path:
            module = getattr(module, part)
        if attr not in module._parameters:
            raise AssertionError(f"the dense twin {type(target).__name__} has no parameter {name!r}")
        module._parameters[attr] = p


def _rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp_min(1e-300)).item()


class KeOpsStructureBattery:
    """``last_dim_is_batch`` and structure kernels around a KeOps kernel, against its dense twin.

    :cvar kernel_class: the KeOps kernel class under test.
    :cvar dense_class: its dense twin (same constructor arguments and parameter names).
    :cvar kwargs: constructor arguments.
    :cvar ard: whether ``ard_num_dims`` applies.
    :cvar dims: the input dimension ``D``.
    :cvar device: where tensors and kernels live.
    """

    kernel_class: type
    dense_class: type
    kwargs: dict[str, Any] = {}
    ard: bool = True
    dims: int = 3
    device: str = "cpu"

    # --- helpers -------------------------------------------------------------------------------------

    def make(self, dtype: torch.dtype = torch.float64, seed: int = 0, **kw: Any) -> gpytorch.kernels.Kernel:
        """The kernel under test with random parameter values, on :attr:`device`."""
        kwargs = {**self.kwargs, **kw}
        if not self.ard:  # the family's own setting (if any) wins
            kwargs.pop("ard_num_dims", None)
            kwargs.update({k: v for k, v in self.kwargs.items() if k == "ard_num_dims"})
        return randomize(self.kernel_class(**kwargs).to(dtype), seed).to(self.device)

    def twin(self, kernel: gpytorch.kernels.Kernel) -> gpytorch.kernels.Kernel:
        """The dense twin of ``kernel``, sharing its very parameters (gradients reach ``kernel``'s)."""
        kwargs = {**self.kwargs, "batch_shape": kernel.batch_shape}
        if kernel.ard_num_dims is not None:
            kwargs["ard_num_dims"] = kernel.ard_num_dims
        dense = self.dense_class(**kwargs)
        _share_parameters(kernel, dense)
        return dense.to(self.device)

    def data(self, *shape: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, generator=gen, dtype=dtype).to(self.device)

    def configurations(self) -> Iterator[tuple[torch.dtype, torch.Size, dict[str, Any]]]:
        for dtype in (torch.float32, torch.float64):
            for batch in (torch.Size([]), torch.Size([2])):
                yield dtype, batch, {}
                if self.ard:
                    yield dtype, batch, {"ard_num_dims": self.dims}

    def tol(self, dtype: torch.dtype) -> dict[str, float]:
        return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}

    def reference_by_dimension(
        self, kernel: gpytorch.kernels.Kernel, x1: torch.Tensor, x2: torch.Tensor
    ) -> torch.Tensor:
        """The ``... x D x N x M`` matrix of ``kernel`` with ``last_dim_is_batch=True``: the dense twin's."""
        with gpytorch.settings.lazily_evaluate_kernels(False):
            return self.twin(kernel)(x1, x2, last_dim_is_batch=True).to_dense()

    def _float64_cases(self) -> Iterator[tuple[torch.Size, dict[str, Any]]]:
        for dtype, batch, kw in self.configurations():
            if dtype == torch.float64:
                yield batch, kw

    @staticmethod
    def _modes() -> Iterator[contextlib.AbstractContextManager]:
        """KeOps engaged (its code path, not compiled), and dense mode (KeOps never touched)."""
        yield keops_path_without_compiling()
        yield keops_forbidden()

    # --- last_dim_is_batch ---------------------------------------------------------------------------

    def test_structure_last_dim_is_batch_values(self) -> None:
        d = self.dims
        for batch, kw in self._float64_cases():
            kernel = self.make(batch_shape=batch, **kw)
            x1, x2 = self.data(*batch, 9, d), self.data(*batch, 7, d, seed=2)
            x3, rhs = self.data(*batch, 9, d, seed=3), self.data(*batch, d, 7, 2, seed=4)
            want = self.reference_by_dimension(kernel, x1, x2)
            want_11 = self.reference_by_dimension(kernel, x1, x1)
            want_13 = self.reference_by_dimension(kernel, x1, x3)
            assert want.shape == (*batch, d, 9, 7)
            for mode in self._modes():
                with mode, torch.no_grad():
                    op = kernel(x1, x2, last_dim_is_batch=True)
                    assert op.shape == (*batch, d, 9, 7)
                    torch.testing.assert_close(op.to_dense(), want, **self.tol(torch.float64))
                    torch.testing.assert_close(op @ rhs, want @ rhs, **self.tol(torch.float64))
                    diag = kernel(x1, diag=True, last_dim_is_batch=True)
                    torch.testing.assert_close(diag, want_11.diagonal(dim1=-2, dim2=-1), **self.tol(torch.float64))
                    diag = kernel(x1, x3, diag=True, last_dim_is_batch=True)
                    torch.testing.assert_close(diag, want_13.diagonal(dim1=-2, dim2=-1), **self.tol(torch.float64))
                    torch.testing.assert_close(
                        kernel(x1, last_dim_is_batch=True).diagonal(dim1=-2, dim2=-1),
                        want_11.diagonal(dim1=-2, dim2=-1),
                        **self.tol(torch.float64),
                    )

    def test_structure_last_dim_is_batch_gradients(self) -> None:
        kw = {"ard_num_dims": self.dims} if self.ard else {}
        kernel = self.make(**kw)
        params = [p for _, p in kernel.named_parameters()]
        x1, x2, rhs = self.data(8, self.dims), self.data(6, self.dims, seed=2), self.data(self.dims, 6, 1, seed=3)
        want = torch.autograd.grad((self.reference_by_dimension(kernel, x1, x2) @ rhs).sum(), params)
        want_diag = torch.autograd.grad(
            self.reference_by_dimension(kernel, x1, x1).diagonal(dim1=-2, dim2=-1).pow(2).sum(),
            params,
            allow_unused=True,
        )
        for mode in self._modes():
            with mode:
                got = torch.autograd.grad((kernel(x1, x2, last_dim_is_batch=True) @ rhs).sum(), params)
                got_diag = torch.autograd.grad(
                    kernel(x1, diag=True, last_dim_is_batch=True).pow(2).sum(), params, allow_unused=True
                )
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w)
            for g, w in zip(got_diag, want_diag):
                torch.testing.assert_close(g if g is not None else torch.zeros_like(w), w if w is not None else 0 * g)

    # --- structure kernels ---------------------------------------------------------------------------

    def structures(self, kernel: gpytorch.kernels.Kernel) -> Iterator[tuple[str, Any, Any]]:
        """``(name, structure kernel around kernel, the same around its dense twin)``."""
        d, kernels = self.dims, (kernel, self.twin(kernel))
        structures = {
            "AdditiveStructureKernel": lambda k: gpytorch.kernels.AdditiveStructureKernel(k, num_dims=d),
            "ProductStructureKernel": lambda k: gpytorch.kernels.ProductStructureKernel(k, num_dims=d),
        }
        if kernel.is_stationary:  # GridKernel's requirement
            structures["GridKernel"] = lambda k: gpytorch.kernels.GridKernel(k, grid=self._grid())
            structures["GridInterpolationKernel"] = lambda k: gpytorch.kernels.GridInterpolationKernel(
                k, grid_size=5, num_dims=d
            )
        for name, wrap in structures.items():
            yield name, *(wrap(k).to(device=self.device, dtype=torch.float64) for k in kernels)

    def _grid(self) -> torch.Tensor:
        return torch.linspace(-2, 2, 5, dtype=torch.float64, device=self.device).unsqueeze(-1).repeat(1, self.dims)

    def structure_reference(self, name: str, kernel: Any, dense: Any, x: torch.Tensor) -> torch.Tensor:
        """The structure kernel's matrix: the dense twin's per-dimension matrices summed or multiplied by hand
        (GPyTorch's own dense structure kernels are wrong for some kernels), or the dense twin's grid kernel."""
        if name == "AdditiveStructureKernel":
            return self.reference_by_dimension(kernel.base_kernel, x, x).sum(-3)
        if name == "ProductStructureKernel":
            return self.reference_by_dimension(kernel.base_kernel, x, x).prod(-3)
        return dense(x).to_dense()

    def _structure_inputs(self, name: str) -> torch.Tensor:
        if name == "GridKernel":  # GridKernel computes its matrix on its own grid only
            return create_data_from_grid(self._grid())
        return self.data(40, self.dims, seed=5)

    def test_structure_kernels_equal_their_dense_twins(self) -> None:
        kernel = self.make(**({"ard_num_dims": self.dims} if self.ard else {}))
        for name, ours, dense in self.structures(kernel):
            x = self._structure_inputs(name)
            rhs = self.data(x.size(-2), 2, seed=6)
            with torch.no_grad():
                want = self.structure_reference(name, ours, dense, x)
            for mode in self._modes():
                with mode, torch.no_grad():
                    op = ours(x)
                    assert _rel_error(op @ rhs, want @ rhs) <= 1e-8, name
                    assert _rel_error(op.to_dense(), want) <= 1e-8, name
                    if name != "GridKernel":  # GridKernel has no diagonal mode (neither around a dense kernel)
                        diag = op.diagonal(dim1=-2, dim2=-1)
                        assert _rel_error(diag, want.diagonal(dim1=-2, dim2=-1)) <= 1e-8, name

    def test_structure_kernel_gradients(self) -> None:
        kernel = self.make(**({"ard_num_dims": self.dims} if self.ard else {}))
        params = [p for _, p in kernel.named_parameters()]
        x, rhs = self.data(30, self.dims, seed=5), self.data(30, 1, seed=6)
        for name, ours, dense in self.structures(kernel):
            if name == "GridKernel":
                continue
            want = torch.autograd.grad((self.structure_reference(name, ours, dense, x) @ rhs).sum(), params)
            for mode in self._modes():
                with mode:
                    got = torch.autograd.grad((ours(x) @ rhs).sum(), params)
                for g, w in zip(got, want):
                    torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10, msg=name)

    def test_structure_real_keops_product_is_one_reduction(self) -> None:
        # one compiled formula per family: float64, a product over the input dimensions, one right-hand side
        kernel = self.make(**({"ard_num_dims": self.dims} if self.ard else {}))
        structure = gpytorch.kernels.ProductStructureKernel(kernel, num_dims=self.dims)
        x, rhs = self.data(60, self.dims, seed=5), self.data(60, 1, seed=6)
        with torch.no_grad():
            want = self.reference_by_dimension(kernel, x, x).prod(-3) @ rhs
        roots = mock.patch.object(LinearOperator, "root_decomposition", side_effect=AssertionError("Lanczos roots"))
        with real_keops(), keops_reductions() as reductions, roots, torch.no_grad():
            got = structure(x) @ rhs
        assert reductions.call_count == 1
        assert _rel_error(got, want) <= 1e-10


class PatchedStructureBattery(KeOpsStructureBattery):
    """:class:`KeOpsStructureBattery` for a class that a run-time patch repairs, with the upstream defect.

    :cvar patch_name: the registered patch that repairs :attr:`kernel_class`.
    """

    patch_name: str

    @pytest.fixture(autouse=True)
    def _implementation(self, request: pytest.FixtureRequest) -> None:
        self._impl = request.config.getoption("--impl", default="monkeypatch")

    def test_structure_defect_with_the_patch_reverted(self) -> None:
        if getattr(self, "_impl", "monkeypatch") == "source":  # set by pytest; a plain unittest run has no source
            pytest.skip("no stock GPyTorch under --impl=source")
        kernel = self.make()
        x = self.data(20, self.dims, seed=5)
        failures = []
        with reverted(self.patch_name), gpytorch.settings.debug(True), torch.no_grad():
            try:
                shape = kernel(x, last_dim_is_batch=True).to_dense().shape
                failures += [] if shape == (self.dims, 20, 20) else ["last_dim_is_batch"]
            except Exception:
                failures.append("last_dim_is_batch")
            for name, ours, dense in self.structures(kernel):
                xs = self._structure_inputs(name)
                try:
                    wrong = _rel_error(ours(xs).to_dense(), dense(xs).to_dense()) > 1e-8
                except Exception:
                    wrong = True
                failures += [name] if wrong else []
        expected = ["last_dim_is_batch", *(name for name, _, _ in self.structures(kernel))]
        assert failures == expected


class KeOpsFamilyBattery(KeOpsStructureBattery):
    """Everything a KeOps formula family (a drop-in of ``dense_class``) passes, structure kernels included.

    :cvar reference: ``reference(kernel, x1, x2)``, the ``... x N x M`` matrix built by hand.
    """

    def reference(self, kernel: gpytorch.kernels.Kernel, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def test_battery_diag_closed_form_never_keops(self) -> None:
        for dtype, batch, kw in self.configurations():
            kernel = self.make(dtype, batch_shape=batch, **kw)
            x1, x2 = self.data(*batch, 9, self.dims, dtype=dtype), self.data(*batch, 9, self.dims, dtype=dtype, seed=2)
            for size in (0, 1, 800):
                with gpytorch.settings.max_cholesky_size(size), keops_forbidden():
                    for a, b in ((x1, x1), (x1, x2)):
                        want = self.reference(kernel, a, b).diagonal(dim1=-2, dim2=-1)
                        torch.testing.assert_close(kernel(a, b, diag=True), want, **self.tol(dtype))
                        torch.testing.assert_close(kernel(a, b).diagonal(dim1=-2, dim2=-1), want, **self.tol(dtype))
                    torch.testing.assert_close(kernel(x1, diag=True), kernel(x1, x1).diagonal(), **self.tol(dtype))
            with gpytorch.settings.use_keops(False), keops_forbidden():
                torch.testing.assert_close(
                    kernel(x1, diag=True), self.reference(kernel, x1, x1).diagonal(dim1=-2, dim2=-1), **self.tol(dtype)
                )

    def test_battery_diag_of_evaluated_operator(self) -> None:
        kernel = self.make()
        x = self.data(11, self.dims)
        with gpytorch.settings.max_cholesky_size(0), keops_forbidden():
            op = kernel(x).evaluate_kernel()
            torch.testing.assert_close(op.diagonal(), self.reference(kernel, x, x).diagonal())
            idx = torch.tensor([0, 3, 5], device=self.device)
            torch.testing.assert_close(op[idx, idx], self.reference(kernel, x, x)[idx, idx])

    def test_battery_values_on_keops_path(self) -> None:
        for dtype, batch, kw in self.configurations():
            kernel = self.make(dtype, batch_shape=batch, **kw)
            x1, x2 = self.data(*batch, 10, self.dims, dtype=dtype), self.data(*batch, 7, self.dims, dtype=dtype, seed=2)
            rhs = self.data(*batch, 7, 2, dtype=dtype, seed=3)
            with keops_path_without_compiling():
                torch.testing.assert_close(kernel(x1, x2).to_dense(), self.reference(kernel, x1, x2), **self.tol(dtype))
                torch.testing.assert_close(kernel(x1).to_dense(), self.reference(kernel, x1, x1), **self.tol(dtype))
                torch.testing.assert_close(
                    kernel(x1, x2) @ rhs, self.reference(kernel, x1, x2) @ rhs, **self.tol(dtype)
                )

    def test_battery_dense_mode_matches_keops_path(self) -> None:
        kernel = self.make(ard_num_dims=self.dims)
        x1, x2 = self.data(10, self.dims), self.data(6, self.dims, seed=2)
        with keops_forbidden():
            dense = kernel(x1, x2).to_dense()
        with keops_path_without_compiling():
            keops_path = kernel(x1, x2).to_dense()
        torch.testing.assert_close(dense, keops_path, rtol=1e-12, atol=1e-14)

    def test_battery_active_dims(self) -> None:
        kernel = self.make(active_dims=[0, 2, 3])
        x1, x2 = self.data(8, 5), self.data(8, 5, seed=2)
        sub1, sub2 = x1[..., [0, 2, 3]], x2[..., [0, 2, 3]]
        with keops_path_without_compiling():
            torch.testing.assert_close(kernel(x1, x2).to_dense(), self.reference(kernel, sub1, sub2))
        with gpytorch.settings.max_cholesky_size(0), keops_forbidden():
            torch.testing.assert_close(kernel(x1, x2, diag=True), self.reference(kernel, sub1, sub2).diagonal())

    def test_battery_gradients(self) -> None:
        kernel = self.make(ard_num_dims=self.dims)
        params = [p for _, p in kernel.named_parameters()]
        x1, x2 = self.data(8, self.dims), self.data(6, self.dims, seed=2)
        rhs = self.data(6, 1, seed=3)
        want = torch.autograd.grad((self.reference(kernel, x1, x2) @ rhs).sum(), params)
        with keops_path_without_compiling():
            got = torch.autograd.grad((kernel(x1, x2) @ rhs).sum(), params)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
        # the diagonal, x1 is x2 and x1 != x2 (KeOps never touched)
        for a, b in ((x1, x1), (x1[:6], x2)):
            want = torch.autograd.grad(self.reference(kernel, a, b).diagonal().pow(2).sum(), params, allow_unused=True)
            with gpytorch.settings.max_cholesky_size(0), keops_forbidden():
                got = torch.autograd.grad(kernel(a, b, diag=True).pow(2).sum(), params, allow_unused=True)
            for g, w in zip(got, want):
                if w is None:
                    assert g is None or torch.all(g == 0)
                else:
                    torch.testing.assert_close(g, w)

    def test_battery_real_keops_product(self) -> None:
        from pykeops.common.lazy_tensor import GenericLazyTensor

        # one compiled formula per family: float64, x1 != x2, a single right-hand side
        kernel = self.make(ard_num_dims=self.dims)
        x1, x2, rhs = self.data(40, self.dims), self.data(30, self.dims, seed=2), self.data(30, 1, seed=3)
        with real_keops(), torch.no_grad():
            op = kernel(x1, x2).evaluate_kernel()
            assert isinstance(op.covar_func(op.x1, op.x2, **op.tensor_params), GenericLazyTensor)
            got = op @ rhs
        want = self.reference(kernel, x1, x2) @ rhs
        assert _rel_error(got, want) <= 1e-10

    def test_battery_drop_in(self) -> None:
        ours, theirs = self.kernel_class(**self.kwargs), self.dense_class(**self.kwargs)
        assert isinstance(ours, self.dense_class)
        assert isinstance(ours, gpytorch.kernels.keops.KeOpsKernel)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        randomize(theirs, seed=5)
        ours.load_state_dict(theirs.state_dict())
        for (name, p), (name2, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert name == name2 and torch.equal(p, q)
        for name, constraint in theirs.named_constraints():
            assert type(dict(ours.named_constraints())[name]) is type(constraint)
