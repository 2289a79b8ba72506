"""Inputs that are not plain ndarrays: memory maps, buffers, torch tensors, hostile objects."""

import array
import re
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from bitwise import (
    BFLOAT16,
    BINARY,
    FUNCTIONS,
    WITH_SLOPE,
    args_for,
    assert_bitwise_equal,
    requires_compiled,
    sample,
)
from composites import COMPOSITE_CASES, assert_results, build_call, empty_outputs, expected

import fastact
from fastact import _reference


def call(name, *args, **kwargs):
    return getattr(fastact, name)(*args, **kwargs)


def reference(name, *args):
    arrays = [np.asarray(a) for a in args if not isinstance(a, float)]
    arrays = [a.astype(a.dtype.newbyteorder("=")) for a in arrays]
    return getattr(_reference, name)(*arrays, *[a for a in args if isinstance(a, float)])


def extra_peak_bytes(fn) -> int:
    """How many bytes of traced memory ``fn()`` needed at its peak, beyond what it kept."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------
# np.memmap: a read-only map in, a writeable map out.


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<f2"])
@pytest.mark.parametrize("offset", [0, 1])
def test_memmap_in_and_out(tmp_path, name, dtype, offset):
    # offset=1 leaves every element of the map misaligned.
    rng = np.random.default_rng(3)
    shape = (5, 13)
    x = sample(np.dtype(dtype).newbyteorder("="), 65, rng).astype(dtype).reshape(shape)
    g = sample(np.dtype(dtype).newbyteorder("="), 65, rng).astype(dtype).reshape(shape)
    for path, values in (("x.bin", x), ("g.bin", g)):
        (tmp_path / path).write_bytes(b"\0" * offset + values.tobytes())
    x_map = np.memmap(tmp_path / "x.bin", dtype, "r", offset=offset, shape=shape)
    g_map = np.memmap(tmp_path / "g.bin", dtype, "r", offset=offset, shape=shape)
    out_map = np.memmap(tmp_path / "out.bin", dtype, "w+", shape=shape)
    args = args_for(name, x_map, g_map, 0.2)
    want = reference(name, *args_for(name, x, g, 0.2))

    assert_bitwise_equal(call(name, *args), want)
    assert call(name, *args, out=out_map) is out_map
    out_map.flush()
    written = np.frombuffer((tmp_path / "out.bin").read_bytes(), dtype).reshape(shape)
    assert_bitwise_equal(written, want)
    assert (tmp_path / "x.bin").read_bytes()[offset:] == x.tobytes()
    assert (tmp_path / "g.bin").read_bytes()[offset:] == g.tobytes()
    with pytest.raises(ValueError, match="out is read-only"):
        call(name, *args, out=x_map)


def test_memmap_in_place(tmp_path):
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    x_map = np.memmap(tmp_path / "x.bin", np.float32, "r+")
    assert fastact.leaky_relu(x_map, 0.5, out=x_map) is x_map
    x_map.flush()
    on_disk = np.frombuffer((tmp_path / "x.bin").read_bytes(), np.float32)
    assert_bitwise_equal(on_disk, _reference.leaky_relu(x, 0.5))


# ---------------------------------------------------------------------------------------
# Objects that are not arrays at all.


class ArrayRaises:
    def __init__(self, error):
        self.error = error

    def __array__(self, dtype=None, copy=None):
        raise self.error


class ArrayReturns:
    def __init__(self, value):
        self.value = value

    def __array__(self, dtype=None, copy=None):
        return self.value


class BrokenSequence:
    def __len__(self):
        return 3

    def __getitem__(self, index):
        raise RuntimeError("broken sequence")


NOT_ARRAYS = [
    (None, TypeError),
    ("abc", TypeError),
    ({"a": 1.0}, TypeError),
    ({1.0, 2.0}, TypeError),
    (object(), TypeError),
    (1j, TypeError),
    ([[1.0], [1.0, 2.0]], ValueError),  # ragged
    ([1.0, [2.0]], ValueError),
    ([1.0, "a"], TypeError),
    (ArrayRaises(RuntimeError("broken __array__")), TypeError),
    (ArrayRaises(ValueError("broken __array__")), ValueError),
    (ArrayReturns([1.0, 2.0]), ValueError),  # __array__ that returns no array
    (ArrayReturns(np.array([True])), TypeError),
    (BrokenSequence(), TypeError),
]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize(("bad", "error"), NOT_ARRAYS, ids=lambda v: type(v).__name__)
def test_non_array_input_raises_named_error(name, bad, error):
    ok = np.array([-1.0, 2.0], np.float32)
    targets = ("grad_output", "x") if name in BINARY else ("x",)
    for target in targets:
        x = bad if target == "x" else ok
        g = bad if target == "grad_output" else ok
        out = np.full(2, 7.0, np.float32)
        with pytest.raises(error) as info:
            call(name, *args_for(name, x, g, 0.2), out=out)
        message = str(info.value)
        assert message.startswith(f"fastact.{name}: {target} "), message
        assert_bitwise_equal(out, np.full(2, 7.0, np.float32))
        assert_bitwise_equal(ok, np.array([-1.0, 2.0], np.float32))


def float32_buffers():
    values = np.array([-2.5, -0.0, 0.0, 1.5, np.nan, -np.inf], np.float32)
    yield "array.array", array.array("f", values.tobytes()), values
    yield "bytearray view", memoryview(bytearray(values.tobytes())).cast("f"), values
    yield "read-only bytes view", memoryview(values.tobytes()).cast("f"), values
    yield "memoryview of ndarray", memoryview(values.copy()), values


@pytest.mark.parametrize("name", FUNCTIONS)
def test_buffer_protocol_inputs(name):
    for label, buffer, values in float32_buffers():
        args = args_for(name, buffer, buffer, 0.2)
        want = reference(name, *args_for(name, values, values, 0.2))
        assert_bitwise_equal(call(name, *args), want)
        out = np.empty(values.shape, np.float32)
        assert call(name, *args, out=out) is out, label
        assert_bitwise_equal(out, want)
        assert bytes(memoryview(buffer)) == values.tobytes(), f"{label} was modified"


@requires_compiled  # the reference computes into a temporary, then copies into out
def test_buffer_inputs_are_not_copied():
    n = 1 << 20
    buffer = memoryview(bytearray(4 * n)).cast("f")
    out = np.empty(n, np.float32)
    assert extra_peak_bytes(lambda: fastact.relu(buffer, out=out)) < n  # 4n for a copy


def test_bytearray_is_uint8():
    data = bytearray(b"\x00\x01\x7f\x80\xff")
    assert_bitwise_equal(fastact.relu(data), np.frombuffer(bytes(data), np.uint8))
    assert_bitwise_equal(fastact.relu(array.array("b", [-128, -1, 0, 5])), np.int8([0, 0, 0, 5]))
    for name in FUNCTIONS:
        if name != "relu":
            with pytest.raises(TypeError, match="only relu takes integers"):
                call(name, *args_for(name, data, data, 0.2))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_out_must_be_an_ndarray(name):
    x = np.array([-1.0, 2.0], np.float32)
    buffer = bytearray(8)
    for out in ([0.0, 0.0], memoryview(buffer).cast("f"), array.array("f", [0, 0]), 0.0):
        with pytest.raises(TypeError, match=re.escape(f"fastact.{name}: out must be")):
            call(name, *args_for(name, x, x, 0.2), out=out)
    assert buffer == bytearray(8)


# ---------------------------------------------------------------------------------------
# torch CPU tensors: taken as they are, without a copy.


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_torch_tensor_input(torch, name):
    rng = np.random.default_rng(6)
    for dtype in (torch.float16, torch.float32, torch.float64):
        x = torch.from_numpy(sample(np.float32, 60, rng)).to(dtype).reshape(6, 10)
        g = torch.from_numpy(sample(np.float32, 60, rng)).to(dtype).reshape(6, 10)
        for xs, gs in ((x, g), (x.T, g.T), (x[:, ::3], g[:, ::3])):
            args = args_for(name, xs, gs, 0.2)
            want = reference(name, *args_for(name, xs.numpy(), gs.numpy(), 0.2))
            assert_bitwise_equal(call(name, *args), want)
            # out= the tensor's own memory: the tensor sees the result.
            target = xs.clone()
            view = target.numpy()
            result = call(name, *args_for(name, target, gs, 0.2), out=view)
            assert result is view
            assert_bitwise_equal(target.numpy(), want)


def test_torch_integer_relu(torch):
    t = torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8)
    assert_bitwise_equal(fastact.relu(t), np.int8([0, 0, 0, 1, 127]))
    fastact.relu(t, out=t.numpy())
    assert t.tolist() == [0, 0, 0, 1, 127]


@requires_compiled  # as above
def test_torch_tensor_is_not_copied(torch):
    n = 1 << 20
    x = torch.randn(n)
    out = np.empty(n, np.float32)
    # A copy of the input would show up as 4n bytes of NumPy memory.
    assert extra_peak_bytes(lambda: fastact.relu(x, out=out)) < n
    assert extra_peak_bytes(lambda: fastact.leaky_relu_backward(x, x, 0.1, out=out)) < n
    assert_bitwise_equal(out, _reference.leaky_relu_backward(x.numpy(), x.numpy(), 0.1))


def test_torch_tensors_numpy_cannot_take(torch):
    x = torch.tensor([-1.0, 2.0])
    for bad in (x.clone().requires_grad_(True), x.to(torch.bfloat16), x > 0):
        with pytest.raises(TypeError, match=r"^fastact\.relu: x "):
            fastact.relu(bad)
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray, not Tensor"):
        fastact.relu(x, out=torch.empty(2))


# ---------------------------------------------------------------------------------------
# negative_slope of every numeric type.


@pytest.mark.parametrize("name", WITH_SLOPE)
def test_slope_numeric_types(name):
    x = np.array([-2.0, -0.0, 3.0, np.nan], np.float32)
    args = args_for(name, x, x, 0.0)[:-1]
    slopes = [
        *(np.float16(0.5), np.float32(0.1), np.float64(0.1), np.longdouble(0.25)),
        *(np.int8(-3), np.uint8(200), np.int64(2), np.uint64(2**64 - 1)),
        *(7, -(2**70), True, False, Fraction(1, 3)),
        # ml_dtypes' scalar is no numbers.Real, but as real a number as np.float16's.
        *(() if BFLOAT16 is None else (BFLOAT16.type(0.5), BFLOAT16.type(-3.0))),
    ]
    for slope in slopes:
        want = _reference.__dict__[name](*args, float(slope))
        assert_bitwise_equal(call(name, *args, slope), want)


@pytest.mark.parametrize("name", WITH_SLOPE)
def test_slope_numpy_bool_is_accepted_like_python_bool(name):
    # A NumPy scalar like any other (and torch takes it); Python's True is accepted.
    x = np.array([-2.0, 3.0], np.float32)
    args = args_for(name, x, x, 0.0)[:-1]
    for numpy_bool, python_bool in ((np.True_, True), (np.False_, False)):
        assert_bitwise_equal(call(name, *args, numpy_bool), call(name, *args, python_bool))


# ---------------------------------------------------------------------------------------
# The composite functions (tests/composites.py): every array operand, every output.


def composite_call(name):
    case = COMPOSITE_CASES[name]
    return case, build_call(case, np.float32, (2, 3, 4), np.random.default_rng(11))


@pytest.mark.parametrize("name", list(COMPOSITE_CASES))
@pytest.mark.parametrize(("bad", "error"), NOT_ARRAYS, ids=lambda v: type(v).__name__)
def test_composite_non_array_operand_raises_named_error(name, bad, error):
    case, call = composite_call(name)
    for target in case.arrays:
        if bad is None and target == "noise":
            continue  # None is no noise, the default: "training=True needs the noise"
        # A weight is a number or an ndarray (torch takes a tensor): anything else is a
        # TypeError, whatever NumPy would make of it.
        want = TypeError if target == "weight" else error
        outputs = empty_outputs(case, call)
        before = {k: v.copy() for k, v in outputs.items()}
        with pytest.raises(want) as info:
            case.call({**call, target: bad}, **outputs)
        message = str(info.value)
        assert message.startswith(f"fastact.{name}: {target} "), message
        for key, value in outputs.items():
            np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("name", [n for n, c in COMPOSITE_CASES.items() if c.outputs])
def test_composite_outputs_must_be_ndarrays(name):
    case, call = composite_call(name)
    for key in case.outputs:
        for bad in ([0.0], memoryview(bytearray(96)).cast("f"), 0.0):
            with pytest.raises(TypeError, match=re.escape(f"fastact.{name}: {key} must be")):
                case.call(call, **{key: bad})


@pytest.mark.parametrize("name", list(COMPOSITE_CASES))
def test_composite_wrong_dtypes_lengths_and_outputs(name):
    # Each fault alone, on an otherwise valid call: the documented error naming the
    # argument, and no output written.
    case, call = composite_call(name)
    faults = []
    for index, target in enumerate(case.arrays):
        value = call[target]
        # Another element type: integers for the first operand (any float type is its
        # own), float64 for the float operands that follow it, int8 for a mask.
        other = value.astype(np.int8 if value.dtype == np.uint8 else np.float64)
        if index == 0:
            other = np.zeros(value.shape, np.int32)
        faults.append((target, TypeError, {target: other}))
        if target in case.sized:
            faults.append((target, ValueError, {target: np.concatenate([value.ravel()] * 2)}))
    for key in case.outputs:
        fresh = empty_outputs(case, call)[key]
        frozen = fresh.copy()
        frozen.flags.writeable = False
        faults += [
            (key, ValueError, {key: frozen}),
            (key, ValueError, {key: np.concatenate([fresh.ravel()] * 2)}),
            (key, TypeError, {key: fresh.astype(np.float16)}),
        ]
    for target, error, change in faults:
        inputs = {k: v for k, v in change.items() if k not in case.outputs}
        given = {k: v for k, v in change.items() if k in case.outputs}
        outputs = {**empty_outputs(case, call), **given}
        before = {k: np.array(v) for k, v in outputs.items()}
        with pytest.raises(error, match=rf"^fastact\.{name}: .*\b{target}\b"):
            case.call({**call, **inputs}, **outputs)
        for key, value in outputs.items():
            np.testing.assert_array_equal(value, before[key], err_msg=f"{target}: {key}")


@pytest.mark.parametrize("name", list(COMPOSITE_CASES))
def test_composite_byte_swapped_and_overlapping(name):
    # Byte-swapped operands give the native result; out overlapping an input by part
    # (a window of x's own buffer, one element on) is handled as a separate array.
    case, call = composite_call(name)
    swapped = {
        k: v.astype(v.dtype.newbyteorder()) if v.dtype.kind == "f" else v
        for k, v in call.items()
        if isinstance(v, np.ndarray)
    }
    want = expected(case, call)
    assert_results(case, call, case.call({**call, **swapped}), want)
    if "out" not in case.outputs:
        return
    source = "grad_output" if "grad_output" in call else "x"
    buffer = np.concatenate([call[source].ravel(), call[source].ravel()[:1]])
    shifted = {**call, source: buffer[1:].reshape(call[source].shape)}
    want = expected(case, shifted)
    out = buffer[:-1].reshape(call[source].shape)
    got = case.call(shifted, out=out)
    assert got[0] is out
    assert_results(case, shifted, got, want)


@pytest.mark.parametrize(
    ("x_type", "out_type"),
    [
        (np.int64, np.longlong),
        (np.longlong, np.int64),
        (np.uint64, np.ulonglong),
        (np.intc, np.int32),
    ],
)
def test_integer_aliases_are_one_element_type(x_type, out_type):
    # np.longlong is not np.int64 on Linux (nor np.intc np.int32 everywhere), but both
    # hold the same values: an out of either type is the result's own.
    values = [-3, 0, 5] if np.dtype(x_type).kind == "i" else [3, 0, 5]
    x = np.array(values, dtype=x_type)
    out = np.full(3, 7, dtype=out_type)
    assert fastact.relu(x, out=out) is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))
