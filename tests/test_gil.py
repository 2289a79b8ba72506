"""The compiled loops run with the GIL released."""

import sys
import threading

import numpy as np
import pytest
from bitwise import requires_compiled

import fastact


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize("name", ["relu", "leaky_relu_backward"])
def test_python_thread_progresses_during_a_long_call(name):
    # With a long switch interval the interpreter itself never hands the GIL over while
    # this thread runs Python code, so the counter can only move while the call has
    # released the GIL.
    x = np.random.default_rng(0).standard_normal(1 << 24).astype(np.float32)
    out = np.empty_like(x)
    args = (x, x) if "backward" in name else (x,)
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
        for _ in range(3):
            getattr(fastact, name)(*args, out=out)
        after = counter[0]
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)
    assert after > before, "no Python code ran during the calls: the GIL was held"
