"""The patch's contract: GPyTorch's settings and validation keep working; the drop-in classes work unpatched."""

from __future__ import annotations

import contextlib
from unittest import mock

import gpytorch
import pytest
import torch
from linear_operator.operators import DenseLinearOperator
from torch.distributions import MultivariateNormal as TorchMVN

import gpytorch_ext.distributions as ext
from gpytorch_ext.testing import PatchTestCase

F64 = torch.float64


def _lazy_dist(cls=gpytorch.distributions.MultivariateNormal, batch=(), **kwargs):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(*batch, 4, 4, generator=gen, dtype=F64)
    dense = a @ a.mT + torch.eye(4, dtype=F64)
    return cls(torch.zeros(4, dtype=F64), DenseLinearOperator(dense), **kwargs), dense


def test_fast_computations_off_uses_torchs_cholesky_algorithm(stock):
    dist, dense = _lazy_dist(batch=(2,))
    value = torch.randn(3, 1, 4, dtype=F64)
    reference = TorchMVN(torch.zeros(4, dtype=F64), dense).log_prob(value)
    with gpytorch.settings.fast_computations(log_prob=False):
        if stock:
            with stock("mvn-log-prob", "mvn-batch"), pytest.raises(RuntimeError):
                dist.log_prob(value)  # upstream calls torch's log_prob, which assumes an expanded mean
        with mock.patch.object(DenseLinearOperator, "inv_quad_logdet") as iterative:
            got = dist.log_prob(value)
    iterative.assert_not_called()
    torch.testing.assert_close(got, reference, rtol=1e-10, atol=1e-10)


def test_fast_computations_off_multitask_matches_torch():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=gen, dtype=F64)
    dense = a @ a.T + torch.eye(6, dtype=F64)
    mean, value = torch.randn(3, 2, generator=gen, dtype=F64), torch.randn(5, 3, 2, generator=gen, dtype=F64)
    dist = gpytorch.distributions.MultitaskMultivariateNormal(mean, DenseLinearOperator(dense), interleaved=False)
    with gpytorch.settings.fast_computations(log_prob=False):
        got = dist.log_prob(value)
    torch.testing.assert_close(got, TorchMVN(mean.T.reshape(-1), dense).log_prob(value.mT.reshape(5, -1)))


@pytest.mark.parametrize("cls", [gpytorch.distributions.MultivariateNormal, ext.MultivariateNormal])
def test_validate_args_validates_the_value_like_torch(cls):
    dist, dense = _lazy_dist(cls, validate_args=True)
    bad_event = torch.zeros(5, dtype=F64)
    nan_value = torch.full((4,), float("nan"), dtype=F64)
    for value in (bad_event, nan_value):
        with pytest.raises(ValueError) as ours:
            dist.log_prob(value)
        with pytest.raises(ValueError) as theirs:
            TorchMVN(torch.zeros(4, dtype=F64), dense, validate_args=True).log_prob(value)
        assert type(ours.value) is type(theirs.value)
    # validation off: a NaN value gives NaN, as in torch
    quiet, _ = _lazy_dist(cls)
    assert torch.isnan(quiet.log_prob(nan_value))


class TestMvnLogProbPatch(PatchTestCase):
    patch_name = "mvn-log-prob"
    upstream_summary = "fail"
    patched_summary = "0 of "


class TestMvnBatchPatch(PatchTestCase):
    patch_name = "mvn-batch"
    upstream_summary = "fail"
    patched_summary = "0 of "


def test_patch_replaces_log_prob_on_gpytorch_classes(impl):
    if impl == "source":
        pytest.skip("checks the monkey-patch")
    from gpytorch_ext.distributions.patch import PATCH

    assert PATCH.is_applied
    for cls in (gpytorch.distributions.MultivariateNormal, gpytorch.distributions.MultitaskMultivariateNormal):
        assert hasattr(cls.log_prob, "__wrapped__") and cls.log_prob.__name__ == "log_prob"


def test_drop_in_classes_work_without_the_patch(stock):
    torch.manual_seed(0)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])).to(F64)
    covar = kernel(torch.rand(2, 4, 1, dtype=F64)).add_jitter(0.1)
    mean, value = torch.zeros(1, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    reference = TorchMVN(mean, covar.to_dense()).log_prob(value)
    with stock("mvn-log-prob", "mvn-batch") if stock else contextlib.nullcontext():
        got = ext.MultivariateNormal(mean, covar).log_prob(value)
        mt = ext.MultitaskMultivariateNormal(mean.view(1, 2, 2), covar, interleaved=False)
        got_mt = mt.log_prob(value.view(1, 2, 2))
    torch.testing.assert_close(got, reference)
    flat = value.view(1, 2, 2).mT.reshape(1, 4)
    torch.testing.assert_close(got_mt, TorchMVN(mean, covar.to_dense()).log_prob(flat))


def test_exact_marginal_log_likelihood_uses_the_repair():
    """The MLL calls ``log_prob`` of GPyTorch's own class: a batch of targets against a shared model works."""

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.RBFKernel()

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    x = torch.linspace(0, 1, 10, dtype=F64).unsqueeze(-1)
    y = torch.sin(6 * x).squeeze(-1)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().to(F64)
    model = GP(x, y, likelihood).to(F64)
    model.eval()
    targets = torch.stack([y, y + 0.1, y - 0.1])
    with torch.no_grad():
        out = likelihood(model(x))
        batched = out.log_prob(targets)
        looped = torch.stack([out.log_prob(t) for t in targets])
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-10)
