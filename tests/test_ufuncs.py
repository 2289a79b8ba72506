"""The ufunc forms: the same bits as the main functions, plus what ufuncs bring."""

import numpy as np
import pytest
from bitwise import (
    BFLOAT16,
    FLOAT_DTYPES,
    FUNCTIONS,
    INT_DTYPES,
    SLOPES,
    WITH_SLOPE,
    args_for,
    assert_bitwise_equal,
    edge_values,
    requires_ml_dtypes,
    sample,
)

import fastact
from fastact import ufunc


def both(name, *args):
    return getattr(ufunc, name)(*args), getattr(fastact, name)(*args)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_every_length_matches_main_function(name, dtype):
    rng = np.random.default_rng(21)
    for n in (*range(71), 1000):
        x, g = sample(dtype, n, rng), sample(dtype, n, rng)
        assert_bitwise_equal(*both(name, *args_for(name, x, g, 0.2)))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_every_edge_pair_matches_main_function(name, dtype, slope):
    edges = edge_values(dtype)
    x, g = (a.ravel() for a in np.meshgrid(edges, edges))
    args = args_for(name, x, g, slope)
    # NumPy casts a Python-float slope to the loop's dtype; 1e300 overflows float32 there
    # and NumPy's cast (not the loop) warns. The main functions round it silently.
    with np.errstate(over="ignore"):
        assert_bitwise_equal(*both(name, *args))
    # The strided loop (every other element) must agree with the contiguous kernel.
    strided = args_for(name, np.repeat(x, 2)[::2], np.repeat(g, 2)[::2], slope)
    with np.errstate(over="ignore"):
        assert_bitwise_equal(*both(name, *strided))


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_relu(dtype):
    x = sample(dtype, 300, np.random.default_rng(1))
    assert_bitwise_equal(*both("relu", x))
    assert_bitwise_equal(*both("relu", x[::3]))


def test_per_channel_slope_is_prelu():
    rng = np.random.default_rng(2)
    x = sample(np.float32, 4 * 6, rng).reshape(4, 6)
    slopes = np.array([0.0, 0.01, 0.2, -0.5], np.float32)
    got = ufunc.leaky_relu(x, slopes[:, None])
    assert got.dtype == np.float32
    for row, slope in enumerate(slopes):
        assert_bitwise_equal(got[row], fastact.leaky_relu(x[row], float(slope)))
    g = sample(np.float32, 4 * 6, rng).reshape(4, 6)
    got = ufunc.leaky_relu_backward(g, x, slopes[:, None])
    for row, slope in enumerate(slopes):
        assert_bitwise_equal(got[row], fastact.leaky_relu_backward(g[row], x[row], float(slope)))


def test_float16_per_channel_slope_rounds_like_torch():
    # A float16 loop takes its slope as float32, so 0.1 is not first rounded to float16.
    x = np.linspace(-4, 0, 101).astype(np.float16)
    got = ufunc.leaky_relu(x, np.float32(0.1))
    assert got.dtype == np.float16
    assert_bitwise_equal(got, fastact.leaky_relu(x, 0.1))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_out_where_and_broadcasting(name):
    rng = np.random.default_rng(3)
    x = sample(np.float64, 5 * 7, rng).reshape(5, 7)
    g = sample(np.float64, 7, rng)  # broadcasts along the rows in the backward ufuncs
    args = args_for(name, x, g, 0.2)
    want = getattr(fastact, name)(*args_for(name, x, np.broadcast_to(g, x.shape).copy(), 0.2))
    out = np.full(x.shape, 9.0)
    mask = x > -0.5
    assert getattr(ufunc, name)(*args, out=out, where=mask) is out
    assert_bitwise_equal(out, np.where(mask, want, 9.0))


def test_scalars_and_lists():
    assert ufunc.relu(-2.0) == 0.0
    assert np.signbit(ufunc.relu(-0.0))
    assert_bitwise_equal(ufunc.leaky_relu([-1.0, 1.0], 0.5), np.array([-0.5, 1.0]))


def test_overlapping_out_is_handled():
    buf = sample(np.float32, 110, np.random.default_rng(4))
    x = buf[5:105]
    want = fastact.leaky_relu(x.copy(), 0.3)
    ufunc.leaky_relu(x, 0.3, out=buf[4:104])
    assert_bitwise_equal(buf[4:104], want)


def test_pickles_by_reference():
    import pickle

    for name in FUNCTIONS:
        assert pickle.loads(pickle.dumps(getattr(ufunc, name))) is getattr(ufunc, name)


class Wrapped:
    """A minimal duck array: unwraps on the way in, wraps on the way out."""

    def __init__(self, data):
        self.data = np.asarray(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        inputs = [i.data if isinstance(i, Wrapped) else i for i in inputs]
        return Wrapped(getattr(uf, method)(*inputs, **kwargs))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_main_functions_hand_duck_arrays_to_the_ufuncs(name):
    rng = np.random.default_rng(6)
    x, g = sample(np.float32, 40, rng), sample(np.float32, 40, rng)
    args = args_for(name, x, g, 0.2)
    wrapped = [Wrapped(a) if isinstance(a, np.ndarray) else a for a in args]
    got = getattr(fastact, name)(*wrapped)
    assert isinstance(got, Wrapped)
    assert_bitwise_equal(got.data, getattr(fastact, name)(*args))


def test_main_functions_still_validate_duck_arrays():
    with pytest.raises(TypeError, match="negative_slope"):
        fastact.leaky_relu(Wrapped([1.0]), "0.1")
    with pytest.raises(ValueError, match="shape"):
        fastact.relu_backward(Wrapped([1.0, 2.0]), Wrapped([1.0]))
    # The ufunc would cast these; the main functions refuse them as for NumPy input.
    with pytest.raises(TypeError, match="int8"):
        fastact.relu_grad(Wrapped(np.ones(3, np.int8)))
    with pytest.raises(TypeError, match="must be equal"):
        fastact.relu_backward(Wrapped(np.ones(3, np.float32)), Wrapped(np.ones(3)))
    assert fastact.relu(Wrapped(np.ones(3, np.int8))).data.dtype == np.int8


@requires_ml_dtypes
def test_bfloat16_duck_arrays_are_refused_not_widened():
    with pytest.raises(TypeError, match="bfloat16"):
        fastact.leaky_relu(Wrapped(np.ones(3, BFLOAT16)), 0.1)


@pytest.mark.parametrize("name", WITH_SLOPE)
def test_slope_dtype_follows_numpy_promotion(name):
    x = np.ones(3, np.float32)
    args = args_for(name, x, x, 0.5)
    assert getattr(ufunc, name)(*args).dtype == np.float32
