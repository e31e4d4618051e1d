"""Batched inputs for the multitask variational strategies (patch ``multitask-batched-inputs``, gpytorch 2011)."""

from __future__ import annotations

import contextlib

import gpytorch
import pytest
import torch

import gpytorch_ext.variational as ext
from gpytorch_ext.testing import PatchTestCase

F64 = torch.float64
TASKS, LATENTS = 3, 2


class SVGP(gpytorch.models.ApproximateGP):
    """A multitask SVGP: independent tasks (``"imvs"``) or an LMC of ``LATENTS`` latent functions (``"lmc"``)."""

    def __init__(self, kind: str, batch=(), classes=gpytorch.variational, shared_inducing: bool = False):
        gps = TASKS if kind == "imvs" else LATENTS
        gen = torch.Generator().manual_seed(0)
        shape = (*batch, 6, 2) if shared_inducing else (*batch, gps, 6, 2)
        inducing = torch.rand(*shape, generator=gen, dtype=F64)
        distribution = gpytorch.variational.CholeskyVariationalDistribution(6, batch_shape=torch.Size([*batch, gps]))
        base = gpytorch.variational.VariationalStrategy(self, inducing, distribution, learn_inducing_locations=True)
        if kind == "imvs":
            strategy = classes.IndependentMultitaskVariationalStrategy(base, num_tasks=TASKS)
        else:
            strategy = classes.LMCVariationalStrategy(base, num_tasks=TASKS, num_latents=LATENTS)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.LinearMean(2, batch_shape=torch.Size([*batch, gps]))
        self.covar_module = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([*batch, gps]))

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _model(kind, **kwargs) -> SVGP:
    model = SVGP(kind, **kwargs).double()
    with torch.no_grad():  # a variational posterior that differs from the prior
        for p in model.variational_strategy.base_variational_strategy._variational_distribution.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=F64))
    return model.eval()


def _assert_same(got, want):
    assert type(got) is type(want)
    torch.testing.assert_close(got.mean, want.mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(got.covariance_matrix, want.covariance_matrix, rtol=1e-8, atol=1e-10)


def _stack(dists):
    """The distributions of a loop over the batch, stacked (mean and dense covariance)."""
    mean = torch.stack([d.mean for d in dists])
    covar = torch.stack([d.covariance_matrix for d in dists])
    return mean, covar


@pytest.mark.parametrize("kind", ["imvs", "lmc"])
@pytest.mark.parametrize("shape", [(5, 7, 2), (2, 4, 7, 2)], ids=str)
@pytest.mark.parametrize("shared_inducing", [False, True], ids=["inducing per task", "shared inducing"])
def test_batched_inputs_equal_the_loop_over_the_batch(kind, shape, shared_inducing, stock):
    model = _model(kind, shared_inducing=shared_inducing)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        if stock:
            with stock("multitask-batched-inputs"), pytest.raises(RuntimeError):
                model(x)  # "Attempting to broadcast a dimension of length 5", or the mean's matmul
        out = model(x)
        flat = x.reshape(-1, *x.shape[-2:])
        mean, covar = _stack([model(xi) for xi in flat])
    assert isinstance(out, gpytorch.distributions.MultitaskMultivariateNormal)
    assert out.mean.shape == (*shape[:-1], TASKS)
    torch.testing.assert_close(out.mean, mean.reshape(out.mean.shape), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out.covariance_matrix, covar.reshape(out.covariance_matrix.shape), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["imvs", "lmc"])
def test_batched_inputs_with_task_indices_and_prior(kind):
    model = _model(kind)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 7, 2, generator=gen, dtype=F64)
    task_indices = torch.randint(TASKS, (4, 7), generator=gen)
    with torch.no_grad():
        out = model(x, task_indices=task_indices)
        mean, covar = _stack([model(x[i], task_indices=task_indices[i]) for i in range(4)])
        prior = model(x, prior=True)
        prior_mean, _ = _stack([model(x[i], prior=True) for i in range(4)])
    torch.testing.assert_close(out.mean, mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out.covariance_matrix, covar, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(prior.mean, prior_mean, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["imvs", "lmc"])
@pytest.mark.parametrize(
    "shape",
    [(7, 2), (1, 7, 2), (5, 1, 7, 2), ("gps", 7, 2), (4, "gps", 7, 2)],
    ids=["shared inputs", "batch of one", "singleton task dim", "inputs per task", "batch of inputs per task"],
)
def test_inputs_that_work_today_keep_their_meaning(kind, shape, stock):
    if not stock:
        pytest.skip("compares with stock GPyTorch")
    gps = TASKS if kind == "imvs" else LATENTS
    model = _model(kind)
    x = torch.rand(*[gps if s == "gps" else s for s in shape], generator=torch.Generator().manual_seed(4), dtype=F64)
    with torch.no_grad():
        with stock("multitask-batched-inputs"):
            want = model(x)
        got = model(x)
    _assert_same(got, want)


@pytest.mark.parametrize("kind", ["imvs", "lmc"])
def test_inputs_that_fit_neither_way_raise_value_error(kind):
    model = _model(kind, batch=(2,))  # a batch of 2 multitask models: the base holds 2 x gps GPs
    x = torch.rand(5, 7, 2, dtype=F64)
    gps = TASKS if kind == "imvs" else LATENTS
    with torch.no_grad(), pytest.raises(ValueError) as info:
        model(x)
    message = str(info.value)
    assert "(5, 7, 2)" in message and f"{gps} tasks" in message and f"(2, {gps})" in message


@pytest.mark.parametrize("kind", ["imvs", "lmc"])
def test_drop_in_classes_without_the_patch(kind, stock):
    x = torch.rand(5, 7, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    with stock("multitask-batched-inputs") if stock else contextlib.nullcontext():
        model = _model(kind, classes=ext)
        with torch.no_grad():
            out = model(x)
            mean, covar = _stack([model(xi) for xi in x])
    torch.testing.assert_close(out.mean, mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out.covariance_matrix, covar, rtol=1e-8, atol=1e-10)


def test_training_on_batched_inputs_gives_the_loop_gradients():
    """The ELBO of a batch of input sets: its gradients equal the sum over the loop (nothing is mixed up)."""
    model = _model("imvs").train()
    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=TASKS).double()
    gen = torch.Generator().manual_seed(6)
    # 4 input sets (a batch of TASKS = 3 sets would mean one input set per task, as it always has)
    x, y = torch.rand(4, 7, 2, generator=gen, dtype=F64), torch.randn(4, 7, TASKS, generator=gen, dtype=F64)
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=28)
    params = [p for p in model.parameters() if p.requires_grad]
    batched = torch.autograd.grad(mll(model(x), y).sum(), params)
    looped = torch.autograd.grad(sum(mll(model(x[i]), y[i]) for i in range(4)), params)
    for b, lp in zip(batched, looped):
        torch.testing.assert_close(b, lp, rtol=1e-7, atol=1e-9)


class TestMultitaskBatchedInputsPatch(PatchTestCase):
    patch_name = "multitask-batched-inputs"
    upstream_summary = "fail"
    patched_summary = "0 of "
