"""The compiled loops run with the GIL released."""

import numpy as np
import pytest
from bitwise import FUNCTIONS, args_for, python_runs_during, requires_compiled

import fastact


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dtype"),
    [(name, np.float32) for name in FUNCTIONS] + [("relu", np.int8), ("relu", np.uint16)],
)
def test_python_thread_progresses_during_a_long_call(name, dtype):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(1 << 24, dtype=dtype)
    else:
        x = rng.integers(0, 256, 1 << 24, dtype=np.uint8).astype(dtype) - dtype(100)
    out = np.empty_like(x)
    args = args_for(name, x, x, 0.1)
    assert python_runs_during(lambda: getattr(fastact, name)(*args, out=out)), (
        "no Python code ran during the calls: the GIL was held"
    )
