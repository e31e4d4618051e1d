"""``python -m gpytorch_ext.staging``: stage the repairs as source patches and test them with GPyTorch's own suite."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._baseline import BASELINE_PATH, Baseline, compare, load_baseline
from ._git import PRISTINE_TAG, GitError, git
from ._runner import SuiteRunError, run_suite
from ._sdist import PINNED_VERSION, PINNED_VERSIONS, PROJECTS, FetchError, fetch_sdist
from ._series import SeriesError, default_patches_dir, read_series, unlisted_patches
from ._status import check_series, series_status
from ._tree import MARKER, SeriesApplyError, Tree, build_tree, remove_own_dir, replace_dir

__all__ = ["main"]

_OK, _FAILED, _ERROR = 0, 1, 2

#: ``git format-patch`` options for stable patch files: no commit ids, no git version, no "[PATCH n/m]".
FORMAT_PATCH_OPTIONS = ("--zero-commit", "--no-signature", "--no-numbered")


def _say(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)


def _series(args: argparse.Namespace) -> list[Path]:
    if getattr(args, "no_series", False):
        return []
    patches = read_series(args.patches)
    for stray in unlisted_patches(args.patches):
        _say(f"warning: {stray} is not listed in {Path(args.patches or default_patches_dir()) / 'series'}")
    return patches


def _describe_series(patches: Sequence[Path]) -> str:
    return f"{len(patches)} patches" + (": " + ", ".join(p.name for p in patches) if patches else "")


def _cmd_fetch(args: argparse.Namespace) -> int:
    _say(str(fetch_sdist(args.gpytorch_version, project=args.project)))
    return _OK


def _cmd_status(args: argparse.Namespace) -> int:
    ok, message = series_status(args.patches, timeout=args.timeout)
    _say(message)
    return _OK if ok else _FAILED


def _cmd_check(args: argparse.Namespace) -> int:
    patches = _series(args)
    sdist = fetch_sdist(args.gpytorch_version, project=args.project)
    try:
        check_series(patches, args.gpytorch_version, sdist=sdist)
    except SeriesApplyError as exc:
        _say(f"FAILED: {exc}")
        return _FAILED
    _say(f"OK: {_describe_series(patches)} apply cleanly to {args.project} {args.gpytorch_version} ({sdist.name})")
    return _OK


def _build_into(
    dest: Path, patches: Sequence[Path], version: str, *, keep_partial: bool = False, project: str = "gpytorch"
) -> Tree:
    """Build the patched tree in a sibling temporary directory, then move it to ``dest`` (replacing a previous one).

    :param keep_partial: when a patch does not apply, still move the tree (with the patches before it) to ``dest``.
    """
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        try:
            tree = build_tree(staging, patches, version=version, project=project)
        except SeriesApplyError as exc:
            if keep_partial and exc.root is not None:
                _move(exc.root, dest)
                exc.root = dest
            raise
        _move(tree.root, dest)
        tree.root = dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def _move(root: Path, dest: Path) -> None:
    remove_own_dir(dest)
    root.rename(dest)
    (dest / MARKER).write_text("created by python -m gpytorch_ext.staging; safe to delete\n", encoding="utf-8")
    with (dest / ".git" / "info" / "exclude").open("a", encoding="utf-8") as fh:
        fh.write(f"/{MARKER}\n")


def _cmd_prepare(args: argparse.Namespace) -> int:
    patches = _series(args)
    try:
        tree = _build_into(Path(args.dest), patches, args.gpytorch_version, project=args.project)
    except SeriesApplyError as exc:
        _say(f"FAILED: {exc}")
        return _FAILED
    _say(
        f"patched {_label(args)} {args.gpytorch_version} source ({_describe_series(patches)}) in {tree.root}",
        f"use it with: PYTHONPATH={tree.root} GPYTORCH_EXT_AUTOPATCH=0 pytest tests --impl=source",
    )
    return _OK


def _cmd_develop(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        _say(f"error: {dest} already exists; choose a new directory (develop never overwrites a checkout)")
        return _ERROR
    patches = _series(args)
    try:
        tree = _build_into(dest, patches, args.gpytorch_version, keep_partial=True, project=args.project)
    except SeriesApplyError as exc:
        _say(
            f"FAILED: {exc}",
            f"{exc.root} holds the release and the patches before {exc.patch.name}; to port it, run there",
            f"  git am -3 {exc.patch.resolve()}",
            "resolve the conflicts, `git am --continue`, apply the remaining patches likewise, and regenerate them.",
        )
        return _FAILED
    log = git(tree.root, "log", "--oneline", f"{PRISTINE_TAG}..HEAD").stdout.strip()
    patches_dir = Path(args.patches or default_patches_dir()).resolve()
    _say(
        f"{_label(args)} {args.gpytorch_version} checkout in {tree.root}: tag '{PRISTINE_TAG}' is the release, "
        f"then one commit per patch ({len(patches)}):",
        *(["  " + line for line in log.splitlines()] or ["  (none)"]),
        "edit, commit (one commit per repair), then regenerate the patches with:",
        f"  git -C {tree.root} format-patch {' '.join(FORMAT_PATCH_OPTIONS)} -o {patches_dir} {PRISTINE_TAG}..HEAD",
        f"and list them in {patches_dir / 'series'} (see {patches_dir / 'README.md'})",
    )
    return _OK


def _run(args: argparse.Namespace, mode: str) -> int:
    patches = [] if mode == "monkeypatch" and not args.series_tests else _series(args)
    baseline = load_baseline(args.baseline)
    keep = args.keep or args.workdir is not None
    if args.workdir is not None:
        workdir = Path(args.workdir).resolve()
        replace_dir(workdir)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="gpytorch-ext-staging-"))
    try:
        sdist = fetch_sdist(args.gpytorch_version, project=args.project)
        title = "patched source" if mode == "source" else f"installed {_label(args)} + pytest --gpytorch-ext"
        _say(f"== {_label(args)} {args.gpytorch_version} test suite: {title}", f"sdist:   {sdist}")
        if mode == "source" or args.series_tests:
            _say(f"series:  {_describe_series(patches)}")
        else:
            _say("series:  not applied (the release's own tests; --series-tests applies the series' test changes)")
        try:
            tree = build_tree(workdir, patches, version=args.gpytorch_version, sdist=sdist, project=args.project)
        except SeriesApplyError as exc:
            _say(f"FAILED: the series does not apply: {exc}")
            return _FAILED
        if mode == "monkeypatch":
            # the unpacked package must not shadow the installed one (pytest puts the rootdir first on sys.path)
            (tree.root / args.project).rename(tree.root / f"{args.project}.unpacked-source-not-imported")
        tests = list(args.tests or ["test"])
        missing = [t for t in tests if not (tree.root / t.split("::", 1)[0]).exists()]
        if missing:
            _say(f"error: no such test path in the unpacked tree {tree.root}: {', '.join(missing)}")
            return _ERROR
        try:
            run = run_suite(
                tree.root, tests, mode=mode, jobs=args.jobs, workdir=workdir, quiet=args.quiet,
                extra=args.pytest_args, announce=_say,
                timeout=args.timeout or None, package=args.project,
            )  # fmt: skip
        except SuiteRunError as exc:
            _say(f"error: {exc}")
            return _ERROR
        full = not args.tests
        comparison = compare(baseline, run.results, full=full)
        _say(
            "",
            f"== {_label(args)} {args.gpytorch_version} test suite: {title}",
            f"{args.project} imported from: {run.gpytorch_file}",
            *([run.plugin_header] if run.plugin_header else []),
            f"tests: {' '.join(tests)}   wall time: {run.wall_s:.0f} s   jobs: {args.jobs}",
            comparison.report(),
        )
        if args.write_baseline:
            _write_baseline(Path(args.write_baseline), run, args, tests, patches)
        return _OK if comparison.ok else _FAILED
    finally:
        if keep:
            _say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _write_baseline(path: Path, run, args: argparse.Namespace, tests: Sequence[str], patches: Sequence[Path]) -> None:
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "not installed"

    info = {
        args.project: args.gpytorch_version,
        "environment": {
            "python": platform.python_version(),
            **{name: version(name) for name in ("torch", "linear-operator", "pykeops", "pytest", "pytest-xdist")},
            "cpus": os.cpu_count(),
        },
        "command": f"python -m gpytorch_ext.staging {args.command}"
        + (f" --project {args.project}" if args.project != "gpytorch" else "")
        + f" --tests {' '.join(tests)} --jobs {args.jobs}"
        + (" --no-series" if not patches else "")
        + (f" --pytest-args {' '.join(args.pytest_args)}" if args.pytest_args else ""),
        "wall_time_s": round(run.wall_s),
    }
    path.write_text(json.dumps(Baseline.from_results(run.results, **info).to_json(), indent=2) + "\n", encoding="utf-8")
    _say(f"baseline written to {path}")


def _cmd_verify(args: argparse.Namespace) -> int:
    return _run(args, "source")


def _cmd_suite(args: argparse.Namespace) -> int:
    if not args.monkeypatch:
        _say("error: suite needs --monkeypatch (to run the suite on the patched source, use `verify`)")
        return _ERROR
    return _run(args, "monkeypatch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpytorch_ext.staging",
        description="Stage gpytorch-ext's repairs as source patches (patches/series) against GPyTorch's release "
        "and check them with GPyTorch's own test suite.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--project",
        choices=PROJECTS,
        default="gpytorch",
        help="the project whose release the series patches (default gpytorch; linear_operator: its series in "
        "patches/linear_operator)",
    )
    common.add_argument(
        "--gpytorch-version",
        default=None,
        help=f"the release (default {PINNED_VERSION}, or the pinned release of --project)",
    )
    common.add_argument("--patches", type=Path, default=None, help="directory with 'series' (default: patches/)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("fetch", parents=[common], help="download (or find in the cache) the source distribution")
    sub.add_parser("check", parents=[common], help="git apply --check the series against the source distribution")
    p = sub.add_parser("status", help="the report row: does the series apply to the installed GPyTorch? (no tests)")
    p.add_argument("--patches", type=Path, default=None, help="directory with 'series' (default: patches/)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to allow for downloading the sdist")
    for name, text in (
        ("prepare", "write the patched source tree to DEST (for pytest tests --impl=source)"),
        ("develop", "a git checkout of the release with the series applied as commits, to edit and format-patch"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--dest", required=True, type=Path, help="target directory")

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--tests", nargs="+", metavar="PATH", help="test paths relative to the unpacked tree")
    run.add_argument("--workdir", type=Path, help="work directory (kept); default a temporary directory")
    run.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    run.add_argument("--jobs", "-n", type=int, default=2, help="pytest-xdist workers (default 2; 0: no xdist)")
    run.add_argument("--baseline", type=Path, default=None, help=f"baseline file (default {BASELINE_PATH.name})")
    run.add_argument("--write-baseline", type=Path, metavar="FILE", help="write this run's results as a baseline")
    run.add_argument("--quiet", "-q", action="store_true", help="do not echo pytest's output")
    run.add_argument(
        "--timeout", type=float, default=5400.0, help="kill the test run after this many seconds (0: never)"
    )
    run.add_argument(
        "--pytest-args", nargs=argparse.REMAINDER, default=[], help="further pytest arguments (must come last)"
    )
    p = sub.add_parser("verify", parents=[common, run], help="run GPyTorch's suite on the patched source")
    p.add_argument("--no-series", action="store_true", help="do not apply the series (the unpatched release)")
    p = sub.add_parser(
        "suite", parents=[common, run], help="run GPyTorch's suite on the installed GPyTorch with pytest --gpytorch-ext"
    )
    p.add_argument("--monkeypatch", action="store_true", help="apply gpytorch-ext's run-time patches (required)")
    p.add_argument(
        "--series-tests",
        action="store_true",
        help="apply the series to the unpacked tree first, so its test changes run (against the installed GPyTorch)",
    )
    return parser


def _label(args: argparse.Namespace) -> str:
    return "GPyTorch" if args.project == "gpytorch" else args.project


def _resolve_project(args: argparse.Namespace) -> None:
    """Defaults that depend on ``--project``: the release, the series (``patches/<project>/``), the baseline."""
    project = getattr(args, "project", "gpytorch")
    args.project = project
    if getattr(args, "gpytorch_version", "") is None:
        args.gpytorch_version = PINNED_VERSIONS[project]
    if project != "gpytorch":
        if getattr(args, "patches", "") is None:
            args.patches = default_patches_dir() / project
        if getattr(args, "baseline", "") is None:
            args.baseline = BASELINE_PATH.with_name(f"baseline_{project}.json")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gpytorch_ext.staging``; returns the exit status (0 OK, 1 failed, 2 error)."""
    args = _parser().parse_args(argv)
    _resolve_project(args)
    handler = {
        "fetch": _cmd_fetch,
        "check": _cmd_check,
        "status": _cmd_status,
        "prepare": _cmd_prepare,
        "develop": _cmd_develop,
        "verify": _cmd_verify,
        "suite": _cmd_suite,
    }[args.command]
    try:
        return handler(args)
    except (SeriesError, FetchError, GitError, FileExistsError, ValueError) as exc:
        _say(f"error: {exc}")
        return _ERROR
