"""Bias + activation: the same bits as the plain functions on ``x + bias``; the bias
gradient within 1 ulp of the exact sum and the same bits for any thread count."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bitwise import (
    KERNEL_FLOAT_DTYPES,
    assert_bitwise_equal,
    assert_guards_intact,
    at_offset,
    is_bfloat16,
    ml_dtypes,
    requires_compiled,
    sample,
    thresholds,
)

import fastact
from fastact import _masks

LEAKY = (False, True)
SHAPES = ((1,), (9,), (3, 5), (7, 13), (64, 64), (300, 7), (33, 1000), (5, 3, 17), (0, 4))


def with_bias(x, bias, leaky, slope=0.2):
    if leaky:
        return fastact.bias_leaky_relu_with_mask(x, bias, slope)
    return fastact.bias_relu_with_mask(x, bias)


def bias_backward(g, mask, leaky, slope=0.2):
    if leaky:
        return fastact.bias_leaky_relu_backward(g, mask, slope)
    return fastact.bias_relu_backward(g, mask)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable values of a's type lie between a and b (finite values)."""
    info = ml_dtypes.finfo(a.dtype) if is_bfloat16(a.dtype) else np.finfo(a.dtype)
    wide_a, wide_b = a.astype(np.float64), b.astype(np.float64)
    exponent = np.floor(np.log2(np.maximum(np.abs(wide_b), float(info.smallest_normal))))
    spacing = 2.0 ** (exponent - info.nmant)
    return np.abs(wide_a - wide_b) / spacing


@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_forward_is_the_plain_function_of_the_sum(dtype, leaky):
    rng = np.random.default_rng(21)
    for shape in SHAPES:
        x = sample(dtype, math.prod(shape), rng).reshape(shape)
        bias = sample(dtype, shape[-1], rng)
        with np.errstate(all="ignore"):
            z = x + bias
        y, mask = with_bias(x, bias, leaky)
        y_plain, mask_plain = (
            fastact.leaky_relu_with_mask(z, 0.2) if leaky else fastact.relu_with_mask(z)
        )
        assert_bitwise_equal(y, y_plain)
        np.testing.assert_array_equal(mask, mask_plain)
        alone = fastact.bias_leaky_relu(x, bias, 0.2) if leaky else fastact.bias_relu(x, bias)
        assert_bitwise_equal(alone, y_plain)
        for view in (np.asfortranarray(x), x[..., ::-1][..., ::-1]):
            assert_bitwise_equal(with_bias(view, bias, leaky)[0], y_plain)


