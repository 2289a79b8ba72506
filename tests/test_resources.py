"""Resources: no leaks on any path, and arrays past 2^31 elements."""

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest
from bitwise import FUNCTIONS, args_for, assert_bitwise_equal, requires_compiled
from composites import COMPOSITE_CASES, build_call, empty_outputs

import fastact
from fastact import _reference

CALLS = 100_000


# ---------------------------------------------------------------------------------------
# Leaks: every path, CALLS times.


def leak_paths():
    """{path: [(function, args, kwargs), ...]} for the compiled, reference and error paths,
    and the objects passed (whose reference counts must not change)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal(64).astype(np.float32)
    out = np.empty_like(x)
    x16, g16 = x.astype(np.float16), g.astype(np.float16)
    swapped_out = np.empty(64, ">f4")
    ints = np.arange(-32, 32, dtype=np.int8)
    scalar = np.float32(-1.5)
    read_only = np.frombuffer(bytes(256), np.float32)
    ragged = [[1.0], [1.0, 2.0]]
    swapped = x.astype(">f4")  # the ufunc path
    objects = [x, g, out, x16, g16, swapped_out, ints, scalar, read_only, ragged, swapped]

    paths: dict[str, list] = {"compiled": [], "reference": [], "errors": []}
    for name in FUNCTIONS:
        f = getattr(fastact, name)
        args = args_for(name, x, g, 0.1)
        paths["compiled"] += [(f, args, {}), (f, args, {"out": out}), (f, args, {"out": x})]
        paths["reference"] += [
            (f, args_for(name, x16, g16, 0.1), {}),
            (f, args_for(name, x[::2], g[::2], 0.1), {}),
            (f, args, {"out": swapped_out}),
            (f, args_for(name, scalar, scalar, 0.1), {}),
            (f, args_for(name, [1.0, -2.0], [3.0, 4.0], 0.1), {}),
            (f, args_for(name, swapped, swapped, 0.1), {}),
        ]
        paths["errors"] += [
            (f, args, {"out": read_only}),
            (f, args, {"out": x16}),
            (f, args, {"out": [0.0]}),
            (f, args_for(name, ragged, ragged, 0.1), {}),
            (f, args_for(name, "abc", "abc", 0.1), {}),
        ]
        if name == "relu":
            paths["compiled"].append((f, (ints,), {}))
        else:
            paths["errors"].append((f, args_for(name, ints, ints, 0.1), {}))
        if name in ("leaky_relu", "leaky_relu_grad"):
            paths["errors"] += [(f, (x, "0.1"), {}), (f, (x, 10**400), {})]
        if name in ("relu_backward", "leaky_relu_backward"):
            paths["errors"].append((f, args_for(name, x, g[:3], 0.1), {}))
    add_composite_paths(paths, objects)
    return paths, objects


def add_composite_paths(paths: dict[str, list], objects: list) -> None:
    """Every composite: called by keyword on contiguous float32 (the compiled loops),
    with its outputs given, on float16 views and byte-swapped arrays (copies and the
    reference), and with each of its sized operands the wrong length, a read-only out or
    a wrong type (errors)."""
    rng = np.random.default_rng(1)
    for case in COMPOSITE_CASES.values():
        f = getattr(fastact, case.name)
        call = build_call(case, np.float32, (4, 2, 8), rng)
        outputs = empty_outputs(case, call)
        strided = build_call(case, np.float16, (4, 2, 16), rng)
        strided = {
            k: v[..., ::2] if k in ("x", "grad_output", "noise", "bias") else v
            for k, v in strided.items()
        }
        if "mask" in strided and "grad_output" in strided:
            strided["mask"] = strided["mask"][: (strided["grad_output"].size + 7) // 8]
        swapped = {
            k: v.astype(v.dtype.newbyteorder())
            if isinstance(v, np.ndarray) and v.dtype.kind == "f"
            else v
            for k, v in call.items()
        }
        paths["compiled"] += [(f, (), call), (f, (), {**call, **outputs})]
        paths["reference"] += [(f, (), strided), (f, (), swapped)]
        for target in case.sized:
            paths["errors"].append(
                (f, (), {**call, target: np.concatenate([call[target].ravel()] * 3)})
            )
        for key in case.outputs:
            frozen = outputs[key].copy()
            frozen.flags.writeable = False
            paths["errors"].append((f, (), {**call, key: frozen}))
            objects.append(frozen)
        first = case.arrays[0]
        paths["errors"].append((f, (), {**call, first: "abc"}))
        objects += [v for d in (call, outputs, strided, swapped) for v in d.values()]


def run_calls(calls, n) -> int:
    """Make ``n`` calls, cycling through ``calls``; how many raised TypeError/ValueError."""
    raised = 0
    for i in range(n):
        f, args, kwargs = calls[i % len(calls)]
        try:
            f(*args, **kwargs)
        except (TypeError, ValueError):
            raised += 1
    return raised


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["compiled", "reference", "errors"])
def test_no_reference_or_memory_leak(path):
    paths, objects = leak_paths()
    calls = paths[path]
    # Each path is what it says: a leak test where every call raised early would test
    # nothing but the error path.
    assert run_calls(calls, len(calls)) == (len(calls) if path == "errors" else 0)
    # Fill the caches first (NumPy's small-buffer cache, dtype names, interned strings):
    # they grow for a while, then stay put.
    run_calls(calls, 20_000)
    gc.collect()
    refcounts = [sys.getrefcount(o) for o in objects]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        raised = run_calls(calls, CALLS)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert raised == (CALLS if path == "errors" else 0)
    assert [sys.getrefcount(o) for o in objects] == refcounts
    # Measured: under 8 kB of cache churn. One leaked object on one call in ten would
    # be 160 kB or more.
    assert growth < 64 * 1024, f"{growth} bytes still allocated after {CALLS} calls"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_resident_memory_is_flat():
    # Without tracemalloc: this also sees what C code allocates with plain malloc.
    paths, _ = leak_paths()
    calls = [c for group in paths.values() for c in group]
    run_calls(calls, 20_000)
    gc.collect()
    before = resident_bytes()
    run_calls(calls, 3 * CALLS)
    gc.collect()
    growth = resident_bytes() - before
    assert growth < 2 * 1024 * 1024, f"resident memory grew by {growth} bytes"


# ---------------------------------------------------------------------------------------
# More than 2^31 elements: a 32-bit index anywhere in the loops would wrap, stop early or
# write out of bounds. The loops' hazard alone (the reference's NumPy temporaries would
# need several times the memory). The input repeats a pattern of prime length, so every
# element's expected value depends on its own index.

HUGE = 2**31 + 17
PERIOD = 251
CHUNK = PERIOD * (1 << 18)  # a multiple of the period: every chunk starts at phase 0


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError):
        return 0


def require_memory(nbytes: int) -> None:
    if available_memory() < nbytes * 1.2:
        pytest.skip(f"needs {nbytes * 1.2 / 2**30:.1f} GiB of free memory")


def periodic(pattern: np.ndarray, n: int) -> np.ndarray:
    return np.tile(pattern, -(-n // pattern.size))[:n]


def assert_periodic(a: np.ndarray, pattern: np.ndarray) -> None:
    """``a`` is ``pattern`` repeated, bit for bit, checked a chunk at a time."""
    expected = np.tile(pattern, CHUNK // pattern.size)
    uint = np.dtype(f"u{a.itemsize}")
    for start in range(0, a.size, CHUNK):
        chunk = a[start : start + CHUNK]
        same = chunk.view(uint) == expected[: chunk.size].view(uint)
        if not same.all():
            first = start + int(np.argmin(same))
            raise AssertionError(
                f"element {first} is {a[first]!r}, not {pattern[first % PERIOD]!r}"
            )


@pytest.mark.slow
@requires_compiled
def test_int8_relu_past_2_31_elements():
    require_memory(2 * HUGE)
    pattern = np.arange(-(PERIOD // 2), PERIOD - PERIOD // 2, dtype=np.int8)
    x = periodic(pattern, HUGE)
    out = fastact.relu(x)
    assert out.shape == (HUGE,) and out.dtype == np.int8
    want = _reference.relu(pattern)
    for i in (0, 2**31 - 1, 2**31, HUGE - 1):  # both ends, and both sides of 2^31
        assert out[i] == want[i % PERIOD], i
    assert_periodic(out, want)
    assert_periodic(x, pattern)  # the input is untouched


@pytest.mark.slow
@requires_compiled
def test_float32_in_place_past_2_31_elements():
    # In place (out=x) to need one 8.6 GB buffer, not two: a unary and a binary loop.
    require_memory(4 * HUGE)
    pattern = (np.arange(PERIOD, dtype=np.float32) - PERIOD // 2) * np.float32(0.5)
    x = periodic(pattern, HUGE)
    assert fastact.leaky_relu(x, 0.25, out=x) is x
    assert fastact.leaky_relu_backward(x, x, 2.0, out=x) is x
    # Each pass scales the negatives differently, so a pass that skipped elements shows.
    once = _reference.leaky_relu(pattern, 0.25)
    want = _reference.leaky_relu_backward(once, once, 2.0)
    ends = [0, 2**31 - 1, 2**31, HUGE - 1]
    assert_bitwise_equal(x[ends], want[[i % PERIOD for i in ends]])
    assert_periodic(x, want)
