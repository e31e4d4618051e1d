"""The patch registry: named, reversible, idempotent repairs of GPyTorch.

A :class:`Patch` names a set of attribute replacements on GPyTorch's classes and modules. Applying it
records the exact objects it replaces (the raw entries of the owner's ``__dict__``, so descriptors such as
``staticmethod`` and ``property`` come back as they were) and reverting puts those very objects back.

Patches are discovered through the entry-point group ``gpytorch_ext.patches``; each entry point names a
:class:`Patch` object. Other packages can register their own the same way, or call :func:`register`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "CheckResult",
    "Patch",
    "PatchWarning",
    "Probe",
    "Replacement",
    "applied",
    "available",
    "get",
    "patch",
    "patched",
    "register",
    "unpatch",
]

ENTRY_POINT_GROUP = "gpytorch_ext.patches"

_MISSING = object()


class PatchWarning(UserWarning):
    """A patch could not be applied, or was applied to a GPyTorch version it was not verified on."""


@dataclass(frozen=True)
class Replacement:
    """One attribute of a class or module to replace while a patch is applied.

    :param owner: the class or module that holds the attribute.
    :param attribute: the attribute's name in ``owner.__dict__``.
    :param value: the replacement. A plain function is installed as a copy that takes the original's
        ``__name__``, ``__qualname__`` and ``__doc__`` and exposes the original as ``__wrapped__``; the function
        given is left as it is (its own name and docstring), so a public function can serve as a replacement.
        A replacement that calls the original captures it where the replacements are built (the patch's
        ``replacements`` callable runs with the patch reverted).
    :param create: add the attribute if the owner lacks it (a new public name that the upstream patch adds,
        removed again on revert). Without it, a missing attribute is an error: the target was renamed.
    """

    owner: Any
    attribute: str
    value: Any
    create: bool = False


@dataclass(frozen=True)
class Probe:
    """What a self-check measured in one state (patch reverted, or applied).

    :param summary: a short human-readable measurement, e.g. ``"35 of 179 shapes fail"``.
    :param defect: whether the upstream defect showed in this measurement.
    """

    summary: str
    defect: bool


@dataclass(frozen=True)
class CheckResult:
    """A patch's self-check: the defect reproduced upstream, and the result with the patch applied."""

    name: str
    upstream: str
    patched: str
    reproduced: bool
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "patched": self.patched,
            "reproduced": self.reproduced,
            "passed": self.passed,
        }


@dataclass(eq=False)
class Patch:
    """A named, reversible repair of GPyTorch.

    :param name: the registry name, e.g. ``"mvn-log-prob"``.
    :param summary: one line saying what the patch repairs.
    :param replacements: a callable returning the :class:`Replacement` objects; it is called at apply time,
        so a target missing from the installed GPyTorch shows up as an ordinary exception there.
    :param verified_on: a PEP 440 specifier set of the GPyTorch versions the patch was verified on.
    :param probe: a callable measuring the defect in the current state; :meth:`self_check` runs it once
        with the patch reverted and once with it applied.
    """

    name: str
    summary: str
    replacements: Callable[[], Sequence[Replacement]]
    verified_on: str
    probe: Callable[[], Probe] | None = None
    _saved: list[tuple[Any, str, Any]] | None = field(default=None, init=False, repr=False)
    _warned_version: bool = field(default=False, init=False, repr=False)
    _copies: dict[tuple[int, str], tuple[Any, Any, Any]] = field(default_factory=dict, init=False, repr=False)

    @property
    def is_applied(self) -> bool:
        return self._saved is not None

    def apply(self) -> None:
        """Install the replacements. A no-op when already applied; all-or-nothing on failure."""
        if self._saved is not None:
            return
        saved: list[tuple[Any, str, Any]] = []
        try:
            for rep in self.replacements():
                original = vars(rep.owner).get(rep.attribute, _MISSING)
                inherited = getattr(rep.owner, rep.attribute, _MISSING) if original is _MISSING else original
                if inherited is _MISSING and not rep.create:
                    raise AttributeError(f"{_owner_name(rep.owner)} has no attribute {rep.attribute!r}")
                value = rep.value if inherited is _MISSING else self._wrapped(rep, inherited)
                setattr(rep.owner, rep.attribute, value)
                saved.append((rep.owner, rep.attribute, original))
        except BaseException:
            _restore(saved)
            raise
        self._saved = saved
        self._check_version()

    def _wrapped(self, rep: Replacement, original: Any) -> Any:
        """``rep.value`` wrapped for ``original`` (:func:`_wrap`); the same object as last time for the same value and
        original, so that reverting and re-applying installs the very same objects."""
        key = (id(rep.owner), rep.attribute)
        cached = self._copies.get(key)
        if cached is not None and cached[0] is rep.value and cached[1] is original:
            return cached[2]
        value = _wrap(rep.value, original)
        self._copies[key] = (rep.value, original, value)
        return value

    def revert(self) -> None:
        """Put back the very objects :meth:`apply` replaced. A no-op when not applied."""
        if self._saved is None:
            return
        _restore(self._saved)
        self._saved = None

    def self_check(self) -> CheckResult:
        """Run :attr:`probe` on stock GPyTorch (every registered patch reverted) and with this patch applied (on top
        of the other patches as they are now); restore the current state after.

        The check passes when the patched run shows no defect.
        """
        if self.probe is None:
            return CheckResult(self.name, "no self-check", "no self-check", False, True)
        others = [p for p in _PATCHES.values() if p is not self and p.is_applied]
        was_applied = self.is_applied
        try:
            self.revert()
            for p in others:
                p.revert()
            upstream = _run_probe(self.probe)
            for p in others:
                p.apply()
            self.apply()
            fixed = _run_probe(self.probe)
        finally:
            for p in others:
                p.apply()
            self.apply() if was_applied else self.revert()
        return CheckResult(self.name, upstream.summary, fixed.summary, upstream.defect, not fixed.defect)

    def _check_version(self) -> None:
        if self._warned_version:
            return
        from packaging.specifiers import SpecifierSet

        try:
            installed = importlib.metadata.version("gpytorch")
        except importlib.metadata.PackageNotFoundError:
            return
        if installed not in SpecifierSet(self.verified_on):
            self._warned_version = True
            warnings.warn(
                f"gpytorch-ext patch {self.name!r} was verified on gpytorch {self.verified_on}, "
                f"installed is {installed}; applying it anyway",
                PatchWarning,
                stacklevel=4,
            )


