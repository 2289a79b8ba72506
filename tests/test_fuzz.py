"""Hostile input, drawn at random, for every public function.

Each draw combines a dtype (every NumPy kind, both byte orders), a shape (0-d to 4-d,
empty included), a layout (C or Fortran order, negative and positive strides, zero strides
from ``np.broadcast_to``, misaligned buffers, read-only views, windows into a larger
buffer, nested lists), the function's parameters (real numbers of every Python and NumPy
type, and things that are not) and an ``out`` (none, fresh in any layout, an input itself, a
partial overlap with an input, the wrong shape or dtype, read-only, not an array).

The outcome is predicted from the contract alone (README: dtypes, shapes, ``out=``,
parameters), never from the implementation. A call must then either match the
NumPy reference bit for bit, or raise TypeError/ValueError whose message names an
argument that is at fault; after an error, ``out``, the inputs and every buffer they live
in hold exactly the bytes they held before. Nothing but ``out`` is ever written.

FASTACT_FUZZ_EXAMPLES sets the number of examples per function (default 500).
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from bitwise import (
    BFLOAT16,
    BFLOAT16_DTYPES,
    BINARY,
    FLOAT_DTYPES,
    FUNCTIONS,
    INT_DTYPES,
    assert_bitwise_equal,
    is_bfloat16,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact
from fastact import _reference
from fastact._functions import BY_NAME, COMPUTE, Parameter

EXAMPLES = int(os.environ.get("FASTACT_FUZZ_EXAMPLES", "500"))

_NATIVE = [
    *("?", "i1", "i2", "i4", "i8", "q", "u1", "u2", "u4", "u8"),
    *("f2", "f4", "f8", "g", "c8", "c16", "G"),
    *("O", "U3", "S3", "V4", "M8[ns]", "m8[s]"),
]
_BASE_DTYPES = [np.dtype(t) for t in _NATIVE]
_BASE_DTYPES += [np.dtype([("a", "<f4"), ("b", ">i2")]), np.dtypes.StringDType()]
# bfloat16 where ml_dtypes is installed (test_fuzz_bfloat16 says so where it is not).
_BFLOAT16 = [] if BFLOAT16 is None else [BFLOAT16]
_BASE_DTYPES += _BFLOAT16
# Every dtype that has a byte order also comes byte-swapped.
ALL_DTYPES = _BASE_DTYPES + [d.newbyteorder() for d in _BASE_DTYPES if d.byteorder == "="]

_ACCEPTED_FLOATS = [np.dtype(t) for t in FLOAT_DTYPES] + _BFLOAT16
_ACCEPTED_INTS = [np.dtype(t) for t in INT_DTYPES]


def native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype


def accepts(name: str, dtype: np.dtype) -> bool:
    """The README's dtype rule: float16/32/64 and bfloat16 in either byte order; integers
    for relu."""
    allowed = _ACCEPTED_FLOATS + (_ACCEPTED_INTS if name == "relu" else [])
    kind_ok = dtype.kind in "iuf" or is_bfloat16(dtype)
    return kind_ok and any(native(dtype) == d for d in allowed)


def same_element_type(a: np.dtype, b: np.dtype) -> bool:
    return a.kind == b.kind and a.itemsize == b.itemsize and is_bfloat16(a) == is_bfloat16(b)


# ---------------------------------------------------------------------------------------
# Drawing the arguments.


@dataclass
class Draw:
    """The arguments of one call, and the buffers they were cut from."""

    x: Any
    g: Any = None
    params: tuple = ()  # one drawn value per parameter of the function
    out: Any = None
    pass_out: bool = False
    out_kind: str = ""
    # (buffer, start) of every window layout, so overlaps with it can be drawn and stray
    # writes into it detected.
    windows: list[tuple[np.ndarray, int]] = field(default_factory=list)


@st.composite
def contents(draw, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous array of ``dtype`` with values worth testing."""
    if dtype.kind in "biufc" and dtype.itemsize <= 8:
        elements = {"allow_subnormal": True} if dtype.kind in "fc" else None
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if dtype.hasobject or dtype.kind == "T":
        return np.zeros(shape, dtype)
    # Rejected plain-data dtypes (float128, datetimes, strings, structs): any bit pattern.
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    return np.frombuffer(raw, dtype).reshape(shape).copy()


