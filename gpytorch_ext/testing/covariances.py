"""The covariance battery: every covariance kind GPyTorch produces, checked by the same tests against torch.

A covariance kind is a :class:`CovarianceFactory`: it turns leaf tensors (``params``) into ``(covariance, dense)``,
where ``dense`` is built with plain torch from the same leaves (never through the covariance object), so that it is
an independent reference and gradients reach the leaves both ways. Two batteries (pytest test mixins) use them:

- :class:`MVNLogProbBattery`: ``MultivariateNormal.log_prob`` over (value, mean, covariance) batch-shape triples;
- :class:`MVNBatchBattery`: everything else a (multitask) multivariate normal does when its mean and covariance
  batch shapes differ (moments, sampling, indexing, ``expand``, entropy, KL divergence), over (mean batch,
  covariance batch) pairs and the plain, interleaved and non-interleaved multitask layouts.

Both call GPyTorch's own classes (repaired at run time by ``import gpytorch_ext``, or by a patched source tree)
and compare with :class:`torch.distributions.MultivariateNormal` on the broadcast dense tensors. A new kind is
checked in a few lines::

    from gpytorch_ext.testing.covariances import CovarianceFactory, MVNBatchBattery, MVNLogProbBattery

    class MyKind(CovarianceFactory):
        name = "MyLinearOperator"

        def params(self, batch, gen):
            return (torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),)

        def build(self, a):
            dense = a @ a.mT / self.n + torch.eye(self.n, dtype=DTYPE)
            return MyLinearOperator(dense), dense

    class TestMyKindLogProb(MVNLogProbBattery):
        factory = MyKind()

    class TestMyKindBatch(MVNBatchBattery):
        factory = MyKind(n=6)
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import gpytorch
import pytest
import torch
from linear_operator.operators import (
    AddedDiagLinearOperator,
    BlockDiagLinearOperator,
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    DiagLinearOperator,
    KernelLinearOperator,
    KroneckerProductLinearOperator,
    LinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
    RootLinearOperator,
)
from torch import Tensor
from torch.distributions import MultivariateNormal as TorchMVN
from torch.distributions import kl_divergence

__all__ = [
    "BAD_TRIPLES",
    "BATCH_PAIRS",
    "DTYPE",
    "FACTORIES",
    "SHAPE_TRIPLES",
    "AddedDiag",
    "BlockDiag",
    "ConstantDiag",
    "CovarianceFactory",
    "Dense",
    "DenseTensor",
    "Diag",
    "DiagPlusConstantDiag",
    "KeOpsKernel",
    "Kernel",
    "Kronecker",
    "LazyKernel",
    "Layout",
    "LowRankPlusDiag",
    "MVNBatchBattery",
    "MVNLogProbBattery",
    "RootPlusDiag",
    "make_case",
    "random_variable_reference",
    "spy_linear_algebra",
]

DTYPE = torch.float64

Shape = tuple[int, ...]
Triple = tuple[Shape, Shape, Shape]


# --- covariance kinds ------------------------------------------------------------------------------------------


def _spd(a: Tensor) -> Tensor:
    """A well-conditioned SPD matrix from a square one: A A^T / n + I."""
    return a @ a.transpose(-1, -2) / a.size(-1) + torch.eye(a.size(-1), dtype=a.dtype)


def _positive(raw: Tensor) -> Tensor:
    return torch.nn.functional.softplus(raw) + 0.2


def _rbf(x: Tensor, lengthscale: Tensor) -> Tensor:
    """exp(-|x_i - x_j|^2 / 2 l^2) for x of shape ... x N x 1 and a lengthscale of shape ... x 1 x 1."""
    sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).div(lengthscale.unsqueeze(-1)).square().sum(-1)
    return sq.mul(-0.5).exp()


def _spread_points(batch: Shape, n: int, gen: torch.Generator) -> Tensor:
    """Inputs 1.5 apart plus jitter: an RBF Gram matrix of them is well conditioned."""
    base = torch.arange(n, dtype=DTYPE) * 1.5
    return (base + 0.3 * torch.rand(*batch, n, generator=gen, dtype=DTYPE)).unsqueeze(-1)


class CovarianceFactory:
    """A covariance kind of event size ``n`` (even, for the kinds built from two halves).

    :cvar name: how test reports name the kind.
    :cvar diagonal: evaluated in closed form (no matrix may be formed by ``log_prob``).
    :cvar cholesky_batch_per_covariance: batch size of the Cholesky factorisation(s) of one covariance.
    """

    name = "base"
    diagonal = False
    cholesky_batch_per_covariance = 1

    def __init__(self, n: int = 4) -> None:
        self.n = n

    def params(self, batch: Shape, gen: torch.Generator) -> tuple[Tensor, ...]:
        """Leaf tensors of a covariance of batch shape ``batch``."""
        raise NotImplementedError

    def build(self, *params: Tensor) -> tuple[Tensor | LinearOperator, Tensor]:
        """``(covariance, dense)`` from the leaves: the GPyTorch covariance and its dense matrix built by hand."""
        raise NotImplementedError

    def context(self) -> contextlib.AbstractContextManager:
        """Settings under which the distribution is used (the Cholesky path by default)."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"


