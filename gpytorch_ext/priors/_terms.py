"""One prior term per (parameter, prior), lined up with the data term: the repair behind the ``prior-terms`` patch.

Private and self-contained (imports only torch and gpytorch, plus the sibling private modules) so that it can
be vendored into GPyTorch as the upstream change:

- :func:`named_priors` replaces ``gpytorch.module._extract_named_priors`` (what ``Module.named_priors`` yields,
  so every MAP objective and Pyro factor built on it): a module reachable on two paths contributes its priors
  once, and one prior object contributes once per parameter it governs (twice for two modules, once for two
  names of one shared ``nn.Parameter``).
- :func:`add_prior_terms` replaces the prior part of ``ExactMarginalLogLikelihood._add_other_terms``: each prior
  term is summed over its parameter's own dimensions and broadcast against the data term on trailing batch
  dimensions, as torch broadcasts, so a data batch ``2 x 3`` over parameters of batch ``3`` works.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from ._sites import entries, resolve

__all__ = ["add_prior_terms", "named_priors", "prior_term"]


def _join(prefix: str, name: str) -> str:
    return prefix + ("." if prefix else "") + name


def named_priors(module: torch.nn.Module, prefix: str = "") -> Iterator[tuple]:
    """``(name, module, prior, closure, setting_closure)`` once per (parameter, prior) of ``module``'s tree.

    In GPyTorch's order, each under the name of its first path. Only a prior object registered more than once
    needs its closure evaluated (to find the parameters it governs); every other entry is yielded as it is.
    """
    listed = []
    seen: set[tuple[int, str]] = set()
    for owner_prefix, owner, prior_name in entries(module, prefix):
        if (id(owner), prior_name) not in seen:  # a module reachable on two paths: its priors once
            seen.add((id(owner), prior_name))
            listed.append((owner_prefix, owner, prior_name, owner._priors[prior_name]))
    shared = Counter(id(entry[0]) for _, _, _, entry in listed)
    keys: set[tuple] = set()
    for owner_prefix, owner, prior_name, (prior, closure, setting_closure) in listed:
        if shared[id(prior)] > 1:
            key = resolve(owner, prior_name, owner_prefix).key
            if key in keys:
                continue  # one prior object on one parameter under two names
            keys.add(key)
        yield _join(owner_prefix, prior_name), owner, prior, closure, setting_closure


def _batch_shape(module: torch.nn.Module) -> torch.Size | None:
    try:
        shape = getattr(module, "batch_shape", None)
    except Exception:  # a property that cannot be computed on this module
        return None
    return shape if isinstance(shape, torch.Size) else None


def _model_batch_shape(model: torch.nn.Module) -> torch.Size | None:
    """The broadcast of the ``batch_shape`` of the model's modules that have one (``None``: none or clashing)."""
    shapes = [s for s in map(_batch_shape, model.modules()) if s is not None]
    try:
        return torch.broadcast_shapes(*shapes) if shapes else None
    except RuntimeError:
        return None


def _fits(shape: torch.Size, data_shape: torch.Size) -> bool:
    """Whether ``shape`` broadcasts into ``data_shape`` (aligned on the right, as torch aligns)."""
    if len(shape) > len(data_shape):
        return False
    return all(s == 1 or s == d for s, d in zip(reversed(shape), reversed(data_shape)))


def prior_term(log_prob: Tensor, data_shape: torch.Size, batch_shape: torch.Size | None, name: str = "") -> Tensor:
    r"""A prior's log-density summed over its parameter's own dimensions, shaped to add to the data term.

    The first dimensions of ``log_prob`` are the parameter's batch dimensions ``batch_shape`` (when the term
    starts with them and they are fewer than the data term's) or, as GPyTorch lines them up, as many as the data
    term has. The rest are summed, and the result broadcasts against ``data_shape`` on trailing dimensions.

    :param log_prob: the prior's ``log_prob`` at its closure's value, e.g. ``3 x 1 x d`` for a lengthscale.
    :param data_shape: the shape of the data term, e.g. ``2 x 3``.
    :param batch_shape: the batch shape of the parameter's module (``None`` if unknown).
    :param name: the prior's name, for the error message.
    :raises ValueError: naming the prior and both shapes when the term cannot be lined up with the data term.
    """
    n = len(data_shape)
    if n == 0:  # one objective: every element of every term adds to it, exactly as GPyTorch sums them
        return log_prob.reshape(-1).sum(dim=-1)
    k = n
    if batch_shape is not None and len(batch_shape) < n and log_prob.shape[: len(batch_shape)] == batch_shape:
        k = len(batch_shape)
    term = log_prob.reshape(*log_prob.shape[:k], -1).sum(dim=-1)
    if _fits(term.shape, data_shape):
        return term
    for k in range(min(n, log_prob.dim()) - 1, 0, -1):  # the longest leading batch that broadcasts, torch-like
        if _fits(log_prob.shape[:k], data_shape):
            return log_prob.reshape(*log_prob.shape[:k], -1).sum(dim=-1)
    raise ValueError(
        f"the prior term {name!r} of shape {tuple(log_prob.shape)} (parameter batch shape "
        f"{'unknown' if batch_shape is None else tuple(batch_shape)}) does not broadcast against the data term of "
        f"shape {tuple(data_shape)}"
    )


def add_prior_terms(res: Tensor, model: torch.nn.Module, priors: Iterable[tuple] | None = None) -> Tensor:
    """Add the log-density of every prior of ``model`` to the data term ``res`` (see :func:`prior_term`).

    :param res: the data term (batch shape of the model's output), changed in place and returned.
    :param priors: the ``named_priors`` entries to add (default: ``model.named_priors()``).
    """
    model_batch: list[torch.Size | None] = []
    for name, module, prior, closure, _ in model.named_priors() if priors is None else priors:
        log_prob = prior.log_prob(closure(module))
        batch_shape = None
        if res.dim() > 0:
            batch_shape = _batch_shape(module)
            if batch_shape is None:
                if not model_batch:
                    model_batch.append(_model_batch_shape(model))
                batch_shape = model_batch[0]
        res.add_(prior_term(log_prob, res.shape, batch_shape, name))
    return res
