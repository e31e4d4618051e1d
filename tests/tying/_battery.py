"""Shared battery: a model tied with ``equalize`` against the same model written with one shared parameter.

Each case provides ``make_tied()`` (the model with separate parameters, tied by ``equalize``),
``make_reference()`` (the same model written by hand with one shared parameter, registered once, with its
prior once) and ``to_reference`` (reference parameter name -> tied parameter name). The battery checks that
both models have the same parameters, log prior, MLL, training trajectory, predictions and state handling.
"""

from __future__ import annotations

import copy

import gpytorch
import torch


def log_prior(model: torch.nn.Module) -> torch.Tensor:
    """The prior term GPyTorch's MLLs add: the sum over ``named_priors()``."""
    return sum(prior.log_prob(closure(module)).sum() for _, module, prior, closure, _ in model.named_priors())


class TyingBattery:
    """Mixin for ``unittest.TestCase``-free pytest classes; subclasses define the case."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    to_reference: dict[str, str]  # reference parameter name -> tied parameter name
    steps = 15

    def make_tied(self) -> gpytorch.models.GP:
        raise NotImplementedError

    def make_reference(self) -> gpytorch.models.GP:
        raise NotImplementedError

    def mll(self, model: gpytorch.models.GP) -> gpytorch.mlls.MarginalLogLikelihood:
        return gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)

    def loss(self, model: gpytorch.models.GP) -> torch.Tensor:
        output = model(self.train_x)
        return -self.mll(model)(output, self.train_y).sum()

    def pair(self) -> tuple[gpytorch.models.GP, gpytorch.models.GP]:
        """Both models with equal starting values (reference values copied into the tied model)."""
        torch.manual_seed(0)
        tied, ref = self.make_tied(), self.make_reference()
        with torch.no_grad():
            params = dict(tied.named_parameters())
            for name, value in ref.named_parameters():
                value.add_(0.1 * torch.randn_like(value))
                params[self.to_reference[name]].copy_(value)
        return tied, ref

    # ------------------------------------------------------------------------------------------ tests

    def test_same_parameters(self):
        tied, ref = self.pair()
        names = [n for n, _ in tied.named_parameters()]
        assert sorted(names) == sorted(self.to_reference[n] for n, _ in ref.named_parameters())
        assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in ref.parameters())

    def test_log_prior_equals_reference(self):
        tied, ref = self.pair()
        assert len(list(tied.named_priors())) == len(list(ref.named_priors()))
        torch.testing.assert_close(log_prior(tied), log_prior(ref), rtol=0, atol=0)

    def test_mll_equals_reference(self):
        tied, ref = self.pair()
        torch.testing.assert_close(self.loss(tied), self.loss(ref), rtol=1e-12, atol=1e-12)

    def test_training_equals_reference(self):
        tied, ref = self.pair()
        tied.train(), ref.train()
        opts = [torch.optim.Adam(m.parameters(), lr=0.05) for m in (tied, ref)]
        for _ in range(self.steps):
            losses = []
            for model, opt in zip((tied, ref), opts):
                opt.zero_grad()
                loss = self.loss(model)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-10)
        params = dict(tied.named_parameters())
        for name, value in ref.named_parameters():
            mine = params[self.to_reference[name]]
            torch.testing.assert_close(mine, value.expand_as(mine), rtol=1e-10, atol=1e-10)

    def test_predictions_and_caches_equal_reference(self):
        tied, ref = self.pair()
        means = []
        for model in (tied, ref):
            model.eval()
            with torch.no_grad():
                first = model.likelihood(model(self.test_x)).mean
                model.initialize(**{n: v + 0.2 for n, v in _hyper(model).items()})  # a change must clear caches
                model.train(), model.eval()
                second = model.likelihood(model(self.test_x)).mean
            means.append((first, second))
        for a, b in zip(*means):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)

    def test_state_dict_round_trip(self):
        tied, ref = self.pair()
        fresh = self.make_tied()
        fresh.load_state_dict(tied.state_dict())
        torch.testing.assert_close(self.loss(fresh), self.loss(ref), rtol=1e-12, atol=1e-12)
        assert set(fresh.state_dict()) == set(tied.state_dict())

    def test_deepcopy_and_dtype(self):
        tied, ref = self.pair()
        clone = copy.deepcopy(tied)
        assert len(list(clone.parameters())) == len(list(ref.parameters()))
        torch.testing.assert_close(self.loss(clone), self.loss(ref), rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            for p in clone.parameters():
                p.add_(0.3)  # the copy is tied to itself, not to the original
        torch.testing.assert_close(self.loss(tied), self.loss(ref), rtol=1e-12, atol=1e-12)
        single = tied.float()
        assert {p.dtype for p in single.parameters()} == {torch.float32}
        assert len(list(single.parameters())) == len(list(ref.parameters()))
        ref.float()
        saved = (self.train_x, self.train_y)
        self.train_x, self.train_y = self.train_x.float(), self.train_y.float()
        try:
            torch.testing.assert_close(self.loss(single), self.loss(ref), rtol=1e-5, atol=1e-5)
        finally:
            self.train_x, self.train_y = saved


def _hyper(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Constrained values of the raw parameters, by their ``initialize`` names (one per tied group)."""
    out = {}
    for name, _ in model.named_parameters():
        path, _, attr = name.rpartition(".")
        if attr.startswith("raw_"):
            alias = attr[4:]
            module = model.get_submodule(path)
            out[f"{path}.{alias}" if path else alias] = getattr(module, alias).detach().clone()
    return out
