"""``python -m gpytorch_ext``: versions, and the self-check of every capability, in ten seconds of reading.

One row per registered patch (applied or not, and its self-check: the upstream defect reproduced with the patch
reverted, and the result with it applied), one row per feature that is called rather than patched in (such as
``equalize``: what GPyTorch alone gives, and what the feature gives), and the upstream patch series as the files
on disk describe it. The report is offline: it starts no pip, no git and no network access, and needs no
download cache (``python -m gpytorch_ext.staging status`` checks the series against GPyTorch's source).

``--json`` prints the same as one JSON document on standard output (anything a library prints while the
checks run, such as pykeops' CUDA notice, goes to standard error). Exit status 0 when every applied patch's
self-check and every feature's self-check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

_PACKAGES = ("torch", "gpytorch", "linear-operator", "pykeops")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 (C and Python writes alike) to standard error for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    if versions["pykeops"] != "not installed" and shutil.which(os.environ.get("CXX", "g++")) is None:
        versions["pykeops"] += " (no compiler)"
    return versions


def collect() -> dict[str, Any]:
    """Run every self-check and return the report as a plain dictionary (the ``--json`` document).

    Keys: ``gpytorch_ext`` (version), ``versions``, ``patches`` (rows of ``name``, ``summary``, ``applied``,
    ``self_check``), ``features`` (rows of ``name``, ``summary``, ``self_check``), ``upstream_series``
    (``applies``: ``None`` when not checked, and ``detail``) and ``ok``.
    """
    import gpytorch_ext
    from gpytorch_ext._features import features

    rows = []
    for name in gpytorch_ext.available():
        p = gpytorch_ext._registry.get(name)
        check = p.self_check()
        rows.append({"name": name, "summary": p.summary, "applied": p.is_applied, "self_check": check.as_dict()})
    feature_rows = [{"name": f.name, "summary": f.summary, "self_check": f.self_check().as_dict()} for f in features()]
    report: dict[str, Any] = {"gpytorch_ext": gpytorch_ext.__version__, "versions": _versions(), "patches": rows}
    report["features"] = feature_rows
    report["upstream_series"] = _series_row()
    report["ok"] = all(r["self_check"]["passed"] for r in rows if r["applied"]) and all(
        r["self_check"]["passed"] for r in feature_rows
    )
    return report


def _series_row() -> dict[str, Any]:
    """The patch series from the files on disk: never a download, a git command or a test run."""
    from gpytorch_ext.staging import series_summary

    applies, detail = series_summary()
    return {"applies": applies, "detail": detail}


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    v = report["versions"]
    lines = [
        f"gpytorch-ext {report['gpytorch_ext']}",
        "  " + "   ".join(f"{k} {v[k]}" for k in _PACKAGES),
        "",
    ]
    width = max([len(r["name"]) for r in report["patches"] + report["features"]] + [7])
    lines.append(f"  {'patch':<{width}}  applied  self-check")
    for r in report["patches"]:
        c = r["self_check"]
        verdict = "ok" if c["passed"] else "FAIL"
        lines.append(
            f"  {r['name']:<{width}}  {'yes' if r['applied'] else 'no':<7}  "
            f"{verdict:<4}  upstream: {c['upstream']}; patched: {c['patched']}"
        )
    if not report["patches"]:
        lines.append("  (no patches registered)")
    lines += ["", f"  {'feature':<{width}}  {'':7}  self-check"]
    for r in report["features"]:
        c = r["self_check"]
        verdict = "ok" if c["passed"] else "FAIL"
        lines.append(f"  {r['name']:<{width}}  {'':7}  {verdict:<4}  without: {c['upstream']}; with: {c['patched']}")
    s = report["upstream_series"]
    state = {True: "applies", False: "BROKEN", None: "not checked"}[s["applies"]]
    lines += ["", f"  upstream patch series: {state} ({s['detail']})"]
    lines += [
        "",
        "every applied patch and every feature passes its self-check" if report["ok"] else "SOME SELF-CHECKS FAILED",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpytorch_ext", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    args = parser.parse_args(argv)
    with _stdout_to_stderr():
        report = collect()
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
