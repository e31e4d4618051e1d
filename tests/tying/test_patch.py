"""The ``shared-parameters`` patch: GPyTorch's hyperparameters() yields a shared parameter once."""

from __future__ import annotations

import gpytorch
import pytest
import torch

from gpytorch_ext.testing import PatchTestCase

from ._models import ApproxGP, data, rbf


class TestSharedParameters(PatchTestCase):
    patch_name = "shared-parameters"


def _hand_tied():
    a, b = rbf(), rbf()
    b.raw_lengthscale = a.raw_lengthscale
    return a + b, a.raw_lengthscale


def test_optimizer_on_hyperparameters_steps_a_shared_parameter_once(upstream):
    kernel, shared = _hand_tied()
    with upstream("shared-parameters"):
        stock = [n for n, _ in kernel.named_hyperparameters()]
    assert stock == ["kernels.0.raw_lengthscale", "kernels.1.raw_lengthscale"]  # one parameter, twice
    assert [n for n, _ in kernel.named_hyperparameters()] == ["kernels.0.raw_lengthscale"]
    before = shared.detach().clone()
    shared.grad = torch.ones_like(shared)
    torch.optim.SGD(kernel.hyperparameters(), lr=0.1).step()
    torch.testing.assert_close(shared.detach(), before - 0.1)  # one step of the gradient


def test_variational_parameters_once(upstream):
    x, _, _ = data(8)
    model = ApproxGP(x[:4].clone(), rbf())
    first = model.variational_strategy._variational_distribution
    second = gpytorch.variational.CholeskyVariationalDistribution(4)
    second.variational_mean = first.variational_mean  # two distributions holding one mean
    model.covar_module.second = second
    with upstream("shared-parameters"):
        assert len(list(model.variational_parameters())) == 4
    variational = list(model.variational_parameters())
    assert len(variational) == len({id(p) for p in variational}) == 3


@pytest.mark.parametrize("kind", ["hyper", "variational"])
def test_order_and_names_unchanged_without_sharing(kind, upstream):
    x, _, _ = data(8)
    model = ApproxGP(x[:4].clone(), gpytorch.kernels.ScaleKernel(rbf()))
    method = "named_hyperparameters" if kind == "hyper" else "named_variational_parameters"
    with upstream("shared-parameters"):
        stock = [n for n, _ in getattr(model, method)()]
    assert [n for n, _ in getattr(model, method)()] == stock and stock
