r"""The base of the diag-aware KeOps kernels: the dense/KeOps switch, the formula operator and its O(n) diagonal.

A kernel family states its formula once, as a function of two (broadcast) input blocks and some parameters.
The same function is evaluated three ways:

- *pairwise with KeOps*: on symbolic :class:`pykeops.torch.LazyTensor` variables ``x1[..., :, None, :]`` and
  ``x2[..., None, :, :]``; matrix products are single KeOps reductions;
- *pairwise dense*: on the same views as plain torch tensors (small problems, or KeOps unavailable);
- *row-wise*: on ``x1[..., i, :]`` and ``x2[..., i, :]``, which is the diagonal in O(n) time and memory with
  plain torch, for ``x1 is x2`` and for any ``x1``, ``x2`` of equal length. KeOps is never touched there.

Every value carries its vector dimension last; :func:`vsum` reduces it to size 1 (KeOps semantics), so one
formula serves all three evaluations.

This module imports only torch, linear_operator and gpytorch.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from gpytorch import settings
from gpytorch.kernels.keops import keops_kernel as _gkeops
from gpytorch.kernels.kernel import Kernel
from linear_operator.operators import KernelLinearOperator
from linear_operator.utils.memoize import cached
from torch import Tensor

try:  # the real class, to recognise symbolic values even while a test wraps the constructor
    from pykeops.common.lazy_tensor import GenericLazyTensor as _GenericLazyTensor
except Exception:  # pragma: no cover - depends on the installation
    _GenericLazyTensor = None

__all__ = [
    "KeOpsFormulaOperator",
    "KeOpsKernel",
    "KeOpsUnavailableWarning",
    "keops_unavailable_reason",
    "use_keops",
    "cols",
    "vdim",
    "vsum",
]

#: Column counts a KeOps matrix product is padded to (each count is a separately compiled formula).
_RHS_WIDTHS = (1, 2, 4, 8, 16, 32, 64)


class KeOpsUnavailableWarning(RuntimeWarning):
    """KeOps cannot be imported or cannot compile; the KeOps kernels compute in dense mode."""


# --- the dense / KeOps switch ---------------------------------------------------------------------------

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


def _disable_keops(reason: str) -> None:
    _state["reason"], _state["checked"] = reason, True
    _warn_unavailable()


def _warn_unavailable() -> None:
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


def _is_lazy(x: Any) -> bool:
    return _GenericLazyTensor is not None and isinstance(x, _GenericLazyTensor)


# --- the vector algebra shared by torch tensors and LazyTensors -------------------------------------------


def vsum(x: Any) -> Any:
    """Sum over the vector (last) dimension, keeping it with size 1, for tensors and LazyTensors alike."""
    return x.sum(-1) if _is_lazy(x) else x.sum(-1, keepdim=True)


def vdim(x: Any) -> int:
    """The size of the vector (last) dimension, for tensors and LazyTensors alike."""
    return x.ndim if _is_lazy(x) else x.shape[-1]


def cols(x: Any, start: int, stop: int) -> Any:
    """Columns ``start:stop`` of the vector (last) dimension, for tensors and LazyTensors alike."""
    if start == 0 and stop == vdim(x):
        return x
    return x[start:stop] if _is_lazy(x) else x[..., start:stop]


# --- formulas ---------------------------------------------------------------------------------------------


class _Leaf:
    """One kernel's term, reading columns ``start:stop`` of the inputs and its own named parameters."""

    def __init__(self, term: Callable[..., Any], start: int, stop: int, names: dict[str, str], options: dict):
        self.term, self.start, self.stop, self.names, self.options = term, start, stop, names, options

    def __call__(self, x1: Any, x2: Any, params: dict[str, Any]) -> Any:
        kwargs = {arg: params[name] for arg, name in self.names.items()}
        return self.term(cols(x1, self.start, self.stop), cols(x2, self.start, self.stop), **kwargs, **self.options)

    def __repr__(self) -> str:
        return f"{getattr(self.term, '__qualname__', self.term)}[{self.start}:{self.stop}]"


