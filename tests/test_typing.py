"""The shipped stubs and annotations satisfy ``mypy --strict`` on typical user code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastact

pytest.importorskip("mypy")


@pytest.mark.slow
def test_mypy_strict_on_usage_file():
    usage = Path(__file__).with_name("typing_usage.py")
    # Point mypy at the installed package itself (an editable install hides it from mypy).
    package_root = str(Path(fastact.__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(usage)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=usage.parent,
        env={**os.environ, "MYPYPATH": package_root},
    )
    assert result.returncode == 0, result.stdout + result.stderr