class DenseTensor(CovarianceFactory):
    name = "Tensor"

    def params(self, batch, gen):
        return (torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),)

    def build(self, a):
        dense = _spd(a)
        return dense, dense


class Dense(CovarianceFactory):
    name = "DenseLinearOperator"

    def params(self, batch, gen):
        return (torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),)

    def build(self, a):
        return DenseLinearOperator(_spd(a)), _spd(a)


class Diag(CovarianceFactory):
    name = "DiagLinearOperator"
    diagonal = True

    def params(self, batch, gen):
        return (torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),)

    def build(self, raw):
        return DiagLinearOperator(_positive(raw)), torch.diag_embed(_positive(raw))


class ConstantDiag(CovarianceFactory):
    name = "ConstantDiagLinearOperator"
    diagonal = True

    def params(self, batch, gen):
        return (torch.randn(*batch, 1, generator=gen, dtype=DTYPE),)

    def build(self, raw):
        c = _positive(raw)
        return ConstantDiagLinearOperator(c, diag_shape=self.n), c.unsqueeze(-1) * torch.eye(self.n, dtype=DTYPE)


class DiagPlusConstantDiag(CovarianceFactory):
    """``Diag + ConstantDiag`` (linear_operator refuses an AddedDiagLinearOperator of two diagonals)."""

    name = "Diag + ConstantDiag"
    diagonal = True

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
            torch.randn(*batch, 1, generator=gen, dtype=DTYPE),
        )

    def build(self, raw_d, raw_c):
        d, c = _positive(raw_d), _positive(raw_c)
        covar = DiagLinearOperator(d) + ConstantDiagLinearOperator(c, diag_shape=self.n)
        return covar, torch.diag_embed(d + c)


class LazyKernel(CovarianceFactory):
    """``RBFKernel(batch_shape=...)(x)``: a lazily evaluated kernel tensor; the lengthscale enters via ``x``."""

    name = "LazyEvaluatedKernelTensor(RBF)"

    def params(self, batch, gen):
        return _spread_points(batch, self.n, gen), torch.rand(*batch, 1, 1, generator=gen, dtype=DTYPE) + 0.8

    def build(self, x, lengthscale):
        kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size(x.shape[:-2])).to(DTYPE)
        kernel.lengthscale = 1.0
        return kernel(x / lengthscale), _rbf(x, lengthscale)


class Kernel(CovarianceFactory):
    name = "KernelLinearOperator"

    @staticmethod
    def _covar_func(x1: Tensor, x2: Tensor, lengthscale: Tensor) -> Tensor:
        return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).div(lengthscale.unsqueeze(-1)).square().sum(-1).mul(-0.5).exp()

    def params(self, batch, gen):
        return _spread_points(batch, self.n, gen), torch.rand(*batch, 1, 1, generator=gen, dtype=DTYPE) + 0.8

    def build(self, x, lengthscale):
        return KernelLinearOperator(x, x, covar_func=self._covar_func, lengthscale=lengthscale), _rbf(x, lengthscale)


class AddedDiag(CovarianceFactory):
    name = "AddedDiagLinearOperator"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, self.n, generator=gen, dtype=DTYPE),
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
        )

    def build(self, a, raw):
        s = a @ a.transpose(-1, -2) / self.n
        return AddedDiagLinearOperator(
            DenseLinearOperator(s), DiagLinearOperator(_positive(raw))
        ), s + torch.diag_embed(_positive(raw))


class LowRankPlusDiag(CovarianceFactory):
    name = "LowRankRootAddedDiagLinearOperator"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, 2, generator=gen, dtype=DTYPE),
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
        )

    def build(self, root, raw):
        covar = LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(root), DiagLinearOperator(_positive(raw)))
        return covar, root @ root.transpose(-1, -2) + torch.diag_embed(_positive(raw))


class RootPlusDiag(CovarianceFactory):
    name = "RootLinearOperator + diag"

    def params(self, batch, gen):
        return (
            torch.randn(*batch, self.n, 3, generator=gen, dtype=DTYPE),
            torch.randn(*batch, self.n, generator=gen, dtype=DTYPE),
        )

    def build(self, root, raw):
        covar = RootLinearOperator(root).add_diagonal(_positive(raw))
        return covar, root @ root.transpose(-1, -2) + torch.diag_embed(_positive(raw))


class Kronecker(CovarianceFactory):
    """``K_a (n/2 x n/2) kron K_b (2 x 2)``."""

    name = "KroneckerProductLinearOperator"

    def params(self, batch, gen):
        half = self.n // 2
        return (
            torch.randn(*batch, half, half, generator=gen, dtype=DTYPE),
            torch.randn(*batch, 2, 2, generator=gen, dtype=DTYPE),
        )

    def build(self, a, b):
        ka, kb = _spd(a), _spd(b)
        dense = (ka[..., :, None, :, None] * kb[..., None, :, None, :]).reshape(*ka.shape[:-2], self.n, self.n)
        return KroneckerProductLinearOperator(DenseLinearOperator(ka), DenseLinearOperator(kb)), dense


