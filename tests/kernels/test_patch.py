"""The ``keops-kernels`` patch on GPyTorch's own KeOps kernels, and fused sums/products/scalings.

References are GPyTorch's dense kernels (``gpytorch.kernels.RBFKernel`` ...) with the same state dict, whose
matrices are computed by plain torch.
"""

from __future__ import annotations

from unittest import mock

import gpytorch
import pytest
import torch
from gpytorch.kernels import keops as gk
from linear_operator.operators import LinearOperator, MulLinearOperator

from gpytorch_ext.kernels import keops as ext
from gpytorch_ext.kernels.keops import KeOpsFormulaOperator
from gpytorch_ext.testing import PatchTestCase
from gpytorch_ext.testing.keops import keops_forbidden, keops_path_without_compiling, randomize, real_keops


def _formula_operators() -> tuple[type, ...]:
    """Our formula operator, and GPyTorch's own where its source carries the repair (``--impl=source``)."""
    try:
        from gpytorch.kernels.keops._operator import KeOpsFormulaOperator as SourceOperator
    except ImportError:
        return (KeOpsFormulaOperator,)
    return (KeOpsFormulaOperator, SourceOperator)


FORMULA_OPERATORS = _formula_operators()

PAIRS = {
    "rbf": (gk.RBFKernel, gpytorch.kernels.RBFKernel, {}),
    "matern15": (gk.MaternKernel, gpytorch.kernels.MaternKernel, {"nu": 1.5}),
    "periodic": (gk.PeriodicKernel, gpytorch.kernels.PeriodicKernel, {}),
}


def _pair(name, **kw):
    keops_cls, dense_cls, kwargs = PAIRS[name]
    k = randomize(keops_cls(**kwargs, **kw).double())
    d = dense_cls(**kwargs, **kw).double()
    d.load_state_dict(k.state_dict())
    return k, d


