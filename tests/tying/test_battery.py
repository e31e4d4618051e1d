"""The battery of ``_battery.py`` on each way of tying: two kernels, and the elements of one batched kernel."""

from __future__ import annotations

import gpytorch
import torch

from gpytorch_ext.tying import equalize

from ._battery import TyingBattery
from ._models import ExactGP, data, rbf, shared_sum_gp, sum_gp

_COMMON = {
    "likelihood.noise_covar.raw_noise": "likelihood.noise_covar.raw_noise",
    "mean_module.raw_constant": "mean_module.raw_constant",
}


class TestTwoKernels(TyingBattery):
    """``k1`` and ``k2`` of a sum kernel share their lengthscale; reference: one kernel used twice."""

    train_x, train_y, test_x = data()
    to_reference = {**_COMMON, "covar_module.k.raw_lengthscale": "covar_module.k1.raw_lengthscale"}

    def make_tied(self):
        return equalize(sum_gp(self.train_x, self.train_y), r"covar_module\.k\d\.lengthscale")

    def make_reference(self):
        return shared_sum_gp(self.train_x, self.train_y)


class TestBatchElements(TyingBattery):
    """A batch of 3 GPs whose ARD lengthscales (3 x 1 x 2) are tied; reference: one non-batch kernel."""

    batch = torch.Size([3])
    train_x, train_y, test_x = data(batch_shape=batch)
    to_reference = {**_COMMON, "covar_module.raw_lengthscale": "covar_module.raw_lengthscale"}

    def make_tied(self):
        kernel = rbf(self.batch, ard_num_dims=2)
        return equalize(ExactGP(self.train_x, self.train_y, kernel, self.batch).double(), "covar_module.lengthscale")

    def make_reference(self):
        return ExactGP(self.train_x, self.train_y, rbf(ard_num_dims=2), self.batch).double()


class TestScaleAndBatchBroadcast(TyingBattery):
    """Outputscales of a batched (3,) and a plain ScaleKernel tie by broadcasting; reference: one ScaleKernel."""

    batch = torch.Size([3])
    train_x, train_y, test_x = data(batch_shape=batch)
    to_reference = {
        **_COMMON,
        "covar_module.k.raw_outputscale": "covar_module.k1.raw_outputscale",
        "covar_module.k.base_kernel.raw_lengthscale": "covar_module.k1.base_kernel.raw_lengthscale",
    }

    def make_tied(self):
        from ._models import SumKernel

        def scaled(batch_shape):
            prior = gpytorch.priors.GammaPrior(2.0, 2.0)
            return gpytorch.kernels.ScaleKernel(rbf(batch_shape), outputscale_prior=prior, batch_shape=batch_shape)

        model = ExactGP(self.train_x, self.train_y, SumKernel(scaled(self.batch), scaled(torch.Size())), self.batch)
        equalize(model.double(), r"covar_module\.k\d\.outputscale")
        return equalize(model, r"covar_module\.k\d\.base_kernel\..*")

    def make_reference(self):
        from ._models import SharedSumKernel

        prior = gpytorch.priors.GammaPrior(2.0, 2.0)
        kernel = gpytorch.kernels.ScaleKernel(rbf(), outputscale_prior=prior)
        return ExactGP(self.train_x, self.train_y, SharedSumKernel(kernel), self.batch).double()
