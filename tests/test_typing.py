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
    # An editable install hides the package from mypy: point it at the source tree then.
    # A regular install lives in site-packages, which mypy finds (and refuses in MYPYPATH).
    package_root = Path(fastact.__file__).resolve().parent.parent
    env = dict(os.environ)
    if package_root.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(package_root)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(usage)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=usage.parent,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
