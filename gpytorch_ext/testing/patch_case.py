"""The test case every registered patch passes: reproduced upstream, gone patched, reversible, idempotent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from .._registry import Patch, Probe, get

__all__ = ["PatchTestCase"]

_MISSING = object()


class PatchTestCase:
    """Mixin for a pytest test class that checks one registered :class:`~gpytorch_ext.Patch`.

    Set :attr:`patch_name`; override :meth:`reproduce` to measure the defect some other way than the patch's own
    ``probe``. Every test leaves the patch in the state it found it. Against a patched GPyTorch *source* tree
    (this project's ``pytest --impl=source``) there is no stock GPyTorch to reproduce the defect on, so the tests
    skip there.

    :cvar patch_name: the registry name of the patch under test, e.g. ``"mvn-log-prob"``.
    :cvar upstream_summary: optional substring the reverted measurement's summary must contain.
    :cvar patched_summary: optional substring the patched measurement's summary must contain.
    """

    patch_name: ClassVar[str]
    upstream_summary: ClassVar[str | None] = None
    patched_summary: ClassVar[str | None] = None

    @pytest.fixture(autouse=True)
    def _stock_gpytorch_and_state_restored(self, request: pytest.FixtureRequest) -> Iterator[None]:
        if not getattr(self, "patch_name", None):
            pytest.fail(f"{type(self).__name__}: set the class attribute patch_name to a registered patch's name")
        if request.config.getoption("--impl", default="monkeypatch") == "source":
            pytest.skip("the patch test case reverts the run-time patch; no stock GPyTorch under --impl=source")
        patch = self.patch
        was_applied = patch.is_applied
        try:
            yield
        finally:
            patch.apply() if was_applied else patch.revert()

    @property
    def patch(self) -> Patch:
        """The registered patch called :attr:`patch_name`."""
        return get(self.patch_name)

    def reproduce(self) -> Probe:
        """Measure the defect in the current state (default: the patch's own ``probe``)."""
        if self.patch.probe is None:
            pytest.fail(f"patch {self.patch_name!r} has no probe; give it one or override reproduce()")
        return self.patch.probe()

    @contextlib.contextmanager
    def _state(self, applied: bool) -> Iterator[None]:
        self.patch.apply() if applied else self.patch.revert()
        yield

    def _targets(self) -> list[tuple[Any, str, Any]]:
        """``(owner, attribute, raw __dict__ entry)`` of every replacement, read with the patch reverted."""
        self.patch.revert()
        return [(r.owner, r.attribute, vars(r.owner).get(r.attribute, _MISSING)) for r in self.patch.replacements()]

    def test_defect_reproduced_with_the_patch_reverted(self) -> None:
        with self._state(applied=False):
            probe = self.reproduce()
        assert probe.defect, f"{self.patch_name}: the upstream defect no longer reproduces ({probe.summary})"
        if self.upstream_summary is not None:
            assert self.upstream_summary in probe.summary, probe.summary

    def test_defect_gone_with_the_patch_applied(self) -> None:
        with self._state(applied=True):
            probe = self.reproduce()
        assert not probe.defect, f"{self.patch_name}: the defect remains with the patch applied ({probe.summary})"
        if self.patched_summary is not None:
            assert self.patched_summary in probe.summary, probe.summary

    def test_self_check_passes(self) -> None:
        result = self.patch.self_check()
        assert result.reproduced and result.passed, result

    def test_unpatch_restores_the_very_same_objects(self) -> None:
        targets = self._targets()
        assert targets, f"{self.patch_name}: the patch replaces nothing"
        self.patch.apply()
        for owner, attribute, original in targets:
            assert vars(owner).get(attribute, _MISSING) is not original, f"{owner!r}.{attribute} was not replaced"
        self.patch.revert()
        for owner, attribute, original in targets:
            assert vars(owner).get(attribute, _MISSING) is original, f"{owner!r}.{attribute} is not restored"

    def test_applying_twice_wraps_once(self) -> None:
        targets = self._targets()
        self.patch.apply()
        first = [vars(owner).get(attribute) for owner, attribute, _ in targets]
        self.patch.apply()
        assert [vars(owner).get(attribute) for owner, attribute, _ in targets] == first
        for (_, _, original), value in zip(targets, first):
            wrapped = getattr(getattr(value, "__func__", value), "__wrapped__", None)
            if wrapped is not None and original is not _MISSING:
                inner = getattr(original, "__func__", original)
                assert wrapped is inner, "a replacement wraps another replacement, not the original"