class BlockDiag(CovarianceFactory):
    """Two blocks of size ``n/2``."""

    name = "BlockDiagLinearOperator"
    cholesky_batch_per_covariance = 2  # the blocks are factorised as a batch

    def params(self, batch, gen):
        half = self.n // 2
        return (torch.randn(*batch, 2, half, half, generator=gen, dtype=DTYPE),)

    def build(self, a):
        blocks = _spd(a)  # ... x 2 blocks x n/2 x n/2
        zeros = torch.zeros_like(blocks[..., 0, :, :])
        top = torch.cat([blocks[..., 0, :, :], zeros], -1)
        bottom = torch.cat([zeros, blocks[..., 1, :, :]], -1)
        return BlockDiagLinearOperator(DenseLinearOperator(blocks)), torch.cat([top, bottom], -2)


class KeOpsKernel(CovarianceFactory):
    """``gpytorch.kernels.keops.RBFKernel(...)(x)``. Evaluated with ``max_cholesky_size(n)``: KeOps is used
    (``n >= max_cholesky_size``) and so is the exact Cholesky path (``n <= max_cholesky_size``)."""

    name = "KeOps RBFKernel"

    def params(self, batch, gen):
        return _spread_points(batch, self.n, gen), torch.rand(*batch, 1, 1, generator=gen, dtype=DTYPE) + 0.8

    def build(self, x, lengthscale):
        kernel = gpytorch.kernels.keops.RBFKernel(batch_shape=torch.Size(x.shape[:-2])).to(DTYPE)
        kernel.lengthscale = 1.0
        return kernel(x / lengthscale), _rbf(x, lengthscale)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        with gpytorch.settings.max_cholesky_size(self.n):
            yield


#: every kind this project checks (KeOps last: it compiles each formula once)
FACTORIES: tuple[type[CovarianceFactory], ...] = (
    DenseTensor,
    Dense,
    Diag,
    ConstantDiag,
    DiagPlusConstantDiag,
    LazyKernel,
    Kernel,
    AddedDiag,
    LowRankPlusDiag,
    RootPlusDiag,
    Kronecker,
    BlockDiag,
    KeOpsKernel,
)


# --- batch shapes ----------------------------------------------------------------------------------------------


def _broadcasts(*shapes: Shape) -> bool:
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return False
    return True


#: hand-picked (value, mean, covariance) triples: the issue's example, covariance dims of size 1 or missing, ...
HAND_PICKED: list[Triple] = [
    ((1,), (1,), (2,)),  # gpytorch issue 2564: torch gives (2,), GPyTorch 1.15.2 repeats by 1 // 2 = 0
    ((), (), ()),
    ((3,), (), ()),
    ((4,), (), (1,)),
    ((), (2,), (1,)),
    ((2, 3), (3,), (1,)),
    ((2, 1), (1,), (1, 3)),
    ((3, 1, 2), (1, 2), (2,)),
    ((1, 1), (), (3, 2)),
    ((2, 3, 1), (1,), (1, 1, 2)),
    ((2,), (2,), (2,)),
    ((1, 2), (3, 1), ()),
    ((), (), (2, 1, 3)),
    ((3, 2), (), (3, 1)),
]


def _generated(count: int, seed: int) -> list[Triple]:
    pool = [s for rank in range(4) for s in itertools.product((1, 2, 3), repeat=rank)]
    rng = random.Random(seed)
    out: list[Triple] = []
    while len(out) < count:
        triple = (rng.choice(pool), rng.choice(pool), rng.choice(pool))
        if _broadcasts(*triple) and triple not in out and triple not in HAND_PICKED:
            out.append(triple)
    return out


#: every broadcastable (value, mean, covariance) triple the log_prob battery checks
SHAPE_TRIPLES: list[Triple] = HAND_PICKED + _generated(36, seed=20240603)

#: (value, mean, covariance) triples that do not broadcast
BAD_TRIPLES: list[Triple] = [
    ((3,), (), (2,)),
    ((2,), (3,), ()),
    ((2, 3), (3,), (3, 1)),
    ((2, 2), (), (3, 1)),
]

#: (mean batch, covariance batch) pairs that differ and broadcast: the batch battery's cases
BATCH_PAIRS: list[tuple[Shape, Shape]] = [
    ((), (2,)),  # a batch kernel and a shared mean: the batch-GP prior
    ((3,), ()),  # a batch mean and one shared kernel
    ((2, 1), (3,)),  # both broadcast
    ((1, 3), (2, 1)),
]


# --- linear algebra spies --------------------------------------------------------------------------------------


