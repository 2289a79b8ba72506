"""Threads: the settings API, exact results on every thread count, fork and import safety."""

import asyncio
import ctypes
import ctypes.util
import json
import multiprocessing
import operator
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from bitwise import (
    FUNCTIONS,
    KERNEL_FLOAT_DTYPES,
    args_for,
    assert_bitwise_equal,
    python_runs_during,
    requires_compiled,
    sample,
    thresholds,
)
from composites import COMPOSITE_CASES, assert_results, build_call

import fastact
from fastact import _reference

OPENMP = fastact.show_config(print_out=False)["openmp"]
# FASTACT_OPENMP=0 asks the build for the serial fallback (the tests run with the same
# environment as the build); anything else must give OpenMP threads.
BUILT_WITH_OPENMP = os.environ.get("FASTACT_OPENMP") != "0"

# Around the size where a second thread starts (1 MiB of traffic by default) and past
# 16 MiB of output (where streaming stores start on some machines), with odd lengths so
# that the slices have tails.
FLOAT32_LENGTHS = (1, 2**17 - 1, 2**18 + 3, 2**20 + 17, (16 << 20) // 4 + 5)


@pytest.fixture(autouse=True)
def _restore_default():
    before = fastact.get_num_threads()
    yield
    fastact.set_num_threads(before)


def test_default_is_one_thread():
    assert fastact.get_num_threads() == 1


@requires_compiled
def test_openmp_is_in_unless_turned_off():
    # FASTACT_OPENMP=0 at build time must give the serial build, and say so; otherwise a
    # GCC build must have OpenMP (a failed probe would silently make every call serial).
    cfg = fastact.show_config(print_out=False)
    if not BUILT_WITH_OPENMP:
        assert not OPENMP
    elif cfg["compiler"].startswith("gcc"):
        assert OPENMP, f"built without OpenMP ({cfg['compiler']}; {cfg['cflags']})"


def test_scope_is_per_asyncio_task():
    async def inside(n, entered, release):
        with fastact.threads(n):
            entered.set()
            await release.wait()
            return fastact.get_num_threads()

    async def read():
        return fastact.get_num_threads()

    async def main():
        entered, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(inside(3, entered, release))
        await entered.wait()
        # The task's block is open, yet this task (and one started now) keeps the default.
        seen_here = fastact.get_num_threads()
        seen_new = await asyncio.create_task(read())
        release.set()
        return seen_here, seen_new, await task

    assert asyncio.run(main()) == (1, 1, 3)


def test_set_and_scope():
    fastact.set_num_threads(3)
    assert fastact.get_num_threads() == 3
    with fastact.threads(2):
        assert fastact.get_num_threads() == 2
        with fastact.threads(5):
            assert fastact.get_num_threads() == 5
        assert fastact.get_num_threads() == 2
    assert fastact.get_num_threads() == 3


def test_scope_is_per_thread():
    seen = []
    with fastact.threads(4):
        worker = threading.Thread(target=lambda: seen.append(fastact.get_num_threads()))
        worker.start()
        worker.join()
        assert fastact.get_num_threads() == 4
    assert seen == [1]


def test_scope_restored_after_an_error():
    with pytest.raises(RuntimeError), fastact.threads(2):
        raise RuntimeError
    assert fastact.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 10**6])
def test_bad_count_is_a_value_error(bad):
    with pytest.raises(ValueError, match="thread count"):
        fastact.set_num_threads(bad)
    with pytest.raises(ValueError, match="thread count"), fastact.threads(bad):
        pass
    assert fastact.get_num_threads() == 1


@pytest.mark.parametrize("bad", [2.0, "2", True, np.True_, None, np.array(2.0)])
def test_non_int_count_is_a_type_error(bad):
    with pytest.raises(TypeError, match="must be an int"):
        fastact.set_num_threads(bad)
    with pytest.raises(TypeError, match="must be an int"), fastact.threads(bad):
        pass


class _Index:
    """Not an int, but has __index__: a count, as SupportsIndex in the stubs says."""

    def __index__(self) -> int:
        return 3


