"""The tying battery: a model tied by :func:`~gpytorch_ext.equalize` against the same model written by hand.

A case (a pytest class mixing in :class:`TyingBattery`) provides

- :meth:`~TyingBattery.make_untied`: the model with separate parameters, and :meth:`~TyingBattery.tie`, the
  ``equalize`` calls that tie it;
- :meth:`~TyingBattery.make_reference`: the same model written by hand with one shared ``nn.Parameter`` (and its
  prior once), and :attr:`~TyingBattery.to_reference`, reference parameter name -> tied parameter name;
- the training data through the model (``model.train_inputs`` / ``model.train_targets``) and, for predictions,
  :meth:`~TyingBattery.predict`.

Every test compares the tied model with the reference, through the tools that walk a module: parameters,
``get_parameter``, ``hyperparameters``, priors, the MLL and its gradient steps, predictions, ``state_dict`` and
``load_state_dict`` (strict or not, own and untied checkpoints), BoTorch's ``module_rollback_ctx``, ``deepcopy``,
pickle, ``.to``, and (:attr:`~TyingBattery.botorch_fit`) BoTorch's ``fit_gpytorch_mll``.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any, ClassVar

import gpytorch
import pytest
import torch
from torch import Tensor, nn

from ..tying import tied as tied_groups

__all__ = ["TyingBattery", "log_prior"]


def log_prior(model: nn.Module) -> Tensor:
    """The prior term GPyTorch's MLLs add: the sum over ``named_priors()``."""
    return sum(prior.log_prob(closure(module)).sum() for _, module, prior, closure, _ in model.named_priors())