class Formula:
    r"""A covariance function built from one or more kernel terms, evaluated pairwise or row-wise.

    It is the ``covar_func`` of :class:`KeOpsFormulaOperator`.

    :param root: a callable ``(x1, x2, params) -> value`` on broadcast inputs whose vector dimension is last.
    """

    def __init__(self, root: Callable[[Any, Any, dict[str, Any]], Any]):
        self.root = root

    def __call__(self, x1: Tensor, x2: Tensor, **params: Tensor) -> Any:
        """The ``... x N x M`` kernel matrix: a KeOps LazyTensor when :func:`use_keops`, else a tensor."""
        if use_keops(x1, x2):
            lazy = _gkeops.LazyTensor  # looked up at call time, so tests can spy on it
            a, b = lazy(x1[..., :, None, :].contiguous()), lazy(x2[..., None, :, :].contiguous())
            p = {k: lazy(v[..., None, :, :].contiguous()) for k, v in params.items()}
        else:
            a, b = x1[..., :, None, :], x2[..., None, :, :]
            p = {k: v[..., None, :, :] for k, v in params.items()}
        out = self.root(a, b, p)
        return out if _is_lazy(out) else out.squeeze(-1)

    def dense(self, x1: Tensor, x2: Tensor, **params: Tensor) -> Tensor:
        """The ``... x N x M`` kernel matrix as a plain tensor, never using KeOps."""
        p = {k: v[..., None, :, :] for k, v in params.items()}
        return self.root(x1[..., :, None, :], x2[..., None, :, :], p).squeeze(-1)

    def rowwise(self, x1: Tensor, x2: Tensor, **params: Tensor) -> Tensor:
        r"""The values :math:`k(\mathbf x_{1,i}, \mathbf x_{2,i})`, shape ``... x N``, in O(N) with plain torch.

        :param x1: ``... x N x D``
        :param x2: ``... x N x D`` (the same N)
        """
        if x1.size(-2) != x2.size(-2):
            raise ValueError(
                "the diagonal of a kernel needs x1 and x2 with the same number of rows, got "
                f"x1.shape={tuple(x1.shape)} and x2.shape={tuple(x2.shape)}"
            )
        return self.root(x1, x2, params).squeeze(-1)

    def __repr__(self) -> str:
        return f"Formula({self.root!r})"


_CACHE_RACE_ATTEMPTS = 3


def _keops_matmul_retrying(covar: Any, rhs: Tensor) -> Tensor:
    """:func:`_keops_matmul`, tried again while another process is still writing the formula to KeOps' cache.

    Processes that compile the same formula at once (pytest-xdist workers, say) can load a half-written shared
    object (``ImportError: ... file too short``). That passes; a formula that does not compile does not. A
    truncated module that stays truncated was left by an interrupted build (a compilation killed half-way): it
    is removed from KeOps' build folder, so that KeOps compiles it again, once.
    """
    for attempt in range(1, _CACHE_RACE_ATTEMPTS + 1):
        try:
            return _keops_matmul(covar, rhs)
        except (OSError, ImportError) as exc:
            if attempt < _CACHE_RACE_ATTEMPTS:
                time.sleep(2.0 * attempt)
            elif not _remove_truncated_build(exc):
                raise
    return _keops_matmul(covar, rhs)  # KeOps compiles the removed module again


def _remove_truncated_build(exc: BaseException) -> bool:
    """Delete the truncated compiled module that ``exc`` names, if it lies in KeOps' build folder."""
    match = re.search(r"(/\S+?): file too short", str(exc))
    if match is None:
        return False
    try:
        import pykeops

        folder = os.path.realpath(pykeops.get_build_folder())
        path = os.path.realpath(match.group(1))
        if os.path.dirname(path) != folder:
            return False
        os.remove(path)
    except Exception:  # not ours to remove, or already gone: report the original error
        return False
    warnings.warn(
        f"removed a truncated KeOps build from an interrupted compilation: {path}", RuntimeWarning, stacklevel=3
    )
    return True


def _keops_matmul(covar: Any, rhs: Tensor) -> Tensor:
    """``covar @ rhs`` as KeOps reductions, with the column count padded to one of a few compiled widths."""
    width = rhs.size(-1)
    if width in _RHS_WIDTHS:
        return covar @ rhs.contiguous()
    if width < _RHS_WIDTHS[-1]:
        padded = next(w for w in _RHS_WIDTHS if w > width)
        zeros = rhs.new_zeros(*rhs.shape[:-1], padded - width)
        return (covar @ torch.cat([rhs, zeros], dim=-1).contiguous())[..., :width]
    chunks = torch.split(rhs, _RHS_WIDTHS[-1], dim=-1)
    return torch.cat([_keops_matmul(covar, chunk) for chunk in chunks], dim=-1)


