"""The tying battery (``gpytorch_ext.testing.tying``) on each tie kind: same shape, batch, broadcast, across models."""

from __future__ import annotations

import gpytorch
import torch

from gpytorch_ext.testing.tying import TyingBattery
from gpytorch_ext.tying import equalize

from ._models import ExactGP, SharedSumKernel, SumKernel, data, rbf, shared_sum_gp, sum_gp, two_gps, two_gps_sharing

_COMMON = {
    "likelihood.noise_covar.raw_noise": "likelihood.noise_covar.raw_noise",
    "mean_module.raw_constant": "mean_module.raw_constant",
}


class _ExactGPCase(TyingBattery):
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor

    def predict(self, model):
        model.eval()
        with torch.no_grad():
            first = model.likelihood(model(self.test_x)).mean
            # a change through initialize() must clear the prediction caches
            model.initialize(**{n: v + 0.2 for n, v in _hyper(model).items()})
            model.train(), model.eval()
            return torch.stack([first, model.likelihood(model(self.test_x)).mean])


class TestSameShape(_ExactGPCase):
    """``k1`` and ``k2`` of a sum kernel share their lengthscale; reference: one kernel used twice."""

    train_x, train_y, test_x = data()
    to_reference = {**_COMMON, "covar_module.k.raw_lengthscale": "covar_module.k1.raw_lengthscale"}

    def make_untied(self):
        return sum_gp(self.train_x, self.train_y)

    def tie(self, model):
        return equalize(model, r"covar_module\.k\d\.lengthscale")

    def make_reference(self):
        return shared_sum_gp(self.train_x, self.train_y)


class TestBatch(_ExactGPCase):
    """A batch of 3 GPs whose ARD lengthscales (3 x 1 x 2) are tied; reference: one non-batch kernel."""

    batch = torch.Size([3])
    train_x, train_y, test_x = data(batch_shape=batch)
    to_reference = {**_COMMON, "covar_module.raw_lengthscale": "covar_module.raw_lengthscale"}

    def make_untied(self):
        return ExactGP(self.train_x, self.train_y, rbf(self.batch, ard_num_dims=2), self.batch).double()

    def tie(self, model):
        return equalize(model, "covar_module.lengthscale")

    def make_reference(self):
        return ExactGP(self.train_x, self.train_y, rbf(ard_num_dims=2), self.batch).double()


class TestBroadcast(_ExactGPCase):
    """Outputscales of a batched (3,) and a plain ScaleKernel tie by broadcasting, and so do their base kernels'
    lengthscales; reference: one ScaleKernel used twice."""

    batch = torch.Size([3])
    train_x, train_y, test_x = data(batch_shape=batch)
    to_reference = {
        **_COMMON,
        "covar_module.k.raw_outputscale": "covar_module.k1.raw_outputscale",
        "covar_module.k.base_kernel.raw_lengthscale": "covar_module.k1.base_kernel.raw_lengthscale",
    }

    @staticmethod
    def scaled(batch_shape):
        prior = gpytorch.priors.GammaPrior(2.0, 2.0)
        return gpytorch.kernels.ScaleKernel(rbf(batch_shape), outputscale_prior=prior, batch_shape=batch_shape)

    def make_untied(self):
        kernel = SumKernel(self.scaled(self.batch), self.scaled(torch.Size()))
        return ExactGP(self.train_x, self.train_y, kernel, self.batch).double()

    def tie(self, model):
        equalize(model, r"covar_module\.k\d\.outputscale")
        return equalize(model, r"covar_module\.k\d\.base_kernel\..*")

    def make_reference(self):
        return ExactGP(self.train_x, self.train_y, SharedSumKernel(self.scaled(torch.Size())), self.batch).double()


class TestAcrossModels(TyingBattery):
    """Two GPs of an ``IndependentModelList`` share their lengthscale; reference: the second holds the first's
    parameter, written by hand (and has no lengthscale prior of its own)."""

    train_x, train_y, _ = data()
    to_reference = {
        name: name
        for i in (0, 1)
        for name in (f"models.{i}.likelihood.noise_covar.raw_noise", f"models.{i}.mean_module.raw_constant")
    } | {"models.0.covar_module.raw_lengthscale": "models.0.covar_module.raw_lengthscale"}

    def make_untied(self):
        return two_gps(self.train_x, self.train_y)

    def tie(self, model):
        return equalize(model, r"models\.\d\.covar_module\.lengthscale")

    def make_reference(self):
        return two_gps_sharing(self.train_x, self.train_y)

    def mll(self, model):
        return gpytorch.mlls.SumMarginalLogLikelihood(model.likelihood, model)


def _hyper(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Constrained values of the raw parameters, by their ``initialize`` names (one per tied group)."""
    out = {}
    for name, _ in model.named_parameters():
        path, _, attr = name.rpartition(".")
        if attr.startswith("raw_"):
            alias = attr[4:]
            out[f"{path}.{alias}" if path else alias] = getattr(model.get_submodule(path), alias).detach().clone()
    return out