@pytest.mark.parametrize("count", [np.int64(2), _Index()], ids=["numpy", "__index__"])
def test_any_integer_count(count):
    fastact.set_num_threads(count)
    assert fastact.get_num_threads() == operator.index(count)
    assert type(fastact.get_num_threads()) is int
    with fastact.threads(count):
        assert fastact.get_num_threads() == operator.index(count)


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("n_threads", [2, 3])
def test_threaded_results_match_reference(name, n_threads):
    rng = np.random.default_rng(5)
    with fastact.threads(n_threads):
        for n in FLOAT32_LENGTHS:
            x, g = sample(np.float32, n, rng), sample(np.float32, n, rng)
            args = args_for(name, x, g, 0.2)
            assert_bitwise_equal(getattr(fastact, name)(*args), getattr(_reference, name)(*args))


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_threaded_every_dtype(dtype):
    rng = np.random.default_rng(6)
    n = 2**20 + 7
    x, g = sample(dtype, n, rng), sample(dtype, n, rng)
    with fastact.threads(2):
        for name in FUNCTIONS:
            args = args_for(name, x, g, 0.2)
            assert_bitwise_equal(getattr(fastact, name)(*args), getattr(_reference, name)(*args))


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_misaligned_out_and_in_place(n_threads, offset):
    # Streaming stores need 16-byte alignment: an out that starts mid-vector must still be
    # written whole, by the plain loop up to the first aligned address.
    rng = np.random.default_rng(8)
    n = (16 << 20) // 4 + 33
    x, g = sample(np.float32, n, rng), sample(np.float32, n, rng)
    buffer = np.empty(n + offset, np.float32)
    out = buffer[offset:]
    with fastact.threads(n_threads), thresholds(stream_min_bytes=0):
        assert fastact.leaky_relu_backward(g, x, 0.2, out=out) is out
        assert_bitwise_equal(out, _reference.leaky_relu_backward(g, x, 0.2))
        want = _reference.relu(x)
        assert fastact.relu(x, out=x) is x
        assert_bitwise_equal(x, want)


@requires_compiled
@pytest.mark.slow
def test_threaded_call_releases_the_gil():
    x = np.linspace(-1, 1, 2**21, dtype=np.float32)
    out = np.empty_like(x)
    with fastact.threads(2):
        assert python_runs_during(lambda: fastact.leaky_relu(x, 0.1, out=out))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _call_in_child(queue):
    x = np.linspace(-1, 1, 2**20, dtype=np.float32)
    before = os_threads()
    with fastact.threads(2):
        y = fastact.relu(x)
    started = os_threads() - before
    queue.put((bool(np.array_equal(y, _reference.relu(x))), started))


def assert_forked_child_finishes():
    """A child forked now makes a threaded call; it must finish on one thread, with the
    right result."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_call_in_child, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in a threaded call")
    assert child.exitcode == 0
    assert queue.get(timeout=10) == (True, 0), "(right result, threads started in the child)"


@requires_compiled
@pytest.mark.slow
@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform"
)
# Python 3.12+ warns about forking a multi-threaded process: that is what is tested here.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_after_threads_does_not_hang():
    x = np.linspace(-1, 1, 2**20, dtype=np.float32)
    with fastact.threads(2):
        fastact.relu(x)  # starts the thread team in the parent
    assert_forked_child_finishes()


def _start_openmp_team_elsewhere():
    """Run an OpenMP parallel region through libgomp itself, as another library would."""
    libgomp = ctypes.CDLL("libgomp.so.1")  # the copy fastact loaded, if built with OpenMP
    callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    do_nothing = callback_type(lambda data: None)
    libgomp.GOMP_parallel(do_nothing, None, ctypes.c_uint(2), ctypes.c_uint(0))


@requires_compiled
@pytest.mark.slow
@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods()
    or ctypes.util.find_library("gomp") is None,
    reason="needs GNU OpenMP (libgomp) and fork",
)
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_after_another_librarys_threads_does_not_hang():
    # fastact never started a team here: torch (say) did, in the same libgomp.
    _start_openmp_team_elsewhere()
    assert_forked_child_finishes()


def _run_python(code, **env):
    # From a neutral folder: `python -c` puts the working directory first on sys.path, and
    # from the repository root that would import the uncompiled source tree.
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=tempfile.gettempdir(),
    )


# Counts the OS threads of a fresh process after each call, all in threads(4): libgomp
# keeps a team's threads alive after it, so the count grows by the largest team's size - 1.
THREAD_COUNT_CHILD = """
import json, os
import numpy as np, fastact
{setup}

def os_threads():
    return len(os.listdir("/proc/self/task"))

