"""The patch registry, exercised in-process with test-only patches on a test-only target."""

from __future__ import annotations

import types
import warnings

import pytest

import gpytorch_ext
from gpytorch_ext import Patch, PatchWarning, Probe, Replacement, _registry


def _original_function():
    """Original docstring."""
    return "original"


class _Base:
    def inherited(self):
        return "base"


class _Target(_Base):
    def method(self):
        """Original method."""
        return "original"

    @staticmethod
    def static():
        return "original static"

    @property
    def prop(self):
        return "original property"


@pytest.fixture
def target():
    module = types.ModuleType("registry_test_target")
    module.function = _original_function
    module.Target = type("Target", (_Base,), dict(vars(_Target)))
    return module


@pytest.fixture
def register():
    """Register test-only patches; remove them (reverted) after the test."""
    added = []

    def _register(p: Patch) -> Patch:
        added.append(gpytorch_ext.register(p))
        return p

    yield _register
    for p in added:
        p.revert()
        _registry._PATCHES.pop(p.name, None)


def _replacement_function():
    return "patched"


def _make(name, target, *, verified_on=">=0", probe=None, extra=()):
    def replacements():
        return [
            Replacement(target, "function", _replacement_function),
            Replacement(target.Target, "method", lambda self: "patched"),
            Replacement(target.Target, "static", staticmethod(lambda: "patched static")),
            Replacement(target.Target, "prop", property(lambda self: "patched property")),
            Replacement(target.Target, "inherited", lambda self: "patched inherited"),
            *extra,
        ]

    return Patch(name=name, summary="test-only", replacements=replacements, verified_on=verified_on, probe=probe)


def test_apply_and_revert_restore_the_very_same_objects(target, register):
    before = {k: target.Target.__dict__[k] for k in ("method", "static", "prop")}
    function = target.function
    p = register(_make("test-identity", target))

    gpytorch_ext.patch("test-identity")
    assert "test-identity" in gpytorch_ext.applied()
    obj = target.Target()
    assert (target.function(), obj.method(), obj.static(), obj.prop, obj.inherited()) == (
        "patched",
        "patched",
        "patched static",
        "patched property",
        "patched inherited",
    )

    gpytorch_ext.unpatch("test-identity")
    assert not p.is_applied and "test-identity" not in gpytorch_ext.applied()
    assert target.function is function
    for key, value in before.items():
        assert target.Target.__dict__[key] is value
    assert "inherited" not in target.Target.__dict__  # was inherited, so it is removed, not shadowed
    assert obj.inherited() == "base"


def test_patched_function_keeps_metadata_and_exposes_wrapped(target, register):
    register(_make("test-metadata", target))
    with gpytorch_ext.patched("test-metadata"):
        assert target.function.__name__ == "_original_function"
        assert target.function.__qualname__ == _original_function.__qualname__
        assert target.function.__doc__ == "Original docstring."
        assert target.function.__wrapped__ is _original_function
        assert target.Target.method.__doc__ == "Original method."


def test_applying_twice_wraps_once(target, register):
    register(_make("test-idempotent", target))
    gpytorch_ext.patch("test-idempotent")
    first = target.function
    gpytorch_ext.patch("test-idempotent")
    gpytorch_ext.patch()
    assert target.function is first
    assert target.function.__wrapped__ is _original_function
    assert not hasattr(target.function.__wrapped__, "__wrapped__")
    gpytorch_ext.unpatch("test-idempotent")
    gpytorch_ext.unpatch("test-idempotent")
    assert target.function is _original_function


def test_patched_context_restores_previous_state_on_exception(target, register):
    register(_make("test-context", target))
    with pytest.raises(KeyError), gpytorch_ext.patched("test-context"):
        assert target.function() == "patched"
        raise KeyError("boom")
    assert target.function is _original_function

    gpytorch_ext.patch("test-context")
    with gpytorch_ext.patched("test-context"):
        pass
    assert target.function() == "patched"  # it was applied before the block, so it stays applied


