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
from composites import COMPOSITE_CASES, assert_results, empty_outputs, expected
from hypothesis import HealthCheck, given, settings
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


# ---------------------------------------------------------------------------------------
# The composite functions, from their entries in composites.py: any shape their contract
# takes (0-d and empty included), any layout and byte order, every float type, parameters
# anywhere (the ones torch refuses must be refused), ``out`` fresh or an input itself.

_F32_MAX = float(np.finfo(np.float32).max)
# Bound pairs that each hit a rule: the defaults, equal, zero, negative, wide, subnormal,
# the float32 limit, and beyond it (refused below float64 input).
BOUNDS = [
    (0.125, 1 / 3), (0.2, 0.2), (0.0, 0.0), (-0.5, 0.5), (-2.0, -1.0), (0.1, 3.0),
    (1e-45, 2e-45), (_F32_MAX, _F32_MAX), (1.0, 1e39), (1e39, 1e39),
]  # fmt: skip


@st.composite
def composite_params(draw, case, dtype):
    """Drawn parameters, and whether torch's range rule refuses them for ``dtype``."""
    params = dict(case.default_params)
    below_float64 = np.dtype(dtype) != np.float64
    refused = False
    if "negative_slope" in params:
        slope = draw(st.one_of(SLOPES, st.sampled_from([0.0, -0.0, 1.0, _F32_MAX, 1e39])))
        params["negative_slope"] = slope
        refused = below_float64 and overflows_float32(slope)
    if "lower" in params:
        params["lower"], params["upper"] = draw(st.sampled_from(BOUNDS))
        params["training"] = draw(st.booleans())
        if params["training"] and case.name == "rrelu_backward":
            checked = ()  # grad_output * noise: the bounds only have to be ordered
        elif params["training"]:
            checked = (params["lower"], params["upper"])
        else:
            checked = ((params["lower"] + params["upper"]) / 2,)
        refused = below_float64 and any(overflows_float32(v) for v in checked)
    return params, refused


def check_composite(name, dtype, data):
    case = COMPOSITE_CASES[name]
    shape = data.draw(
        hnp.array_shapes(min_dims=case.min_ndim, max_dims=3, min_side=0, max_side=9),
        label="shape",
    )
    x = data.draw(views(dtype, shape), label="x")
    g = data.draw(views(dtype, shape), label="grad_output")
    params, refused = data.draw(composite_params(case, dtype), label="params")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    call = case.build(x, g, params, rng)
    if refused:
        with pytest.raises(ValueError, match="overflows"):
            case.call(call)
        return
    assert_results(case, call, case.call(call))
    # Every output given: fresh arrays, or out an input itself (in place).
    outputs = empty_outputs(case, call)
    if "out" in outputs and data.draw(st.booleans(), label="in place"):
        source = "grad_output" if "grad_output" in call else "x"
        call[source] = np.array(call[source])  # writeable, whatever the view was
        outputs["out"] = call[source]
    want = expected(case, call)
    got = case.call(call, **outputs)
    for index, key in enumerate(("out", "mask")):  # the activation, then its mask
        if key in outputs:
            assert got[index] is outputs[key], key
    assert_results(case, call, got, want)


COMPOSITE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("name", list(COMPOSITE_CASES))
@COMPOSITE_SETTINGS
@given(dtype=st.sampled_from(FLOAT_DTYPES), data=st.data())
def test_composite_matches_reference(name, dtype, data):
    check_composite(name, dtype, data)


@pytest.mark.parametrize("dtype", BFLOAT16_DTYPES)
@pytest.mark.parametrize("name", list(COMPOSITE_CASES))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_composite_bfloat16_matches_reference(name, dtype, data):
    check_composite(name, dtype, data)
