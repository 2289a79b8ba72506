"""Refuse to test the uncompiled fallback by mistake, and, in CI, any unexplained skip.

With ``fastact/`` at the top of the repository it is easy to import the source tree
(which has no built extension) instead of the installed package: every comparison of
"compiled" against "reference" would then compare the reference with itself and pass.
Set FASTACT_DISABLE_COMPILED=1 to test the reference path on purpose.

In CI (``CI=true``) a skip fails the test, unless its reason is one of
``CI_ALLOWED_SKIPS``: a test that skips because an optional package (torch, ml_dtypes,
dask, threadpoolctl) or a CPU feature went missing would otherwise let a green run
hide that it no longer tests what it claims.
"""

import os
import re

import pytest

import fastact
from fastact._dispatch import DISABLE_ENV_VAR

# What truly cannot run in CI, each with its reason (patterns searched in the skip reason).
CI_ALLOWED_SKIPS = {
    # test_resources.py: 2^31 + 17 elements need 5-11 GiB; a CI machine may have less.
    r"^needs [\d.]+ GiB of free memory$": "the > 2^31-element tests when memory is short",
    # bitwise.requires_compiled: a run of the reference alone has no loops to test.
    r"^FASTACT_DISABLE_COMPILED is set": "FASTACT_DISABLE_COMPILED=1 tests the reference alone",
    # test_threads.py: the serial fallback build has no OpenMP runtime to show threadpoolctl.
    r"^FASTACT_OPENMP=0: a serial build$": "the serial build (.ci/run's fallback run)",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_report_header(config):
    cfg = fastact.show_config(print_out=False)
    lines = [
        f"fastact {cfg['version']} from {os.path.dirname(fastact.__file__)}",
        f"compiled: {cfg['compiled']} ({cfg['compiler']}; {cfg['cflags']})",
    ]
    if in_ci():
        lines.append("CI: a skip fails unless conftest.CI_ALLOWED_SKIPS explains it")
    return lines


def pytest_sessionstart(session):
    if not fastact.COMPILED and os.environ.get(DISABLE_ENV_VAR, "") in ("", "0"):
        pytest.exit(
            f"fastact's compiled extension is not loaded (fastact imported from "
            f"{os.path.dirname(fastact.__file__)}). Install the package first "
            f"(pip install .) and run `pytest`, not `python -m pytest` from the repository "
            f"root; or set {DISABLE_ENV_VAR}=1 to test the reference path on purpose.",
            returncode=1,
        )


def unexplained_skip(report) -> str | None:
    """The reason of a skip that CI does not allow, else None."""
    if not in_ci() or not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if any(re.search(pattern, reason) for pattern in CI_ALLOWED_SKIPS):
        return None
    return reason


def fail_in_ci(report) -> None:
    reason = unexplained_skip(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI: {reason}\n(CI must have what this test needs; "
            f"a skip that truly cannot be avoided there goes in conftest.CI_ALLOWED_SKIPS)"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level pytest.importorskip skips the whole file at collection.
    outcome = yield
    fail_in_ci(outcome.get_result())
