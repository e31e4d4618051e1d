"""Entry-point discovery from installed metadata, the auto-patch and its opt-out, in fresh interpreters."""

from __future__ import annotations

import importlib.metadata
import json

from tests.registry._fake_dist import run_python, write_fake_dist

SHIPPED = {
    "mvn-log-prob",
    "keops-kernels",
    "constraint-aware-priors",
    "prior-terms",
    "shared-parameters",
    "mvn-batch",
    "multitask-batched-inputs",
    "matmul-vector-backward",
}


def test_installed_metadata_declares_the_shipped_patches_and_the_pytest_plugin():
    eps = importlib.metadata.distribution("gpytorch-ext").entry_points
    assert {ep.name for ep in eps if ep.group == "gpytorch_ext.patches"} == SHIPPED
    assert [ep.value for ep in eps if ep.group == "pytest11"] == ["pytest_gpytorch_ext"]


def test_import_discovers_and_applies_a_third_party_patch(tmp_path):
    path = write_fake_dist(tmp_path)
    out = run_python(
        """
        import json, fake_target, gpytorch_ext
        print(json.dumps([gpytorch_ext.available(), gpytorch_ext.applied(), fake_target.greet()]))
        """,
        path,
    )
    assert out.returncode == 0, out.stderr
    available, applied, greeting = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"test-alpha", "test-beta"} <= set(available)
    assert SHIPPED <= set(available)
    assert set(applied) == set(available)
    assert greeting == "patched hello"


def test_environment_opt_out_applies_nothing(tmp_path):
    path = write_fake_dist(tmp_path)
    out = run_python(
        """
        import json, fake_target, gpytorch_ext
        print(json.dumps([gpytorch_ext.available(), gpytorch_ext.applied(), fake_target.greet()]))
        """,
        path,
        GPYTORCH_EXT_AUTOPATCH="0",
    )
    assert out.returncode == 0, out.stderr
    available, applied, greeting = json.loads(out.stdout.strip().splitlines()[-1])
    assert "test-alpha" in available and applied == [] and greeting == "hello"


def test_a_broken_patch_warns_once_and_the_others_still_apply(tmp_path):
    path = write_fake_dist(tmp_path, patches=("ALPHA", "BROKEN"))
    out = run_python(
        """
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fake_target, gpytorch_ext
        msgs = [str(w.message) for w in caught if w.category is gpytorch_ext.PatchWarning]
        leaked = hasattr(fake_target, "renamed_in_a_future_release")
        print(json.dumps([msgs, gpytorch_ext.applied(), fake_target.greet(), leaked]))
        """,
        path,
    )
    assert out.returncode == 0, out.stderr
    msgs, applied, greeting, leaked = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(msgs) == 1 and "test-broken" in msgs[0]
    assert "test-alpha" in applied and "test-broken" not in applied
    assert greeting == "patched hello" and not leaked