def _data(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("size", [0, 1])
def test_upstream_diag_fails_under_small_max_cholesky_size(upstream, name, size):
    k, _ = _pair(name)
    x = _data(20, 2)
    with upstream("keops-kernels"), gpytorch.settings.max_cholesky_size(size):
        with pytest.raises(TypeError, match="LazyTensor"):
            k(x, diag=True)
        with pytest.raises(TypeError, match="LazyTensor"):
            k(x).diagonal()


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("batch", [(), (3,)])
def test_patched_diag_is_closed_form(name, batch):
    k, d = _pair(name, batch_shape=torch.Size(batch), ard_num_dims=2)
    x1, x2 = _data(*batch, 20, 2), _data(*batch, 20, 2, seed=1)
    for size in (0, 1, 800):
        with gpytorch.settings.max_cholesky_size(size), keops_forbidden():
            for a, b in ((x1, x1), (x1, x2)):
                want = d(a, b).to_dense().diagonal(dim1=-2, dim2=-1)
                torch.testing.assert_close(k(a, b, diag=True), want)
                torch.testing.assert_close(k(a, b).diagonal(dim1=-2, dim2=-1), want)


def _wrappers(k, d, k2, d2):
    yield gpytorch.kernels.ScaleKernel(k), gpytorch.kernels.ScaleKernel(d)
    yield k + k2, d + d2
    yield k * k2, d * d2
    yield gpytorch.kernels.ScaleKernel(k * k2) + k2, gpytorch.kernels.ScaleKernel(d * d2) + d2


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_patched_diag_of_scale_additive_product(name):
    k, d = _pair(name)
    k2, d2 = _pair("periodic", active_dims=[1])
    x1, x2 = _data(15, 2), _data(15, 2, seed=1)
    for kk, dd in _wrappers(k, d, k2, d2):
        kk.double(), dd.double()
        randomize(dd, seed=3)
        kk.load_state_dict(dd.state_dict())
        with gpytorch.settings.max_cholesky_size(0), keops_forbidden():
            for a, b in ((x1, x1), (x1, x2)):
                want = dd(a, b).to_dense().diagonal()
                torch.testing.assert_close(kk(a, b, diag=True), want)
                torch.testing.assert_close(kk(a, b).diagonal(), want)
                # gradients of the diagonal reach the hyperparameters
                grads = torch.autograd.grad(kk(a, b, diag=True).sum(), list(kk.parameters()), allow_unused=True)
                wants = torch.autograd.grad(dd(a, b, diag=True).sum(), list(dd.parameters()), allow_unused=True)
                for g, w in zip(grads, wants):
                    torch.testing.assert_close(g if g is not None else 0 * w, w if w is not None else 0 * g)


def _composite(keops_ns, dense_ns=gpytorch.kernels):
    """ScaleKernel(RBF * Periodic) + Matern(active_dims=[1]), from a namespace of KeOps kernel classes."""
    k = keops_ns.ScaleKernel(keops_ns.RBFKernel() * keops_ns.PeriodicKernel()) + keops_ns.MaternKernel(
        nu=1.5, active_dims=[1]
    )
    return k


class _Keops:  # GPyTorch's KeOps classes, with GPyTorch's ScaleKernel
    RBFKernel, PeriodicKernel, MaternKernel = gk.RBFKernel, gk.PeriodicKernel, gk.MaternKernel
    ScaleKernel = gpytorch.kernels.ScaleKernel


@pytest.mark.parametrize("namespace", [_Keops, ext], ids=["gpytorch-patched", "gpytorch_ext"])
def test_fused_composite_is_one_exact_keops_reduction(namespace):
    kernel = _composite(namespace).double()
    dense = _composite(gpytorch.kernels).double()
    randomize(dense, seed=4)
    kernel.load_state_dict(dense.state_dict())
    x1, x2 = _data(60, 2), _data(45, 2, seed=1)
    roots = mock.patch.object(LinearOperator, "root_decomposition", side_effect=AssertionError("root taken"))
    with real_keops(), roots, torch.no_grad():
        for a, b in ((x1, x1), (x1, x2), (x2, x1)):
            op = kernel(a, b).evaluate_kernel()
            assert isinstance(op, FORMULA_OPERATORS) and not isinstance(op, MulLinearOperator)
            rhs = _data(b.size(-2), 1, seed=2)
            want = dense(a, b).to_dense() @ rhs
            assert ((op @ rhs - want).norm() / want.norm()).item() <= 1e-10


def test_upstream_product_uses_lanczos_roots_and_is_approximate(upstream):
    k = (gk.RBFKernel() * gk.PeriodicKernel()).double()
    d = (gpytorch.kernels.RBFKernel() * gpytorch.kernels.PeriodicKernel()).double()
    d.load_state_dict(k.state_dict())
    x, rhs = _data(300, 2), _data(300, 1, seed=1)
    want = d(x).to_dense() @ rhs
    # use_keops(False): the same MulLinearOperator path, without compiling upstream's KeOps formulas
    settings = (gpytorch.settings.max_cholesky_size(0), gpytorch.settings.use_keops(False), torch.no_grad())
    with upstream("keops-kernels"), settings[0], settings[1], settings[2]:
        torch.manual_seed(0)
        op = k(x).evaluate_kernel()
        assert isinstance(op, MulLinearOperator)
        assert ((op @ rhs - want).norm() / want.norm()).item() > 1e-6
    with settings[0], settings[1], settings[2]:
        op = k(x).evaluate_kernel()
        assert isinstance(op, KeOpsFormulaOperator)
        assert ((op @ rhs - want).norm() / want.norm()).item() <= 1e-10


def test_our_classes_fuse_without_the_patch(upstream):
    k = ext.ScaleKernel(ext.RBFKernel() * ext.PeriodicKernel()).double()
    assert isinstance(k.base_kernel, ext.ProductKernel)
    x = _data(20, 2)
    with upstream("keops-kernels"), keops_path_without_compiling():
        assert isinstance(k(x).evaluate_kernel(), KeOpsFormulaOperator)
        assert (k(x) @ torch.ones(20, 1, dtype=torch.float64)).shape == (20, 1)
        assert k(x, diag=True).shape == (20,)


def test_unfusable_composites_keep_gpytorch_behaviour():
    k, d = _pair("rbf")
    lin = gpytorch.kernels.LinearKernel().double()
    x = _data(12, 2)
    composite, reference = k * lin, d * lin
    op = composite(x).evaluate_kernel()
    assert not isinstance(op, FORMULA_OPERATORS)
    torch.testing.assert_close(op.to_dense(), reference(x).to_dense())
    torch.testing.assert_close(composite(x, diag=True), reference(x).to_dense().diagonal())


class TestKeOpsKernelsPatch(PatchTestCase):
    patch_name = "keops-kernels"
    upstream_summary = "diag at max_cholesky_size(0): TypeError"
    patched_summary = "diag at max_cholesky_size(0): ok"


def test_patch_keeps_public_interface():
    k = gk.MaternKernel(nu=0.5, ard_num_dims=2, lengthscale_prior=gpytorch.priors.GammaPrior(2.0, 1.0))
    assert type(k) is gk.MaternKernel and isinstance(k, gk.KeOpsKernel)
    assert [p[0] for p in k.named_priors()] == ["lengthscale_prior"]
    dense = gpytorch.kernels.MaternKernel(
        nu=0.5, ard_num_dims=2, lengthscale_prior=gpytorch.priors.GammaPrior(2.0, 1.0)
    )
    assert k.state_dict().keys() == dense.state_dict().keys()


def test_diag_of_unequal_lengths_is_a_clear_error():
    k, _ = _pair("rbf")
    with pytest.raises(ValueError, match="same number of rows"):
        k(_data(5, 2), _data(4, 2), diag=True)
