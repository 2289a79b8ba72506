"""Shared test data, a bit-for-bit comparison and a GIL-release probe."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import fastact
from fastact._functions import BY_NAME
from fastact._functions import FUNCTIONS as TABLE

requires_compiled = pytest.mark.skipif(
    not fastact.COMPILED, reason="FASTACT_DISABLE_COMPILED is set: testing the reference path"
)

try:
    import ml_dtypes
except ImportError:  # optional: bfloat16 cases skip without it (and fail in CI, conftest.py)
    ml_dtypes = None

#: ml_dtypes' bfloat16, or None where that package is missing.
BFLOAT16 = None if ml_dtypes is None else np.dtype(ml_dtypes.bfloat16)
requires_ml_dtypes = pytest.mark.skipif(
    ml_dtypes is None, reason="bfloat16 needs the optional ml_dtypes package (not installed)"
)

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
# bfloat16 is always a parameter: without ml_dtypes its cases skip and say why, rather than
# vanish from the parametrisation.
BFLOAT16_DTYPES = (
    pytest.param(
        BFLOAT16 if BFLOAT16 is not None else "bfloat16", id="bfloat16", marks=requires_ml_dtypes
    ),
)
KERNEL_FLOAT_DTYPES = FLOAT_DTYPES + BFLOAT16_DTYPES
INT_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)

# Slopes that each hit a rule: zeros of both signs, the default, ordinary, identity, > 1,
# negative (above and below -1), NaN, infinite of both signs, below float16/float32
# resolution, and the largest float32 (a larger one is refused below float64, as torch
# refuses it: test_parameters.py). float16's forward loop takes the larger of x and its
# product for a slope below 1 and the smaller above it; zeros and NaN keep the comparison.
SLOPES = (
    0.0, -0.0, 0.01, 0.2, 1.0, 3.0, -0.5, -3.0, float("nan"), float("inf"), -float("inf"),
    1e-45, 3.4e38,
)  # fmt: skip

# Built with AddressSanitizer (tests/sanitize.sh preloads its runtime): everything is
# several times slower, so time limits meant for a normal build do not apply.
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")

# The functions, from the table: every test that loops over them covers a new one.
FUNCTIONS = tuple(f.name for f in TABLE)
UNARY = tuple(f.name for f in TABLE if not f.is_backward)
BINARY = tuple(f.name for f in TABLE if f.is_backward)
WITH_SLOPE = tuple(f.name for f in TABLE if [p.name for p in f.parameters] == ["negative_slope"])


def parameter_cases(name: str) -> list[tuple[float, ...]]:
    """Values of a function's parameters that each hit a rule (its boundaries included)."""
    spec = BY_NAME[name]
    if not spec.parameters:
        return [()]
    if name in WITH_SLOPE:
        return [(s,) for s in SLOPES]
    names = tuple(p.name for p in spec.parameters)
    nan, inf = float("nan"), float("inf")
    if names == ("min_val", "max_val"):
        # The defaults, relu6's, zeros of both signs, equal bounds, bounds between float16
        # and bfloat16 grid points, infinite and NaN bounds, bounds among float16's
        # subnormals, below its smallest and between its two largest: the 16-bit loops
        # compare keys of the bounds' neighbours on the 16-bit grid.
        return [
            (-1.0, 1.0), (0.0, 6.0), (-0.0, 0.0), (0.0, -0.0), (0.5, 0.5), (-0.1, 0.1),
            (-0.09997, 0.10001), (-inf, inf), (-inf, 0.0), (0.0, inf), (nan, 1.0),
            (-1.0, nan), (nan, nan), (-65504.0, 65504.0), (1e-45, 3e-45), (-3e-8, 1e-6),
            (-1e-10, 1e-10), (-65503.0, 65503.0),
        ]  # fmt: skip
    if names == ("threshold", "value"):
        return [
            (0.0, 0.0), (0.0, -0.0), (-0.0, 5.0), (0.1, -5.0), (0.09997, 0.10001),
            (1.0, nan), (nan, 1.0), (inf, 2.0), (-inf, 2.0), (0.0, inf), (-1e-40, -inf),
            (65504.0, -65504.0), (70000.0, 1.0), (-70000.0, 1.0), (-3e-8, 2.0),
            (1e-10, -1.0), (3.39e38, 0.0),
        ]  # fmt: skip
    if names == ("threshold",):
        return [
            (t,) for t in (0.0, -0.0, 0.1, 0.09997, 1.0, nan, inf, -inf, -1e-40, 65504.0,
                           70000.0, -70000.0, -3e-8, 1e-10, -3.39e38)
        ]  # fmt: skip
    raise KeyError(f"no parameter cases for {name}")


def default_parameters(name: str, slope: float) -> tuple[float, ...]:
    """One set of parameters for ``name``: ``slope`` where it takes a slope."""
    if name in WITH_SLOPE:
        return (slope,)
    return parameter_cases(name)[0]


