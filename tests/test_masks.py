"""The mask functions: the same bits as the functions they stand for, and np.packbits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bitwise import (
    KERNEL_FLOAT_DTYPES,
    SLOPES,
    assert_bitwise_equal,
    edge_values,
    other_runnable_builds,
    python_runs_during,
    requires_compiled,
    run_tests_under_build,
    sample,
    thresholds,
)

import fastact
from fastact import _masks

LEAKY = (False, True)


def passes(x: np.ndarray, leaky: bool) -> np.ndarray:
    """The backward rule's comparison, in float64 (exact for every float type)."""
    wide = np.asarray(x).astype(np.float64)
    return wide > 0 if leaky else ~(wide <= 0)


def expected_mask(x: np.ndarray, leaky: bool) -> np.ndarray:
    return np.packbits(passes(x, leaky).ravel(order="C"), bitorder="little")


def forward(x, leaky, slope=0.01, **kwargs):
    if leaky:
        return fastact.leaky_relu_with_mask(x, slope, **kwargs)
    return fastact.relu_with_mask(x, **kwargs)


def backward(g, mask, leaky, slope=0.01, **kwargs):
    if leaky:
        return fastact.leaky_relu_backward_mask(g, mask, slope, **kwargs)
    return fastact.relu_backward_mask(g, mask, **kwargs)


def plain(x, leaky, slope=0.01):
    return fastact.leaky_relu(x, slope) if leaky else fastact.relu(x)


def plain_backward(g, x, leaky, slope=0.01):
    return fastact.leaky_relu_backward(g, x, slope) if leaky else fastact.relu_backward(g, x)


def check_round_trip(x, g, leaky, slope=0.01):
    y, mask = forward(x, leaky, slope)
    assert_bitwise_equal(y, plain(x, leaky, slope))
    assert mask.dtype == np.uint8 and mask.shape == (_masks.mask_length(np.size(x)),)
    np.testing.assert_array_equal(mask, expected_mask(x, leaky))
    assert_bitwise_equal(backward(g, mask, leaky, slope), plain_backward(g, x, leaky, slope))


@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_length_matches_the_plain_functions(dtype, leaky):
    rng = np.random.default_rng(12)
    for n in [*range(71), 127, 128, 129, 1023, 1024, 1025, 3000, 70001]:
        check_round_trip(sample(dtype, n, rng), sample(dtype, n, rng), leaky)


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_edge_pair_and_slope(dtype, slope):
    edges = edge_values(dtype)
    x, g = (a.ravel() for a in np.meshgrid(edges, edges))
    check_round_trip(x, g, True, slope)
    check_round_trip(x, g, False)


@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_reference_matches_compiled(dtype, leaky):
    rng = np.random.default_rng(3)
    x, g = sample(dtype, 1001, rng), sample(dtype, 1001, rng)
    y, mask = _masks.reference_with_mask(x, leaky, 0.2)
    got_y, got_mask = forward(x, leaky, 0.2)
    assert_bitwise_equal(got_y, y)
    np.testing.assert_array_equal(got_mask, mask)
    assert_bitwise_equal(
        backward(g, mask, leaky, 0.2), _masks.reference_backward_mask(g, mask, leaky, 0.2)
    )


def layouts(x: np.ndarray) -> list[np.ndarray]:
    """The same values (or a view of them) in every layout the functions must take."""
    swapped = x.astype(x.dtype.newbyteorder("S"))
    raw = np.empty(x.nbytes + 1, np.uint8)[1:]
    misaligned = raw.view(x.dtype).reshape(x.shape)
    misaligned[...] = x
    read_only = x.copy()
    read_only.flags.writeable = False
    return [
        x,
        np.asfortranarray(x),
        x.T,
        x[::2],
        x[:, 1:],
        x[::-1, ::3],
        swapped,
        misaligned,
        read_only,
    ]


@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_layout(dtype, leaky):
    rng = np.random.default_rng(5)
    x = sample(dtype, 37 * 21, rng).reshape(37, 21)
    g = sample(dtype, 37 * 21, rng).reshape(37, 21)
    for view, g_view in zip(layouts(x), layouts(g), strict=True):
        if view.dtype.byteorder not in "=|" and view.dtype.name == "bfloat16":
            continue  # ml_dtypes has no byte-swapped bfloat16 arithmetic for the oracle
        check_round_trip(view, g_view, leaky)


@pytest.mark.parametrize("leaky", LEAKY)
def test_zero_d_and_empty(leaky):
    for value in (-1.5, 2.0, np.nan, -0.0):
        y, mask = forward(np.float32(value), leaky)
        assert np.ndim(y) == 0 and isinstance(y, np.floating)
        assert_bitwise_equal(y, plain(np.float32(value), leaky))
        np.testing.assert_array_equal(mask, expected_mask(np.float32(value), leaky))
        grad = backward(np.float32(3.0), mask, leaky)
        assert np.ndim(grad) == 0
        assert_bitwise_equal(grad, plain_backward(np.float32(3.0), np.float32(value), leaky))
    for shape in ((0,), (0, 3), (4, 0)):
        y, mask = forward(np.zeros(shape, np.float64), leaky)
        assert y.shape == shape and mask.shape == (0,)
        assert backward(np.zeros(shape, np.float64), mask, leaky).shape == shape


