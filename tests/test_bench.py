"""The benchmark (the README's main job) runs and writes its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.slow
def test_quick_benchmark_runs(tmp_path):
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--peers", "", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "relu_backward" in result.stdout
    data = json.loads(report.read_text())
    assert data["metadata"]["fastact"]["compiled"] is True