def _run_probe(probe: Callable[[], Probe]) -> Probe:
    try:
        return probe()
    except Exception as exc:  # a self-check must report, never crash the report
        return Probe(f"self-check raised {type(exc).__name__}: {str(exc)[:80]}", defect=True)


def _owner_name(owner: Any) -> str:
    return getattr(owner, "__qualname__", None) or getattr(owner, "__name__", repr(owner))


def _wrap(value: Any, original: Any) -> Any:
    """A copy of a replacement function with the original's identity and the original as ``__wrapped__``.

    The function given is not changed: the copy shares its code, globals, defaults and closure.
    """
    kind = type(value) if isinstance(value, (staticmethod, classmethod)) else None
    target = value.__func__ if kind is not None else value
    source = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
    if not (isinstance(target, types.FunctionType) and callable(source)):
        return value
    copy = types.FunctionType(
        target.__code__, target.__globals__, target.__name__, target.__defaults__, target.__closure__
    )
    copy.__kwdefaults__ = target.__kwdefaults__
    copy.__dict__.update(target.__dict__)
    copy.__module__ = target.__module__
    copy.__annotations__ = target.__annotations__
    functools.update_wrapper(copy, source, assigned=("__name__", "__qualname__", "__doc__"), updated=())
    copy.__wrapped__ = source
    return kind(copy) if kind is not None else copy


def _restore(saved: list[tuple[Any, str, Any]]) -> None:
    for owner, attribute, original in reversed(saved):
        if original is _MISSING:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, original)


# --- the registry -----------------------------------------------------------------------------------

_PATCHES: dict[str, Patch] = {}
_discovered = False


def register(p: Patch) -> Patch:
    """Add a patch to the registry (entry points do this for installed packages). Returns the patch."""
    existing = _PATCHES.get(p.name)
    if existing is not None and existing is not p:
        raise ValueError(f"a different patch named {p.name!r} is already registered")
    _PATCHES[p.name] = p
    return p


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if not isinstance(obj, Patch):
                raise TypeError(f"entry point {ep.value!r} is a {type(obj).__name__}, not a gpytorch_ext.Patch")
            register(obj)
        except Exception as exc:
            warnings.warn(f"gpytorch-ext could not load patch {ep.name!r}: {exc}", PatchWarning, stacklevel=3)


def available() -> tuple[str, ...]:
    """Names of all registered patches, sorted."""
    _discover()
    return tuple(sorted(_PATCHES))


def applied() -> tuple[str, ...]:
    """Names of the patches currently applied, sorted."""
    _discover()
    return tuple(name for name in sorted(_PATCHES) if _PATCHES[name].is_applied)


def get(name: str) -> Patch:
    """The registered :class:`Patch` called ``name``; ``ValueError`` listing the names if there is none."""
    _discover()
    try:
        return _PATCHES[name]
    except KeyError:
        raise ValueError(f"unknown gpytorch-ext patch {name!r}; available: {', '.join(available())}") from None


def _select(names: Sequence[str]) -> list[Patch]:
    return [get(n) for n in names] if names else [get(n) for n in available()]


def patch(*names: str) -> tuple[str, ...]:
    """Apply the named patches (all when no name is given). Returns the names applied afterwards.

    A patch whose apply fails leaves GPyTorch untouched and emits one :class:`PatchWarning` naming it and
    the reason; the other patches still apply.
    """
    for p in _select(names):
        try:
            p.apply()
        except Exception as exc:
            warnings.warn(
                f"gpytorch-ext patch {p.name!r} was not applied: {type(exc).__name__}: {exc}",
                PatchWarning,
                stacklevel=2,
            )
    return applied()


def unpatch(*names: str) -> tuple[str, ...]:
    """Revert the named patches (all when no name is given). Returns the names still applied."""
    for p in _select(names):
        p.revert()
    return applied()


@contextlib.contextmanager
def patched(*names: str) -> Iterator[tuple[str, ...]]:
    """Apply the named patches (all when none is given) inside a ``with`` block.

    On exit, also on an exception, every selected patch returns to the state it had before.
    """
    selected = _select(names)
    before = {p.name: p.is_applied for p in selected}
    try:
        yield patch(*[p.name for p in selected])
    finally:
        for p in selected:
            p.apply() if before[p.name] else p.revert()