@contextlib.contextmanager
def spy_linear_algebra() -> Iterator[dict[str, list]]:
    """Record Cholesky factorisations (input shapes, every ``torch.linalg.cholesky(_ex)`` call), ``repeat`` calls
    and ``to_dense`` calls of operators."""
    calls: dict[str, list] = {"cholesky": [], "repeat": [], "to_dense": []}
    cholesky_ex, cholesky = torch.linalg.cholesky_ex, torch.linalg.cholesky
    repeat, to_dense = LinearOperator.repeat, LinearOperator.to_dense

    def cholesky_ex_spy(a, *args, **kwargs):
        calls["cholesky"].append(tuple(a.shape))
        return cholesky_ex(a, *args, **kwargs)

    def cholesky_spy(a, *args, **kwargs):
        calls["cholesky"].append(tuple(a.shape))
        return cholesky(a, *args, **kwargs)

    def repeat_spy(self, *sizes):
        calls["repeat"].append((type(self).__name__, sizes))
        return repeat(self, *sizes)

    def to_dense_spy(self):
        calls["to_dense"].append((type(self).__name__, tuple(self.shape)))
        return to_dense(self)

    with (
        mock.patch("torch.linalg.cholesky_ex", cholesky_ex_spy),
        mock.patch("torch.linalg.cholesky", cholesky_spy),
        mock.patch.object(LinearOperator, "repeat", repeat_spy),
        mock.patch.object(LinearOperator, "to_dense", to_dense_spy),
    ):
        yield calls


def _check_factorisations(calls: dict[str, list], distinct: int, per_covariance: int) -> str | None:
    """A failure message if a covariance was repeated or factorised more than once per distinct covariance."""
    if calls["repeat"]:
        return f"the covariance was repeated: {calls['repeat']}"
    for shape in calls["cholesky"]:
        if torch.Size(shape[:-2]).numel() > distinct * per_covariance:
            return f"a Cholesky factor of batch {shape[:-2]} was formed for {distinct} distinct covariance(s)"
    return None


# --- the log_prob battery --------------------------------------------------------------------------------------

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


class MVNLogProbBattery:
    """Shared tests of ``MultivariateNormal.log_prob`` for one covariance kind (``factory``)."""

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
            pytest.skip("gradients not checked for this covariance kind")
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
            pytest.skip("gradients not checked for this covariance kind")
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
        failure = _check_factorisations(calls, 1, self.factory.cholesky_batch_per_covariance)
        assert failure is None, failure
        if self.factory.diagonal:
            assert calls["cholesky"] == [] and calls["to_dense"] == [], "a diagonal covariance formed a matrix"


# --- the batch battery: a normal whose mean and covariance batch shapes differ ----------------------------------


