"""End to end: BoTorch fitting on batched training data under the patch."""

from __future__ import annotations

import pytest
import torch

F64 = torch.float64


@pytest.mark.slow
def test_batched_single_task_gp_fit_matches_three_separate_fits():
    pytest.importorskip("botorch")
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 15, 2, generator=gen, dtype=F64)
    y = torch.stack([torch.sin(4 * x[i, :, :1]) + (i + 1) * x[i, :, 1:] ** 2 for i in range(3)])
    y = y + 0.05 * torch.randn(y.shape, generator=gen, dtype=F64)

    def fit(train_x, train_y):
        model = SingleTaskGP(train_x, train_y)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model

    batched = fit(x, y)
    assert batched.batch_shape == torch.Size([3])
    for i in range(3):
        single = fit(x[i], y[i])
        torch.testing.assert_close(
            batched.covar_module.lengthscale[i], single.covar_module.lengthscale, rtol=2e-2, atol=1e-3
        )
        torch.testing.assert_close(batched.likelihood.noise[i], single.likelihood.noise, rtol=5e-2, atol=1e-4)
        torch.testing.assert_close(batched.mean_module.constant[i], single.mean_module.constant, rtol=2e-2, atol=1e-3)
