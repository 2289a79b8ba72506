"""The compiled loops run with the GIL released."""

import sys
import threading
import time

import numpy as np
import pytest
from bitwise import FUNCTIONS, args_for, requires_compiled

import fastact


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dtype"),
    [(name, np.float32) for name in FUNCTIONS] + [("relu", np.int8), ("relu", np.uint16)],
)
def test_python_thread_progresses_during_a_long_call(name, dtype):
    # With a long switch interval the interpreter itself never hands the GIL over while
    # this thread runs Python code, so the counter can only move while the call has
    # released the GIL.
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(1 << 24, dtype=dtype)
    else:
        x = rng.integers(0, 256, 1 << 24, dtype=np.uint8).astype(dtype) - dtype(100)
    out = np.empty_like(x)
    args = args_for(name, x, x, 0.1)
    counter = [0]
    started, stop = threading.Event(), threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            counter[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    worker = threading.Thread(target=count)
    try:
        worker.start()
        started.wait()
        before = counter[0]
        # Call until the counter moves, but for well under the switch interval: past it,
        # the counter thread would get the GIL by force, released or not.
        deadline = time.perf_counter() + 0.2
        while counter[0] == before and time.perf_counter() < deadline:
            getattr(fastact, name)(*args, out=out)
        after = counter[0]
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)
    assert after > before, "no Python code ran during the calls: the GIL was held"