# A window into a larger buffer comes up most: out may then overlap it partially.
LAYOUTS = ("window", "window", "C", "F", "strided", "broadcast", "misaligned", "list")


@st.composite
def placed(draw, dtype: np.dtype, shape: tuple[int, ...], d: Draw, list_ok: bool) -> Any:
    """An array of ``shape`` holding drawn values, in a drawn layout."""
    values = draw(contents(dtype, shape))
    layout = draw(st.sampled_from(LAYOUTS if list_ok else LAYOUTS[:-1]))
    if layout == "F":
        arr = np.asfortranarray(values)
    elif layout == "strided" and shape:
        steps = [draw(st.sampled_from([1, 2, -1, -2])) for _ in shape]
        big = np.zeros(tuple(max(1, n * abs(s)) for n, s in zip(shape, steps, strict=True)), dtype)
        arr = big[tuple(slice(None, None, s) for s in steps)][tuple(slice(0, n) for n in shape)]
        arr[...] = values
    elif layout == "broadcast" and shape:
        collapse = [draw(st.booleans()) for _ in shape]
        small = values[tuple(slice(0, 1) if c else slice(None) for c in collapse)]
        arr = np.broadcast_to(small, shape)
    elif layout == "misaligned" and not dtype.hasobject and dtype.kind != "T":
        buf = bytearray(values.nbytes + 1)
        arr = np.frombuffer(buf, dtype, count=values.size, offset=1).reshape(shape)
        arr[...] = values
    elif layout == "window":
        start = draw(st.integers(0, 6))
        buffer = draw(contents(dtype, (values.size + 6,)))
        arr = buffer[start : start + values.size].reshape(shape)
        arr[...] = values
        d.windows.append((buffer, start))
    elif layout == "list":
        return values.tolist()
    else:
        arr = values
    if arr.flags.writeable and draw(st.integers(0, 4)) == 0:
        arr.flags.writeable = False
    return arr


def _slopes() -> st.SearchStrategy:
    real = st.one_of(
        st.floats(),
        st.integers(),
        st.just(10**400),  # too large for a float: ValueError
        st.booleans(),
        st.fractions(),
        st.floats(width=16).map(np.float16),
        st.floats(width=32).map(np.float32),
        st.floats().map(np.float64),
        st.floats().map(np.longdouble),
        st.integers(-128, 127).map(np.int8),
        st.integers(-(2**63), 2**63 - 1).map(np.int64),
        st.integers(0, 2**64 - 1).map(np.uint64),
    )
    not_real = st.integers(0, 8).map(
        lambda i: [
            "0.1",
            1j,
            np.complex64(0.5),
            None,
            Decimal("0.5"),
            np.array(0.5),
            np.array([0.5, 0.2]),
            [0.5],
            object(),
        ][i]
    )
    return st.one_of(real, real, real, real, not_real)


@st.composite
def calls(draw, name: str, x_dtypes: list[np.dtype] | None = None) -> Draw:
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    # Half the draws take a dtype the compiled loops cover (where a layout or overlap
    # mistake would do harm), a quarter another dtype the function accepts, a quarter any.
    accepted = [t for t in ALL_DTYPES if accepts(name, t)]
    compiled = [t for t in accepted if t.byteorder in "=|" and (t.kind in "iu" or t.itemsize >= 4)]
    pool = [compiled, compiled, accepted, ALL_DTYPES][draw(st.integers(0, 3))]
    dtype = draw(st.sampled_from(x_dtypes or pool))
    shape = draw(shapes)
    d = Draw(x=None)
    d.x = draw(placed(dtype, shape, d, list_ok=accepts(name, dtype)))
    if name in BINARY:
        kind = draw(st.sampled_from(["same", "same", "same", "swapped", "any", "is x"]))
        if kind == "is x":
            d.g = d.x
        else:
            g_dtype = {
                "same": dtype,
                "swapped": dtype.newbyteorder() if dtype.byteorder in "=<>" else dtype,
                "any": draw(st.sampled_from(ALL_DTYPES)),
            }[kind]
            g_shape = shape if draw(st.integers(0, 6)) else draw(shapes)
            d.g = draw(placed(g_dtype, g_shape, d, list_ok=accepts(name, g_dtype)))
    d.params = tuple(draw(_slopes()) for _ in BY_NAME[name].parameters)
    d.out, d.pass_out = draw(outs(name, d, dtype, shape))
    return d


