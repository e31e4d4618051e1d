r"""Repair of KeOps' cache of compiled formulas: a module still being written, or left truncated.

Processes that compile the same formula at once (pytest-xdist workers, say) can load a half-written shared
object (``ImportError: ... file too short``). That passes: the call is tried again. A truncated module that stays
truncated was left by an interrupted build (a compilation killed half-way): it is removed from KeOps' build
folder, so that KeOps compiles it again, once. A formula that does not compile is not retried.

This module imports only the standard library (and pykeops, when a build has to be removed).
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retrying"]

T = TypeVar("T")

_ATTEMPTS = 3


def retrying(fn: Callable[[], T]) -> T:
    """``fn()``, tried again while another process is still writing a formula it needs to KeOps' cache.

    :raises: what ``fn`` raises, once the attempts are used up and no truncated build could be removed.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return fn()
        except (OSError, ImportError) as exc:
            if attempt < _ATTEMPTS:
                time.sleep(2.0 * attempt)
            elif not _remove_truncated_build(exc):
                raise
    return fn()  # KeOps compiles the removed module again


def _remove_truncated_build(exc: BaseException) -> bool:
    """Delete the truncated compiled module that ``exc`` names, if it lies in KeOps' build folder."""
    match = re.search(r"(/\S+?): file too short", str(exc))
    if match is None:
        return False
    try:
        import pykeops

        folder = os.path.realpath(pykeops.get_build_folder())
        path = os.path.realpath(match.group(1))
        if os.path.dirname(path) != folder:
            return False
        os.remove(path)
    except Exception:  # not ours to remove, or already gone: report the original error
        return False
    warnings.warn(
        f"removed a truncated KeOps build from an interrupted compilation: {path}", RuntimeWarning, stacklevel=3
    )
    return True
