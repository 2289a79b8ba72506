"""The compiled loops against the NumPy reference, bit for bit."""

import importlib.util
import itertools
import os
import pkgutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bitwise import (
    BFLOAT16_DTYPES,
    BINARY,
    FUNCTIONS,
    INT_DTYPES,
    KERNEL_FLOAT_DTYPES,
    args_for,
    assert_bitwise_equal,
    assert_guards_intact,
    at_offset,
    compiled_entry,
    edge_values,
    parameter_cases,
    requires_compiled,
    run_tests_under_build,
    sample,
    thresholds,
)

import fastact
from fastact import _reference

pytestmark = requires_compiled

LENGTHS = (*range(71), 127, 128, 129, 1000, 4097, 65539)


def kernel(name):
    return compiled_entry(name)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_length_matches_reference(name, dtype):
    # Lengths 0..70 walk every vector tail; each array mixes edge values at random places.
    rng = np.random.default_rng(sum(map(ord, name)) + np.dtype(dtype).itemsize)
    for n in LENGTHS:
        x, g = sample(dtype, n, rng), sample(dtype, n, rng)
        args = args_for(name, x, g, 0.2)
        got = kernel(name)(*args, None)
        assert got is not None, f"{name} declined a contiguous {np.dtype(dtype)} array"
        assert_bitwise_equal(got, getattr(_reference, name)(*args))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_edge_pair_matches_reference(name, dtype):
    # The full cross product of edge values, so (g, x) = (NaN, -0.0) and friends all occur,
    # for every parameter case of the function.
    edges = edge_values(dtype)
    x, g = (a.ravel() for a in np.meshgrid(edges, edges))
    check_every_parameter_case(name, x, g)


