"""The two registered patches: each passes the public PatchTestCase (its probe reproduces the upstream defect with the
patch reverted, shows it gone applied, and the patch reverts to the very same objects); MAP objectives stay
upstream's wherever upstream was right; sampling plans are reused safely.
"""

from __future__ import annotations

import warnings

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.priors import GammaPrior

from gpytorch_ext.priors import TruncatedPrior
from gpytorch_ext.testing import PatchTestCase

from ._impl import PriorConstraintWarning
from ._models import gamma_model

PATCH = "constraint-aware-priors"
BOTH = ("constraint-aware-priors", "prior-terms")


class TestConstraintAwarePriors(PatchTestCase):
    patch_name = "constraint-aware-priors"
    upstream_summary = "1 distinct of 64 noise values"
    patched_summary = "0 of 400 sample_from_prior draws out of bounds; 64 distinct of 64"


class TestPriorTerms(PatchTestCase):
    patch_name = "prior-terms"
    upstream_summary = "counted 2x"
    patched_summary = "counted 1x; 2x3 data over batch-3 priors: shape (2, 3)"


def test_the_probes_need_neither_pyro_nor_scipy_nor_botorch(tmp_path, impl):
    """The self-check report runs where only torch and GPyTorch are installed (``make demo``)."""
    if impl == "source":
        pytest.skip("the self-check reverts the run-time patches; there is no stock GPyTorch under --impl=source")
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            for name in ("pyro", "scipy", "botorch"):
                sys.modules[name] = None  # importing any of them now fails
            import gpytorch_ext
            from gpytorch_ext._registry import get
            for name in ("constraint-aware-priors", "prior-terms"):
                result = get(name).self_check()
                print(name, result.reproduced, result.passed, result.patched)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(" True True " in line for line in lines), out.stdout + out.stderr


def _likelihood(prior, constraint, batch=500):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorConstraintWarning)
        return gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=prior, noise_constraint=constraint, batch_shape=torch.Size([batch])
        )


# --- MAP objectives ---------------------------------------------------------------------------------


@pytest.mark.parametrize("truncated", [False, True], ids=["plain-priors", "truncated-prior"])
def test_exact_mll_and_gradients_identical_to_upstream(upstream, truncated):
    noise_prior = TruncatedPrior(GammaPrior(0.5, 2.0), 1e-4) if truncated else GammaPrior(0.5, 2.0)
    model = gamma_model(noise_prior=noise_prior)
    x, y = model.train_inputs[0], model.train_targets
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()

    def value_and_grads():
        model.zero_grad()
        loss = mll(model(x), y)
        loss.backward()
        return loss.detach().clone(), [p.grad.clone() for p in model.parameters()]

    with upstream(*BOTH):
        expected, expected_grads = value_and_grads()
    got, got_grads = value_and_grads()
    assert torch.equal(got, expected)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, expected_grads))


def test_botorch_fit_objective_identical_to_upstream(upstream):
    pytest.importorskip("botorch")
    from botorch.models import SingleTaskGP

    x = torch.rand(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = SingleTaskGP(x, (x**2).sum(-1, keepdim=True))
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with upstream(*BOTH):
        expected = mll(model(*model.train_inputs), model.train_targets)
    assert torch.equal(mll(model(*model.train_inputs), model.train_targets), expected)


def test_reused_truncation_follows_the_prior_it_was_built_for():
    """Sampling plans are reused across calls for equal priors; a changed prior must get its own."""
    pyro = pytest.importorskip("pyro")

    def noise_site(likelihood):
        trace = pyro.poutine.trace(likelihood.pyro_sample_from_prior).get_trace()
        return trace.nodes["noise_covar.noise_prior"]["fn"]

    first = noise_site(_likelihood(GammaPrior(0.5, 2.0), None, batch=3))
    again = noise_site(_likelihood(GammaPrior(0.5, 2.0), None, batch=3))
    other_rate = noise_site(_likelihood(GammaPrior(0.5, 7.0), None, batch=3))
    other_bound = noise_site(_likelihood(GammaPrior(0.5, 2.0), GreaterThan(1e-3), batch=3))
    other_shape = noise_site(_likelihood(GammaPrior(0.5, 2.0), None, batch=4))
    for fn in (first, again, other_rate, other_bound, other_shape):
        assert isinstance(fn, gpytorch.priors.TruncatedPrior)  # the patch's class, or the patched source's
    assert float(other_rate.base_prior.rate) == 7.0 and float(first.base_prior.rate) == 2.0
    assert float(other_bound.lower.min()) == pytest.approx(1e-3) and float(first.lower.min()) == pytest.approx(1e-4)
    assert other_shape.batch_shape == torch.Size([4, 1]) and first.batch_shape == torch.Size([3, 1])

    likelihood = _likelihood(GammaPrior(0.5, 2.0), None, batch=3)
    likelihood.noise_covar.noise_prior.rate.fill_(9.0)  # the same prior object, changed in place
    assert float(noise_site(likelihood).base_prior.rate) == 9.0

    # what a call returns is the caller's to change; a later call must not see that change
    sampled = _likelihood(GammaPrior(0.5, 2.1), None, batch=5).pyro_sample_from_prior()  # a new plan
    sampled.noise_covar.noise_prior.rate.fill_(100.0)
    sampled.double()
    fn = noise_site(_likelihood(GammaPrior(0.5, 2.1), None, batch=5))
    assert float(fn.base_prior.rate) == pytest.approx(2.1) and fn.base_prior.rate.dtype == torch.float32
