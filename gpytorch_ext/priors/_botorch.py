"""BoTorch's ``sample_all_priors``, repaired, and how the patch reaches it without importing BoTorch.

BoTorch's ``botorch.optim.utils.sample_all_priors`` (used by ``fit_gpytorch_mll`` to restart a failed fit)
redraws a whole parameter until every element lands inside its constraint, which fails on a batch ("after 100
attempts" for 1000 Gamma(0.5, 2) noise values). The replacement draws each prior once, one independent value
per element from the prior truncated to the constraint (:func:`~._repair.sample_all_priors`).

``import botorch`` changes GPyTorch's global settings, so the patch never imports it: it replaces the function in
the BoTorch modules already imported, and otherwise waits for ``botorch.optim.utils.model_utils`` to be imported
(a one-shot import hook) and then applies itself again.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable

from gpytorch_ext._registry import Replacement

from ._repair import sample_all_priors as _sample_all_priors

__all__ = ["replacements", "sample_all_priors"]

#: where BoTorch defines ``sample_all_priors`` and the modules that import it by name
_DEFINED_IN = "botorch.optim.utils.model_utils"
_MODULES = (_DEFINED_IN, "botorch.optim.utils", "botorch.fit")


def sample_all_priors(model, max_retries: int = 100) -> None:
    """Sample every hyperparameter from its prior, in place (gpytorch-ext's repair of BoTorch's function).

    One draw per (parameter, prior), one independent value per element, each from the prior truncated to the
    parameter's constraint: nothing is retried and nothing fails on a batch. A prior that cannot be sampled
    (``NotImplementedError``) is skipped with a ``BotorchWarning``, as BoTorch does.

    :param model: a GPyTorch model.
    :param max_retries: accepted for compatibility with BoTorch's signature; no draw is ever retried.
    """
    original = _BOTORCH.get("sample_all_priors")
    if original is not None and not _applied():
        # a module that imported this function while the patch was applied keeps it: behave as BoTorch then
        return original(model, max_retries=max_retries)
    from botorch.exceptions.warnings import BotorchWarning

    def skip(site) -> None:
        warnings.warn(f"`rsample` not implemented for {type(site.prior)}. Skipping.", BotorchWarning, stacklevel=3)

    _sample_all_priors(model, on_unsupported=skip)


def _applied() -> bool:
    from .patch import PATCH

    return PATCH.is_applied


#: BoTorch's own ``sample_all_priors``, once the patch has seen it
_BOTORCH: dict[str, Callable] = {}


def replacements() -> list[Replacement]:
    """The BoTorch modules' ``sample_all_priors`` to replace now; the import hook when BoTorch comes later."""
    if _DEFINED_IN not in sys.modules:
        _HOOK.install()
        return []
    _BOTORCH.setdefault("sample_all_priors", vars(sys.modules[_DEFINED_IN])["sample_all_priors"])
    reps = []
    for name in _MODULES:
        module = sys.modules.get(name)
        value = vars(module).get("sample_all_priors") if module is not None else None
        if value is not None and value is not sample_all_priors:
            reps.append(Replacement(module, "sample_all_priors", sample_all_priors))
    return reps


def _reapply() -> None:
    from .patch import PATCH

    if PATCH.is_applied:
        PATCH.revert()
        PATCH.apply()


class _AfterImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: runs ``callback`` right after the module ``name`` has been executed."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, callback: Callable[[], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


_HOOK = _AfterImport(_DEFINED_IN, _reapply)
