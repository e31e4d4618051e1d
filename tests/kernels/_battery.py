"""The shared battery every KeOps kernel family passes.

A family test subclasses :class:`KeOpsFamilyBattery` (and ``unittest.TestCase``) and states:

- ``kernel_class``: our class under test; ``dense_class``: GPyTorch's dense namesake; ``kwargs``: constructor
  arguments; ``ard``: whether ``ard_num_dims`` applies;
- ``reference(kernel, x1, x2)``: the kernel matrix ``... x N x M`` built by hand from the kernel's parameter
  values (independent of our formulas).

The battery checks the diagonal (closed form, KeOps never touched), values against the hand-built matrix on
the KeOps code path (LazyTensor constructor replaced by the identity, as GPyTorch's own mixin does) and in
dense mode, batch shapes / ARD / active_dims, float32 and float64, gradients, and one product that really
runs KeOps (compiled formula, asserted through a spy on the LazyTensor constructor).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import gpytorch
import torch
from pykeops.common.lazy_tensor import GenericLazyTensor
from pykeops.torch import LazyTensor

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
    with gpytorch.settings.max_cholesky_size(0), mock.patch(LAZY, wraps=LazyTensor) as spy:
        yield spy
    assert spy.called, "KeOps was not used"


def randomize(kernel: gpytorch.kernels.Kernel, seed: int = 0) -> gpytorch.kernels.Kernel:
    """Give every raw parameter a reproducible random value (so that ARD/batch entries differ)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in kernel.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype).mul(0.5))
    return kernel


class KeOpsFamilyBattery:
    kernel_class: type
    dense_class: type
    kwargs: dict[str, Any] = {}
    ard: bool = True
    dims: int = 3

    def reference(self, kernel: gpytorch.kernels.Kernel, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------------------

    def make(self, dtype: torch.dtype = torch.float64, seed: int = 0, **kw: Any) -> gpytorch.kernels.Kernel:
        kwargs = {**self.kwargs, **kw}
        if not self.ard:  # the family's own setting (if any) wins
            kwargs.pop("ard_num_dims", None)
            kwargs.update({k: v for k, v in self.kwargs.items() if k == "ard_num_dims"})
        return randomize(self.kernel_class(**kwargs).to(dtype), seed)

    def data(self, *shape: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)

    def configurations(self) -> Iterator[tuple[torch.dtype, torch.Size, dict[str, Any]]]:
        for dtype in (torch.float32, torch.float64):
            for batch in (torch.Size([]), torch.Size([2])):
                yield dtype, batch, {}
                if self.ard:
                    yield dtype, batch, {"ard_num_dims": self.dims}

    def tol(self, dtype: torch.dtype) -> dict[str, float]:
        return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}

    # --- the battery ---------------------------------------------------------------------------------

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
            idx = torch.tensor([0, 3, 5])
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
        # one compiled formula per family: float64, x1 != x2, a single right-hand side
        kernel = self.make(ard_num_dims=self.dims)
        x1, x2, rhs = self.data(40, self.dims), self.data(30, self.dims, seed=2), self.data(30, 1, seed=3)
        with real_keops(), torch.no_grad():
            op = kernel(x1, x2).evaluate_kernel()
            assert isinstance(op.covar_func(op.x1, op.x2, **op.tensor_params), GenericLazyTensor)
            got = op @ rhs
        want = self.reference(kernel, x1, x2) @ rhs
        assert ((got - want).norm() / want.norm()).item() <= 1e-10

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