@pytest.mark.parametrize("leaky", LEAKY)
def test_out_and_mask(leaky):
    rng = np.random.default_rng(8)
    x = sample(np.float32, 1000, rng)
    y_expected, mask_expected = plain(x, leaky), expected_mask(x, leaky)
    out, mask = np.empty_like(x), np.empty(125, np.uint8)
    y, mask = forward(x, leaky, out=out, mask=mask)
    assert y is out and mask is mask
    assert_bitwise_equal(out, y_expected)
    np.testing.assert_array_equal(mask, mask_expected)
    # A strided mask and a Fortran out: written once the result exists.
    strided = np.zeros(250, np.uint8)[::2]
    fortran = np.empty((25, 40), np.float32, order="F")
    y, mask = forward(x.reshape(25, 40), leaky, out=fortran, mask=strided)
    assert y is fortran and mask is strided
    assert_bitwise_equal(fortran, y_expected.reshape(25, 40))
    np.testing.assert_array_equal(strided, mask_expected)
    # In place, and out partially overlapping the input.
    in_place = x.copy()
    y, _ = forward(in_place, leaky, out=in_place)
    assert y is in_place
    assert_bitwise_equal(in_place, y_expected)
    buffer = np.concatenate([x, x[:8]])
    y, mask = forward(buffer[:1000], leaky, out=buffer[8:])
    assert_bitwise_equal(buffer[8:], y_expected)
    np.testing.assert_array_equal(mask, mask_expected)
    # A mask inside the input's own bytes is computed first and copied.
    raw = x.copy()
    mask_in_x = raw.view(np.uint8)[:125]
    _, mask = forward(raw, leaky, out=np.empty_like(x), mask=mask_in_x)
    np.testing.assert_array_equal(mask, mask_expected)


@pytest.mark.parametrize("leaky", LEAKY)
def test_backward_out(leaky):
    rng = np.random.default_rng(9)
    x, g = sample(np.float64, 999, rng), sample(np.float64, 999, rng)
    mask = expected_mask(x, leaky)
    expected = plain_backward(g, x, leaky)
    in_place = g.copy()
    assert backward(in_place, mask, leaky, out=in_place) is in_place
    assert_bitwise_equal(in_place, expected)
    # out overlapping the mask's bytes: the mask is read in full before out is written.
    buffer = np.zeros(999 + 16, np.float64)
    buffer.view(np.uint8)[: mask.size] = mask
    bits = buffer.view(np.uint8)[: mask.size]
    backward(g, bits, leaky, out=buffer[:999])
    assert_bitwise_equal(buffer[:999], expected)
    # The mask as a list of ints would be int64: refused, not cast.
    assert_bitwise_equal(backward(g, np.asarray(mask.tolist(), np.uint8), leaky), expected)


@pytest.mark.parametrize("leaky", LEAKY)
def test_bad_masks(leaky):
    g = np.ones(20, np.float32)
    with pytest.raises(ValueError, match=r"length 2 .*20 elements.* length 3"):
        backward(g, np.zeros(2, np.uint8), leaky)
    with pytest.raises(ValueError, match=r"length 4 .* length 3"):
        backward(g, np.zeros(4, np.uint8), leaky)
    with pytest.raises(ValueError, match=r"shape \(3, 1\)"):
        backward(g, np.zeros((3, 1), np.uint8), leaky)
    for dtype in (np.bool_, np.int8, np.uint16, np.float32):
        with pytest.raises(TypeError, match="mask has dtype"):
            backward(g, np.zeros(3, dtype), leaky)
    with pytest.raises(TypeError, match="mask has dtype"):
        backward(g, [0, 0, 0], leaky)
    with pytest.raises(TypeError, match=r"mask must be a numpy\.ndarray, not NoneType"):
        backward(g, None, leaky)
    with pytest.raises(TypeError, match="grad_output has dtype"):
        backward(np.ones(20, np.int32), np.zeros(3, np.uint8), leaky)


