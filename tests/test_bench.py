"""The benchmark (the README's main job) runs and writes its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastact
from fastact._functions import FUNCTIONS

try:  # bfloat16 is benchmarked when ml_dtypes is installed
    import ml_dtypes
except ImportError:
    ml_dtypes = None

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
    meta = data["metadata"]
    # The child inherits FASTACT_DISABLE_COMPILED, if set, as this process did.
    assert meta["fastact"]["compiled"] is fastact.COMPILED
    assert isinstance(meta["cpu_flags"], list)
    assert "env" in meta["threads"]

    # The main table: every dtype by default, every function, fastact and a roofline.
    dtypes = {"float16", "float32", "float64"} | ({"bfloat16"} if ml_dtypes else set())
    assert {case["dtype"] for case in data["cases"]} == dtypes
    # The rows come from the function table: every function has its row.
    assert {case["function"] for case in data["cases"]} == {f.name for f in FUNCTIONS}
    for case in data["cases"]:
        assert case["competitors"]["fastact"]["exact"] == "yes"
        assert case["competitors"]["alloc"]["allocates"] is True
        assert case["competitors"][case["roofline"]]["exact"] == "roofline"
    relu = next(c for c in data["cases"] if (c["function"], c["dtype"]) == ("relu", "float32"))
    # x * (x > 0) differs from ReLU on NaN and -inf: it must be flagged, not passed.
    assert relu["competitors"]["mul"]["exact"].startswith("no")

    # In place: only the functions whose repeated call is idempotent.
    assert {case["function"] for case in data["in_place"]} == {
        "relu",
        "relu_grad",
        "leaky_relu_grad",
        "relu_backward",
    }
    for case in data["in_place"]:
        assert case["competitors"]["fastact"]["allocates"] is False

    patterns = {name for row in data["input_patterns"] for name in row["over_random"]}
    assert patterns == {"random", "sorted", "half NaN"}
    assert {row["layout"] for row in data["strided"]} == {"x2[::2]", "x2[:, :c]", "x2.T"}
    assert all(row["out_over_contiguous"] > 0 for row in data["strided"])
    assert {row["n"] for row in data["call_overhead"]} == {1, 16, 256}

    rows = data["thread_scaling"]
    assert {row["threads"] for row in rows} >= {1}
    assert all(row["exact"] == "yes" for row in rows if row["implementation"] == "fastact")