# Repeated kinds are drawn more often, and Hypothesis favours the first: most draws
# should reach a computation, and a partial overlap is where a mistake does most harm.
OUT_KINDS = (
    *("overlap", "overlap", "overlap", "fresh", "fresh", "fresh", "alias", "alias"),
    *("omit", "None", "wrong shape", "wrong dtype", "not an array"),
)


@st.composite
def outs(draw, name: str, d: Draw, dtype: np.dtype, shape: tuple[int, ...]):
    """``(out, whether to pass it at all)``."""
    result_dtype = native(dtype) if accepts(name, dtype) else np.dtype(np.float32)
    kind = d.out_kind = draw(st.sampled_from(OUT_KINDS))
    if kind == "omit":
        return None, False
    if kind == "None":
        return None, True
    if kind == "fresh":
        if draw(st.booleans()):
            result_dtype = result_dtype.newbyteorder()
        return draw(placed(result_dtype, shape, d, list_ok=False)), True
    if kind == "alias":
        return (d.g if name in BINARY and draw(st.booleans()) else d.x), True
    if kind == "overlap":
        if d.windows:
            buffer, _ = draw(st.sampled_from(d.windows))
            size = int(np.prod(shape))
            if buffer.size >= size + 6:  # a window of x's size (else: of g's, wrong shape)
                begin = draw(st.integers(0, 6))
                return buffer[begin : begin + size].reshape(shape), True
        if isinstance(d.x, np.ndarray):
            # The same memory, traversed backwards.
            return d.x[(slice(None, None, -1),) * d.x.ndim + (...,)], True
        return d.x, True
    if kind == "wrong shape":
        other = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
        if other == shape:
            other = (*shape, 1)
        return np.zeros(other, result_dtype), True
    if kind == "wrong dtype":
        other = draw(st.sampled_from(ALL_DTYPES))
        if same_element_type(other, result_dtype):
            other = np.dtype(np.complex128)
        return np.zeros(shape, other), True
    zeros = np.zeros(shape, result_dtype)
    options = [zeros.tolist(), tuple(np.zeros(shape).ravel()), 0.0, "out", {}]
    # The buffer protocol has no bfloat16 format: its raw bits instead.
    raw = zeros.view(np.uint16) if is_bfloat16(result_dtype) else zeros
    options += [memoryview(raw), result_dtype.type(0), np.zeros(shape).tolist()]
    return options[draw(st.integers(0, len(options) - 1))], True


# ---------------------------------------------------------------------------------------
# The contract, as a prediction.


def predict(name: str, d: Draw):
    """``(result, [])`` for a valid call, or ``(None, [(error type, argument), ...])``."""
    wrong: list[tuple[type, str]] = []
    inputs = (("grad_output", d.g), ("x", d.x)) if name in BINARY else (("x", d.x),)
    arrays: dict[str, np.ndarray] = {}
    x_shape = None
    for arg, value in inputs:
        try:
            arr = np.asarray(value)
        except ValueError:
            wrong.append((ValueError, arg))
            continue
        except Exception:
            wrong.append((TypeError, arg))
            continue
        if arg == "x":
            x_shape = arr.shape
        if not accepts(name, arr.dtype):
            wrong.append((TypeError, arg))
            continue
        # A native-order copy taken now: out may overwrite the input during the call.
        arrays[arg] = arr.astype(native(arr.dtype), copy=True)
    if len(arrays) == 2:
        g, x = arrays["grad_output"], arrays["x"]
        if g.shape != x.shape:  # no broadcasting in a backward pass
            wrong += [(ValueError, "grad_output"), (ValueError, "x")]
        if not same_element_type(g.dtype, x.dtype):
            wrong += [(TypeError, "grad_output"), (TypeError, "x")]
    x_dtype = arrays["x"].dtype if "x" in arrays else None
    params, param_errors = predict_params(name, d.params, x_dtype)
    wrong += param_errors
    if d.pass_out and d.out is not None:
        out = d.out
        if not isinstance(out, np.ndarray):
            wrong.append((TypeError, "out"))
        else:
            if x_shape is not None and out.shape != x_shape:
                wrong.append((ValueError, "out"))
            if not out.flags.writeable:
                wrong.append((ValueError, "out"))
            if "x" in arrays and not same_element_type(out.dtype, arrays["x"].dtype):
                wrong.append((TypeError, "out"))
    if wrong:
        return None, wrong
    args = [arrays[arg] for arg, _ in inputs]
    return getattr(_reference, name)(*args, *params), []


