"""Fetch GPyTorch's (or linear_operator's) source distribution through pip, cache it, and unpack it."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = [
    "PINNED_VERSION",
    "PINNED_VERSIONS",
    "PROJECTS",
    "FetchError",
    "cache_dir",
    "cached_sdist",
    "fetch_sdist",
    "unpack_sdist",
]

#: The GPyTorch release the patch series is written against.
PINNED_VERSION = "1.15.2"

#: The projects that have a patch series, and the release each series is written against (linear_operator's series,
#: in ``patches/linear_operator/``, carries repairs of GPyTorch's linear algebra library).
PINNED_VERSIONS = {"gpytorch": PINNED_VERSION, "linear_operator": "0.6.1"}
PROJECTS = tuple(PINNED_VERSIONS)

# sha256 of the source distributions we have verified (as served by PyPI; pip checks the index's hash on download,
# this guards the cache against truncation or tampering afterwards).
_SHA256 = {
    ("gpytorch", "1.15.2"): "380625e93f851b85f772b25c5fb0a6c6d2e3eb2ef667f1e566ab4f95b8775361",
    ("linear_operator", "0.6.1"): "3fba49a8080d16f822a5d870f462279cd6afbcf4ed670f4511b38fad96f61831",
}


class FetchError(RuntimeError):
    """The source distribution is not cached and could not be downloaded."""


def cache_dir() -> Path:
    """The directory that holds downloaded source distributions.

    ``$GPYTORCH_EXT_CACHE/sdist`` when the environment variable is set, else ``~/.cache/gpytorch-ext/sdist``.
    """
    root = os.environ.get("GPYTORCH_EXT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gpytorch-ext"
    return base / "sdist"


def _candidates(version: str, cache: Path, project: str = "gpytorch") -> list[Path]:
    return [cache / f"{project}-{version}{ext}" for ext in (".tar.gz", ".zip")]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_sdist(version: str = PINNED_VERSION, cache: Path | None = None, project: str = "gpytorch") -> Path | None:
    """The cached source distribution of ``project`` (GPyTorch) ``version``, or ``None`` when it is not cached.

    :raises FetchError: when the cached file does not match the known sha256 of that release.
    """
    for path in _candidates(version, cache or cache_dir(), project):
        if path.is_file():
            expected = _SHA256.get((project, version))
            if expected is not None and _sha256(path) != expected:
                raise FetchError(f"cached {path} does not match the sha256 of {project} {version}; delete it and retry")
            return path
    return None


def fetch_sdist(
    version: str = PINNED_VERSION,
    *,
    cache: Path | None = None,
    timeout: float | None = None,
    project: str = "gpytorch",
) -> Path:
    """Return the source distribution of ``project`` (GPyTorch) ``version``, downloading it with pip when it is not
    cached.

    Runs ``python -m pip download --no-deps --no-binary :all: <project>==<version>`` with the running interpreter.
    A cached file is reused without touching the network.

    :param version: the release.
    :param cache: the cache directory (default :func:`cache_dir`).
    :param timeout: seconds to allow pip; ``None`` waits as long as pip takes.
    :param project: ``"gpytorch"`` or another project of :data:`PINNED_VERSIONS`.
    :return: the path of the ``.tar.gz`` (or ``.zip``) in the cache.
    :raises FetchError: when pip fails or times out.
    """
    cache = cache or cache_dir()
    found = cached_sdist(version, cache, project)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += ["--disable-pip-version-check", "-d", tmp, f"{project}=={version}"]
        returncode, output = _run_with_timeout(cmd, timeout)
        if returncode is None:
            raise FetchError(f"pip download of {project} {version} did not finish within {timeout:g} s")
        files = sorted(p for p in Path(tmp).iterdir() if p.name.endswith((".tar.gz", ".zip")))
        if returncode != 0 or not files:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise FetchError(f"pip download of {project} {version} failed (exit {returncode}):\n{tail}")
        target = _candidates(version, cache, project)[0 if files[0].name.endswith(".tar.gz") else 1]
        os.replace(files[0], target)
    return cached_sdist(version, cache, project) or target


def _run_with_timeout(cmd: list[str], timeout: float | None) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; on timeout kill that group and return ``(None, output)``."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        return None, out or ""
    return proc.returncode, out or ""


def unpack_sdist(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into the directory ``dest`` and return the source tree's root (``dest/gpytorch-X.Y.Z``)."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        shutil.unpack_archive(archive, dest)
        names = None
    else:
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without PEP 706 extraction filters
                members = tar.getmembers()
                for m in members:  # files owned by the release's uid would make git refuse the tree
                    m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
                    if m.name.startswith("/") or ".." in m.name.split("/") or m.issym() or m.islnk():
                        raise FetchError(f"{archive.name}: refusing to extract {m.name!r}")
                tar.extractall(dest, members=members)  # noqa: S202
    tops = {n.split("/", 1)[0] for n in names} if names is not None else {p.name for p in dest.iterdir()}
    roots = [dest / t for t in sorted(tops) if (dest / t).is_dir()]
    if len(roots) != 1:
        raise FetchError(f"{archive.name}: expected one top-level directory, found {sorted(tops)}")
    return roots[0]
