"""Run GPyTorch's own test suite from an unpacked source tree and collect its results."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._results import Results, parse_junit

__all__ = ["MODES", "SuiteRun", "SuiteRunError", "gpytorch_import_path", "pytest_command", "run_suite"]

#: ``"source"``: the tree's own ``gpytorch`` package is imported (``PYTHONPATH``, patches off);
#: ``"monkeypatch"``: the installed GPyTorch is imported and ``pytest --gpytorch-ext`` repairs it at run time.
MODES = ("source", "monkeypatch")

_PLUGIN_HEADER = re.compile(r"^gpytorch-ext .*patches applied:.*$", re.MULTILINE)


class SuiteRunError(RuntimeError):
    """The suite could not be run as asked (wrong ``gpytorch`` imported, pytest usage error, time-out...)."""


@dataclass(frozen=True)
class SuiteRun:
    """One run of the upstream suite."""

    results: Results  #: per-test outcomes from the JUnit report
    returncode: int  #: pytest's exit status
    wall_s: float  #: wall-clock seconds of the pytest run
    gpytorch_file: str  #: ``gpytorch.__file__`` as the run's interpreter resolves it
    plugin_header: str | None  #: the gpytorch-ext plugin's report header line (monkeypatch mode)
    command: tuple[str, ...]  #: the pytest command line
    log: Path  #: pytest's full output


def _environment(root: Path, mode: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if mode == "source":
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
        env["GPYTORCH_EXT_AUTOPATCH"] = "0"
    return env


def gpytorch_import_path(root: Path, mode: str, package: str = "gpytorch") -> str:
    """``gpytorch.__file__`` (``package.__file__``) as the suite's interpreter will resolve it (same working
    directory and environment).

    :raises SuiteRunError: when it is not the tree's package in ``"source"`` mode, or is the tree's package in
        ``"monkeypatch"`` mode.
    """
    code = f"import sys, {package}; sys.stdout.write('\\n' + {package}.__file__ + '\\n')"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=_environment(root, mode), capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SuiteRunError(f"cannot import {package} for the {mode} run:\n{proc.stderr.strip()[-2000:]}")
    path = proc.stdout.strip().splitlines()[-1]
    inside = Path(path).resolve().is_relative_to(root.resolve())
    if mode == "source" and not inside:
        raise SuiteRunError(f"the source run would import {package} from {path}, not from the patched tree {root}")
    if mode == "monkeypatch" and inside:
        raise SuiteRunError(f"the monkeypatch run would import the unpacked {package} {path}, not the installed one")
    return path


def pytest_command(
    root: Path,
    tests: Sequence[str],
    *,
    mode: str,
    junit: Path,
    ini: Path,
    jobs: int = 2,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest command line for a run of ``tests`` (paths relative to ``root``) in ``mode``."""
    cmd = [sys.executable, "-m", "pytest", *tests, "-c", str(ini), "--rootdir", str(root), "--confcutdir", str(root)]
    cmd += ["-p", "no:cacheprovider", "--junitxml", str(junit), "-o", "junit_family=xunit2", "-rfE", "--tb=short"]
    cmd.append("--continue-on-collection-errors")  # a broken test module is one error, not an aborted run
    if jobs > 0:
        cmd += ["-n", str(jobs), "--dist", "worksteal"]  # an idle worker takes queued tests from a busy one
    if mode == "monkeypatch":
        cmd.append("--gpytorch-ext")
    return [*cmd, *extra]


def run_suite(
    root: Path,
    tests: Sequence[str] = ("test",),
    *,
    mode: str = "source",
    jobs: int = 2,
    workdir: Path | None = None,
    quiet: bool = False,
    timeout: float | None = None,
    extra: Sequence[str] = (),
    announce: Callable[[str], None] | None = None,
    package: str = "gpytorch",
) -> SuiteRun:
    """Run GPyTorch's tests in the unpacked tree ``root`` and parse the results.

    In ``"source"`` mode the tree's ``gpytorch`` comes first on ``PYTHONPATH`` and ``GPYTORCH_EXT_AUTOPATCH=0``;
    in ``"monkeypatch"`` mode the tree must not contain a ``gpytorch`` package (the installed one is imported) and
    pytest runs with ``--gpytorch-ext``. Nothing is installed anywhere.

    :param root: the unpacked source tree (contains ``test/``).
    :param tests: test paths (or node ids) relative to ``root``.
    :param mode: one of :data:`MODES`.
    :param jobs: pytest-xdist workers (``-n``); 0 runs in one process without xdist.
    :param workdir: where to write the JUnit report, pytest's log and its (empty) ini file; default ``root.parent``.
    :param quiet: do not echo pytest's output (it is still written to the log).
    :param timeout: seconds after which the run is killed (:class:`SuiteRunError`).
    :param extra: further pytest arguments.
    :param announce: called with a short header (where ``gpytorch`` is imported from, the command) before pytest
        starts.
    :param package: the package the tree carries (``"gpytorch"``, or ``"linear_operator"`` for its series).
    :raises SuiteRunError: when the wrong ``gpytorch`` would be imported, pytest cannot run the tests, or on time-out.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    workdir = workdir or root.parent
    gpytorch_file = gpytorch_import_path(root, mode, package)
    junit, log, ini = workdir / "junit.xml", workdir / "pytest.log", workdir / "pytest.ini"
    ini.write_text("[pytest]\n# empty: GPyTorch's source distribution has no pytest configuration\n", encoding="utf-8")
    junit.unlink(missing_ok=True)
    cmd = pytest_command(root, tests, mode=mode, junit=junit, ini=ini, jobs=jobs, extra=extra)
    if announce is not None:
        announce(f"{package} imported from: {gpytorch_file}\npytest: {shlex.join(cmd)}\n(cwd {root})")
    start = time.monotonic()
    output: list[str] = []
    proc = subprocess.Popen(
        cmd, cwd=root, env=_environment(root, mode), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True,
    )  # fmt: skip
    timed_out = threading.Event()

    def _on_timeout() -> None:
        timed_out.set()
        _kill(proc, wait=False)

    timer = threading.Timer(timeout, _on_timeout) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        with log.open("w", encoding="utf-8") as fh:
            assert proc.stdout is not None
            for line in proc.stdout:
                output.append(line)
                fh.write(line)
                if not quiet:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        proc.wait()
    except BaseException:
        _kill(proc)
        raise
    finally:
        if timer is not None:
            timer.cancel()
    wall = time.monotonic() - start
    if timed_out.is_set():
        raise SuiteRunError(f"the test run did not finish within {timeout:g} s (log: {log})")
    if proc.returncode not in (0, 1) or not junit.is_file():
        tail = "".join(output[-30:])
        raise SuiteRunError(f"pytest could not run the tests (exit {proc.returncode}); log {log}:\n{tail}")
    header = _PLUGIN_HEADER.search("".join(output[:200]))
    return SuiteRun(
        results=parse_junit(junit, root),
        returncode=proc.returncode,
        wall_s=wall,
        gpytorch_file=gpytorch_file,
        plugin_header=header.group(0) if header else None,
        command=tuple(cmd),
        log=log,
    )


def _kill(proc: subprocess.Popen[str], *, wait: bool = True) -> None:
    """Kill the process group we started for ``proc`` (pytest and its xdist workers)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if wait:
        proc.wait()