@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_forward_at_every_alignment(dtype, leaky):
    # Without a mask the first block ends where out crosses a 64-byte boundary: out at
    # every element offset in a cache line, x at the same one and at another, several
    # blocks of rows that do not divide them, between guard bytes.
    rng = np.random.default_rng(22)
    itemsize = np.dtype(dtype).itemsize
    x = sample(dtype, 101 * 37, rng).reshape(101, 37)
    bias = sample(dtype, 37, rng)
    want = with_bias(x, bias, leaky)[0]
    for offset in range(0, 64, itemsize):
        for x_offset in {offset, (offset + 24) % 64 // itemsize * itemsize}:
            out = at_offset(np.zeros_like(x), offset)
            xs = at_offset(x, x_offset)
            if leaky:
                got = fastact.bias_leaky_relu(xs, bias, 0.2, out=out)
            else:
                got = fastact.bias_relu(xs, bias, out=out)
            assert got is out
            assert_bitwise_equal(out, want)
            assert_guards_intact(out)


@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_backward_gradients(dtype, leaky):
    rng = np.random.default_rng(22)
    for shape in SHAPES:
        n = math.prod(shape)
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        _, mask = with_bias(x, np.zeros(shape[-1], dtype), leaky)
        grad, grad_bias = bias_backward(g, mask, leaky)
        expected = (
            fastact.leaky_relu_backward_mask(g, mask, 0.2)
            if leaky
            else fastact.relu_backward_mask(g, mask)
        )
        assert_bitwise_equal(grad, expected)
        assert grad_bias.dtype == grad.dtype and grad_bias.shape == (shape[-1],)
        columns = np.asarray(expected).reshape(-1, shape[-1]).astype(np.float64)
        exact = np.array([math.fsum(columns[:, j]) for j in range(shape[-1])])
        limit = 4 if np.dtype(dtype) == np.float64 else 1
        assert (ulp_distance(grad_bias, exact.astype(dtype)) <= limit).all(), shape
        if n:
            _, reference = _masks.reference_bias_backward(g, mask, leaky, 0.2)
            assert (ulp_distance(grad_bias, reference) <= limit).all()


def test_float64_bias_gradient_is_compensated():
    # Terms of wildly different sizes: a plain float64 sum loses the small ones.
    rng = np.random.default_rng(23)
    rows = 20000
    g = (rng.standard_normal((rows, 3)) * 10.0 ** rng.integers(-8, 9, (rows, 3))).astype(
        np.float64
    )
    mask = np.full((g.size + 7) // 8, 0xFF, np.uint8)
    _, grad_bias = fastact.bias_relu_backward(g, mask)
    exact = np.array([math.fsum(g[:, j]) for j in range(3)])
    assert (ulp_distance(grad_bias, exact) <= 4).all(), (grad_bias, exact)


@requires_compiled
@pytest.mark.parametrize("leaky", LEAKY)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_same_bits_for_any_thread_count(dtype, leaky):
    """Threads, and streaming stores, change nothing; (140000, 31) has as many row chunks
    as the bias gradient allows, (70001, 3) rows that straddle the mask bytes, (100, 5000)
    chunks as deep as their partial sums ask."""
    rng = np.random.default_rng(24)
    for shape in ((4099, 13), (1000, 257), (70001, 3), (140000, 31), (100, 5000)):
        x = rng.standard_normal(shape).astype(dtype)
        bias = rng.standard_normal(shape[-1]).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        y1, mask1 = with_bias(x, bias, leaky)
        grad1, bias1 = bias_backward(g, mask1, leaky)
        exact = np.array([math.fsum(column) for column in grad1.astype(np.float64).T])
        limit = 4 if np.dtype(dtype) == np.float64 else 1  # the documented bounds
        assert (ulp_distance(bias1, exact.astype(dtype)) <= limit).all()
        for count, stream_min_bytes in ((1, 0), (2, None), (3, 0), (7, None)):
            settings = {"stream_min_bytes": stream_min_bytes} if stream_min_bytes == 0 else {}
            with thresholds(parallel_min_bytes=4096, **settings), fastact.threads(count):
                y, mask = with_bias(x, bias, leaky)
                alone = (
                    fastact.bias_leaky_relu(x, bias, 0.2) if leaky else fastact.bias_relu(x, bias)
                )
                grad, grad_bias = bias_backward(g, mask, leaky)
            assert_bitwise_equal(y, y1)
            assert_bitwise_equal(alone, y1)
            np.testing.assert_array_equal(mask, mask1)
            assert_bitwise_equal(grad, grad1)
            assert_bitwise_equal(grad_bias, bias1)


def test_bad_bias_and_nothing_written():
    x = np.ones((4, 3), np.float32)
    out = np.full((4, 3), 7.0, np.float32)
    with pytest.raises(ValueError, match=r"bias has shape \(4,\) but x's last axis has length 3"):
        fastact.bias_relu(x, np.ones(4, np.float32), out=out)
    with pytest.raises(ValueError, match="bias has shape"):
        fastact.bias_relu(x, np.ones((1, 3), np.float32), out=out)
    with pytest.raises(TypeError, match="bias has dtype float64 but x has dtype float32"):
        fastact.bias_relu_with_mask(x, np.ones(3), out=out)
    with pytest.raises(ValueError, match="0-d"):
        fastact.bias_relu(np.float32(1.0), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="0-d"):
        fastact.bias_relu_backward(np.float32(1.0), np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match=r"mask has length 1 but 12 elements need"):
        fastact.bias_leaky_relu_backward(x, np.zeros(1, np.uint8), out=out)
    with pytest.raises(TypeError, match="mask has dtype"):
        fastact.bias_relu_backward(x, np.zeros(2, np.int8), out=out)
    assert (out == 7.0).all()


def test_in_place():
    rng = np.random.default_rng(25)
    x = rng.standard_normal((50, 9)).astype(np.float32)
    bias = rng.standard_normal(9).astype(np.float32)
    expected, mask = fastact.bias_relu_with_mask(x, bias)
    y = x.copy()
    assert fastact.bias_relu(y, bias, out=y) is y
    assert_bitwise_equal(y, expected)
    g = rng.standard_normal((50, 9)).astype(np.float32)
    grad_expected, bias_expected = fastact.bias_relu_backward(g, mask)
    grad, grad_bias = fastact.bias_relu_backward(g, mask, out=g)
    assert grad is g
    assert_bitwise_equal(grad, grad_expected)
    assert_bitwise_equal(grad_bias, bias_expected)


@requires_compiled
@pytest.mark.parametrize("leaky", LEAKY)
def test_overlapping_operands_read_before_written(leaky):
    # The common call goes straight to the compiled loop; one whose out or mask overlaps
    # an input it still reads (the bias, every row) must take the validated path, which
    # computes apart and copies: the result of the same call on separate arrays.
    rng = np.random.default_rng(27)
    slope = 0.2
    x = rng.standard_normal((4, 9)).astype(np.float32)
    bias = rng.standard_normal(9).astype(np.float32)
    want, want_mask = with_bias(x, bias, leaky, slope)
    fast = _masks._bias_forward_fast(leaky, True, x, bias, slope, None, None)
    assert fast is not None, "the common call declined the compiled path"
    assert_bitwise_equal(fast[0], want)

    block = np.vstack([bias, x])
    out = block[:4]  # the bias is out's first row
    got = (
        fastact.bias_leaky_relu(x, block[0], slope, out=out)
        if leaky
        else (fastact.bias_relu(x, block[0], out=out))
    )
    assert got is out
    assert_bitwise_equal(out, want)

    packed = np.zeros(64, np.uint8)  # the mask inside the bias's bytes
    shared_bias = packed[:36].view(np.float32)
    shared_bias[...] = bias
    y, mask = with_bias_into(x, shared_bias, leaky, slope, mask=packed[:5])
    assert_bitwise_equal(y, want)
    np.testing.assert_array_equal(mask, want_mask)


def with_bias_into(x, bias, leaky, slope, mask):
    if leaky:
        return fastact.bias_leaky_relu_with_mask(x, bias, slope, mask=mask)
    return fastact.bias_relu_with_mask(x, bias, mask=mask)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_bias_gradient_of_infinities_is_ieees_sum(dtype):
    # A compensated sum turns an infinite term into NaN (its error term is inf - inf);
    # the sum of a column holding infinities of one sign is that infinity, as in torch.
    inf = float("inf")
    g = np.array([[1.0, -inf, inf, 2.0], [inf, 3.0, -inf, np.nan], [0.5, -inf, 1.0, 1.0]])
    g = g.astype(dtype)
    mask = np.full((g.size + 7) // 8, 0xFF, np.uint8)
    with np.errstate(invalid="ignore"):
        want = g.astype(np.float64).sum(axis=0).astype(dtype)
    for func in (fastact.bias_relu_backward, fastact.bias_leaky_relu_backward):
        assert_bitwise_equal(func(g, mask)[1], want)
    # An empty last axis: no column, no sum.
    grad, grad_bias = fastact.bias_relu_backward(np.empty((3, 0), dtype), np.empty(0, np.uint8))
    assert grad.shape == (3, 0) and grad_bias.shape == (0,)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_bias_gradient_beyond_the_types_range_is_infinite_quietly(dtype):
    # Finite terms whose sum passes the type's largest value round to an infinity, with
    # no overflow warning (CI turns warnings into errors); the other columns are exact.
    info = ml_dtypes.finfo(dtype) if is_bfloat16(np.dtype(dtype)) else np.finfo(dtype)
    largest = info.max
    g = np.array([[largest, -largest, 1.0, largest], [largest, -largest, 2.0, -largest]], dtype)
    mask = np.full(1, 0xFF, np.uint8)
    for func in (fastact.bias_relu_backward, fastact.bias_leaky_relu_backward):
        grad, grad_bias = func(g, mask)
        assert_bitwise_equal(grad, g)
        want = np.array([np.inf, -np.inf, 3.0, 0.0]).astype(dtype)
        assert_bitwise_equal(grad_bias, want)