def test_unknown_name_lists_available(register, target):
    register(_make("test-listed", target))
    for call in (gpytorch_ext.patch, gpytorch_ext.unpatch):
        with pytest.raises(ValueError, match="no-such-patch") as info:
            call("no-such-patch")
        assert "test-listed" in str(info.value)
    with pytest.raises(ValueError, match="available"), gpytorch_ext.patched("no-such-patch"):
        pass


def test_failing_apply_leaves_target_untouched_and_others_apply(target, register):
    missing = Replacement(target, "renamed_in_a_future_release", _replacement_function)
    register(_make("test-broken", target, extra=[missing]))
    other = types.ModuleType("other")
    other.function = _original_function
    register(
        Patch("test-other", "test-only", lambda: [Replacement(other, "function", lambda: "other")], verified_on=">=0")
    )
    method = target.Target.__dict__["method"]

    with pytest.warns(PatchWarning) as record:
        gpytorch_ext.patch("test-broken", "test-other")
    messages = [str(w.message) for w in record if issubclass(w.category, PatchWarning)]
    assert len(messages) == 1
    assert "test-broken" in messages[0] and "renamed_in_a_future_release" in messages[0]
    assert target.function is _original_function  # the replacements made before the failure were rolled back
    assert target.Target.__dict__["method"] is method
    assert "inherited" not in target.Target.__dict__
    assert gpytorch_ext.applied().count("test-broken") == 0
    assert other.function() == "other"


def test_version_outside_verified_range_applies_with_one_warning(target, register):
    register(_make("test-version", target, verified_on="<1.0"))
    with pytest.warns(PatchWarning, match="verified on gpytorch <1.0") as record:
        gpytorch_ext.patch("test-version")
        gpytorch_ext.unpatch("test-version")
        gpytorch_ext.patch("test-version")
    assert len([w for w in record if issubclass(w.category, PatchWarning)]) == 1
    assert target.function() == "patched"


def test_verified_version_applies_silently(target, register):
    register(_make("test-quiet", target, verified_on=">=1.0"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PatchWarning)
        gpytorch_ext.patch("test-quiet")


def test_self_check_runs_probe_in_both_states_and_restores(target, register):
    def probe():
        broken = target.function() == "original"
        return Probe("broken" if broken else "fine", defect=broken)

    p = register(_make("test-check", target, probe=probe))
    result = p.self_check()
    assert (result.upstream, result.patched, result.reproduced, result.passed) == ("broken", "fine", True, True)
    assert not p.is_applied and target.function is _original_function
    gpytorch_ext.patch("test-check")
    patched_function = target.function
    assert p.self_check().passed and target.function is patched_function


def test_self_check_reports_a_raising_probe_as_failed(target, register):
    def probe():
        raise RuntimeError("probe exploded")

    result = register(_make("test-raising", target, probe=probe)).self_check()
    assert not result.passed and "probe exploded" in result.patched


def test_register_rejects_a_different_patch_under_a_taken_name(target, register):
    register(_make("test-dup", target))
    with pytest.raises(ValueError, match="test-dup"):
        gpytorch_ext.register(_make("test-dup", target))


def test_applied_and_available_are_sorted_tuples(target, register):
    register(_make("test-zz", target))
    register(_make("test-aa", target))
    assert isinstance(gpytorch_ext.available(), tuple) and isinstance(gpytorch_ext.applied(), tuple)
    assert list(gpytorch_ext.available()) == sorted(gpytorch_ext.available())
    gpytorch_ext.patch("test-zz", "test-aa")
    assert {"test-aa", "test-zz"} <= set(gpytorch_ext.applied())


def test_create_adds_a_new_name_and_revert_removes_it(target, register):
    class New:
        pass

    register(
        Patch("test-create", "test-only", lambda: [Replacement(target, "NewName", New, create=True)], verified_on=">=0")
    )
    gpytorch_ext.patch("test-create")
    assert target.NewName is New
    gpytorch_ext.unpatch("test-create")
    assert not hasattr(target, "NewName")
