"""The shipped stubs and annotations satisfy ``mypy --strict`` on typical user code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastact

pytest.importorskip("mypy")


def run_mypy(usage: Path) -> subprocess.CompletedProcess[str]:
    # An editable install hides the package from mypy: point it at the source tree then.
    # A regular install lives in site-packages, which mypy finds (and refuses in MYPYPATH).
    package_root = Path(fastact.__file__).resolve().parent.parent
    env = dict(os.environ)
    if package_root.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(package_root)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(usage)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=usage.parent,
        env=env,
    )


@pytest.mark.slow
def test_mypy_strict_on_usage_file():
    result = run_mypy(Path(__file__).with_name("typing_usage.py"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_catches_a_misspelt_name(tmp_path):
    # The lazy attributes (ufunc, bench) must not make every name of fastact an Any.
    usage = tmp_path / "misspelt.py"
    usage.write_text("import fastact\n\nfastact.no_such_function(1.0)\n")
    result = run_mypy(usage)
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"no_such_function"' in result.stdout and "[attr-defined]" in result.stdout
