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
    requires_compiled,
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


def slope_dtype(dtype) -> np.dtype:
    """The slope operand of a loop: float32 for float16 (torch's rounding), else x's."""
    return np.dtype(np.float32 if np.dtype(dtype) == np.float16 else dtype)


@pytest.mark.parametrize("name", WITH_SLOPE)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("channel_axis", [0, 1])
def test_per_channel_slope_is_prelu(name, dtype, channel_axis):
    # Channels along axis 1 give a slope that changes along the inner loop: the loop that
    # applies the rule element by element. Along axis 0 each inner run has one slope.
    rng = np.random.default_rng(2)
    x = sample(dtype, 4 * 37, rng).reshape(4, 37)
    g = sample(dtype, 4 * 37, rng).reshape(4, 37)
    slopes = np.array([0.0, 0.01, 0.2, -0.5, 3.0, 0.1, np.nan], slope_dtype(dtype))
    slopes = np.resize(slopes, x.shape[channel_axis])
    per_channel = slopes[:, None] if channel_axis == 0 else slopes
    args = args_for(name, x, g, per_channel)
    got = getattr(ufunc, name)(*args)
    assert got.dtype == np.dtype(dtype)
    for c, slope in enumerate(slopes):
        index = (c, slice(None)) if channel_axis == 0 else (slice(None), c)
        one = getattr(fastact, name)(*args_for(name, x[index], g[index], float(slope)))
        assert_bitwise_equal(got[index], one)


def test_float16_per_channel_slope_rounds_like_torch():
    # A float16 loop takes its slope as float32, so 0.1 is not first rounded to float16:
    # each channel must give what torch's float16 leaky_relu gives with that slope.
    torch = pytest.importorskip("torch")
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # every float16 value
    slopes = np.array([0.1, 0.01, 0.3, 3.0], np.float32)
    got = ufunc.leaky_relu(x[:, None], slopes)  # a slope per column: the per-element loop
    assert got.dtype == np.float16
    for c, slope in enumerate(slopes):
        want = torch.nn.functional.leaky_relu(torch.from_numpy(x), float(slope))
        assert_bitwise_equal(got[:, c], want.numpy())


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


# The main functions hand duck arrays to the ufuncs only when the compiled extension is
# in use; FASTACT_DISABLE_COMPILED=1 has no ufuncs, and refuses them rather than convert
# them with np.asarray (a dask graph computed in full, an xarray's labels dropped).
def test_duck_arrays_go_to_the_ufuncs_or_are_refused():
    wrapped = Wrapped(np.linspace(-1, 1, 5, dtype=np.float32))
    if fastact.COMPILED:
        assert isinstance(fastact.relu(wrapped), Wrapped)
    else:
        with pytest.raises(TypeError, match=r"^fastact\.relu: x is of type .*Wrapped"):
            fastact.relu(wrapped)
        # rrelu in evaluation is leaky_relu's path, its messages rrelu's.
        with pytest.raises(TypeError, match=r"^fastact\.rrelu: x .*, which rrelu would"):
            fastact.rrelu(wrapped)


@requires_compiled
@pytest.mark.parametrize("name", FUNCTIONS)
def test_main_functions_hand_duck_arrays_to_the_ufuncs(name):
    rng = np.random.default_rng(6)
    x, g = sample(np.float32, 40, rng), sample(np.float32, 40, rng)
    args = args_for(name, x, g, 0.2)
    wrapped = [Wrapped(a) if isinstance(a, np.ndarray) else a for a in args]
    got = getattr(fastact, name)(*wrapped)
    assert isinstance(got, Wrapped)
    assert_bitwise_equal(got.data, getattr(fastact, name)(*args))


@requires_compiled
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


@requires_compiled
@requires_ml_dtypes
def test_bfloat16_duck_arrays_are_refused_not_widened():
    with pytest.raises(TypeError, match="bfloat16"):
        fastact.leaky_relu(Wrapped(np.ones(3, BFLOAT16)), 0.1)


# NumPy's casting, as the README states it. An integer or bool array given to a float-only
# loop is cast to the smallest float that holds it...
SMALLEST_FLOAT = {
    **dict.fromkeys(["bool", "int8", "uint8"], "float16"),
    **dict.fromkeys(["int16", "uint16"], "float32"),
    **dict.fromkeys(["int32", "uint32", "int64", "uint64"], "float64"),
}
NON_FLOAT_DTYPES = [np.bool_, *INT_DTYPES]


def result_dtype(name, x, slope=0.5) -> str:
    return getattr(ufunc, name)(*args_for(name, x, x, slope)).dtype.name


@pytest.mark.parametrize("dtype", NON_FLOAT_DTYPES)
def test_integer_and_bool_casting(dtype):
    x = np.ones(3, dtype)
    kind = np.dtype(dtype).name
    # relu has integer loops and keeps the type; bool has none, like any float-only loop.
    assert result_dtype("relu", x) == ("float16" if kind == "bool" else kind)
    for name in ("relu_grad", "relu_backward"):
        assert result_dtype(name, x) == SMALLEST_FLOAT[kind], name
    for name in WITH_SLOPE:
        # ...and so with a NumPy float32 slope, but a Python float is NumPy's default
        # float, float64, for integer and bool input (it only takes a float x's type).
        assert result_dtype(name, x, np.float32(0.5)) == SMALLEST_FLOAT[kind], name
        assert result_dtype(name, x, 0.5) == "float64", name


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_casting(dtype):
    x = np.ones(3, dtype)
    for name in FUNCTIONS:
        assert result_dtype(name, x) == np.dtype(dtype).name, name
    for name in WITH_SLOPE:
        # A float64 slope array widens float32 (and float16) x to float64.
        assert result_dtype(name, x, np.array([0.5, 0.5, 0.5])) == "float64", name


@requires_ml_dtypes
@pytest.mark.parametrize("name", FUNCTIONS)
def test_bfloat16_is_cast_to_float32(name):
    # No bfloat16 loops: NumPy casts to float32 (exactly), so the values are the float32
    # results of the bfloat16 inputs; the main functions keep bfloat16.
    x = sample(BFLOAT16, 50, np.random.default_rng(8))
    got = getattr(ufunc, name)(*args_for(name, x, x, 0.2))
    assert got.dtype == np.float32
    wide = x.astype(np.float32)
    assert_bitwise_equal(got, getattr(fastact, name)(*args_for(name, wide, wide, 0.2)))
    assert getattr(fastact, name)(*args_for(name, x, x, 0.2)).dtype == BFLOAT16


@pytest.mark.parametrize("name", WITH_SLOPE)
def test_slope_dtype_follows_numpy_promotion(name):
    x = np.ones(3, np.float32)
    args = args_for(name, x, x, 0.5)
    assert getattr(ufunc, name)(*args).dtype == np.float32
