"""Property tests: shapes, strides, orders and values nobody thought of."""

import math

import numpy as np
import pytest
from bitwise import (
    BFLOAT16_DTYPES,
    BINARY,
    FLOAT_DTYPES,
    FUNCTIONS,
    INT_DTYPES,
    WITH_SLOPE,
    args_for,
    assert_bitwise_equal,
    is_bfloat16,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact
from fastact import _reference

settings.register_profile("fastact", max_examples=150, deadline=None)
settings.load_profile("fastact")


@st.composite
def views(draw, dtype, shape):
    """An array of ``shape`` (after slicing) in any byte order, memory order and stride."""
    dtype = np.dtype(dtype)
    if draw(st.booleans()):
        dtype = dtype.newbyteorder()
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in shape]
    base_shape = tuple(max(1, n * abs(s)) for n, s in zip(shape, steps, strict=True))
    if is_bfloat16(dtype):  # no Hypothesis strategy for it: every bit pattern instead
        base = draw(hnp.arrays(np.uint16, base_shape)).view(dtype)
    else:
        base = draw(hnp.arrays(dtype, base_shape, elements={"allow_subnormal": True}))
    if not shape:
        return base
    if draw(st.booleans()):
        base = np.asfortranarray(base)
    view = base[tuple(slice(None, None, s) for s in steps)]
    return view[tuple(slice(0, n) for n in shape)]


def overflows_float32(value: float) -> bool:
    return math.isfinite(value) and abs(value) > float(np.finfo(np.float32).max)


def check_matches_reference(name, dtype, shape, slope, data):
    x = data.draw(views(dtype, shape), label="x")
    g = data.draw(views(dtype, shape), label="grad_output") if name in BINARY else x
    args = args_for(name, x, g, slope)
    if name in WITH_SLOPE and overflows_float32(slope) and np.dtype(dtype) != np.float64:
        # torch refuses a slope its float32 computation cannot hold.
        with pytest.raises(ValueError, match="negative_slope"):
            getattr(fastact, name)(*args)
        return
    native = [
        a.astype(a.dtype.newbyteorder("=")) if isinstance(a, np.ndarray) else a for a in args
    ]
    want = getattr(_reference, name)(*native)
    assert_bitwise_equal(getattr(fastact, name)(*args), want)
    out = np.full(x.shape, 3, dtype)
    assert getattr(fastact, name)(*args, out=out) is out
    assert_bitwise_equal(out, want)


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)
SLOPES = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(
    name=st.sampled_from(FUNCTIONS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    shape=SHAPES,
    slope=SLOPES,
    data=st.data(),
)
def test_matches_reference(name, dtype, shape, slope, data):
    check_matches_reference(name, dtype, shape, slope, data)


@pytest.mark.parametrize("dtype", BFLOAT16_DTYPES)
@given(name=st.sampled_from(FUNCTIONS), shape=SHAPES, slope=SLOPES, data=st.data())
def test_bfloat16_matches_reference(dtype, name, shape, slope, data):
    check_matches_reference(name, dtype, shape, slope, data)


@given(
    dtype=st.sampled_from(INT_DTYPES),
    shape=SHAPES,
    data=st.data(),
)
def test_integer_relu(dtype, shape, data):
    x = data.draw(views(dtype, shape))
    assert_bitwise_equal(fastact.relu(x), _reference.relu(x.astype(x.dtype.newbyteorder("="))))
