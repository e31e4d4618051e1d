"""Read pytest's JUnit XML report into per-test outcomes keyed by pytest node id."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OUTCOMES", "PROBLEMS", "Results", "nodeid_from_junit", "parse_junit"]

#: The outcomes a test can have, in the order they are reported.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
#: The outcomes that count against a run.
PROBLEMS = ("failed", "error")


@dataclass(frozen=True)
class Results:
    """The outcome of every test of a run, keyed by pytest node id."""

    outcomes: Mapping[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        """How many tests had ``outcome`` (one of :data:`OUTCOMES`)."""
        return sum(1 for o in self.outcomes.values() if o == outcome)

    @property
    def counts(self) -> dict[str, int]:
        """``{outcome: number of tests}`` for every outcome of :data:`OUTCOMES`."""
        tally = Counter(self.outcomes.values())
        return {o: tally.get(o, 0) for o in OUTCOMES}

    @property
    def problems(self) -> dict[str, str]:
        """``{node id: "failed" | "error"}`` for the tests that failed or errored."""
        return {k: v for k, v in self.outcomes.items() if v in PROBLEMS}

    def __len__(self) -> int:
        return len(self.outcomes)


def nodeid_from_junit(classname: str, name: str, root: Path | None = None) -> str:
    """Rebuild a pytest node id from a JUnit ``<testcase>``'s ``classname`` and ``name``.

    pytest writes ``test/kernels/test_rbf.py::TestRBF::test_x[a.b]`` as ``classname="test.kernels.test_rbf.TestRBF"``
    and ``name="test_x[a.b]"`` (a collection error of a module has an empty ``classname``). The module part is the
    longest dotted prefix that names a ``.py`` file under ``root``; without ``root`` (or when no file matches) it
    ends before the first component that starts with a capital letter, which is how test classes are named.

    :param root: pytest's rootdir for the run, to resolve the module part on disk.
    """
    dotted = classname.split(".") if classname else name.split(".")
    rest = [name] if classname else []
    cut = None
    if root is not None:
        for i in range(len(dotted), 0, -1):
            if (root.joinpath(*dotted[:i]).with_suffix(".py")).is_file() or (
                i == len(dotted) and not classname and root.joinpath(*dotted[:i]).is_dir()
            ):
                cut = i
                break
    if cut is None:
        cut = next((i for i, part in enumerate(dotted) if part[:1].isupper()), len(dotted))
        cut = max(cut, 1)
    module = "/".join(dotted[:cut])
    if root is None or not root.joinpath(*dotted[:cut]).is_dir():
        module += ".py"
    return "::".join([module, *dotted[cut:], *rest])


def parse_junit(path: Path, root: Path | None = None) -> Results:
    """Parse the JUnit XML file pytest wrote with ``--junitxml`` (any ``junit_family``).

    A test is ``failed`` when its report has a ``<failure>``, ``error`` when it has an ``<error>`` (an error in
    set-up or tear-down, or a collection error), ``xfailed``/``skipped`` for a ``<skipped>`` element, else
    ``passed``. A test that fails and then also errors in tear-down counts as ``failed``.

    :param path: the XML file.
    :param root: pytest's rootdir for the run (see :func:`nodeid_from_junit`).
    """
    tree = ET.parse(path)
    outcomes: dict[str, str] = {}
    rank = {o: i for i, o in enumerate(("passed", "xfailed", "skipped", "error", "failed"))}
    for case in tree.getroot().iter("testcase"):
        nodeid = nodeid_from_junit(case.get("classname", ""), case.get("name", ""), root)
        if case.find("failure") is not None:
            outcome = "failed"
        elif case.find("error") is not None:
            outcome = "error"
        elif (skipped := case.find("skipped")) is not None:
            outcome = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            outcome = "passed"
        previous = outcomes.get(nodeid)
        if previous is None or rank[outcome] > rank[previous]:
            outcomes[nodeid] = outcome
    return Results(outcomes)