class KeOpsFormulaOperator(KernelLinearOperator):
    r"""A :class:`~linear_operator.operators.KernelLinearOperator` whose ``covar_func`` is a :class:`Formula`.

    Matrix products are single KeOps reductions (or dense products for small inputs); the diagonal and
    element access evaluate the formula row-wise with plain torch in O(N), whatever
    :class:`gpytorch.settings.max_cholesky_size` says. If a KeOps formula fails to compile, KeOps is
    switched off for the process with one :class:`KeOpsUnavailableWarning` and the product is computed densely.
    """

    @cached(name="kernel_diag")
    def _diagonal(self) -> Tensor:
        n = min(self.x1.size(-2), self.x2.size(-2))
        return self.covar_func.rowwise(self.x1[..., :n, :], self.x2[..., :n, :], **self.tensor_params)

    def _get_indices(self, row_index: Tensor, col_index: Tensor, *batch_indices: Tensor) -> Tensor:
        x1 = self.x1[(*batch_indices, row_index)].unsqueeze(-2)
        x2 = self.x2[(*batch_indices, col_index)].unsqueeze(-2)
        params = {k: v[tuple(batch_indices)] for k, v in self.tensor_params.items()}
        return self.covar_func.rowwise(x1, x2, **params)[..., 0]

    def _matmul(self, rhs: Tensor) -> Tensor:
        covar = self.covar_func(self.x1, self.x2, **self.tensor_params)
        if not _is_lazy(covar):
            return covar @ rhs
        try:
            return _keops_matmul_retrying(covar, rhs)
        except (RuntimeError, OSError, ImportError, ValueError) as exc:
            if keops_unavailable_reason() is not None:
                raise
            _disable_keops(f"a KeOps formula failed: {type(exc).__name__}: {str(exc)[:120]}")
            return self.covar_func.dense(self.x1, self.x2, **self.tensor_params) @ rhs


# --- the base class ---------------------------------------------------------------------------------------


class _Assembly:
    """Collects the prepared inputs and parameters of the kernel terms of one formula."""

    def __init__(self) -> None:
        self.x1s: list[Tensor] = []
        self.x2s: list[Tensor] = []
        self.params: dict[str, Tensor] = {}
        self.width = 0

    def param(self, name: str, value: Tensor) -> str:
        key = f"p{len(self.params)}_{name}"
        self.params[key] = value
        return key

    def leaf(self, kernel: Kernel, impl: type[KeOpsKernel], x1: Tensor, x2: Tensor) -> _Leaf:
        x1_, x2_, params = impl._prepare(kernel, x1, x2)
        names = {arg: self.param(arg, value) for arg, value in params.items()}
        start, self.width = self.width, self.width + x1_.size(-1)
        self.x1s.append(x1_)
        self.x2s.append(x2_)
        return _Leaf(impl._term, start, self.width, names, impl._term_options(kernel))

    @staticmethod
    def _cat(xs: list[Tensor]) -> Tensor:
        if len(xs) == 1:
            return xs[0]
        batch = torch.broadcast_shapes(*[x.shape[:-2] for x in xs])
        return torch.cat([x.expand(*batch, *x.shape[-2:]) for x in xs], dim=-1)

    def evaluate(self, root: Callable, diag: bool) -> Tensor | KeOpsFormulaOperator:
        formula = Formula(root)
        x1, x2 = self._cat(self.x1s), self._cat(self.x2s)
        if diag:
            return formula.rowwise(x1, x2, **self.params)
        return KeOpsFormulaOperator(x1, x2, covar_func=formula, **self.params)


def leaf_impl(kernel: Kernel) -> type[KeOpsKernel] | None:
    """The class whose ``_prepare``/``_term`` compute ``kernel``, or ``None`` if it is not a formula kernel.

    A kernel qualifies when its ``forward`` is the one of :class:`KeOpsKernel` (our families) or of one of
    GPyTorch's KeOps kernels registered in :data:`UPSTREAM_IMPLS` (a subclass overriding ``forward`` does not).
    """
    owner = next(c for c in type(kernel).__mro__ if "forward" in vars(c))
    if owner is KeOpsKernel:
        return type(kernel)
    return UPSTREAM_IMPLS.get(owner)


