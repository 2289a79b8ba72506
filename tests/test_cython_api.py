"""Another Cython project can cimport fastact's nogil kernels and call them in its loops."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from bitwise import assert_bitwise_equal, requires_compiled, sample

import fastact
from fastact import _reference

pytest.importorskip("Cython")
pytest.importorskip("setuptools")

USER_MODULE = """
# cython: language_level=3, boundscheck=False, wraparound=False
from libc.stdint cimport int8_t, int64_t, uint16_t
from fastact._elementwise cimport float16_t
from fastact._kernels cimport (
    leaky_relu_backward_kernel,
    leaky_relu_kernel,
    relu_grad_kernel,
    relu_kernel,
)

def relu_rows(float[:, ::1] x, float[:, ::1] out):
    cdef Py_ssize_t row
    with nogil:
        for row in range(x.shape[0]):
            relu_kernel(&x[row, 0], &out[row, 0], x.shape[1])

def leaky_backward(double[::1] g, double[::1] x, double slope, double[::1] out):
    with nogil:
        leaky_relu_backward_kernel(&g[0], &x[0], &out[0], x.shape[0], slope)

def relu_int8(int8_t[::1] x, int8_t[::1] out):
    with nogil:
        relu_kernel(&x[0], &out[0], x.shape[0])

def relu_int64_in_place(int64_t[::1] x):
    with nogil:
        relu_kernel(&x[0], &x[0], x.shape[0])

# float16 as its bits: the buffer protocol's 'e' is not a C type Cython can view.
def leaky_float16(uint16_t[::1] x, double slope, uint16_t[::1] out):
    with nogil:
        leaky_relu_kernel(<float16_t*>&x[0], <float16_t*>&out[0], x.shape[0], slope)

def relu_grad_float16_in_place(uint16_t[::1] x):
    with nogil:
        relu_grad_kernel(<float16_t*>&x[0], <float16_t*>&x[0], x.shape[0])

def leaky_backward_in_place(float[::1] g, float[::1] x, double slope):
    with nogil:
        leaky_relu_backward_kernel(&g[0], &x[0], &g[0], x.shape[0], slope)
"""

# include_path: where fastact's .pxd files are installed (an editable install keeps them
# off sys.path, where Cython would otherwise look).
SETUP = """
from Cython.Build import cythonize
from setuptools import setup
setup(
    ext_modules=cythonize("user_kernels.pyx", include_path=[{package_root!r}]),
    script_args=["build_ext", "--inplace"],
)
"""


@requires_compiled
@pytest.mark.slow
def test_cimport_kernels(tmp_path):
    (tmp_path / "user_kernels.pyx").write_text(textwrap.dedent(USER_MODULE))
    package_root = str(Path(fastact.__file__).resolve().parent.parent)
    (tmp_path / "setup.py").write_text(SETUP.format(package_root=package_root))
    build = subprocess.run(
        [sys.executable, "setup.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    sys.path.insert(0, str(tmp_path))
    try:
        import user_kernels
    finally:
        sys.path.remove(str(tmp_path))

    rng = np.random.default_rng(0)
    x = sample(np.float32, 6 * 9, rng).reshape(6, 9)
    out = np.empty_like(x)
    user_kernels.relu_rows(x, out)
    assert_bitwise_equal(out, fastact.relu(x))

    g, x64 = sample(np.float64, 50, rng), sample(np.float64, 50, rng)
    out64 = np.empty_like(x64)
    user_kernels.leaky_backward(g, x64, 0.2, out64)
    assert_bitwise_equal(out64, _reference.leaky_relu_backward(g, x64, 0.2))

    # Integer relu, float16 (through fastact's struct) and in-place calls.
    x8 = sample(np.int8, 77, rng)
    out8 = np.empty_like(x8)
    user_kernels.relu_int8(x8, out8)
    assert_bitwise_equal(out8, _reference.relu(x8))
    x64i = sample(np.int64, 77, rng)
    want = _reference.relu(x64i)
    user_kernels.relu_int64_in_place(x64i)
    assert_bitwise_equal(x64i, want)

    x16 = sample(np.float16, 77, rng)
    out16 = np.empty_like(x16)
    user_kernels.leaky_float16(x16.view(np.uint16), 0.1, out16.view(np.uint16))
    assert_bitwise_equal(out16, _reference.leaky_relu(x16, 0.1))
    want = _reference.relu_grad(x16)
    user_kernels.relu_grad_float16_in_place(x16.view(np.uint16))
    assert_bitwise_equal(x16, want)

    g32, x32 = sample(np.float32, 77, rng), sample(np.float32, 77, rng)
    want = _reference.leaky_relu_backward(g32, x32, 0.3)
    user_kernels.leaky_backward_in_place(g32, x32, 0.3)
    assert_bitwise_equal(g32, want)
