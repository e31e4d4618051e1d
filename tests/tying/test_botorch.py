"""equalize under BoTorch: multi-output ``SingleTaskGP`` and ``ModelListGP`` ties, the rollback, the joint fit."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.utils.context_managers import module_rollback_ctx
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood

from gpytorch_ext.testing.tying import TyingBattery
from gpytorch_ext.tying import equalize

from ._models import SumKernel, data, rbf

X = torch.rand(12, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
Y = torch.stack([torch.sin(5 * X[:, 0]), torch.cos(3 * X[:, 1])], -1)
Y = Y + 0.1 * torch.randn(Y.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def _predict(model):
    model.eval()
    with torch.no_grad():
        return model.posterior(X[:5] + 0.05).mean


class TestMultiOutputSingleTaskGP(TyingBattery):
    """A two-output ``SingleTaskGP`` (batch of 2) with one lengthscale; reference: a non-batch kernel."""

    botorch_fit = True
    lr = 0.005  # BoTorch's noise has no transform: small steps keep it inside its bound
    to_reference = {
        name: name
        for name in ("likelihood.noise_covar.raw_noise", "mean_module.raw_constant", "covar_module.raw_lengthscale")
    }

    def make_untied(self):
        return SingleTaskGP(X, Y)

    def tie(self, model):
        return equalize(model, "covar_module.lengthscale")

    def make_reference(self):
        return SingleTaskGP(X, Y, covar_module=get_covar_module_with_dim_scaled_prior(ard_num_dims=2))

    def predict(self, model):
        return _predict(model)


class TestModelListGP(TyingBattery):
    """Two ``SingleTaskGP`` in a ``ModelListGP`` share their lengthscale; reference: the second holds the first's
    parameter, written by hand (without a lengthscale prior of its own)."""

    botorch_fit = True
    lr = 0.005
    to_reference = {
        f"models.{i}.{name}": f"models.{i}.{name}"
        for i in (0, 1)
        for name in ("likelihood.noise_covar.raw_noise", "mean_module.raw_constant")
    } | {"models.0.covar_module.raw_lengthscale": "models.0.covar_module.raw_lengthscale"}

    def make_untied(self):
        return ModelListGP(SingleTaskGP(X, Y[:, :1]), SingleTaskGP(X, Y[:, 1:]))

    def tie(self, model):
        return equalize(model, r"models\.\d\.covar_module\.lengthscale")

    def make_reference(self):
        first = SingleTaskGP(X, Y[:, :1])
        kernel = gpytorch.kernels.RBFKernel(
            ard_num_dims=2, lengthscale_constraint=first.covar_module.raw_lengthscale_constraint
        )
        kernel.raw_lengthscale = first.covar_module.raw_lengthscale
        return ModelListGP(first, SingleTaskGP(X, Y[:, 1:], covar_module=kernel))

    def mll(self, model):
        return SumMarginalLogLikelihood(model.likelihood, model)

    def predict(self, model):
        return _predict(model)


def test_batch_tied_rollback_restores_in_place():
    """The issue's repro: ``module_rollback_ctx`` writes into ``state_dict()`` values, then loads them."""
    k = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([3]))
    equalize(k, "lengthscale")
    with module_rollback_ctx(k):
        k.lengthscale = 2.0
        torch.testing.assert_close(k.lengthscale, torch.full((3, 1, 1), 2.0))
    torch.testing.assert_close(k.lengthscale, torch.full((3, 1, 1), 0.6931), rtol=0, atol=1e-4)
    state = k.state_dict()["raw_lengthscale"]
    assert state.shape == (3, 1, 1) and state.stride() == (1, 1, 1)
    assert k.get_parameter("raw_lengthscale") is k.raw_lengthscale


def test_custom_fit_only_where_botorch_fits_parts_independently():
    """The joint fit is BoTorch's ``custom_fit`` hook, set on models BoTorch would fit output by output or model by
    model, and removed with the last tie."""
    single = equalize(
        SingleTaskGP(X, Y[:, :1], covar_module=SumKernel(rbf(), rbf())), r"covar_module\.k\d\.raw_lengthscale"
    )
    assert "custom_fit" not in vars(single)  # BoTorch fits a single-output model jointly anyway
    batched = equalize(SingleTaskGP(X, Y), "covar_module.lengthscale")
    assert "custom_fit" in vars(batched)
    within = ModelListGP(SingleTaskGP(X, Y[:, :1], covar_module=SumKernel(rbf(), rbf())), SingleTaskGP(X, Y[:, 1:]))
    equalize(within, r"models\.0\.covar_module\.k\d\.lengthscale")
    assert "custom_fit" not in vars(within)  # one model: its own fit is still independent of the other
    equalize(within, r"models\.\d\.likelihood\.noise_covar\.noise")
    assert "custom_fit" in vars(within)
    from gpytorch_ext.tying import untie

    untie(within, r"models\.1\.likelihood\.noise_covar\.noise")
    assert "custom_fit" not in vars(within)
    untie(batched)
    assert "custom_fit" not in vars(batched)


@pytest.mark.slow
def test_fit_gpytorch_mll_single_output_equals_reference():
    """A single-output model with two kernels tied (BoTorch's usual joint fit) against one kernel used twice."""
    x, y, _ = data()
    fits = []
    for tie in (True, False):
        from ._models import SharedSumKernel

        kernel = SumKernel(rbf(), rbf()) if tie else SharedSumKernel(rbf())
        model = SingleTaskGP(x, y.unsqueeze(-1), covar_module=kernel).double()
        if tie:
            equalize(model, r"covar_module\.k\d\.lengthscale")
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": 50}})
        model.train()
        lengthscale = next(v for n, v in model.named_parameters() if "lengthscale" in n)
        fits.append((-mll(model(*model.train_inputs), model.train_targets).detach(), lengthscale.detach()))
    assert fits[0][1].numel() == 1
    torch.testing.assert_close(fits[0][0], fits[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fits[0][1], fits[1][1], rtol=1e-4, atol=1e-6)