def _tied_names(model: nn.Module) -> list[list[str]]:
    """Names of each parameter registered under several names, from ``named_parameters(remove_duplicate=False)``."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


class TyingBattery:
    """Mixin for a pytest test class: one tie kind, checked against the model written by hand."""

    to_reference: ClassVar[dict[str, str]]  # reference parameter name -> tied parameter name
    steps: ClassVar[int] = 15  # Adam steps of the training comparison
    lr: ClassVar[float] = 0.05  # their learning rate
    botorch_fit: ClassVar[bool] = False  # whether fit_gpytorch_mll applies (a BoTorch model)

    # ------------------------------------------------------------------------------------------ the case

    def make_untied(self) -> nn.Module:
        """The model with a separate parameter (and prior) per member, freshly built (the same on every call)."""
        raise NotImplementedError

    def tie(self, model: nn.Module) -> nn.Module:
        """Tie ``model`` in place with :func:`~gpytorch_ext.equalize` and return it."""
        raise NotImplementedError

    def make_reference(self) -> nn.Module:
        """The same model written by hand: one ``nn.Parameter`` (and one prior) where the tied model has a tie."""
        raise NotImplementedError

    def make_tied(self) -> nn.Module:
        """:meth:`tie` of :meth:`make_untied`."""
        return self.tie(self.make_untied())

    def mll(self, model: nn.Module) -> gpytorch.mlls.MarginalLogLikelihood:
        """The training objective (default: the exact MLL)."""
        return gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)

    def loss(self, model: nn.Module) -> Tensor:
        model.train()
        return -self.mll(model)(model(*model.train_inputs), model.train_targets).sum()

    def predict(self, model: nn.Module) -> Tensor | None:
        """Posterior predictions in eval mode (``None``: the case has none)."""
        return None

    def pair(self) -> tuple[nn.Module, nn.Module]:
        """Both models with equal, perturbed starting values (the reference's copied into the tied model)."""
        torch.manual_seed(0)
        tied, ref = self.make_tied(), self.make_reference()
        params = dict(tied.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            for name, value in ref.named_parameters():
                value.mul_(1 + 0.1 * torch.rand_like(value)).add_(0.05 * torch.rand_like(value))  # up: in bounds
                params[self.to_reference[name]].copy_(value)
        return tied, ref

    def assert_same_values(self, tied: nn.Module, ref: nn.Module, **tolerance: Any) -> None:
        params = dict(tied.named_parameters(remove_duplicate=False))
        for name, value in ref.named_parameters():
            mine = params[self.to_reference[name]]
            torch.testing.assert_close(mine, value.expand_as(mine), **tolerance)

    def assert_same_loss(self, tied: nn.Module, ref: nn.Module) -> None:
        torch.testing.assert_close(self.loss(tied), self.loss(ref), rtol=1e-12, atol=1e-12)

    # ------------------------------------------------------------------------------------------ parameters

    def test_one_parameter_per_reference_parameter(self):
        tied, ref = self.pair()
        names = [n for n, _ in tied.named_parameters()]
        assert sorted(names) == sorted(self.to_reference[n] for n, _ in ref.named_parameters())
        assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in ref.parameters())
        groups = tied_groups(tied)
        assert groups, "the case ties nothing"
        for names in groups:
            assert len({id(tied.get_parameter(name)) for name in names}) == 1

    def test_get_parameter_returns_the_shared_parameter_for_every_name(self):
        tied, _ = self.pair()
        for name, param in tied.named_parameters(remove_duplicate=False):
            assert tied.get_parameter(name) is param

    def test_hyperparameters_yield_each_parameter_once(self):
        import gpytorch_ext

        if "shared-parameters" not in gpytorch_ext.applied():
            pytest.skip("hyperparameters() yields a shared parameter once with the shared-parameters patch")
        tied, _ = self.pair()
        hyper = list(tied.hyperparameters())
        assert len({id(p) for p in hyper}) == len(hyper)
        assert {id(p) for p in hyper} | {id(p) for p in tied.variational_parameters()} == {
            id(p) for p in tied.parameters()
        }

    # ------------------------------------------------------------------------------------------ objective

    def test_log_prior_equals_reference(self):
        tied, ref = self.pair()
        assert len(list(tied.named_priors())) == len(list(ref.named_priors()))
        torch.testing.assert_close(log_prior(tied), log_prior(ref), rtol=0, atol=0)

    def test_mll_equals_reference(self):
        self.assert_same_loss(*self.pair())

    def test_training_equals_reference(self):
        tied, ref = self.pair()
        opts = [torch.optim.Adam(m.parameters(), lr=self.lr) for m in (tied, ref)]
        for _ in range(self.steps):
            losses = []
            for model, opt in zip((tied, ref), opts):
                opt.zero_grad()
                loss = self.loss(model)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-10)
        self.assert_same_values(tied, ref, rtol=1e-10, atol=1e-10)

    def test_predictions_equal_reference(self):
        tied, ref = self.pair()
        first = self.predict(tied)
        if first is None:
            pytest.skip("the case makes no predictions")
        torch.testing.assert_close(first, self.predict(ref), rtol=1e-8, atol=1e-8)

    # ------------------------------------------------------------------------------------------ state

    def test_state_dict_has_the_untied_layout_and_writable_values(self):
        tied, ref = self.pair()
        untied = self.make_untied()
        state = tied.state_dict()
        assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in untied.state_dict().items()}
        for value in state.values():
            value[...] = value.clone()  # in place, as BoTorch's rollback writes
        tied.load_state_dict(state, strict=True)
        self.assert_same_loss(tied, ref)

    def test_load_own_checkpoint_strict_assign_and_not(self):
        for strict, assign in ((True, False), (False, False), (True, True)):
            tied, ref = self.pair()
            fresh = self.make_tied()
            structure = [len(n) for n in _tied_names(fresh)]
            result = nn.Module.load_state_dict(fresh, tied.state_dict(), strict=strict, assign=assign)
            assert not result.missing_keys and not result.unexpected_keys
            assert [len(n) for n in _tied_names(fresh)] == structure  # assign=True too: one parameter per tie
            for name, param in fresh.named_parameters(remove_duplicate=False):
                torch.testing.assert_close(param, tied.get_parameter(name), rtol=0, atol=0)
            if assign:
                continue  # the values are checked; assign=True may also replace buffers (BoTorch's transforms)
            fresh.load_state_dict(tied.state_dict(), strict=strict)  # the model's own, e.g. BoTorch's
            self.assert_same_loss(fresh, ref)
            tied.load_state_dict(tied.state_dict(), strict=strict)
            self.assert_same_loss(tied, ref)

    def test_untied_checkpoints_load_both_ways(self):
        tied, ref = self.pair()
        untied = self.make_untied()
        untied.load_state_dict(tied.state_dict(), strict=True)  # a tied checkpoint into an untied model
        for key, value in tied.state_dict().items():
            torch.testing.assert_close(untied.state_dict()[key], value, rtol=0, atol=0)
        with torch.no_grad():
            for param in untied.parameters():
                param.add_(0.1 * torch.rand_like(param))  # the members now differ
        expected = dict(self.tie(copy.deepcopy(untied)).named_parameters(remove_duplicate=False))
        for strict in (True, False):
            fresh = self.make_tied()
            nn.Module.load_state_dict(fresh, untied.state_dict(), strict=strict)
            for name, param in fresh.named_parameters(remove_duplicate=False):
                torch.testing.assert_close(param, expected[name], rtol=0, atol=0)
            for names in tied_groups(fresh):  # the first match's value wins
                assert torch.isin(fresh.get_parameter(names[0]), untied.get_parameter(names[0])).all()
                if len(names) > 1:
                    assert not torch.isin(fresh.get_parameter(names[0]), untied.get_parameter(names[-1])).any()
            fresh.load_state_dict(untied.state_dict(), strict=strict)  # the model's own: still one value per tie
            for names in tied_groups(fresh):
                value = fresh.get_parameter(names[0])
                assert len({id(fresh.get_parameter(name)) for name in names}) == 1
                assert any(torch.isin(value, untied.get_parameter(name)).all() for name in names)

    def test_botorch_module_rollback_ctx_restores(self):
        context_managers = pytest.importorskip("botorch.utils.context_managers")
        tied, ref = self.pair()
        before = {k: v.clone() for k, v in tied.state_dict().items()}
        with context_managers.module_rollback_ctx(tied):
            with torch.no_grad():
                for param in tied.parameters():
                    param.add_(0.5)
        after = tied.state_dict()
        for key, value in before.items():
            torch.testing.assert_close(after[key], value, rtol=0, atol=0)
        self.assert_same_loss(tied, ref)

    # ------------------------------------------------------------------------------------------ copies

    def test_deepcopy_and_pickle_keep_the_tie(self):
        tied, ref = self.pair()
        shifted = copy.deepcopy(ref)
        with torch.no_grad():
            for param in shifted.parameters():
                param.add_(0.3)
        for clone in (copy.deepcopy(tied), pickle.loads(pickle.dumps(tied))):
            assert [len(n) for n in _tied_names(clone)] == [len(n) for n in _tied_names(tied)]
            self.assert_same_loss(clone, ref)
            with torch.no_grad():
                for param in clone.parameters():
                    param.add_(0.3)  # the copy is tied to itself, not to the original
            self.assert_same_loss(tied, ref)
            self.assert_same_values(clone, shifted, rtol=1e-12, atol=1e-12)
            self.assert_same_loss(clone, shifted)

    def test_to_float_and_double_keep_the_tie(self):
        tied, ref = self.pair()
        structure = [len(n) for n in _tied_names(tied)]
        tied.float(), ref.float()
        assert {p.dtype for p in tied.parameters()} == {torch.float32}
        assert [len(n) for n in _tied_names(tied)] == structure
        tied.double(), ref.double()  # back, through the same rounding
        assert [len(n) for n in _tied_names(tied)] == structure
        self.assert_same_loss(tied, ref)

    # ------------------------------------------------------------------------------------------ BoTorch

    @pytest.mark.slow
    def test_fit_gpytorch_mll_reaches_the_reference(self):
        if not self.botorch_fit:
            pytest.skip("not a BoTorch model")
        fit = pytest.importorskip("botorch.fit")
        from botorch.optim.closures import get_loss_closure_with_grads
        from botorch.optim.fit import fit_gpytorch_mll_scipy
        from botorch.optim.utils import get_parameters

        tied, ref = self.pair()
        mll = self.mll(tied)
        fit.fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": 200}})
        ref_mll = self.mll(ref)  # the joint fit, written out (BoTorch would fit outputs or models one by one)
        ref_mll.train()
        closure = get_loss_closure_with_grads(ref_mll, parameters=get_parameters(ref_mll, requires_grad=True))
        fit_gpytorch_mll_scipy(ref_mll, closure=closure, options={"maxiter": 200})
        for names in tied_groups(tied):
            assert len({id(tied.get_parameter(name)) for name in names}) == 1
        torch.testing.assert_close(self.loss(tied), self.loss(ref), rtol=1e-5, atol=1e-5)