def largest_allowed(param: Parameter, dtype: np.dtype | None) -> float:
    """The README's rule: a parameter must fit the range of the type torch checks it in."""
    if dtype is None or dtype == np.float64:
        return float(np.finfo(np.float64).max)
    if param.range_type == COMPUTE or dtype == np.float32:
        return float(np.finfo(np.float32).max)
    return float(np.finfo(dtype).max)


def predict_params(name: str, values: tuple, x_dtype: np.dtype | None) -> tuple[list, list]:
    """The parameters as floats, and the errors the README promises for them."""
    spec = BY_NAME[name]
    params, wrong = [], []
    for param, value in zip(spec.parameters, values, strict=True):
        if not isinstance(value, numbers.Real):
            wrong.append((TypeError, param.name))
            continue
        try:
            number = float(value)
        except OverflowError:
            wrong.append((ValueError, param.name))
            continue
        if np.isfinite(number) and abs(number) > largest_allowed(param, x_dtype):
            wrong.append((ValueError, param.name))  # torch refuses it too
        params.append(number)
    if spec.ordered and not wrong and params[0] > params[1]:
        wrong.append((ValueError, spec.parameters[0].name))
    return params, wrong


# ---------------------------------------------------------------------------------------
# The check.


def snapshot(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic, memoryview)):
        return value.tobytes()
    return copy.deepcopy(value)


def unchanged(value: Any, old: Any) -> bool:
    if isinstance(old, bytes):
        return snapshot(value) == old
    # In a list, == compares identical objects as equal: a NaN float matches itself.
    return [value] == [old]


