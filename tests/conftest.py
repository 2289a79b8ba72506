"""Refuse to test the uncompiled fallback by mistake.

With ``fastact/`` at the top of the repository it is easy to import the source tree
(which has no built extension) instead of the installed package: every comparison of
"compiled" against "reference" would then compare the reference with itself and pass.
Set FASTACT_DISABLE_COMPILED=1 to test the reference path on purpose.
"""

import os

import pytest

import fastact
from fastact._dispatch import DISABLE_ENV_VAR


def pytest_report_header(config):
    cfg = fastact.show_config(print_out=False)
    return [
        f"fastact {cfg['version']} from {os.path.dirname(fastact.__file__)}",
        f"compiled: {cfg['compiled']} ({cfg['compiler']}; {cfg['cflags']})",
    ]


def pytest_sessionstart(session):
    if not fastact.COMPILED and os.environ.get(DISABLE_ENV_VAR, "") in ("", "0"):
        pytest.exit(
            f"fastact's compiled extension is not loaded (fastact imported from "
            f"{os.path.dirname(fastact.__file__)}). Install the package first "
            f"(pip install .) and run `pytest`, not `python -m pytest` from the repository "
            f"root; or set {DISABLE_ENV_VAR}=1 to test the reference path on purpose.",
            returncode=1,
        )
