"""Many threads at once, and processes forked after use: right answers, no hang."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from bitwise import FUNCTIONS, args_for, assert_bitwise_equal, sample
from composites import COMPOSITE_CASES, build_call

import fastact
from fastact import _reference

THREADS = 8
SECONDS = float(os.environ.get("FASTACT_THREAD_SECONDS", "3"))


def shared_cases():
    """(function, arguments, expected) on read-only inputs: compiled and reference paths."""
    rng = np.random.default_rng(12)
    cases = []
    for dtype in (np.float32, np.float64, np.float16):
        x, g = sample(dtype, 1 << 16, rng), sample(dtype, 1 << 16, rng)
        for a in (x, g):
            a.flags.writeable = False
        for name in FUNCTIONS:
            for xs, gs in (
                (x, g),
                (x[::3], g[::3]),
                (x.reshape(256, 256).T, g.reshape(256, 256).T),
            ):
                args = args_for(name, xs, gs, 0.2)
                cases.append((name, args, getattr(_reference, name)(*args)))
    # The composites, their outputs given or not: the expected results are their own on
    # one thread (their sums are checked against the reference by test_properties.py).
    for case in COMPOSITE_CASES.values():
        for dtype in (np.float32, np.float16):
            call = build_call(case, dtype, (16, 8, 512), rng)
            for value in call.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
            cases.append((case, call, case.call(call)))
    ints = sample(np.int8, 1 << 16, rng)
    ints.flags.writeable = False
    cases.append(("relu", (ints,), _reference.relu(ints)))
    return cases


def outputs_for(function, args, want) -> dict:
    """A thread's own outputs for one case."""
    if isinstance(function, str):
        return {"out": np.empty(want.shape, want.dtype)}
    from composites import empty_outputs

    return empty_outputs(function, args)


@pytest.mark.slow
def test_eight_threads_all_functions():
    cases = shared_cases()
    failures: list[str] = []
    calls = [0] * THREADS
    stop = threading.Event()
    start = threading.Barrier(THREADS)

    def worker(k: int) -> None:
        # Each thread has its own outputs; the inputs are shared by all.
        outs = [outputs_for(*case) for case in cases]
        start.wait()
        i = k
        while not stop.is_set():
            name, args, want = cases[i % len(cases)]
            try:
                outputs = outs[i % len(cases)] if i % 2 else {}
                if isinstance(name, str):
                    assert_bitwise_equal(getattr(fastact, name)(*args, **outputs), want)
                else:  # a composite: its call and its results
                    for a, b in zip(name.call(args, **outputs), want, strict=True):
                        assert_bitwise_equal(a, b)
            except Exception as exc:  # collected: an exception in a thread fails nothing
                failures.append(f"thread {k}, {getattr(name, 'name', name)}: {exc!r}")
                return
            calls[k] += 1
            i += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread is still running: deadlock"
    assert not failures, failures[:5]
    assert min(calls) > 0, calls


# Run in a fresh interpreter, from a directory outside the repository (so that it imports
# the installed package), with no other threads around: forking a process that runs
# threads is deprecated since Python 3.12 and warns (-W error makes that fatal). The BLAS
# pool NumPy may start is kept to one thread, and the warning, which is about threads
# fastact does not start, is ignored should some library start one anyway.
FORK_CHILD = textwrap.dedent(
    r"""
    import multiprocessing as mp
    import os
    import sys
    import warnings

    warnings.filterwarnings(
        "ignore", r".*use of fork\(\) may lead to deadlocks", DeprecationWarning
    )

    import numpy as np

    import fastact
    from fastact import _reference

    tests_dir = sys.argv[1]
    disabled = os.environ.get("FASTACT_DISABLE_COMPILED", "") not in ("", "0")
    assert fastact.COMPILED or disabled, fastact.__file__

    rng = np.random.default_rng(0)
    x = rng.standard_normal(1 << 16).astype(np.float32)
    g = rng.standard_normal(1 << 16).astype(np.float32)
    jobs = [
        ("relu", (x,)), ("leaky_relu", (x, 0.1)), ("relu_grad", (x,)),
        ("leaky_relu_grad", (x, 0.1)), ("relu_backward", (g, x)),
        ("leaky_relu_backward", (g, x, 0.1)), ("relu", (x.astype(np.float16)[::2],)),
    ]
    # Every composite too, from its entry in tests/composites.py, called by keyword.
    sys.path.insert(0, tests_dir)
    from composites import COMPOSITE_CASES, build_call

    keyword_jobs = [
        (case.name, build_call(case, np.float32, (8, 4, 257), rng))
        for case in COMPOSITE_CASES.values()
    ]
    # Use every function in the parent first: the children inherit whatever state that
    # left behind (fork) or start from scratch (forkserver).
    for name, args in jobs:
        getattr(fastact, name)(*args)
    parent = {name: getattr(fastact, name)(**call) for name, call in keyword_jobs}

    for method in ("fork", "forkserver"):
        ctx = mp.get_context(method)
        with ctx.Pool(2) as pool:
            pending = [
                (name, args, pool.apply_async(getattr(fastact, name), args))
                for name, args in jobs
            ]
            for name, args, result in pending:
                got = result.get(timeout=60)
                want = getattr(_reference, name)(*args)
                assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name
            pending = [
                (name, pool.apply_async(getattr(fastact, name), (), call))
                for name, call in keyword_jobs
            ]
            for name, result in pending:
                got, want = result.get(timeout=60), parent[name]
                got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
                assert [np.asarray(a).tobytes() for a in got] == [
                    np.asarray(b).tobytes() for b in want
                ], name
        proc = ctx.Process(target=fastact.leaky_relu_backward, args=(g, x, 0.1))
        proc.start()
        proc.join(timeout=60)
        assert proc.exitcode == 0, (method, proc.exitcode)
    print("ok")
    """
)


@pytest.mark.slow
def test_fork_and_forkserver_after_use(tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", FORK_CHILD, os.path.dirname(__file__)],
        cwd=tmp_path,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n", result.stdout + result.stderr
