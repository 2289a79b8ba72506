"""The compiled loops against the NumPy reference, bit for bit."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bitwise import (
    BINARY,
    FUNCTIONS,
    INT_DTYPES,
    KERNEL_FLOAT_DTYPES,
    args_for,
    assert_bitwise_equal,
    compiled_entry,
    edge_values,
    parameter_cases,
    requires_compiled,
    sample,
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
    for params in parameter_cases(name):
        args = args_for(name, x, g, params)
        got = kernel(name)(*args, None)
        assert got is not None, f"{name}{params} declined"
        assert_bitwise_equal(got, getattr(_reference, name)(*args))


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


CONFIG = fastact.show_config(print_out=False)
SIMD = CONFIG["simd"]
RUNNABLE_SIMD = CONFIG.get("simd_runnable") or ()


def test_simd_choice_follows_the_environment():
    assert SIMD in RUNNABLE_SIMD
    wanted = os.environ.get("FASTACT_SIMD")
    if wanted in RUNNABLE_SIMD:
        assert SIMD == wanted
    elif not wanted:
        assert SIMD == RUNNABLE_SIMD[0]


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


@pytest.mark.slow
@pytest.mark.parametrize("build", [name for name in RUNNABLE_SIMD if name != SIMD])
def test_every_runnable_build_matches_reference_too(build):
    # This process runs one build; the same tests in a child forced onto each other build
    # this machine can run cover the loops that other CPUs run.
    repo = Path(__file__).resolve().parent.parent
    # From a neutral folder, with the repository's configuration: `python -m pytest` puts
    # the working directory first on sys.path, and from the repository root that would
    # import the uncompiled source tree instead of the installed package.
    command = ["pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow"]
    command += ["--rootdir", str(repo), "-c", str(repo / "pyproject.toml"), __file__]
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
