"""Thin wrappers around the git commands the staging tools need."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["PRISTINE_TAG", "GitError", "apply_check", "apply_patch", "git", "init_pristine", "is_mbox"]

#: Tag on the commit that holds the source distribution as released.
PRISTINE_TAG = "pristine"

_IDENTITY = {
    "GIT_AUTHOR_NAME": "gpytorch-ext staging",
    "GIT_AUTHOR_EMAIL": "staging@gpytorch-ext.invalid",
    "GIT_COMMITTER_NAME": "gpytorch-ext staging",
    "GIT_COMMITTER_EMAIL": "staging@gpytorch-ext.invalid",
}
_CONFIG = [
    "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "core.autocrlf=false",
    "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false", "-c", "am.threeWay=false",
]  # fmt: skip


class GitError(RuntimeError):
    """A git command failed; the message carries git's own output."""


def git(tree: Path, *args: str, identity: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>`` in ``tree`` and return the completed process (output captured as text).

    :param identity: supply a fixed author/committer (for commits made by the tools themselves).
    :raises GitError: when ``check`` and git exits non-zero.
    """
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if identity:
        env.update(_IDENTITY)
    proc = subprocess.run(
        ["git", *_CONFIG, *args], cwd=tree, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        out = (proc.stderr + proc.stdout).strip()
        raise GitError(f"git {' '.join(args)} failed (exit {proc.returncode}):\n{out}")
    return proc


def init_pristine(tree: Path, message: str) -> None:
    """Make ``tree`` a git repository whose single commit (tagged :data:`PRISTINE_TAG`) holds all its files."""
    git(tree, "init", "-q")
    git(tree, "add", "-A", "-f", ".")
    git(tree, "commit", "-q", "--no-verify", "-m", message, identity=True)
    git(tree, "tag", PRISTINE_TAG)


def is_mbox(patch: Path) -> bool:
    """Whether ``patch`` is in ``git format-patch`` (mailbox) form rather than a bare diff."""
    with patch.open("rb") as fh:
        return fh.readline().startswith(b"From ")


def apply_check(tree: Path, patch: Path) -> tuple[bool, str]:
    """``git apply --check`` of ``patch`` against the current state of ``tree``: ``(applies, git's message)``."""
    proc = git(tree, "apply", "--check", str(patch.resolve()), check=False)
    return proc.returncode == 0, (proc.stderr + proc.stdout).strip()


def apply_patch(tree: Path, patch: Path, *, commit: bool = True) -> None:
    """Apply ``patch`` to ``tree``.

    With ``commit``, a mailbox patch is applied with ``git am`` (keeping its author and message) and a bare diff
    with ``git apply --index`` followed by a commit named after the file; without, the working files change only.

    :raises GitError: when the patch does not apply (the tree is left as it was).
    """
    path = str(patch.resolve())
    if not commit:
        git(tree, "apply", path)
    elif is_mbox(patch):
        proc = git(tree, "am", "-q", "--no-3way", path, identity=True, check=False)
        if proc.returncode != 0:
            git(tree, "am", "--abort", check=False)
            raise GitError(f"git am {patch.name} failed:\n{(proc.stderr + proc.stdout).strip()}")
    else:
        git(tree, "apply", "--index", path)
        git(tree, "commit", "-q", "--no-verify", "-m", f"Apply {patch.name}", identity=True)
