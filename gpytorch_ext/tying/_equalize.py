"""The front door: :func:`equalize`, :func:`untie`, :func:`tied`.

This module imports only torch and gpytorch (Pyro and BoTorch only when they call in), so it can be vendored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from gpytorch.module import Module
from torch import nn

from . import _botorch, _pyro
from ._pyro import TIES
from ._tie import Tie, split

__all__ = ["equalize", "tied", "untie"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_HOOKS = "_equalize_load_hooks"  # root.__dict__: the handles of the load_state_dict pre- and post-hook
_ENTRY_POINTS = ("pyro_sample_from_prior", "pyro_load_from_samples", "custom_fit")  # set on the root's __dict__


def equalize(module: ModuleT, sites: str | Sequence[str], *, keep_dist: bool = False) -> ModuleT:
    r"""
    Tie, in place, every parameter of ``module`` whose name fully matches one of ``sites``, as
    :func:`pyro.poutine.equalize` does for Pyro sites: the tied parameters become one
    :class:`torch.nn.Parameter`, registered under each of their names, whose starting value is the value of the
    **first match** in ``module.named_parameters()`` order.

    Names are matched with :func:`re.fullmatch`, both as ``named_parameters()`` prints them
    (``covar_module.base_kernel.raw_lengthscale``) and by their constrained alias without ``raw_``
    (``covar_module.base_kernel.lengthscale``). All parameters matched by one call form one group; call
    ``equalize`` again to add further groups.

    - **One parameter.** ``named_parameters``, ``parameters``, ``get_parameter``, optimizers, ``deepcopy``, pickle
      and ``.to`` see one parameter, as in a model written by hand with one shared ``nn.Parameter``.
    - **Shapes.** The batch dimensions of a member (the leading ``module.batch_shape`` dimensions) are tied as
      well, and members whose shapes differ by broadcasting share one value: tying a kernel with
      ``batch_shape=(3,)`` (``raw_lengthscale`` of shape ``3 x 1 x d``) gives one ``1 x 1 x d`` parameter. Such a
      member's constrained value (``lengthscale``) and its ``state_dict()`` entry keep the member's own shape.
      Shapes that do not broadcast raise :class:`ValueError`.
    - **Constraints.** Tied parameters must have equal constraints (same class and bounds), dtypes and devices,
      or :class:`ValueError` names the conflicting parameters.
    - **Priors.** With ``keep_dist=False`` (default) only the first match's priors stay: the group's prior is
      counted once, as in a model written with one shared parameter, and ``pyro_sample_from_prior`` samples one
      site per group. With ``keep_dist=True`` every member's prior stays (the model is conditioned on the members
      being equal); under Pyro the other members' priors become observed sites (:func:`pyro.poutine.equalize`).
    - **Checkpoints.** ``state_dict()`` keeps the untied layout, so checkpoints load into tied and untied models
      alike; loading a checkpoint with different values for the members takes the first match's value.
    - **BoTorch.** ``fit_gpytorch_mll`` fits a model tied across its outputs (multi-output ``SingleTaskGP``) or
      across the models of a ``ModelListGP`` jointly, not one output or model at a time.

    :func:`untie` undoes the tie, :func:`tied` lists the groups. Call ``pyro_sample_from_prior`` and
    ``pyro_load_from_samples`` on ``module`` itself (the copies GPyTorch's Pyro integration makes are tied there).

    Example:

        >>> import gpytorch, torch
        >>> from gpytorch_ext.tying import equalize, tied
        >>> prior = gpytorch.priors.GammaPrior(3.0, 6.0)
        >>> k = gpytorch.kernels.RBFKernel(lengthscale_prior=prior) + gpytorch.kernels.RBFKernel(
        ...     lengthscale_prior=prior
        ... )
        >>> k = equalize(k, r"kernels\.\d+\.lengthscale")
        >>> tied(k)
        [('kernels.0.raw_lengthscale', 'kernels.1.raw_lengthscale')]
        >>> [name for name, _ in k.named_parameters()]
        ['kernels.0.raw_lengthscale']
        >>> k.get_parameter("kernels.1.raw_lengthscale") is k.kernels[0].raw_lengthscale
        True
        >>> [name for name, *_ in k.named_priors()]
        ['kernels.0.lengthscale_prior']

    :param module: the model (any :class:`torch.nn.Module` tree of GPyTorch modules).
    :param sites: a regular expression, or a list of them, matched against the parameter names.
    :param keep_dist: keep the priors of the second and later matches (condition on equality).
    :return: ``module``, tied in place.
    """
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ValueError("equalize: no pattern given")
    names = _members(module, _match(module, sites, _parameter_names(module), "equalize"))
    taken = sorted({n for tie in _ties(module) for n in tie.names}.intersection(names))
    if taken:
        raise ValueError(f"equalize: {taken} already tied; untie them first")
    _check(module, names)
    tie = Tie.make(module, names, keep_dist)
    module.__dict__.setdefault(TIES, []).append(tie)
    _install(module)
    return module


def untie(module: ModuleT, sites: str | Sequence[str] | None = None) -> ModuleT:
    """
    Undo :func:`equalize`, in place: every group (``sites=None``), or every group with a parameter matching one
    of ``sites``, becomes independent parameters again, each starting from the current shared value (expanded
    to its own shape), with the priors that tying had set aside.

    :param module: the module :func:`equalize` was called on.
    :param sites: regular expressions matched as in :func:`equalize`; ``None`` unties every group.
    :return: ``module``, untied in place.
    """
    ties = _ties(module)
    if sites is not None:
        sites = [sites] if isinstance(sites, str) else list(sites)
        names = _match(module, sites, [n for tie in ties for n in tie.names], "untie")
        ties = [tie for tie in ties if set(tie.names).intersection(names)]
    for tie in ties:
        tie.release(module)
        module.__dict__[TIES].remove(tie)
    _install(module)
    return module


def tied(module: nn.Module) -> list[tuple[str, ...]]:
    """
    The tie groups of ``module``: for each, the names of its parameters, the first one giving the value.

    :param module: the module :func:`equalize` was called on.
    :return: one tuple of parameter names per group, in the order the groups were made.
    """
    return [tie.names for tie in _ties(module)]


# ----------------------------------------------------------------------------------------------- the root


def _ties(root: nn.Module) -> list[Tie]:
    return root.__dict__.get(TIES, [])


def _before_load(root: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for tie in _ties(root):
        tie.load(state_dict, prefix)


def _after_load(root: nn.Module, incompatible_keys: Any) -> None:
    for tie in _ties(root):
        tie.share(root)  # load_state_dict(assign=True) gives every name a new parameter of its own


def _install(root: nn.Module) -> None:
    """Hook the root's ``load_state_dict``, and its Pyro and BoTorch entry points, while it has ties."""
    ties = _ties(root)
    for name in _ENTRY_POINTS:
        root.__dict__.pop(name, None)
    if not ties:
        root.__dict__.pop(TIES, None)
        for handle in root.__dict__.pop(_HOOKS, ()):
            handle.remove()
        return
    if _HOOKS not in root.__dict__:
        hooks = (
            root.register_load_state_dict_pre_hook(_before_load),
            root.register_load_state_dict_post_hook(_after_load),
        )
        root.__dict__[_HOOKS] = hooks
    root.__dict__["pyro_sample_from_prior"] = functools.partial(_pyro.pyro_sample_from_prior, root)
    root.__dict__["pyro_load_from_samples"] = functools.partial(_pyro.pyro_load_from_samples, root)
    if _botorch.needs_joint_fit(root, [n for tie in ties for n in tie.names]):
        root.__dict__["custom_fit"] = _botorch.fit_jointly


# ----------------------------------------------------------------------------------------------- matching, checks


def _alias(name: str) -> str:
    path, attr = split(name)
    if not attr.startswith("raw_"):
        return name
    return f"{path}.{attr[4:]}" if path else attr[4:]


def _parameter_names(root: nn.Module) -> list[str]:
    return [n for n, _ in root.named_parameters(remove_duplicate=False)]


def _match(root: nn.Module, sites: Sequence[str], names: Sequence[str], what: str) -> list[str]:
    patterns = [re.compile(s) for s in sites]
    for pattern in patterns:
        if not any(pattern.fullmatch(n) or pattern.fullmatch(_alias(n)) for n in names):
            choices = ", ".join(sorted({m for n in names for m in (n, _alias(n))})) or "none"
            raise ValueError(
                f"{what}: pattern {pattern.pattern!r} matches no parameter of {type(root).__name__}; "
                f"it could match: {choices}"
            )
    return [n for n in names if any(p.fullmatch(n) or p.fullmatch(_alias(n)) for p in patterns)]


def _members(root: nn.Module, names: list[str]) -> list[str]:
    """One name per (module, parameter name): a module reachable twice holds its parameter once."""
    keyed: dict[tuple[int, str], str] = {}
    for name in names:
        path, attr = split(name)
        keyed.setdefault((id(root.get_submodule(path)), attr), name)
    return list(keyed.values())


def _check(root: nn.Module, names: Sequence[str]) -> None:
    """Equal constraints, dtypes and devices, or a ValueError naming the first member and one that differs."""

    def describe(name: str) -> tuple[Any, tuple[torch.dtype, torch.device]]:
        path, attr = split(name)
        mod, param = root.get_submodule(path), root.get_parameter(name)
        return mod.constraint_for_parameter_name(attr) if isinstance(mod, Module) else None, (param.dtype, param.device)

    (constraint, kind), *others = map(describe, names)
    for name, (other, other_kind) in zip(names[1:], others):
        if not _same_constraint(constraint, other):
            raise ValueError(f"equalize: cannot tie {names[0]} ({constraint}) and {name} ({other}): constraints differ")
        if other_kind != kind:
            raise ValueError(
                f"equalize: cannot tie {names[0]} {kind} and {name} {other_kind}: dtypes or devices differ"
            )


def _same_constraint(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if (type(a), a.enforced, getattr(a, "_transform", None)) != (type(b), b.enforced, getattr(b, "_transform", None)):
        return False
    bounds = ("lower_bound", "upper_bound")
    return all(torch.equal(torch.as_tensor(getattr(a, k)), torch.as_tensor(getattr(b, k))) for k in bounds)
