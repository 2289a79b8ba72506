"""Shared test data, a bit-for-bit comparison and a GIL-release probe."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

import fastact

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

# Slopes that each hit a rule: zero, the default, ordinary, identity, > 1, negative,
# NaN, infinite, below float16/float32 resolution, and overflowing float32.
SLOPES = (0.0, 0.01, 0.2, 1.0, 3.0, -0.5, float("nan"), float("inf"), 1e-45, 1e300)

# Built with AddressSanitizer (tests/sanitize.sh preloads its runtime): everything is
# several times slower, so time limits meant for a normal build do not apply.
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")

UNARY = ("relu", "leaky_relu", "relu_grad", "leaky_relu_grad")
BINARY = ("relu_backward", "leaky_relu_backward")
FUNCTIONS = UNARY + BINARY
WITH_SLOPE = ("leaky_relu", "leaky_relu_grad", "leaky_relu_backward")


def edge_values(dtype) -> np.ndarray:
    """Every value an elementwise rule can get wrong, for one dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = {info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max}
        return np.array(sorted(v for v in values if info.min <= v <= info.max), dtype)
    info = ml_dtypes.finfo(dtype) if is_bfloat16(dtype) else np.finfo(dtype)
    tiny_sub = info.smallest_subnormal
    values = [
        np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0,
        tiny_sub, -tiny_sub, info.smallest_normal - tiny_sub, -(info.smallest_normal - tiny_sub),
        info.smallest_normal, -info.smallest_normal, info.max, info.min,
        1.0, -1.0, 0.5, -0.5, 1e-3, -1e-3,
    ]  # fmt: skip
    return np.array(values, dtype=dtype)


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


def args_for(name: str, x: np.ndarray, g: np.ndarray, slope: float) -> tuple:
    """Positional arguments of function ``name`` (without ``out``)."""
    args: tuple = (g, x) if name in BINARY else (x,)
    return (*args, slope) if name in WITH_SLOPE else args


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
