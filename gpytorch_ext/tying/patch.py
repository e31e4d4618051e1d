"""The ``shared-parameters`` patch: a parameter registered in several modules is a hyperparameter once.

``Module.parameters()`` yields a parameter shared by two modules once, but GPyTorch's ``hyperparameters()`` and
``variational_parameters()`` walk the modules one by one and yield it once per module, so an optimizer built on
them steps it twice (a model tied by hand or by :func:`~gpytorch_ext.equalize`).
"""

from __future__ import annotations

from collections.abc import Iterator

import gpytorch
from torch import nn

from .._registry import Patch, Probe, Replacement

__all__ = ["PATCH"]


def _once(pairs: Iterator[tuple[str, nn.Parameter]]) -> Iterator[tuple[str, nn.Parameter]]:
    seen: set[int] = set()
    for name, param in pairs:
        if id(param) not in seen:
            seen.add(id(param))
            yield name, param


def _replacements() -> list[Replacement]:
    named_hyperparameters = vars(gpytorch.Module)["named_hyperparameters"]
    named_variational_parameters = vars(gpytorch.Module)["named_variational_parameters"]

    def _named_hyperparameters(self: gpytorch.Module) -> Iterator[tuple[str, nn.Parameter]]:
        return _once(named_hyperparameters(self))

    def _named_variational_parameters(self: gpytorch.Module) -> Iterator[tuple[str, nn.Parameter]]:
        return _once(named_variational_parameters(self))

    return [
        Replacement(gpytorch.Module, "named_hyperparameters", _named_hyperparameters),
        Replacement(gpytorch.Module, "named_variational_parameters", _named_variational_parameters),
    ]


def probe() -> Probe:
    """Two RBF kernels holding one lengthscale parameter: how often ``hyperparameters()`` yields it."""
    a, b = gpytorch.kernels.RBFKernel(), gpytorch.kernels.RBFKernel()
    b.raw_lengthscale = a.raw_lengthscale
    count = sum(p is a.raw_lengthscale for p in (a + b).hyperparameters())
    return Probe(f"hyperparameters() yields a lengthscale shared by two kernels {count}x", defect=count != 1)


PATCH = Patch(
    name="shared-parameters",
    summary="hyperparameters() and variational_parameters() yield a parameter shared by several modules once",
    replacements=_replacements,
    verified_on="==1.15.2",
    probe=probe,
)
