"""Timing helper shared by the benchmark scripts (imported by them; ``make bench`` does not run it)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    """The shortest of ``repeats`` timed calls of ``fn``, in seconds, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
