"""Inputs that are not plain ndarrays: memory maps, buffers, torch tensors, hostile objects."""

import array
import re
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from bitwise import (
    BINARY,
    FUNCTIONS,
    WITH_SLOPE,
    args_for,
    assert_bitwise_equal,
    requires_compiled,
    sample,
)

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