per_thread = fastact.show_config(print_out=False)["parallel_min_bytes_per_thread"]
step = per_thread // 8  # float32 relu moves 8 bytes per element
calls = {{
    "below the threshold": np.ones(2 * step - 1, np.float32),
    "strided, below the threshold": np.ones(4 * step - 2, np.float32)[::2],
    "strided, 2 threads' worth": np.ones(4 * step, np.float32)[::2],
    "2 threads' worth": np.ones(2 * step, np.float32),
    "4 threads' worth": np.ones(4 * step, np.float32),
}}
before = os_threads()
started = {{}}
with fastact.threads(4):
    for label, x in calls.items():
        fastact.relu(x)
        started[label] = os_threads() - before
print(json.dumps(started))
"""

# What the README promises: no thread below the threshold (1 MiB of traffic for two
# threads, one more per 512 KiB), strided views split as contiguous arrays are, and
# fastact's own count.
EXPECTED_THREADS = {
    "below the threshold": 0,
    "strided, below the threshold": 0,
    "strided, 2 threads' worth": 1 if BUILT_WITH_OPENMP else 0,
    "2 threads' worth": 1 if BUILT_WITH_OPENMP else 0,
    "4 threads' worth": 3 if BUILT_WITH_OPENMP else 0,
}

OTHER_THREAD_SETTINGS = {
    "none": ({}, ""),
    "OMP_NUM_THREADS=1": ({"OMP_NUM_THREADS": "1"}, ""),
    "threadpoolctl": ({}, "import threadpoolctl\n_limit = threadpoolctl.threadpool_limits(1)"),
    "torch.set_num_threads": (
        {},
        "import torch\ntorch.set_num_threads(1)\ntorch.relu(torch.ones(1 << 20))",
    ),
}


@requires_compiled
@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("other", OTHER_THREAD_SETTINGS)
def test_threads_started_follow_the_threshold_and_fastacts_count(other):
    # A serial build (a failed OpenMP probe) fails here: it starts no thread at all.
    env, setup = OTHER_THREAD_SETTINGS[other]
    if "threadpoolctl" in setup:
        pytest.importorskip("threadpoolctl")
    if "torch" in setup:
        pytest.importorskip("torch")
    result = _run_python(THREAD_COUNT_CHILD.format(setup=setup), **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EXPECTED_THREADS


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_no_thread_started_at_import():
    result = _run_python(
        "import os, numpy as np, fastact\n"
        "fastact.relu(np.ones(10, np.float32))\n"
        "print(len(os.listdir('/proc/self/task')))",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


@pytest.mark.slow
def test_env_var_sets_the_default():
    code = "import fastact; print(fastact.get_num_threads())"
    result = _run_python(code, FASTACT_NUM_THREADS="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    # The warning must stay a warning, whatever PYTHONWARNINGS the suite runs under.
    result = _run_python(code, FASTACT_NUM_THREADS="many", PYTHONWARNINGS="default")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert "FASTACT_NUM_THREADS" in result.stderr


@requires_compiled
@pytest.mark.slow
@pytest.mark.skipif(not BUILT_WITH_OPENMP, reason="FASTACT_OPENMP=0: a serial build")
def test_visible_to_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    result = _run_python(
        "import numpy as np, fastact, threadpoolctl\n"
        "with fastact.threads(2):\n"
        "    fastact.relu(np.ones(2**20, np.float32))\n"
        "libs = threadpoolctl.threadpool_info()\n"
        "print(any(lib['user_api'] == 'openmp' for lib in libs))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True", threadpoolctl.__version__


@requires_compiled
@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMPOSITE_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_composite_same_bits_for_any_thread_count(name, dtype):
    # A low threshold splits even these arrays among the threads; the shape has odd
    # lengths on every axis, so each thread's share has a tail (and the bias and weight
    # gradients partial sums of their own).
    case = COMPOSITE_CASES[name]
    call = build_call(case, dtype, (37, 5, 1031), np.random.default_rng(13))
    with thresholds(parallel_min_bytes=4096):
        with fastact.threads(1):
            one = case.call(call)
        assert_results(case, call, one)
        for n_threads in (2, 3, 4):
            with fastact.threads(n_threads):
                many = case.call(call)
            for a, b in zip(many, one, strict=True):
                assert_bitwise_equal(a, b)
