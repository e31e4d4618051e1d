"""Upstream staging: the repairs as source patches against GPyTorch's release, checked by GPyTorch's own suite.

``patches/series`` lists the patch files (``git format-patch`` output) in the order they apply to the source
distribution of GPyTorch :data:`PINNED_VERSION`. The command line::

    python -m gpytorch_ext.staging check                  # git apply --check the series
    python -m gpytorch_ext.staging verify [--tests PATH]  # GPyTorch's suite on the patched source, vs the baseline
    python -m gpytorch_ext.staging suite --monkeypatch    # the release's suite on installed GPyTorch + our patches
    python -m gpytorch_ext.staging prepare --dest DIR     # the patched source tree, for pytest --impl=source
    python -m gpytorch_ext.staging develop --dest DIR     # a git checkout to edit and re-export the patches

Nothing here imports GPyTorch or applies a patch; the test runs happen in subprocesses.
"""

from ._baseline import BASELINE_PATH, Baseline, Comparison, compare, load_baseline
from ._git import PRISTINE_TAG, GitError
from ._results import OUTCOMES, Results, nodeid_from_junit, parse_junit
from ._runner import SuiteRun, SuiteRunError, run_suite
from ._sdist import PINNED_VERSION, FetchError, cache_dir, cached_sdist, fetch_sdist, unpack_sdist
from ._series import SERIES_PACKAGE, SeriesError, default_patches_dir, parse_series, read_series, unlisted_patches
from ._status import check_series, series_status, series_summary
from ._tree import SeriesApplyError, Tree, build_tree

__all__ = [
    "BASELINE_PATH",
    "OUTCOMES",
    "PINNED_VERSION",
    "PRISTINE_TAG",
    "SERIES_PACKAGE",
    "Baseline",
    "Comparison",
    "FetchError",
    "GitError",
    "Results",
    "SeriesApplyError",
    "SeriesError",
    "SuiteRun",
    "SuiteRunError",
    "Tree",
    "build_tree",
    "cache_dir",
    "cached_sdist",
    "check_series",
    "compare",
    "default_patches_dir",
    "fetch_sdist",
    "load_baseline",
    "nodeid_from_junit",
    "parse_junit",
    "parse_series",
    "read_series",
    "run_suite",
    "series_status",
    "series_summary",
    "unlisted_patches",
    "unpack_sdist",
]