def edge_values(dtype) -> np.ndarray:
    """Every value an elementwise rule can get wrong, for one dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = {info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max}
        return np.array(sorted(v for v in values if info.min <= v <= info.max), dtype)
    info = finfo(dtype)
    tiny_sub = info.smallest_subnormal
    values = [
        np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0,
        tiny_sub, -tiny_sub, info.smallest_normal - tiny_sub, -(info.smallest_normal - tiny_sub),
        info.smallest_normal, -info.smallest_normal, info.max, info.min,
        1.0, -1.0, 0.5, -0.5, 1e-3, -1e-3,
    ]  # fmt: skip
    return np.array(values, dtype=dtype)


def finfo(dtype):
    """``np.finfo``, for bfloat16 too."""
    return ml_dtypes.finfo(dtype) if is_bfloat16(dtype) else np.finfo(dtype)


def is_bfloat16(dtype) -> bool:
    return np.dtype(dtype).name == "bfloat16"


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f" or is_bfloat16(dtype)


def sample(dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values: random signs and magnitudes mixed with edge values at random places."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
    else:
        values = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, size=n)).astype(dtype)
    edges = edge_values(dtype)
    where = rng.random(n) < 0.3
    values[where] = rng.choice(edges, size=int(where.sum()))
    return values


def args_for(name: str, x: np.ndarray, g: np.ndarray, slope: float | tuple) -> tuple:
    """Positional arguments of function ``name`` (without ``out``).

    ``slope`` is the slope of a function that takes one, or a tuple of all the function's
    parameters; other functions get their first parameter case.
    """
    args: tuple = (g, x) if name in BINARY else (x,)
    params = slope if isinstance(slope, tuple) else default_parameters(name, slope)
    return (*args, *params)


def compiled_entry(name: str) -> Callable[..., object]:
    """The compiled entry point of ``name`` called as ``(*args_for(...), out)``.

    Returns the result, or None where the entry point declines the arguments.
    """
    from fastact import _kernels

    spec = BY_NAME[name]
    op = FUNCTIONS.index(name)
    entry = _kernels.binary if spec.is_backward else _kernels.unary
    n_arrays = len(spec.operands)

    def call(*args: object) -> object:
        *given, out = args
        params = [float(p) for p in given[n_arrays:]] if not spec.fixed else []
        return entry(op, *given[:n_arrays], out, *(*params, 0.0, 0.0)[:2])

    return call


def _native(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def assert_bitwise_equal(actual, expected) -> None:
    """Same shape, same element type, and the same bits everywhere.

    NaN matches NaN (IEEE attaches no meaning to a NaN's sign or payload, and NumPy's
    own loops do not promise to keep them); every other value, ±0 included, must match
    bit for bit.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype.kind == expected.dtype.kind, (actual.dtype, expected.dtype)
    assert actual.dtype.itemsize == expected.dtype.itemsize, (actual.dtype, expected.dtype)
    assert is_bfloat16(actual.dtype) == is_bfloat16(expected.dtype), (actual.dtype, expected.dtype)
    a, e = _native(actual), _native(expected)
    if is_floating(a.dtype):
        a_nan, e_nan = np.isnan(a), np.isnan(e)
        bad = a_nan != e_nan
        uint = np.dtype(f"u{a.dtype.itemsize}")
        bad |= ~a_nan & ~e_nan & (a.view(uint) != e.view(uint))
    else:
        bad = a != e
    if bad.any():
        idx = np.argwhere(bad)[:10]
        details = ", ".join(f"{tuple(i)}: got {a[tuple(i)]!r} want {e[tuple(i)]!r}" for i in idx)
        raise AssertionError(f"{int(bad.sum())} of {bad.size} elements differ: {details}")


GUARD = 0xA5  # the bytes around each array of the alignment tests


def at_offset(values: np.ndarray, offset_bytes: int) -> np.ndarray:
    """A copy of ``values`` starting ``offset_bytes`` past a 64-byte boundary, between
    128 guard bytes on either side (``assert_guards_intact``)."""
    raw = np.full(values.nbytes + 320, GUARD, np.uint8)
    start = (-raw.ctypes.data) % 64 + 128 + offset_bytes
    copy = raw[start : start + values.nbytes].view(values.dtype).reshape(values.shape)
    copy[...] = values
    return copy


def assert_guards_intact(array: np.ndarray) -> None:
    raw = array.base
    while raw.base is not None:
        raw = raw.base
    start = array.ctypes.data - raw.ctypes.data
    outside = np.concatenate([raw[:start], raw[start + array.nbytes :]])
    assert (outside == GUARD).all(), "a loop wrote outside its output"


def python_runs_during(call: Callable[[], object]) -> bool:
    """Whether a pure-Python thread makes progress while ``call`` runs (GIL released).

    With a long switch interval the interpreter itself never hands the GIL over while this
    thread runs Python code, so the counter can only move while ``call`` has released the
    GIL. ``call`` is repeated until the counter moves, but for well under the switch
    interval: past it, the counter thread would get the GIL by force, released or not.
    """
    counter = [0]
    started, stop = threading.Event(), threading.Event()

    def count() -> None:
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
        deadline = time.perf_counter() + 0.2
        while counter[0] == before and time.perf_counter() < deadline:
            call()
        after = counter[0]
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)
    return after > before


@contextmanager
def thresholds(**values: int) -> Iterator[None]:
    """Streaming and thread thresholds in force for the block (``stream_min_bytes=0``
    streams every out-of-place call), then the values and their sources restored."""
    from fastact import _kernels

    before = _kernels.thresholds()
    _kernels._set_thresholds(**values)
    try:
        yield
    finally:
        for name, (value, source) in before.items():
            _kernels._set_thresholds(**{name: value}, source=source)


def other_runnable_builds() -> list[str]:
    """The loop builds this CPU runs besides the one in use: each reruns a file's tests."""
    config = fastact.show_config(print_out=False)
    return [name for name in config["simd_runnable"] or () if name != config["simd"]]


def run_tests_under_build(build: str, *test_files: str) -> None:
    """Run the quick tests of ``test_files`` in a child forced onto loop build ``build``.

    From a neutral folder, with the repository's configuration: `python -m pytest` puts
    the working directory first on sys.path, and from the repository root that would
    import the uncompiled source tree instead of the installed package.
    """
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    command = ["pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow"]
    command += ["--rootdir", str(repo), "-c", str(repo / "pyproject.toml"), *test_files]
    result = subprocess.run(
        [sys.executable, "-m", *command],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FASTACT_SIMD": build},
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