def check_call(name: str, d: Draw) -> str:
    want, wrong = predict(name, d)
    args: tuple = (*((d.g, d.x) if name in BINARY else (d.x,)), *d.params)
    kwargs = {"out": d.out} if d.pass_out else {}
    watched = [v for v in (d.x, d.g, d.out) if v is not None]
    before = [snapshot(v) for v in watched]
    windows_before = [buffer.copy() for buffer, _ in d.windows]

    try:
        result = getattr(fastact, name)(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        assert wrong, f"valid call raised {exc!r}"
        assert f"fastact.{name}" in message, message
        assert any(
            isinstance(exc, kind) and re.search(rf"\b{arg}\b", message) for kind, arg in wrong
        ), f"{exc!r} does not name any of {wrong}"
        for value, old in zip(watched, before, strict=True):
            assert unchanged(value, old), "an argument changed on error"
        for (buffer, _), old in zip(d.windows, windows_before, strict=True):
            assert buffer.tobytes() == old.tobytes(), "a buffer changed on error"
        return "error"

    assert not wrong, f"expected an error naming one of {wrong}, got {result!r}"
    out = d.out if d.pass_out else None
    if out is not None:
        assert result is out
    elif want.ndim == 0:
        assert isinstance(result, np.generic), type(result)
    else:
        assert isinstance(result, np.ndarray) and result.shape == want.shape
    if out is None:
        assert np.asarray(result).dtype == want.dtype
    assert_bitwise_equal(result, want)
    # Nothing but out was written: inputs that share no memory with out are unchanged,
    # and so is every byte of a window buffer outside out.
    for value, old in zip(watched, before, strict=True):
        if value is out or (out is not None and np.may_share_memory(value, out)):
            continue
        assert unchanged(value, old), "an input was modified"
    for (buffer, _), old in zip(d.windows, windows_before, strict=True):
        outside = np.ones(buffer.shape, bool)
        if out is not None and np.may_share_memory(buffer, out):
            outside[elements_of(out, buffer)] = False
        assert buffer[outside].tobytes() == old[outside].tobytes(), "stray write"
    return "ok"


def elements_of(view: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """The indices into 1-D ``buffer`` of every element of ``view``, a view of it."""
    start = view.__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    index = np.full(view.shape, start // buffer.itemsize)
    for axis, (n, stride) in enumerate(zip(view.shape, view.strides, strict=True)):
        steps = np.arange(n) * (stride // buffer.itemsize)
        index = index + steps.reshape((n,) + (1,) * (view.ndim - axis - 1))
    return index.ravel()


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzz(name, data):
    d = data.draw(calls(name))
    outcome = check_call(name, d)
    # Hypothesis reports how often each occurred (--hypothesis-show-statistics).
    event(outcome)
    event(f"{outcome}, out: {d.out_kind}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", BFLOAT16_DTYPES)
@pytest.mark.parametrize("name", FUNCTIONS)
@settings(
    max_examples=max(EXAMPLES // 3, 1),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzz_bfloat16(name, dtype, data):
    # x is bfloat16 in either byte order; grad_output and out are drawn as above.
    d = data.draw(calls(name, [dtype, dtype.newbyteorder()]))
    event(check_call(name, d))


# ---------------------------------------------------------------------------------------
# The composite functions, from their entries in tests/composites.py. A draw builds a
# valid call in drawn layouts (x and grad_output of one drawn dtype and shape, any
# byte order, windows into larger buffers), then may spoil any of its arguments: the
# first operand of another dtype, a weight/bias/mask/noise of a wrong length, dtype or
# type, a parameter that is not real or that overflows, an output that is read-only, of
# the wrong shape or dtype, not an array, or (out and mask) overlapping. The prediction
# is the list of arguments spoiled; a valid call must match the reference.

COMPOSITE_EXAMPLES = max(EXAMPLES // 5, 1)
_REJECTED = [t for t in ALL_DTYPES if not accepts("prelu", t)]


@dataclass
class CompositeDraw:
    call: dict
    outputs: dict
    wrong: list  # [(error type, argument), ...]
    windows: list[tuple[np.ndarray, int]]


def _spoil_operand(draw, case, name: str, value: np.ndarray) -> tuple[Any, type]:
    """``(spoiled value, error)`` for an operand other than the first."""
    how = draw(
        st.sampled_from(["dtype", "type", "length"] if name in case.sized else ["dtype", "type"])
    )
    if how == "dtype":
        other = np.int8 if value.dtype == np.uint8 else np.complex64
        return np.zeros(value.shape, other), TypeError
    if how == "type":
        return draw(st.sampled_from(["abc", object(), {1: 2}])), TypeError
    flat = np.asarray(value).ravel()
    longer = np.concatenate([flat] * 3 + [np.zeros(2, flat.dtype)])  # never 1 or the length
    return longer, ValueError


def _draw_params(draw, case, dtype, wrong: list) -> dict:
    """Drawn parameters (any real, boundaries, overflowing, not real), errors predicted."""
    params = dict(case.default_params)
    below_float64 = native(np.dtype(dtype)) != np.float64
    for name in [n for n in params if n != "training"]:
        value = draw(st.one_of(_slopes(), st.sampled_from([0.0, -0.0, 3.4e38, 1e39, 0.125])))
        params[name] = value
        if not isinstance(value, numbers.Real):
            wrong.append((TypeError, name))
            continue
        try:
            finite = np.isfinite(float(value))
        except OverflowError:
            wrong.append((ValueError, name))
            continue
        if name in ("lower", "upper") and not finite:  # rrelu's bounds, as torch's
            wrong.append((ValueError, name))
    if "training" in params:
        params["training"] = draw(st.booleans())
    numbers_ok = not any(arg in params for _, arg in wrong)
    if not numbers_ok or dtype is None:
        return params
    values = {k: float(v) for k, v in params.items() if k != "training"}
    limit = float(np.finfo(np.float32).max) if below_float64 else float(np.finfo(np.float64).max)

    def overflows(v: float) -> bool:
        return np.isfinite(v) and abs(v) > limit

    if "negative_slope" in values and overflows(values["negative_slope"]):
        wrong.append((ValueError, "negative_slope"))
    if "lower" in values:
        low, high = values["lower"], values["upper"]
        if low > high:
            wrong += [(ValueError, "lower"), (ValueError, "upper")]
        elif not params["training"] and overflows((low + high) / 2):
            wrong += [(ValueError, "lower"), (ValueError, "upper")]
        elif params["training"] and case.name == "rrelu" and (overflows(low) or overflows(high)):
            wrong += [(ValueError, "lower"), (ValueError, "upper")]
    return params


@st.composite
def composite_calls(draw, case, x_dtypes=None) -> CompositeDraw:
    wrong: list = []
    accepted = [t for t in ALL_DTYPES if accepts("prelu", t)]
    natives = [t for t in accepted if t.byteorder in "=|" and t.itemsize >= 4]
    dtype = draw(
        st.sampled_from(x_dtypes or [natives, natives, accepted][draw(st.integers(0, 2))])
    )
    min_dims = case.min_ndim if draw(st.integers(0, 9)) else 0
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=4, min_side=0, max_side=4))
    holder = Draw(x=None)
    x = draw(placed(dtype, shape, holder, list_ok=False))
    shape = x.shape  # np.asfortranarray makes a 0-d array 1-D
    if len(shape) < case.min_ndim:
        wrong.append((ValueError, case.arrays[0]))  # the bias runs along the last axis
    g = draw(placed(dtype, shape, holder, list_ok=False)).reshape(shape)
    params = _draw_params(draw, case, dtype, wrong)
    seed = draw(st.integers(0, 2**32 - 1))
    # Built with valid parameters (the noise is drawn from the bounds), then given the
    # drawn ones.
    valid = {**case.default_params, **{k: v for k, v in params.items() if k == "training"}}
    if len(shape) >= case.min_ndim:
        call = case.build(x, g, valid, np.random.default_rng(seed))
    else:  # a valid call of one more axis, cut down to the drawn 0-d operands
        call = case.build(x.reshape(1), g.reshape(1), valid, np.random.default_rng(seed))
        call = {k: (x if k == "x" else g if k == "grad_output" else v) for k, v in call.items()}
    call.update(params)
    first = case.arrays[0]
    if draw(st.integers(0, 5)) == 0:
        bad = draw(st.sampled_from(_REJECTED))
        call[first] = draw(placed(bad, shape, holder, list_ok=False))
        wrong.append((TypeError, first))
    for name in case.arrays[1:]:
        if name in call and draw(st.integers(0, 6)) == 0:
            if name == "x":  # grad_output and x of different dtypes or shapes
                call[name] = np.zeros((*shape, 2), np.float32)
                wrong += [(ValueError, "x"), (ValueError, "grad_output"), (TypeError, "x")]
                wrong.append((TypeError, "grad_output"))
                continue
            call[name], error = _spoil_operand(draw, case, name, call[name])
            wrong.append((error, name))
    outputs = {}
    like_dtype = native(dtype)
    for key in case.outputs:
        kind = draw(st.sampled_from(["omit", "fresh", "fresh", "alias", "overlap", "bad"]))
        if key == "mask":
            length = (math.prod(shape) + 7) // 8
            if kind in ("fresh", "alias", "overlap"):
                outputs[key] = draw(placed(np.dtype(np.uint8), (length,), holder, list_ok=False))
                if not outputs[key].flags.writeable:
                    wrong.append((ValueError, key))
                if "out" in outputs and np.shares_memory(outputs["out"], outputs[key]):
                    wrong.append((ValueError, key))
            elif kind == "bad":
                outputs[key] = draw(
                    st.sampled_from(
                        [np.zeros(length + 1, np.uint8), np.zeros(length, np.int8), [0] * length]
                    )
                )
                wrong.append(
                    (
                        TypeError
                        if not isinstance(outputs[key], np.ndarray)
                        or outputs[key].dtype != np.uint8
                        else ValueError,
                        key,
                    )
                )
            continue
        if kind == "fresh":
            out_dtype = like_dtype if draw(st.booleans()) else like_dtype.newbyteorder()
            outputs[key] = draw(placed(out_dtype, shape, holder, list_ok=False))
        elif kind == "alias" and isinstance(call[first], np.ndarray):
            outputs[key] = call[first]
        elif kind == "overlap" and holder.windows:
            buffer, _ = draw(st.sampled_from(holder.windows))
            size = math.prod(shape)
            if buffer.size >= size + 6 and buffer.dtype == like_dtype:
                begin = draw(st.integers(0, 6))
                outputs[key] = buffer[begin : begin + size].reshape(shape)
        elif kind == "bad":
            outputs[key] = draw(
                st.sampled_from(
                    [
                        np.zeros((*shape, 2), like_dtype),
                        np.zeros(shape, np.complex64),
                        [0.0],
                        0.0,
                    ]
                )
            )
        if key not in outputs:
            continue
        out = outputs[key]
        if not isinstance(out, np.ndarray):
            wrong.append((TypeError, key))
        elif out.shape != shape:
            wrong.append((ValueError, key))
        elif not same_element_type(out.dtype, like_dtype):
            wrong.append((TypeError, key))
        elif not out.flags.writeable:
            wrong.append((ValueError, key))
    return CompositeDraw(call, outputs, wrong, holder.windows)


def check_composite_call(case, d: CompositeDraw) -> str:
    from composites import assert_results, expected

    watched = [v for v in (*d.call.values(), *d.outputs.values()) if isinstance(v, np.ndarray)]
    before = [snapshot(v) for v in watched]
    windows_before = [buffer.copy() for buffer, _ in d.windows]
    want = None if d.wrong else expected(case, d.call)
    try:
        got = case.call(d.call, **d.outputs)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        assert d.wrong, f"valid call raised {exc!r}"
        assert message.startswith(f"fastact.{case.name}"), message
        assert any(
            isinstance(exc, kind) and re.search(rf"\b{arg}\b", message) for kind, arg in d.wrong
        ), f"{exc!r} does not name any of {d.wrong}"
        for value, old in zip(watched, before, strict=True):
            assert unchanged(value, old), "an argument changed on error"
        for (buffer, _), old in zip(d.windows, windows_before, strict=True):
            assert buffer.tobytes() == old.tobytes(), "a buffer changed on error"
        return "error"
    assert not d.wrong, f"expected an error naming one of {d.wrong}"
    for index, key in enumerate(("out", "mask")):  # the activation, then its mask
        if key in d.outputs:
            assert got[index] is d.outputs[key], key
    assert_results(case, d.call, got, want)
    written = list(d.outputs.values())
    for value, old in zip(watched, before, strict=True):
        if any(np.may_share_memory(value, w) for w in written):
            continue
        assert unchanged(value, old), "an input was modified"
    for (buffer, _), old in zip(d.windows, windows_before, strict=True):
        outside = np.ones(buffer.shape, bool)
        for w in written:
            if np.may_share_memory(buffer, w):
                outside[elements_of(w, buffer)] = False
        assert buffer[outside].tobytes() == old[outside].tobytes(), "stray write"
    return "ok"


def _composite_names():
    from composites import COMPOSITE_CASES

    return list(COMPOSITE_CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", _composite_names())
@settings(
    max_examples=COMPOSITE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzz_composite(name, data):
    from composites import COMPOSITE_CASES

    case = COMPOSITE_CASES[name]
    event(check_composite_call(case, data.draw(composite_calls(case))))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", BFLOAT16_DTYPES)
@pytest.mark.parametrize("name", _composite_names())
@settings(
    max_examples=max(COMPOSITE_EXAMPLES // 3, 1),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzz_composite_bfloat16(name, dtype, data):
    from composites import COMPOSITE_CASES

    case = COMPOSITE_CASES[name]
    d = data.draw(composite_calls(case, [dtype, dtype.newbyteorder()]))
    event(check_composite_call(case, d))
