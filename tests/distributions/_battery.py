"""The shared battery: every covariance type GPyTorch produces is checked by the same tests.

A test class mixes in :class:`MVNLogProbBattery` and sets ``factory`` to a
:class:`~tests.distributions._covariances.CovarianceFactory`. The tests call GPyTorch's own
``gpytorch.distributions.MultivariateNormal`` (repaired by the ``mvn-log-prob`` patch, or by the patched
source) and compare with ``torch.distributions.MultivariateNormal`` on a dense matrix built by hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import gpytorch
import linear_operator
import pytest
import torch
from linear_operator.operators import LinearOperator
from torch.distributions import MultivariateNormal as TorchMVN

from ._covariances import DTYPE, CovarianceFactory
from ._shapes import BAD_TRIPLES, SHAPE_TRIPLES, Triple

RTOL = 1e-8
ATOL = 1e-10


def make_case(factory: CovarianceFactory, triple: Triple, seed: int = 0, requires_grad: bool = False):
    """Value, mean and covariance leaves for a (value, mean, covariance) batch-shape triple."""
    gen = torch.Generator().manual_seed(seed)
    value_batch, mean_batch, covar_batch = triple
    value = torch.randn(*value_batch, factory.n, generator=gen, dtype=DTYPE)
    mean = torch.randn(*mean_batch, factory.n, generator=gen, dtype=DTYPE)
    params = factory.params(covar_batch, gen)
    if requires_grad:
        for t in (value, mean, *params):
            t.requires_grad_(True)
    return value, mean, params


@contextlib.contextmanager
def spy_linear_algebra() -> Iterator[dict[str, list]]:
    """Record Cholesky factorisations (input shapes), ``repeat`` calls and ``to_dense`` calls of operators."""
    calls: dict[str, list] = {"cholesky": [], "repeat": [], "to_dense": []}
    chol = linear_operator.utils.cholesky.psd_safe_cholesky
    repeat = LinearOperator.repeat
    to_dense = LinearOperator.to_dense

    def chol_spy(a, *args, **kwargs):
        calls["cholesky"].append(tuple(a.shape))
        return chol(a, *args, **kwargs)

    def repeat_spy(self, *sizes):
        calls["repeat"].append((type(self).__name__, sizes))
        return repeat(self, *sizes)

    def to_dense_spy(self):
        calls["to_dense"].append((type(self).__name__, tuple(self.shape)))
        return to_dense(self)

    with (
        mock.patch("linear_operator.operators._linear_operator.psd_safe_cholesky", chol_spy),
        mock.patch.object(LinearOperator, "repeat", repeat_spy),
        mock.patch.object(LinearOperator, "to_dense", to_dense_spy),
    ):
        yield calls


class MVNLogProbBattery:
    """Shared tests of ``MultivariateNormal.log_prob`` for one covariance type (``factory``)."""

    factory: CovarianceFactory
    #: batch-shape triples checked against torch
    triples: list[Triple] = SHAPE_TRIPLES
    #: triples whose gradients are compared with torch's
    grad_triples: list[Triple] = [((1,), (1,), (2,)), ((3,), (), ()), ((2, 1), (1,), (1, 3))]
    check_gradients = True

    def log_prob(self, triple: Triple, seed: int = 0, requires_grad: bool = False):
        value, mean, params = make_case(self.factory, triple, seed, requires_grad)
        covar, dense = self.factory.build(*params)
        with self.factory.context():
            ours = gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(value)
        reference = TorchMVN(mean, dense).log_prob(value)
        return ours, reference, (value, mean, *params)

    def test_matches_torch_on_every_shape_triple(self):
        failures = []
        for i, triple in enumerate(self.triples):
            try:
                ours, reference, _ = self.log_prob(triple, seed=i)
            except Exception as exc:  # collect, so that one run names every failing triple
                failures.append(f"{triple}: {type(exc).__name__}: {str(exc)[:100]}")
                continue
            if ours.shape != reference.shape:
                failures.append(f"{triple}: shape {tuple(ours.shape)} != torch {tuple(reference.shape)}")
            elif not torch.allclose(ours, reference, rtol=RTOL, atol=ATOL):
                failures.append(f"{triple}: max abs error {(ours - reference).abs().max().item():.3g}")
        assert not failures, f"{self.factory.name}: {len(failures)} of {len(self.triples)} triples fail:\n" + (
            "\n".join(failures)
        )

    @pytest.mark.parametrize("triple", BAD_TRIPLES, ids=str)
    def test_non_broadcastable_shapes_raise_value_error_before_linear_algebra(self, triple):
        value, mean, params = make_case(self.factory, triple)
        covar, _ = self.factory.build(*params)
        dist = gpytorch.distributions.MultivariateNormal(mean, covar)  # mean and covariance broadcast
        with self.factory.context(), spy_linear_algebra() as calls, pytest.raises(ValueError) as info:
            dist.log_prob(value)
        message = str(info.value)
        for shape in (value.shape, dist.loc.shape, covar.shape):
            assert str(tuple(shape)) in message, f"{tuple(shape)} not named in: {message}"
        assert calls["cholesky"] == [] and calls["to_dense"] == []

    def test_gradients_match_torch(self):
        if not self.check_gradients:
            pytest.skip("gradients not checked for this covariance type")
        for i, triple in enumerate(self.grad_triples):
            ours, reference, leaves = self.log_prob(triple, seed=i, requires_grad=True)
            weights = torch.randn(ours.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(i))
            got = torch.autograd.grad((ours * weights).sum(), leaves, allow_unused=True, retain_graph=True)
            want = torch.autograd.grad((reference * weights).sum(), leaves, allow_unused=True)
            for name, g, w in zip(("value", "mean", *(f"param{j}" for j in range(len(leaves) - 2))), got, want):
                assert w is not None and g is not None, f"{triple} {name}: no gradient"
                torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9, msg=f"{triple}: gradient of {name}")

    def test_gradcheck(self):
        if not self.check_gradients:
            pytest.skip("gradients not checked for this covariance type")
        triple = ((2,), (1,), ())
        value, mean, params = make_case(self.factory, triple, requires_grad=True)

        def f(value, mean, *params):
            covar, _ = self.factory.build(*params)
            with self.factory.context():
                return gpytorch.distributions.MultivariateNormal(mean, covar).log_prob(value)

        assert torch.autograd.gradcheck(f, (value, mean, *params), eps=1e-6, atol=1e-6)

    def test_one_factorisation_and_no_repeat(self):
        # eight values and two means share one covariance of batch shape (1,): nothing may be repeated
        triple = ((4, 2, 1), (2, 1), (1,))
        value, mean, params = make_case(self.factory, triple)
        covar, dense = self.factory.build(*params)
        with self.factory.context():
            dist = gpytorch.distributions.MultivariateNormal(mean, covar)
            with spy_linear_algebra() as calls:
                ours = dist.log_prob(value)
        torch.testing.assert_close(ours, TorchMVN(mean, dense).log_prob(value), rtol=RTOL, atol=ATOL)
        assert calls["repeat"] == []
        for shape in calls["cholesky"]:
            allowed = self.factory.cholesky_batch_per_covariance
            assert torch.Size(shape[:-2]).numel() <= allowed, f"a Cholesky factor of a batch {shape} was formed"
        if self.factory.diagonal:
            assert calls["cholesky"] == [] and calls["to_dense"] == [], "a diagonal covariance formed a matrix"