@dataclass(frozen=True)
class Layout:
    """How the random variable's event is laid out: a plain normal (``N``), or a multitask normal of ``N/2`` data
    points x 2 tasks, interleaved (flat position ``2 i + t``) or not (``t N/2 + i``)."""

    multitask: bool
    interleaved: bool = True

    def event_shape(self, n: int) -> torch.Size:
        return torch.Size((n // 2, 2) if self.multitask else (n,))

    def positions(self, n: int) -> Tensor:
        """For each entry of the event, its position in the flat ``N``-dimensional normal."""
        if not self.multitask:
            return torch.arange(n)
        if self.interleaved:
            return torch.arange(n).view(n // 2, 2)
        return torch.arange(n).view(2, n // 2).mT

    def from_flat(self, flat: Tensor) -> Tensor:
        """``... x N`` in flat order -> ``... x event_shape``."""
        return flat[..., self.positions(flat.size(-1))]

    def to_flat(self, event: Tensor, interleaved: bool | None = None) -> Tensor:
        """``... x event_shape`` -> ``... x N`` in flat order (``interleaved`` overrides the layout's)."""
        if not self.multitask:
            return event
        if not (self.interleaved if interleaved is None else interleaved):
            event = event.mT
        return event.reshape(*event.shape[:-2], -1)

    def make(self, mean: Tensor, covar: Tensor | LinearOperator, classes: Any = gpytorch.distributions) -> Any:
        """The distribution, of ``classes.MultivariateNormal`` or ``classes.MultitaskMultivariateNormal``."""
        if not self.multitask:
            return classes.MultivariateNormal(mean, covar)
        return classes.MultitaskMultivariateNormal(mean, covar, interleaved=self.interleaved)

    def __str__(self) -> str:
        return (
            "MTMVN(interleaved)"
            if self.multitask and self.interleaved
            else ("MTMVN(non-interleaved)" if self.multitask else "MVN")
        )


#: the plain and the two multitask layouts
LAYOUTS = (Layout(False), Layout(True, True), Layout(True, False))


@dataclass
class BatchCase:
    """A distribution under test and torch's normal on the flat, broadcast dense tensors."""

    dist: Any
    ref: TorchMVN
    layout: Layout
    leaves: tuple[Tensor, ...]
    covar_batch: Shape
    label: str
    classes: Any = gpytorch.distributions  #: where the distribution classes come from


def random_variable_reference(ref: TorchMVN, layout: Layout, index: Any, keep_tasks: bool) -> tuple[Tensor, Tensor]:
    """Mean and covariance of ``X[index]`` for ``X`` drawn from ``ref`` (laid out as ``batch x event_shape``).

    Entries of one batch member covary as its covariance says; entries of different members are independent. The
    result's event is its last dimension, or its last two (flattened in the layout's order) when ``keep_tasks``.
    """
    batch, n = ref.batch_shape, ref.event_shape[0]
    event = layout.event_shape(n)
    positions = layout.positions(n).expand(batch + event)
    members = torch.arange(batch.numel()).reshape(batch + (1,) * len(event)).expand(batch + event)
    mean = layout.from_flat(ref.loc)[index]
    member, position = members[index], positions[index]
    if keep_tasks:
        member, position = layout.to_flat(member), layout.to_flat(position)
    full = ref.covariance_matrix.reshape(-1, n, n)
    same = member.unsqueeze(-1) == member.unsqueeze(-2)
    covariance = full[member.unsqueeze(-1), position.unsqueeze(-1), position.unsqueeze(-2)] * same
    return mean, covariance


def _indices(layout: Layout) -> list[tuple[Any, bool]]:
    """``(index, keep_tasks)``: batch-only, event, and mixed indices of the random variable."""
    mask = torch.tensor([True, False, True, True, False, True])
    batch_only = [((0,), True), ((slice(1, None),), True), ((torch.tensor([0, 0]),), True), ((None,), True)]
    if not layout.multitask:
        return [(i, False) for i, _ in batch_only] + [
            ((..., 1), False),
            ((..., slice(1, 4)), False),
            ((..., [3, 0, 1]), False),
            ((..., mask), False),
            ((0, ..., slice(0, 2)), False),
            ((-1, ..., 2), False),
            ((slice(None), ..., [[0, 1], [1, 2]]), False),
            (([0, 0], ..., [1, 2]), False),
            ((None, ..., None, slice(None)), False),
        ]
    return batch_only + [
        ((..., 0, slice(None)), False),
        ((..., slice(None), 1), False),
        ((..., slice(1, None), slice(None)), True),
        ((..., [0, 2], slice(None)), True),
        ((..., slice(None), [1, 0]), True),
        ((..., 1, 0), False),
        ((..., [0, 1], [1, 0]), False),
        ((0, ..., slice(0, 2), slice(None)), True),
        (([0, 0], ..., 1, slice(None)), False),
        (([0, 0], ..., slice(1, None), slice(None)), True),
    ]


def _close(name: str, got: Any, want: Tensor, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    got = got.to_dense() if isinstance(got, LinearOperator) else got
    assert isinstance(got, Tensor), f"{name}: got a {type(got).__name__}"
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != torch {tuple(want.shape)}"
    assert torch.allclose(got, want, rtol=rtol, atol=atol), (
        f"{name}: max abs error {(got - want).abs().max().item():.3g}"
    )


class MVNBatchBattery:
    """Shared tests of a (multitask) normal whose mean and covariance batch shapes differ, for one covariance kind.

    Every (mean batch, covariance batch) pair of :attr:`pairs`, in every layout of :attr:`layouts`, must give
    torch's shapes and values for ``batch_shape``, ``mean``, ``variance``, ``stddev``, ``covariance_matrix``,
    ``confidence_region``, ``entropy``, ``kl_divergence``, ``expand``, ``unsqueeze``, indexing (batch, event and
    mixed indices, against the distribution of the indexed random variable) and reparameterised samples (exactly,
    given base samples; statistically, drawn), factorising each distinct covariance once.

    :cvar factory: the covariance kind; an even event size of at least 6 (``n = 6`` gives 3 data x 2 tasks).
    :cvar cholesky_root: GPyTorch samples with the covariance's Cholesky factor (checked exactly against
        :math:`\\mu + L \\epsilon`); otherwise only statistically.
    :cvar upstream_patches: the run-time patches whose reversal restores the upstream defect.
    """

    factory: CovarianceFactory
    pairs: list[tuple[Shape, Shape]] = BATCH_PAIRS
    layouts: tuple[Layout, ...] = LAYOUTS
    cholesky_root = True
    check_gradients = True
    num_samples = 4000
    upstream_patches: tuple[str, ...] = ("mvn-batch",)

    # --- cases ------------------------------------------------------------------------------------------------

    def case(
        self,
        pair: tuple[Shape, Shape],
        layout: Layout,
        seed: int = 0,
        requires_grad: bool = False,
        classes: Any = gpytorch.distributions,
    ) -> BatchCase:
        """A case of the battery; ``classes`` (a module) provides the distribution classes under test."""
        gen = torch.Generator().manual_seed(seed)
        mean_batch, covar_batch = pair
        n = self.factory.n
        mean = torch.randn(*mean_batch, *layout.event_shape(n), generator=gen, dtype=DTYPE)
        params = self.factory.params(covar_batch, gen)
        if requires_grad:
            for t in (mean, *params):
                t.requires_grad_(True)
        covar, dense = self.factory.build(*params)
        with self.factory.context():
            dist = layout.make(mean, covar, classes)
        ref = TorchMVN(layout.to_flat(mean), dense)
        label = f"{self.factory.name} {layout} {pair}"
        return BatchCase(dist, ref, layout, (mean, *params), covar_batch, label, classes)

    def _other(self, case: BatchCase) -> tuple[Any, TorchMVN]:
        """A second distribution of batch shape ``(1,)`` (dense covariance) for KL divergences."""
        gen = torch.Generator().manual_seed(99)
        n = self.factory.n
        a = torch.randn(1, n, n, generator=gen, dtype=DTYPE)
        covar = _spd(a) + torch.eye(n, dtype=DTYPE)
        mean = torch.randn(*case.layout.event_shape(n), generator=gen, dtype=DTYPE)
        other = case.layout.make(mean, DenseLinearOperator(covar), case.classes)
        return other, TorchMVN(case.layout.to_flat(mean), covar)

    # --- checks (each raises AssertionError naming what differs) -----------------------------------------------

    def check_moments(self, case: BatchCase) -> None:
        dist, ref, layout = case.dist, case.ref, case.layout
        assert dist.batch_shape == ref.batch_shape, f"batch_shape {dist.batch_shape} != torch {ref.batch_shape}"
        _close("mean", dist.mean, layout.from_flat(ref.mean))
        _close("variance", dist.variance, layout.from_flat(ref.variance))
        _close("stddev", dist.stddev, layout.from_flat(ref.stddev))
        _close("covariance_matrix", dist.covariance_matrix, ref.covariance_matrix)
        lower, upper = dist.confidence_region()
        _close(
            "confidence_region",
            torch.stack([lower, upper]),
            layout.from_flat(torch.stack([ref.mean - 2 * ref.stddev, ref.mean + 2 * ref.stddev])),
        )
        _close("entropy", dist.entropy(), ref.entropy())

    def check_kl(self, case: BatchCase) -> None:
        other, other_ref = self._other(case)
        _close("kl(dist, other)", kl_divergence(case.dist, other), kl_divergence(case.ref, other_ref))
        _close("kl(other, dist)", kl_divergence(other, case.dist), kl_divergence(other_ref, case.ref))

    def check_expand(self, case: BatchCase) -> None:
        batch = torch.Size((2,)) + case.ref.batch_shape
        new, ref = case.dist.expand(batch), case.ref.expand(batch)
        _close("expand: mean", new.mean, case.layout.from_flat(ref.mean))
        _close("expand: covariance_matrix", new.covariance_matrix, ref.covariance_matrix)
        for dim in (0, -1):
            new = case.dist.unsqueeze(dim)
            mean_dim, covar_dim = (dim, dim) if dim >= 0 else (dim - 1, dim - 2)
            _close(f"unsqueeze({dim}): mean", new.mean, case.layout.from_flat(case.ref.mean.unsqueeze(mean_dim)))
            _close(
                f"unsqueeze({dim}): covariance_matrix",
                new.covariance_matrix,
                case.ref.covariance_matrix.unsqueeze(covar_dim),
            )

    def check_indexing(self, case: BatchCase) -> None:
        shape = case.ref.batch_shape + case.layout.event_shape(self.factory.n)
        for index, keep_tasks in _indices(case.layout):
            try:
                selected = torch.empty(shape)[index]
            except IndexError:
                continue  # not an index of this shape
            result = case.dist[index]
            if selected.dim() == 0:  # one entry: GPyTorch's convention, a 0-d mean and the entry's variance
                mean = case.layout.from_flat(case.ref.loc)[index]
                variance = case.layout.from_flat(case.ref.variance)[index]
                _close(f"[{index}]: mean", result.mean, mean)
                _close(f"[{index}]: variance", result.covariance_matrix, variance)
                continue
            is_multitask = isinstance(result, gpytorch.distributions.MultitaskMultivariateNormal)
            assert is_multitask == keep_tasks, f"[{index}]: a {type(result).__name__}"
            mean, covariance = random_variable_reference(case.ref, case.layout, index, keep_tasks)
            _close(f"[{index}]: mean", result.mean, mean)
            _close(f"[{index}]: covariance_matrix", result.covariance_matrix, covariance)

    def _base_samples_reference(self, case: BatchCase, eps: Tensor) -> Tensor:
        """:math:`\\mu_b + L_b \\epsilon_b` (GPyTorch's multitask normals read base samples in row-major order)."""
        flat_eps = eps.reshape(*eps.shape[: eps.dim() - len(case.layout.event_shape(self.factory.n))], -1)
        flat = case.ref.loc + (torch.linalg.cholesky(case.ref.covariance_matrix) @ flat_eps.unsqueeze(-1)).squeeze(-1)
        return case.layout.from_flat(flat)

    def check_samples(self, case: BatchCase) -> None:
        event = case.layout.event_shape(self.factory.n)
        shape = torch.Size((3,)) + case.ref.batch_shape + event
        assert case.dist.sample().shape == shape[1:], f"sample(): shape {tuple(case.dist.sample().shape)}"
        assert case.dist.rsample(torch.Size((3,))).shape == shape, "rsample((3,)): shape"
        if self.cholesky_root:
            eps = torch.randn(shape, dtype=DTYPE, generator=torch.Generator().manual_seed(5))
            _close(
                "rsample(base_samples)", case.dist.rsample(base_samples=eps), self._base_samples_reference(case, eps)
            )

    def check_factorisations(self, case: BatchCase) -> None:
        covar, _ = self.factory.build(*case.leaves[1:])  # a fresh covariance: nothing cached yet
        with self.factory.context():
            fresh = case.layout.make(case.leaves[0], covar, case.classes)
            with spy_linear_algebra() as calls:
                fresh.rsample(torch.Size((2,)))
        distinct = torch.Size(case.covar_batch).numel()
        failure = _check_factorisations(calls, distinct, self.factory.cholesky_batch_per_covariance)
        assert failure is None, f"rsample: {failure}"

    #: the checks every case runs (``check_*`` methods)
    checks = ("moments", "kl", "expand", "indexing", "samples", "factorisations")

    def failures(self, case: BatchCase) -> list[str]:
        """The checks ``case`` fails, with what differs."""
        out = []
        for name in self.checks:
            try:
                with self.factory.context():
                    getattr(self, f"check_{name}")(case)
            except Exception as exc:  # collect, so that one run names every failing check
                out.append(f"{case.label}: {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        return out

    def all_cases(self) -> Iterator[BatchCase]:
        for i, (pair, layout) in enumerate(itertools.product(self.pairs, self.layouts)):
            yield self.case(pair, layout, seed=i)

    # --- tests ------------------------------------------------------------------------------------------------

    def test_matches_torch(self):
        failures = [f for case in self.all_cases() for f in self.failures(case)]
        assert not failures, f"{len(failures)} failing checks:\n" + "\n".join(failures)

    def test_every_case_reproduces_the_upstream_defect(self, request: pytest.FixtureRequest):
        if request.config.getoption("--impl", default="monkeypatch") == "source":
            pytest.skip("no stock GPyTorch under --impl=source")
        import gpytorch_ext

        before = gpytorch_ext.applied()
        gpytorch_ext.unpatch(*self.upstream_patches)
        try:
            silent = [case.label for case in self.all_cases() if not self.failures(case)]
        finally:
            gpytorch_ext.patch(*[n for n in self.upstream_patches if n in before])
        assert not silent, "cases that stock GPyTorch already gets right:\n" + "\n".join(silent)

    def test_sample_statistics(self):
        """Empirical means and covariances of drawn samples, per batch member; members uncorrelated."""
        s = self.num_samples
        for i, (pair, layout) in enumerate(itertools.product(self.pairs, self.layouts[::2])):
            case = self.case(pair, layout, seed=i)
            torch.manual_seed(i)
            with self.factory.context():
                draws = layout.to_flat(case.dist.sample(torch.Size((s,))))
            n = draws.size(-1)
            draws = draws.reshape(s, -1, n)  # samples x members x N
            mean = case.ref.mean.reshape(-1, n)
            cov = case.ref.covariance_matrix.reshape(-1, n, n)
            var = cov.diagonal(dim1=-2, dim2=-1)
            centred = draws - draws.mean(0)
            emp_cov = torch.einsum("smi,smj->mij", centred, centred) / (s - 1)
            mean_tol = 6 * (var / s).sqrt()
            cov_tol = 6 * ((var.unsqueeze(-1) * var.unsqueeze(-2) + cov.square()) / s).sqrt()
            assert ((draws.mean(0) - mean).abs() <= mean_tol).all(), f"{case.label}: empirical mean"
            assert ((emp_cov - cov).abs() <= cov_tol).all(), f"{case.label}: empirical covariance"
            if draws.size(1) > 1:  # different batch members: independent
                cross = torch.einsum("si,sj->ij", centred[:, 0], centred[:, 1]) / (s - 1)
                cross_tol = 6 * (var[0].unsqueeze(-1) * var[1].unsqueeze(-2) / s).sqrt()
                assert (cross.abs() <= cross_tol).all(), f"{case.label}: members 0 and 1 correlated"

    def test_rsample_gradients_match_torch(self):
        if not (self.check_gradients and self.cholesky_root):
            pytest.skip("gradients of samples not checked for this covariance kind")
        for i, layout in enumerate(self.layouts):
            pair = self.pairs[i % len(self.pairs)]
            case = self.case(pair, layout, seed=i, requires_grad=True)
            shape = torch.Size((2,)) + case.ref.batch_shape + layout.event_shape(self.factory.n)
            eps = torch.randn(shape, dtype=DTYPE, generator=torch.Generator().manual_seed(i))
            with self.factory.context():
                ours = case.dist.rsample(base_samples=eps)
            reference = self._base_samples_reference(case, eps)
            weights = torch.randn(ours.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(i + 1))
            got = torch.autograd.grad((ours * weights).sum(), case.leaves, allow_unused=True, retain_graph=True)
            want = torch.autograd.grad((reference * weights).sum(), case.leaves, allow_unused=True)
            for j, (g, w) in enumerate(zip(got, want)):
                assert g is not None and w is not None, f"{case.label}: no gradient for leaf {j}"
                torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9, msg=f"{case.label}: gradient of leaf {j}")

    def test_one_root_for_many_batch_members(self):
        """64 means share one covariance: one factorisation, no repeat; so after ``expand`` too."""
        layout = self.layouts[0]
        n = self.factory.n
        gen = torch.Generator().manual_seed(0)
        covar, dense = self.factory.build(*self.factory.params((), gen))
        mean = torch.randn(64, *layout.event_shape(n), generator=gen, dtype=DTYPE)
        with self.factory.context():
            dist = layout.make(mean, covar)
            expanded = dist.expand(torch.Size((3, 64)))  # lazily: the covariance gets the batch shape, not copies
            with spy_linear_algebra() as calls:
                draws = dist.rsample(torch.Size((2,)))
                expanded = expanded.rsample()
        assert draws.shape == (2, 64, *layout.event_shape(n)) and expanded.shape == (3, 64, *layout.event_shape(n))
        failure = _check_factorisations(calls, 1, self.factory.cholesky_batch_per_covariance)
        assert failure is None, failure

    def test_bad_shapes_raise_value_error(self):
        case = self.case(self.pairs[0], self.layouts[0])
        batch = case.ref.batch_shape
        with pytest.raises(ValueError, match=str(tuple(batch)).replace("(", r"\(").replace(")", r"\)")):
            case.dist.expand(torch.Size((7,) * (len(batch) + 1)))
        bad = torch.zeros(3, *[b + 1 for b in batch], self.factory.n, dtype=DTYPE)
        with pytest.raises(ValueError, match="base_samples"):
            case.dist.rsample(base_samples=bad)


# --- the matmul battery: a (batch) covariance operator times a vector or matrix --------------------------------

#: (covariance batch, right-hand side shape) pairs; ``"n"`` is the event size
MATMUL_CASES: list[tuple[Shape, tuple[Any, ...]]] = [
    ((2,), ("n",)),  # a batch operator times a vector
    ((2, 3), ("n",)),
    ((), ("n",)),
    ((2,), ("n", 3)),
    ((), (2, "n", 3)),  # the right-hand side carries the batch
    ((2,), (1, "n", 1)),
]


class MatmulBattery:
    """``covariance @ rhs`` for one covariance kind: values and gradients (of the right-hand side and of the
    covariance's leaves) equal ``torch.matmul`` on the dense matrix built by hand.

    :cvar upstream_patches: the run-time patches whose reversal restores the upstream defect (a batch operator times
        a vector cannot backpropagate); :attr:`reproduces_upstream` says whether this kind shows it.
    """

    factory: CovarianceFactory
    cases: list[tuple[Shape, tuple[Any, ...]]] = MATMUL_CASES
    upstream_patches: tuple[str, ...] = ("matmul-vector-backward",)
    reproduces_upstream = True

    def _failures(self) -> list[str]:
        failures = []
        for i, (covar_batch, rhs_shape) in enumerate(self.cases):
            gen = torch.Generator().manual_seed(i)
            params = tuple(p.requires_grad_(True) for p in self.factory.params(covar_batch, gen))
            rhs = torch.randn(*[self.factory.n if s == "n" else s for s in rhs_shape], generator=gen, dtype=DTYPE)
            rhs.requires_grad_(True)
            label = f"{self.factory.name} {covar_batch} @ {tuple(rhs.shape)}"
            try:
                with self.factory.context():
                    covar, dense = self.factory.build(*params)
                    got = covar @ rhs
                    got = got.to_dense() if isinstance(got, LinearOperator) else got
                    weights = torch.randn(got.shape, generator=gen, dtype=DTYPE)
                    grads = torch.autograd.grad(
                        (got * weights).sum(), (rhs, *params), allow_unused=True, retain_graph=True
                    )
                want = torch.matmul(dense, rhs)
                want_grads = torch.autograd.grad((want * weights).sum(), (rhs, *params), allow_unused=True)
                _close(f"{label}: value", got, want)
                for j, (g, w) in enumerate(zip(grads, want_grads)):
                    assert (g is None) == (w is None), f"{label}: gradient {j} missing"
                    if g is not None:
                        _close(f"{label}: gradient {j}", g, w)
            except Exception as exc:  # collect, so that one run names every failing case
                failures.append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        return failures

    def test_matmul_gradients_match_torch(self):
        failures = self._failures()
        assert not failures, "\n".join(failures)

    def test_upstream_defect_reproduced(self, request: pytest.FixtureRequest):
        if request.config.getoption("--impl", default="monkeypatch") == "source":
            pytest.skip("no stock linear_operator under --impl=source")
        if not self.reproduces_upstream:
            pytest.skip(f"{self.factory.name} multiplies without linear_operator's Matmul function")
        import gpytorch_ext

        before = gpytorch_ext.applied()
        gpytorch_ext.unpatch(*self.upstream_patches)
        try:
            failures = self._failures()
        finally:
            gpytorch_ext.patch(*[n for n in self.upstream_patches if n in before])
        assert any("@ (" + str(self.factory.n) + ",)" in f for f in failures), "no vector case fails upstream"