def check_every_parameter_case(name: str, x: np.ndarray, g: np.ndarray) -> None:
    """The kernel against the reference on ``x`` (and ``g``), for every parameter case."""
    for params in parameter_cases(name):
        args = args_for(name, x, g, params)
        got = kernel(name)(*args, None)
        assert got is not None, f"{name}{params} declined"
        assert_bitwise_equal(got, getattr(_reference, name)(*args))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_alignment_matches_reference(name, dtype):
    check_every_alignment(name, dtype)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_tail_after_prefetched_chunks(name, dtype):
    # A contiguous call of 1 KiB and up into another array runs 256-byte chunks with out's
    # lines asked for ahead, then the rest through the plain loop (contiguous_loop): these
    # lengths end at every element of a chunk, with out on a line and off it.
    rng = np.random.default_rng(np.dtype(dtype).itemsize + 11)
    itemsize = np.dtype(dtype).itemsize
    for n in range(1024 // itemsize, (1024 + 256) // itemsize + 1):
        x, g = sample(dtype, n, rng), sample(dtype, n, rng)
        want = getattr(_reference, name)(*args_for(name, x, g, 0.2))
        for offset in (0, 16):
            out = at_offset(np.zeros_like(x), offset)
            got = kernel(name)(*args_for(name, x, g, 0.2), out)
            assert got is out, f"{name} declined out of {n} elements at offset {offset}"
            assert_bitwise_equal(out, want)
            assert_guards_intact(out)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_alignment_integer_relu(dtype):
    check_every_alignment("relu", dtype)


def check_every_alignment(name, dtype):
    # A long contiguous call runs the elements before out's first 64-byte boundary apart
    # from the vector loop: out at every element offset in a cache line, x at the same
    # offset (as NumPy's allocations are), at another one, and in place.
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    itemsize = np.dtype(dtype).itemsize
    n = 4096 // itemsize + 37  # past the size from which the head is split off
    x, g = sample(dtype, n, rng), sample(dtype, n, rng)
    want = getattr(_reference, name)(*args_for(name, x, g, 0.2))
    for offset in range(0, 64, itemsize):
        for x_offset in {offset, (offset + 24) % 64 // itemsize * itemsize}:
            xs, gs = at_offset(x, x_offset), at_offset(g, x_offset)
            out = at_offset(np.zeros_like(x), offset)
            got = kernel(name)(*args_for(name, xs, gs, 0.2), out)
            assert got is out, f"{name} declined out at offset {offset}, x at {x_offset}"
            assert_bitwise_equal(out, want)
            assert_guards_intact(out)
        xs, gs = at_offset(x, offset), at_offset(g, offset)
        in_place = gs if name in BINARY else xs
        kernel(name)(*args_for(name, xs, gs, 0.2), in_place)
        assert_bitwise_equal(in_place, want)
        assert_guards_intact(in_place)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_relu_matches_reference(dtype):
    rng = np.random.default_rng(7)
    for n in LENGTHS:
        x = sample(dtype, n, rng)
        got = kernel("relu")(x, None)
        assert got is not None and got.dtype == x.dtype
        assert_bitwise_equal(got, _reference.relu(x))
    assert_bitwise_equal(fastact.relu(edge_values(dtype)), _reference.relu(edge_values(dtype)))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_multidimensional_layouts(name, dtype, order):
    rng = np.random.default_rng(3)
    x = np.asarray(sample(dtype, 3 * 5 * 7, rng).reshape(3, 5, 7), order=order)
    g = np.asarray(sample(dtype, 3 * 5 * 7, rng).reshape(3, 5, 7), order=order)
    args = args_for(name, x, g, 0.01)
    got = kernel(name)(*args, None)
    assert got is not None
    assert got.flags.f_contiguous == (order == "F")
    assert_bitwise_equal(got, getattr(_reference, name)(*args))
    assert_bitwise_equal(getattr(fastact, name)(*args), getattr(_reference, name)(*args))


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
def test_large_array(name):
    rng = np.random.default_rng(11)
    n = (1 << 22) + 3
    x, g = sample(np.float32, n, rng), sample(np.float32, n, rng)
    args = args_for(name, x, g, 0.01)
    out = np.empty_like(x)
    assert getattr(fastact, name)(*args, out=out) is out
    assert_bitwise_equal(out, getattr(_reference, name)(*args))


# Outputs from this size up are written with streaming stores, a path of its own: each
# slice is computed into a block in L1 and copied out, after a plain head up to a 64-byte
# boundary and before a plain tail.
STREAM_MIN_BYTES = fastact.show_config(print_out=False)["stream_min_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES + INT_DTYPES)
def test_streaming_stores_every_element_type(dtype):
    rng = np.random.default_rng(15)
    itemsize = np.dtype(dtype).itemsize
    n = STREAM_MIN_BYTES // itemsize + 67  # a partial last block
    x, g = sample(dtype, n, rng), sample(dtype, n, rng)
    # out starting one element past a 64-byte boundary: a head before the first block.
    buffer = np.empty(n + 64 // itemsize, dtype)
    skip = (-buffer.ctypes.data % 64) // itemsize + 1
    out = buffer[skip : skip + n]
    names = FUNCTIONS if np.dtype(dtype).kind not in "iu" else ("relu",)
    for name in names:
        args = args_for(name, x, g, 0.2)
        want = getattr(_reference, name)(*args)
        for n_threads in (1, 2):
            with fastact.threads(n_threads):
                assert_bitwise_equal(getattr(fastact, name)(*args), want)
                assert getattr(fastact, name)(*args, out=out) is out
                assert_bitwise_equal(out, want)


def strided_views(x: np.ndarray) -> list[np.ndarray]:
    """Views of a 24-element base no flat loop can read as one run."""
    return [
        x[::2],
        x[::-1],
        x[1::3],
        x.reshape(4, 6)[:, :5],
        x.reshape(4, 6)[::2],
        x.reshape(2, 3, 4).transpose(1, 2, 0),
        x.reshape(4, 6)[:, ::-2].T,
    ]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_strided_views_run_compiled(name, dtype):
    rng = np.random.default_rng(12)
    x_base, g_base = sample(dtype, 24, rng), sample(dtype, 24, rng)
    for x, g in zip(strided_views(x_base), strided_views(g_base), strict=True):
        args = args_for(name, x, g, 0.2)
        want = getattr(_reference, name)(*args)
        got = kernel(name)(*args, None)
        assert got is not None, f"{name} declined a strided view {x.strides}"
        assert_bitwise_equal(got, want)
        # A strided out, and the input itself as out (in place through a view).
        out = np.empty((2, *x.shape), x.dtype)[1]
        out_view = np.moveaxis(np.empty((*x.shape, 2), x.dtype), -1, 0)[0]
        for target in (out, out_view):
            assert kernel(name)(*args, target) is target
            assert_bitwise_equal(target, want)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_strided_integer_relu(dtype):
    x = sample(dtype, 24, np.random.default_rng(13))
    for view in strided_views(x):
        assert_bitwise_equal(kernel("relu")(view, None), _reference.relu(view))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_strided_in_place_and_overlap(name):
    rng = np.random.default_rng(14)
    base, g = sample(np.float32, 60, rng), sample(np.float32, 19, rng)
    want = getattr(_reference, name)(*args_for(name, base[:57:3].copy(), g, 0.2))
    # In place through a view: element i is read before it is written, no copy needed.
    x = base.copy()[:57:3]
    assert kernel(name)(*args_for(name, x, g, 0.2), x) is x
    assert_bitwise_equal(x, want)
    # out shifted one element along x: writing out[i] would clobber x[i + 1] unread.
    shifted = base.copy()
    x, out = shifted[:57:3], shifted[3::3]
    assert kernel(name)(*args_for(name, x, g, 0.2), out) is out
    assert_bitwise_equal(out, want)


def tiled_layouts(dtype, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, out) pairs of strided layouts large enough to cross the loops' L1 blocks and
    tiles (a 4096-element row block for float32, tiles of two cache lines by 128 columns),
    each with edges that fill neither: a None out is a fresh one."""
    big = sample(dtype, 5003 * 2, rng)
    grid = sample(dtype, 133 * 70, rng).reshape(133, 70)
    cube = sample(dtype, 5 * 37 * 70, rng).reshape(5, 37, 70)
    c_out, f_out = np.empty((70, 133), dtype), np.empty((133, 70), dtype, order="F")
    # Out rows a whole number of cache lines long, from a base 3 elements past one: the
    # transposed tiles' columns are shifted onto out's lines (the first tile narrower).
    wide = sample(dtype, 160 * 75, rng).reshape(160, 75)
    line_rows_out = np.empty(160 * 75 + 3, dtype)[3:].reshape(75, 160)
    # Out rows short enough for tiles of whole rows (written straight into out), with a
    # last tile of fewer rows.
    tall = sample(dtype, 100 * 300, rng).reshape(100, 300)
    return [
        (wide.T, line_rows_out),
        (tall.T, np.empty((300, 100), dtype)),
        (big[::2], None),
        (big[::-3], None),
        (big[::2], np.empty(2 * 5003, dtype)[1::2]),  # out strided too
        (grid.T, c_out),  # a transposed input into a C-ordered out
        (grid.T, None),
        (grid, f_out),  # C order into Fortran order
        (np.asfortranarray(grid), np.empty((133, 70), dtype)),
        (grid[::-1, ::2].T, np.empty((35, 133), dtype)[::-1]),  # negative steps both sides
        (cube.transpose(2, 0, 1), np.empty((70, 5, 37), dtype)),  # 3-d, no axis in order
        (cube[:, ::3].transpose(1, 2, 0), None),
        (np.broadcast_to(grid[:1], (133, 70)), None),  # a 0-stride input, each way
        (np.broadcast_to(grid[:, :1], (133, 70)), c_out.T),
    ]


def contiguous_args(args: tuple) -> tuple:
    """The arguments with each array copied into C order."""
    return tuple(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a for a in args)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_tiled_layouts_match_contiguous_bit_for_bit(name, dtype):
    # Every strided layout gives the contiguous call's bits, on one thread and split over
    # threads (tiny thresholds make these small arrays split), for a binary function with
    # either operand strided.
    rng = np.random.default_rng(16)
    for x, out in tiled_layouts(dtype, rng):
        g_strided = np.swapaxes(np.empty(x.shape[::-1], dtype), 0, -1) if x.ndim > 1 else x[::-1]
        g_strided[...] = sample(dtype, x.size, rng).reshape(x.shape)
        for g in (np.ascontiguousarray(g_strided), g_strided):
            args = args_for(name, x, g, 0.2)
            contiguous = contiguous_args(args)
            want = kernel(name)(*contiguous, None)
            assert_bitwise_equal(want, getattr(_reference, name)(*contiguous))
            # A transposed tile's rows streamed out (whole lines) and stored plainly.
            for n_threads, streamed in itertools.product((1, 2, 3), (0, 1 << 40)):
                with (
                    fastact.threads(n_threads),
                    thresholds(parallel_min_bytes=64, transposed_stream_min_bytes=streamed),
                ):
                    got = kernel(name)(*args, out)
                    assert got is not None, f"{name} declined {x.strides} -> {out}"
                    assert out is None or got is out
                    assert_bitwise_equal(got, want)
                    if out is not None:
                        out[...] = 0
            if name not in BINARY:
                break


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_tiled_layouts_integer_relu(dtype):
    rng = np.random.default_rng(17)
    for x, out in tiled_layouts(dtype, rng):
        want = _reference.relu(np.ascontiguousarray(x))
        for n_threads, streamed in itertools.product((1, 2), (0, 1 << 40)):
            with (
                fastact.threads(n_threads),
                thresholds(parallel_min_bytes=64, transposed_stream_min_bytes=streamed),
            ):
                assert_bitwise_equal(kernel("relu")(x, out), want)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_tiled_in_place_on_strided_views(name, dtype):
    # x is out, through a strided view: each tile is read before it is written. A
    # transposed view of the same buffer overlaps out partially: NumPy's iterator copies.
    rng = np.random.default_rng(18)
    base = sample(dtype, 140 * 140, rng).reshape(140, 140)
    g = sample(dtype, 70 * 140, rng).reshape(140, 70)
    for view in (lambda a: a[:, ::2], lambda a: a[::-1, 1::2], lambda a: a.T[:, ::2]):
        want = getattr(_reference, name)(*args_for(name, view(base).copy(), g, 0.2))
        for n_threads in (1, 2):
            with fastact.threads(n_threads), thresholds(parallel_min_bytes=64):
                x = view(base.copy())
                assert kernel(name)(*args_for(name, x, g, 0.2), x) is x
                assert_bitwise_equal(x, want)
    square = sample(dtype, 64 * 64, rng).reshape(64, 64)
    want = getattr(_reference, name)(*args_for(name, square.T.copy(), g[:64, :64], 0.2))
    x = square.copy()
    assert kernel(name)(*args_for(name, x.T, g[:64, :64], 0.2), x) is x
    assert_bitwise_equal(x, want)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", (np.float16, *BFLOAT16_DTYPES))
def test_every_16_bit_pattern_matches_reference(name, dtype):
    # Every pattern (NaNs of both signs, subnormals, ±0, ±inf) against every parameter
    # case, as x and, in a backward pass, as g. The 16-bit gates and clamps compare the
    # bits' keys with the keys of the bounds' neighbours on the 16-bit grid, not values.
    x = np.arange(1 << 16, dtype=np.uint16).view(dtype)
    check_every_parameter_case(name, x, np.random.default_rng(20).permutation(x))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_other_element_matches_reference(name, dtype):
    # Inputs at a step of two elements into a contiguous out: float32 and float64 read the
    # pairs where they lie (no tile buffer), so every vector tail of that loop is walked
    # here, in 1-D and row by row in 2-D, on one thread and split over two.
    rng = np.random.default_rng(19 + np.dtype(dtype).itemsize)
    for n in LENGTHS:
        x, g = sample(dtype, 2 * n, rng)[::2], sample(dtype, 2 * n, rng)[::2]
        args = args_for(name, x, g, 0.2)
        want = getattr(_reference, name)(*contiguous_args(args))
        out = np.empty(n, dtype)
        for n_threads in (1, 2):
            with fastact.threads(n_threads), thresholds(parallel_min_bytes=64):
                assert_bitwise_equal(kernel(name)(*args, None), want)
                assert kernel(name)(*args, out) is out
                assert_bitwise_equal(out, want)
    for rows, cols in ((3, 37), (5, 4099)):
        x = sample(dtype, rows * 2 * cols, rng).reshape(rows, 2 * cols)[:, ::2]
        g = sample(dtype, rows * 2 * cols, rng).reshape(rows, 2 * cols)[:, 1::2]
        args = args_for(name, x, g, 0.2)
        want = getattr(_reference, name)(*contiguous_args(args))
        assert_bitwise_equal(kernel(name)(*args, None), want)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_kernels_decline_what_they_do_not_cover(name):
    # Declining (None) is what sends these through the reference: they must never be
    # read as contiguous native arrays.
    x = np.linspace(-2, 2, 24, dtype=np.float32)
    declined = [
        x.astype(">f4"),
        np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1),
        x.astype(np.longdouble),
        x.astype(np.complex64),
        np.float32(1.0),
        np.array(1.0, np.float32),
        [1.0, -1.0],
    ]
    for bad in declined:
        args = args_for(name, bad, bad, 0.01)
        assert kernel(name)(*args, None) is None, (name, bad)
    if name in BINARY:
        for g, xx in ((x, x[:12]), (x.astype(np.float64), x)):
            assert kernel(name)(*args_for(name, xx, g, 0.01), None) is None


# ---------------------------------------------------------------------------------------
# The loop build in use is the best one the CPU runs, and every build the CPU runs is tested.

CONFIG = fastact.show_config(print_out=False)
SIMD = CONFIG["simd"]

# The loop builds, best first, each with the /proc/cpuinfo flags its run-time CPU check
# requires (the baseline build runs anywhere). Adding a build is adding its row.
LOOP_BUILDS = {
    "avx512": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "f16c"),
    "avx2": ("avx2", "f16c"),
    "baseline": (),
}
# Builds that count only where the installed package has their module (not yet built on
# every machine whose compiler could); every other row must be built where the CPU runs it.
OPTIONAL_BUILDS = ("avx512",)


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags as Linux lists them (x86 "flags", Arm "Features")."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def is_installed(build: str) -> bool:
    return importlib.util.find_spec(f"fastact._loops_{build}") is not None


def counts(build: str, flags: set[str]) -> bool:
    """The CPU runs ``build``, and the package must (or does) have it."""
    return set(LOOP_BUILDS[build]) <= flags and (
        build not in OPTIONAL_BUILDS or is_installed(build)
    )


def expected_build(flags: set[str], forced: str) -> str:
    """The best build that counts, at or below the one FASTACT_SIMD names."""
    names = list(LOOP_BUILDS)
    if forced in names:
        names = names[names.index(forced) :]
    return next(name for name in names if counts(name, flags))


FLAGS = cpu_flags()
needs_cpuinfo = pytest.mark.skipif(FLAGS is None, reason="needs Linux /proc/cpuinfo")


def test_every_build_has_a_row():
    # A build the table does not know would never be checked or rerun below.
    modules = [m.name for m in pkgutil.iter_modules(fastact.__path__)]
    builds = {name.removeprefix("_loops_") for name in modules if name.startswith("_loops_")}
    assert builds <= set(LOOP_BUILDS), builds
    assert SIMD in builds


@needs_cpuinfo
def test_build_in_use_is_the_best_the_cpu_runs():
    # FASTACT_SIMD may force a lesser build; otherwise a CPU with AVX2 + F16C must get the
    # AVX2 loops (a build that silently lost them would still pass every other test).
    forced = os.environ.get("FASTACT_SIMD", "")
    want = expected_build(FLAGS, forced)
    assert SIMD == want, (
        f"loop build in use: {SIMD}; this CPU runs {want} "
        f"(FASTACT_SIMD={forced!r}, {want} installed: {is_installed(want)})"
    )


# -ffast-math, or any part of it, would break the NaN and -0.0 rules, and linked into a
# shared object can switch the whole process to flush-to-zero.
UNSAFE_MATH_FLAGS = {
    "-ffast-math",
    "-Ofast",
    "-funsafe-math-optimizations",
    "-ffinite-math-only",
    "-fno-signed-zeros",
    "-fassociative-math",
    "-freciprocal-math",
    "-fno-honor-nans",
    "-fno-honor-infinities",
    "/fp:fast",
}


def test_no_unsafe_math_flags():
    # The build in use here; the rerun under each other build checks that one.
    flags = [CONFIG["cflags"], CONFIG["loops_cflags"], os.environ.get("CFLAGS", "")]
    flags.append(sysconfig.get_config_var("CFLAGS") or "")  # what setuptools adds
    unsafe = [f for f in " ".join(flags).split() if f in UNSAFE_MATH_FLAGS]
    assert not unsafe, flags


RUNNABLE_SIMD = CONFIG.get("simd_runnable") or ()


def _import_with_simd(value):
    code = "import fastact; print(fastact.show_config(print_out=False)['simd'])"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FASTACT_SIMD": value, "PYTHONWARNINGS": "default"},
        cwd=tempfile.gettempdir(),
    )


@pytest.mark.slow
@pytest.mark.parametrize("value", ["avx512", "avx2", "baseline", "sse9", ""])
def test_simd_variable_never_stops_the_import(value):
    # A build this CPU cannot run, or an unknown name: a warning and the best runnable
    # build no better than the one asked for, never an import error.
    result = _import_with_simd(value)
    assert result.returncode == 0, result.stderr
    got = result.stdout.strip()
    if value in RUNNABLE_SIMD or not value:
        assert got == (value or RUNNABLE_SIMD[0])
        assert "RuntimeWarning" not in result.stderr
    else:
        assert got in RUNNABLE_SIMD
        assert "RuntimeWarning" in result.stderr and "FASTACT_SIMD" in result.stderr


def builds_to_rerun() -> list:
    """Every build this CPU runs, other than the one this process tests."""
    if FLAGS is None:
        return [pytest.param(None, marks=needs_cpuinfo)]
    others = [b for b in LOOP_BUILDS if b != SIMD and counts(b, FLAGS)]
    reason = f"{SIMD} is the only loop build this CPU runs, and this process tests it"
    return others or [pytest.param(None, marks=pytest.mark.skip(reason=reason))]


@pytest.mark.slow
@pytest.mark.parametrize("build", builds_to_rerun())
def test_other_builds_match_reference_too(build):
    # This process runs one build; the quick kernel tests, the dead-unit tests and the
    # PyTorch parity tests (bfloat16 included) run again in a child forced onto each other
    # build the CPU runs, which also checks there that the child got the build it asked for.
    others = [
        str(Path(__file__).with_name(f"test_{n}.py"))
        for n in ("dead_units", "torch_parity", "torch_table")
    ]
    run_tests_under_build(build, __file__, *others)
