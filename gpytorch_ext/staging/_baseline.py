"""The baseline: what GPyTorch's own test suite gives on the unpatched release, and comparison against it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._results import OUTCOMES, PROBLEMS, Results

__all__ = ["BASELINE_PATH", "Baseline", "Comparison", "compare", "load_baseline"]

#: The baseline shipped with the package.
BASELINE_PATH = Path(__file__).with_name("baseline.json")


@dataclass(frozen=True)
class Baseline:
    """Outcome counts of the full upstream suite on the unpatched release, and its known failing/erroring tests."""

    counts: Mapping[str, int]  #: ``{outcome: number}`` over :data:`~gpytorch_ext.staging.OUTCOMES`
    known: Mapping[str, str]  #: ``{node id: "failed" | "error"}``
    info: Mapping[str, Any] = field(default_factory=dict)  #: versions, wall time, command, notes

    def to_json(self) -> dict[str, Any]:
        """The JSON document :func:`load_baseline` reads back."""
        return {**self.info, "counts": dict(self.counts), "known": dict(sorted(self.known.items()))}

    @classmethod
    def from_results(cls, results: Results, **info: Any) -> Baseline:
        """The baseline a full run gives."""
        return cls(counts=results.counts, known=results.problems, info=info)


def load_baseline(path: Path | None = None) -> Baseline:
    """Read a baseline file (default: the one shipped in the package, :data:`BASELINE_PATH`).

    :raises ValueError: when the file lacks ``counts`` or ``known``, or names an unknown outcome.
    """
    path = Path(path) if path is not None else BASELINE_PATH
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        counts = {o: int(data["counts"].get(o, 0)) for o in OUTCOMES}
        known = dict(data["known"])
    except (KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: a baseline needs 'counts' (a mapping) and 'known' (a mapping): {exc}") from None
    bad = {k: v for k, v in known.items() if v not in PROBLEMS}
    if bad:
        raise ValueError(f"{path}: 'known' outcomes must be one of {PROBLEMS}, got {bad}")
    info = {k: v for k, v in data.items() if k not in ("counts", "known")}
    return Baseline(counts=counts, known=known, info=info)


@dataclass(frozen=True)
class Comparison:
    """A run set against the baseline."""

    baseline: Baseline
    results: Results
    full: bool  #: whether the run covered the whole suite (counts are only comparable then)
    new_problems: dict[str, str]  #: failed/errored tests the baseline does not list
    still_known: dict[str, str]  #: known failures/errors that occurred again
    fixed: dict[str, str]  #: known failures/errors that ran and did not fail this time ``{id: outcome now}``
    not_run: tuple[str, ...]  #: known failures/errors that did not run (only reported for a full run)

    @property
    def ok(self) -> bool:
        """No test failed or errored beyond the baseline's known ones (and the run ran at least one test)."""
        return not self.new_problems and len(self.results) > 0

    def table(self) -> str:
        """A short text table: outcome counts of the baseline and of this run."""
        head = "baseline" if self.full else "baseline (full suite)"
        width = max(len(head), 8)
        lines = [f"{'':10} {head:>{width}} {'now':>8}"]
        now = self.results.counts
        for outcome in OUTCOMES:
            lines.append(f"{outcome:10} {self.baseline.counts.get(outcome, 0):>{width}} {now[outcome]:>8}")
        lines.append(f"{'total':10} {sum(self.baseline.counts.values()):>{width}} {len(self.results):>8}")
        return "\n".join(lines)

    def report(self) -> str:
        """The table followed by the lists of new problems, fixed and missing known problems, and the verdict."""
        parts = [self.table(), ""]
        if not self.full:
            parts.append("(a narrowed run: compared by test id only, the counts are not comparable)")
        if self.new_problems:
            parts.append(f"NEW failures/errors ({len(self.new_problems)}):")
            parts += [f"  {outcome:6} {nodeid}" for nodeid, outcome in sorted(self.new_problems.items())]
        else:
            parts.append("new failures/errors: none")
        if self.still_known:
            parts.append(f"known failures/errors seen again ({len(self.still_known)}):")
            parts += [f"  {outcome:6} {nodeid}" for nodeid, outcome in sorted(self.still_known.items())]
        if self.fixed:
            parts.append(f"known failures/errors that no longer fail ({len(self.fixed)}):")
            parts += [f"  {outcome:6} {nodeid}" for nodeid, outcome in sorted(self.fixed.items())]
        if self.not_run:
            parts.append(f"known failures/errors that did not run ({len(self.not_run)}):")
            parts += [f"  {nodeid}" for nodeid in self.not_run]
        if self.full and self.results.count("passed") < self.baseline.counts.get("passed", 0):
            parts.append(
                f"warning: fewer tests passed ({self.results.count('passed')}) than in the baseline "
                f"({self.baseline.counts.get('passed', 0)}): were tests skipped or removed?"
            )
        if len(self.results) == 0:
            parts.append("no test ran")
        parts.append("RESULT: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(parts)


def compare(baseline: Baseline, results: Results, *, full: bool) -> Comparison:
    """Set ``results`` against ``baseline``.

    :param full: the run covered the whole suite; a narrowed run (``--tests``) is compared by test id only.
    """
    problems = results.problems
    new = {k: v for k, v in problems.items() if k not in baseline.known}
    still = {k: v for k, v in problems.items() if k in baseline.known}
    fixed = {k: results.outcomes[k] for k in baseline.known if k in results.outcomes and k not in problems}
    not_run = tuple(sorted(k for k in baseline.known if k not in results.outcomes)) if full else ()
    return Comparison(baseline, results, full, new, still, fixed, not_run)
