"""The algebra of KeOps formula operators: sums, products, scalings and batch products are formula operators.

References: the dense matrices of GPyTorch's dense kernels with the same parameters, combined with torch.
"""

from __future__ import annotations

import gpytorch
import pytest
import torch
from linear_operator.operators import DenseLinearOperator, SumBatchLinearOperator, SumLinearOperator

from gpytorch_ext.kernels import keops as ext
from gpytorch_ext.kernels.keops import KeOpsFormulaOperator
from gpytorch_ext.testing.keops import keops_forbidden, keops_path_without_compiling, randomize


def _data(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _pair(ours, dense, seed, **kw):
    k = randomize(ours(**kw).double(), seed=seed)
    d = dense(**kw).double()
    d.load_state_dict(k.state_dict())
    return k, d


@pytest.fixture(params=["keops-path", "dense-mode"])
def mode(request):
    return keops_path_without_compiling if request.param == "keops-path" else keops_forbidden


def _operators(x1, x2):
    rbf, rbf_dense = _pair(ext.RBFKernel, gpytorch.kernels.RBFKernel, 1, ard_num_dims=2)
    per, per_dense = _pair(ext.PeriodicKernel, gpytorch.kernels.PeriodicKernel, 2, batch_shape=torch.Size([3]))
    with gpytorch.settings.lazily_evaluate_kernels(False):
        return (rbf(x1, x2), per(x1, x2)), (rbf_dense(x1, x2).to_dense(), per_dense(x1, x2).to_dense())


@pytest.mark.parametrize("combine", ["sum", "product", "scale", "batch-scale"])
def test_combinations_are_formula_operators(mode, combine):
    x1, x2, rhs = _data(9, 2), _data(9, 2, seed=1), _data(9, 2, seed=2)
    scale = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    with mode():
        (a, b), (da, db) = _operators(x1, x2)  # a: 9 x 9, b: 3 x 9 x 9 (x1 != x2)
        op, want = {
            "sum": lambda: (a + b, da + db),
            "product": lambda: (a * b, da * db),
            "scale": lambda: (b * scale.view(3, 1, 1), db * scale.view(3, 1, 1)),
            "batch-scale": lambda: (a.mul(scale.view(3, 1, 1)), da * scale.view(3, 1, 1)),  # a batch of constants
        }[combine]()
        assert isinstance(op, KeOpsFormulaOperator) and op.shape == want.shape
        torch.testing.assert_close(op.to_dense(), want)
        torch.testing.assert_close(op @ rhs, want @ rhs)
        torch.testing.assert_close(op.diagonal(dim1=-2, dim2=-1), want.diagonal(dim1=-2, dim2=-1))


def test_products_over_a_batch_dimension(mode):
    x1, x2, rhs = _data(3, 9, 2), _data(3, 9, 2, seed=1), _data(9, 1, seed=2)
    with mode():
        (_, b), (_, db) = _operators(x1, x2)
        prod, total = b.prod(dim=-3), b.sum(dim=-3)
        assert isinstance(prod, KeOpsFormulaOperator)
        assert isinstance(total, SumBatchLinearOperator)  # exact already: one batched reduction
        torch.testing.assert_close(prod @ rhs, db.prod(-3) @ rhs)
        torch.testing.assert_close(total @ rhs, db.sum(-3) @ rhs)
        torch.testing.assert_close(prod.diagonal(dim1=-2, dim2=-1), db.prod(-3).diagonal(dim1=-2, dim2=-1))


def test_gradients_through_a_fused_product_reach_both_kernels():
    x, rhs = _data(9, 2), _data(9, 1, seed=2)
    rbf, rbf_dense = _pair(ext.RBFKernel, gpytorch.kernels.RBFKernel, 1, ard_num_dims=2)
    per, per_dense = _pair(ext.PeriodicKernel, gpytorch.kernels.PeriodicKernel, 2)
    params = [*rbf.parameters(), *per.parameters()]
    want = torch.autograd.grad(
        ((rbf_dense(x).to_dense() * per_dense(x).to_dense()) @ rhs).sum(),
        [
            *rbf_dense.parameters(),
            *per_dense.parameters(),
        ],
    )
    with keops_path_without_compiling(), gpytorch.settings.lazily_evaluate_kernels(False):
        got = torch.autograd.grad(((rbf(x) * per(x)) @ rhs).sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_other_operators_keep_linear_operator_behaviour():
    x, rhs = _data(9, 2), _data(9, 1, seed=2)
    rbf, rbf_dense = _pair(ext.RBFKernel, gpytorch.kernels.RBFKernel, 1)
    dense = DenseLinearOperator(_data(9, 9, seed=3))
    with keops_path_without_compiling(), gpytorch.settings.lazily_evaluate_kernels(False):
        op = rbf(x) + dense
        assert isinstance(op, SumLinearOperator)
        torch.testing.assert_close(op @ rhs, (rbf_dense(x).to_dense() + dense.tensor) @ rhs)
        # operators of different sizes are left to linear_operator, which reports the mismatch
        assert isinstance(rbf(x) + rbf(x[:5]), SumLinearOperator)