@pytest.mark.parametrize("leaky", LEAKY)
def test_bad_outputs_write_nothing(leaky):
    x = np.linspace(-1, 1, 20, dtype=np.float32)
    out = np.full(20, 7.0, np.float32)
    sentinel = np.full(3, 0xAB, np.uint8)

    def untouched():
        assert (out == 7.0).all() and (sentinel == 0xAB).all()

    with pytest.raises(ValueError, match=r"mask has length 2 .* length 3"):
        forward(x, leaky, out=out, mask=np.zeros(2, np.uint8))
    untouched()
    with pytest.raises(ValueError, match=r"mask has shape \(1, 3\) but .* length 3"):
        forward(x, leaky, out=out, mask=np.zeros((1, 3), np.uint8))
    untouched()
    with pytest.raises(TypeError, match="mask has dtype"):
        forward(x, leaky, out=out, mask=np.zeros(3, np.int8))
    untouched()
    with pytest.raises(TypeError, match=r"mask must be a numpy\.ndarray"):
        forward(x, leaky, out=out, mask=[0, 0, 0])
    untouched()
    read_only = np.zeros(3, np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="mask is read-only"):
        forward(x, leaky, out=out, mask=read_only)
    untouched()
    frozen = out.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        forward(x, leaky, out=frozen, mask=sentinel)
    untouched()
    with pytest.raises(ValueError, match="out has shape"):
        forward(x, leaky, out=np.empty(21, np.float32), mask=sentinel)
    untouched()
    with pytest.raises(TypeError, match="out has dtype"):
        forward(x, leaky, out=np.empty(20, np.float64), mask=sentinel)
    untouched()
    shared = np.zeros(30, np.float32)
    with pytest.raises(ValueError, match="out and mask overlap"):
        forward(x, leaky, out=shared[:20], mask=shared[5:].view(np.uint8)[:3])
    assert (shared == 0).all()
    with pytest.raises(TypeError, match="x has dtype"):
        forward(np.arange(20), leaky, out=out, mask=sentinel)
    untouched()
    if leaky:
        with pytest.raises(ValueError, match="overflows"):
            forward(x, leaky, 1e300, out=out, mask=sentinel)
        untouched()
        with pytest.raises(TypeError, match="must be a real number"):
            forward(x, leaky, "0.1", out=out, mask=sentinel)
        untouched()
    grad = np.ones(20, np.float32)
    with pytest.raises(ValueError, match="out is read-only"):
        backward(grad, sentinel, leaky, out=frozen)


@requires_compiled
@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_threads_split_on_whole_mask_words(dtype, leaky):
    rng = np.random.default_rng(4)
    for n in (64 * 100 + 1, 64 * 100 + 63, 10_007):
        x, g = sample(dtype, n, rng), sample(dtype, n, rng)
        y1, mask1 = forward(x, leaky)
        grad1 = backward(g, mask1, leaky)
        with thresholds(parallel_min_bytes=1024), fastact.threads(3):
            y3, mask3 = forward(x, leaky)
            grad3 = backward(g, mask3, leaky)
        assert_bitwise_equal(y3, y1)
        np.testing.assert_array_equal(mask3, mask1)
        assert_bitwise_equal(grad3, grad1)


@requires_compiled
@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_streaming_stores(dtype, leaky):
    """Every out-of-place pass streamed: blocks, a partial last block, outputs on and off
    a 16-byte boundary, 1 and 3 threads; in place never streams."""
    rng = np.random.default_rng(5)
    n = 3 * 1024 + 64 * 7 + 5
    x, g = sample(dtype, n, rng), sample(dtype, n, rng)
    want_y, want_grad = plain(x, leaky), plain_backward(g, x, leaky)
    want_mask = expected_mask(x, leaky)
    buffer = np.empty(n + 16, dtype)
    for skip in (0, 1):
        start = (-buffer.ctypes.data % 16) // buffer.itemsize + skip
        out = buffer[start : start + n]
        with thresholds(stream_min_bytes=0, parallel_min_bytes=1024):
            for n_threads in (1, 3):
                with fastact.threads(n_threads):
                    y, mask = forward(x, leaky, out=out)
                    assert y is out
                    assert_bitwise_equal(out, want_y)
                    np.testing.assert_array_equal(mask, want_mask)
                    assert backward(g, mask, leaky, out=out) is out
                    assert_bitwise_equal(out, want_grad)
                    in_place = x.copy()
                    forward(in_place, leaky, out=in_place)
                    assert_bitwise_equal(in_place, want_y)


@requires_compiled
def test_gil_released():
    x = np.random.default_rng(1).standard_normal(4_000_000).astype(np.float32)
    y, mask = fastact.relu_with_mask(x)
    assert python_runs_during(lambda: fastact.relu_with_mask(x, out=y, mask=mask))
    assert python_runs_during(lambda: fastact.relu_backward_mask(x, mask, out=y))


@requires_compiled
def test_loops_are_the_selected_build():
    from fastact import _mask_kernels

    assert _mask_kernels.ISA == fastact.show_config(print_out=False)["simd"]


@pytest.mark.slow
@requires_compiled
@pytest.mark.parametrize("build", other_runnable_builds())
def test_every_runnable_build_too(build):
    """This file's tests and the bias functions' (whose vector passes are per build too)."""
    run_tests_under_build(build, __file__, str(Path(__file__).with_name("test_bias.py")))