#: GPyTorch's KeOps kernel classes, mapped to the family class that computes them.
UPSTREAM_IMPLS: dict[type, type[KeOpsKernel]] = {}


def stationary_diagonal(kernel: Kernel, x1: Tensor, x2: Tensor, compute: Callable[[Tensor, Tensor], Any]) -> Any:
    """``compute(x1, x2)`` (a diagonal); for a stationary kernel with ``x1 is x2``, the value at distance zero.

    That value is computed from one row and broadcast to ``... x N``, so it stays differentiable in the
    hyperparameters (e.g. an outputscale) at O(1) cost.
    """
    if x1 is x2 and kernel.is_stationary and x1.size(-2) > 0:
        row = x1[..., :1, :]
        res = compute(row, row)
        return None if res is None else res.expand(*res.shape[:-1], x1.size(-2)).contiguous()
    return compute(x1, x2)


def formula_forward(
    kernel: Kernel, impl: type[KeOpsKernel], x1: Tensor, x2: Tensor, diag: bool = False
) -> Tensor | KeOpsFormulaOperator:
    """The forward pass of a single formula kernel: the O(N) diagonal, or a :class:`KeOpsFormulaOperator`."""

    def compute(a: Tensor, b: Tensor) -> Tensor | KeOpsFormulaOperator:
        assembly = _Assembly()
        return assembly.evaluate(assembly.leaf(kernel, impl, a, b), diag)

    return stationary_diagonal(kernel, x1, x2, compute) if diag else compute(x1, x2)


class KeOpsKernel(_gkeops.KeOpsKernel):
    r"""Base class of the diag-aware KeOps kernels.

    A family subclasses it (and GPyTorch's namesake, for the constructor, parameters and priors) and states
    its formula once in :meth:`_term`, with the input preparation in :meth:`_prepare`.

    - ``kernel(x1, x2)`` is a :class:`KeOpsFormulaOperator`: KeOps reductions when both inputs have at least
      :class:`gpytorch.settings.max_cholesky_size` rows (and :class:`gpytorch.settings.use_keops` is on),
      dense tensors otherwise;
    - ``kernel(x1, x2, diag=True)`` and ``kernel(x1, x2).diagonal()`` evaluate the formula row-wise in O(N)
      with plain torch, never KeOps;
    - ``k1 + k2``, ``k1 * k2`` and :class:`~gpytorch_ext.kernels.keops.ScaleKernel` fuse into one formula.

    Without KeOps (not installed, or no compiler), everything runs in dense mode after one
    :class:`KeOpsUnavailableWarning`.
    """

    def _prepare(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Transform the inputs (``... x N x D`` to ``... x N x D'``) and return the formula's tensor parameters.

        :return: ``x1_``, ``x2_`` and a dict of parameters, each of shape ``*batch_shape x 1 x K``.
        """
        raise NotImplementedError

    def _term_options(self) -> dict[str, Any]:
        """Non-tensor settings of the formula (e.g. ``nu``), passed to :meth:`_term` as keywords."""
        return {}

    @staticmethod
    def _term(x1: Any, x2: Any, **params: Any) -> Any:
        """The kernel formula on broadcast inputs (tensors or LazyTensors); the vector dimension is last."""
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _warn_unavailable()
        args = [a.contiguous() if torch.is_tensor(a) else a for a in args]
        kwargs = {k: v.contiguous() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        return Kernel.__call__(self, *args, **kwargs)

    def forward(
        self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params: Any
    ) -> Tensor | KeOpsFormulaOperator:
        if last_dim_is_batch:
            raise ValueError(f"{type(self).__name__} does not support the deprecated last_dim_is_batch=True")
        return formula_forward(self, leaf_impl(self) or type(self), x1, x2, diag=diag)

    def __add__(self, other: Kernel) -> Kernel:
        from .composition import AdditiveKernel

        return AdditiveKernel._combine(self, other)

    def __mul__(self, other: Kernel) -> Kernel:
        from .composition import ProductKernel

        return ProductKernel._combine(self, other)
