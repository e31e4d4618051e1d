"""Build GPyTorch source trees: pristine, or with the patch series applied."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._git import GitError, apply_check, apply_patch, init_pristine
from ._sdist import PINNED_VERSION, fetch_sdist, unpack_sdist

__all__ = ["MARKER", "SeriesApplyError", "Tree", "build_tree", "check_series_in", "remove_own_dir", "replace_dir"]

#: File written at the top of every directory the tools create, so that re-running may replace it safely.
MARKER = ".gpytorch-ext-staging"


class SeriesApplyError(RuntimeError):
    """A patch of the series does not apply; ``patch`` names it and the message carries git's explanation."""

    def __init__(self, patch: Path, message: str, applied: Sequence[Path]) -> None:
        self.patch = patch
        self.applied = tuple(applied)
        self.root: Path | None = None  #: the tree, with the patches before ``patch`` applied (set by build_tree)
        after = f" (after {', '.join(p.name for p in applied)})" if applied else ""
        super().__init__(f"{patch.name} does not apply to gpytorch{after}:\n{message}")


@dataclass
class Tree:
    """An unpacked GPyTorch source tree."""

    root: Path  #: the tree's top directory (it contains ``gpytorch/`` and ``test/``)
    version: str  #: the GPyTorch release it was unpacked from
    applied: list[Path] = field(default_factory=list)  #: the patches applied to it, in order


def check_series_in(tree: Path, patches: Sequence[Path], *, commit: bool) -> list[Path]:
    """``git apply --check`` each patch against ``tree`` in order, applying it before checking the next one.

    :param commit: commit each patch (``git am`` for mailbox patches) rather than only changing the files.
    :return: the patches, all applied.
    :raises SeriesApplyError: at the first patch that does not apply.
    """
    done: list[Path] = []
    for patch in patches:
        ok, message = apply_check(tree, patch)
        if not ok:
            raise SeriesApplyError(patch, message, done)
        try:
            apply_patch(tree, patch, commit=commit)
        except GitError as exc:
            raise SeriesApplyError(patch, str(exc), done) from None
        done.append(patch)
    return done


def build_tree(
    parent: Path,
    patches: Sequence[Path] = (),
    *,
    version: str = PINNED_VERSION,
    sdist: Path | None = None,
    commit: bool = True,
    project: str = "gpytorch",
) -> Tree:
    """Unpack GPyTorch (or ``project``) ``version`` into ``parent``, make it a git repository, and apply ``patches``
    in order.

    The release as unpacked is committed and tagged ``pristine``, so ``git diff pristine`` and
    ``git format-patch pristine..HEAD`` work in the result.

    :param parent: an existing directory to unpack into.
    :param patches: the patch files to apply, in order (see :func:`~gpytorch_ext.staging.read_series`).
    :param sdist: the source distribution to use (default: fetch or reuse the cached one).
    :param commit: commit each patch (needed for ``git format-patch``); otherwise only the files change.
    :param project: the project whose source distribution to unpack (``"gpytorch"`` or ``"linear_operator"``).
    :raises SeriesApplyError: when a patch does not apply.
    """
    archive = sdist if sdist is not None else fetch_sdist(version, project=project)
    root = unpack_sdist(archive, parent)
    label = "GPyTorch" if project == "gpytorch" else project
    init_pristine(root, f"{label} {version} as released (source distribution {archive.name})")
    tree = Tree(root=root, version=version)
    try:
        tree.applied = check_series_in(root, patches, commit=commit)
    except SeriesApplyError as exc:
        exc.root = root
        raise
    return tree


def replace_dir(dest: Path) -> None:
    """Make ``dest`` an empty directory carrying :data:`MARKER` (see :func:`remove_own_dir`)."""
    remove_own_dir(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("created by python -m gpytorch_ext.staging; safe to delete\n", encoding="utf-8")


def remove_own_dir(dest: Path) -> None:
    """Remove ``dest`` if it is an empty directory or one these tools created (it carries :data:`MARKER`).

    :raises FileExistsError: when ``dest`` exists, is not empty and carries no marker.
    """
    if dest.exists():
        if not dest.is_dir():
            raise FileExistsError(f"{dest} exists and is not a directory")
        if any(dest.iterdir()):
            if not (dest / MARKER).is_file():
                raise FileExistsError(f"{dest} is not empty and was not made by gpytorch_ext.staging; not touching it")
            shutil.rmtree(dest)
        else:
            dest.rmdir()
