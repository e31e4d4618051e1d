r"""Whether KeOps can be used in this process: the dense / KeOps switch, and one warning when it cannot.

KeOps is unavailable when pykeops cannot be imported, when no C++ compiler is configured, or once a formula has
failed to compile (forward or backward). The KeOps kernels then compute in dense mode after a single
:class:`KeOpsUnavailableWarning`.

This module imports only torch and gpytorch.
"""

from __future__ import annotations

import shutil
import warnings
from typing import Any

from gpytorch import settings
from gpytorch.kernels.keops import keops_kernel as _gkeops
from torch import Tensor

try:  # the real class, to recognise symbolic values even while a test wraps the constructor
    from pykeops.common.lazy_tensor import GenericLazyTensor as _GenericLazyTensor
except Exception:  # pragma: no cover - depends on the installation
    _GenericLazyTensor = None

__all__ = [
    "KeOpsUnavailableWarning",
    "disable_keops",
    "is_lazy",
    "keops_unavailable_reason",
    "use_keops",
    "warn_unavailable",
]


class KeOpsUnavailableWarning(RuntimeWarning):
    """KeOps cannot be imported or cannot compile; the KeOps kernels compute in dense mode."""


_state: dict[str, Any] = {"reason": None, "checked": False, "warned": False}


def _check_availability() -> str | None:
    if not hasattr(_gkeops, "LazyTensor") or _GenericLazyTensor is None:
        return "pykeops could not be imported"
    try:
        from keopscore.config import config as _keops_config

        compiler = _keops_config.get_cxx_compiler()
    except Exception as exc:  # pragma: no cover - depends on the installation
        return f"KeOps configuration failed ({type(exc).__name__}: {exc})"
    if not compiler or shutil.which(compiler) is None:
        return f"no C++ compiler for KeOps ({compiler or 'none configured'})"
    return None


def keops_unavailable_reason() -> str | None:
    """Why KeOps cannot be used in this process, or ``None`` when it can.

    :return: ``None``, or a short reason (pykeops missing, no compiler, a formula failed to compile).
    """
    if not _state["checked"]:
        _state["reason"] = _check_availability()
        _state["checked"] = True
    return _state["reason"]


def disable_keops(reason: str) -> None:
    """Switch KeOps off for the rest of the process, with one :class:`KeOpsUnavailableWarning`."""
    _state["reason"], _state["checked"] = reason, True
    warn_unavailable()


def warn_unavailable() -> None:
    """Warn once per process that KeOps is unavailable (nothing when it is available)."""
    reason = keops_unavailable_reason()
    if reason is None or _state["warned"]:
        return
    _state["warned"] = True
    warnings.warn(
        f"KeOps is unavailable ({reason}); KeOps kernels compute in dense mode (O(n^2) memory).",
        KeOpsUnavailableWarning,
        stacklevel=4,
    )


def use_keops(x1: Tensor, x2: Tensor) -> bool:
    """Whether a kernel matrix between ``x1`` and ``x2`` is evaluated with KeOps.

    True when :class:`gpytorch.settings.use_keops` is on, both sets have at least
    :class:`gpytorch.settings.max_cholesky_size` rows, and KeOps is available.

    :param x1: ``... x N x D``
    :param x2: ``... x M x D``
    """
    size = settings.max_cholesky_size.value()
    if not (settings.use_keops.on() and x1.size(-2) >= size and x2.size(-2) >= size):
        return False
    return keops_unavailable_reason() is None


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is a symbolic KeOps value (a :class:`pykeops.torch.LazyTensor`), not a torch tensor."""
    return _GenericLazyTensor is not None and isinstance(x, _GenericLazyTensor)
