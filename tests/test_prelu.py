"""PReLU: the per-channel leaky rule and its fused backward with the weight gradient."""

import math

import numpy as np
import pytest
from bitwise import (
    BFLOAT16,
    BFLOAT16_DTYPES,
    KERNEL_FLOAT_DTYPES,
    assert_bitwise_equal,
    assert_guards_intact,
    at_offset,
    edge_values,
    finfo,
    other_runnable_builds,
    requires_compiled,
    run_tests_under_build,
    sample,
)

import fastact
from fastact import _reference


def DTYPE_IDS(d):
    return np.dtype(d).name


# (shape, channels): NCHW with long runs, an (N, C) batch (runs of one), NCL, 1-D, 0-d;
# runs past the loops' blocks of 256 with a tail of 4 (an (N, C) batch over several tiles
# of positions and chunks of rows: the exact-sum test); short rows of 50 over several
# float32 blocks of 16-bit rows (48 positions in vectors, 2 after).
SHAPES = [((3, 4, 5, 7), 4), ((9, 6), 6), ((2, 3, 70), 3), ((2, 5, 1, 3), 5), ((37,), 1)]
SHAPES += [((3, 2, 300), 2), ((40, 50), 50)]


def weights(dtype, channels, rng):
    w = sample(dtype, channels, rng)
    return w


def data(dtype, shape, rng):
    n = math.prod(shape)
    return sample(dtype, n, rng).reshape(shape), sample(dtype, n, rng).reshape(shape)


def ulp(value: float, dtype) -> float:
    info = finfo(dtype)
    return max(abs(value), float(info.tiny)) * float(info.eps)


def backward_matching_reference(g, x, w):
    """``prelu_backward``'s two results, after checking both against the reference's
    bits (the edge values' sums overflow: no warning)."""
    with np.errstate(all="ignore"):
        gi, gw = fastact.prelu_backward(g, x, w)
        gi_ref, gw_ref = _reference.prelu_backward(g, x, np.asarray(w))
    assert_bitwise_equal(gi, gi_ref)
    assert_bitwise_equal(gw, gw_ref)
    return gi, gw


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("shape", "channels"), SHAPES)
def test_matches_reference(dtype, shape, channels):
    rng = np.random.default_rng(1)
    g, x = data(dtype, shape, rng)
    for w in (weights(dtype, channels, rng), weights(dtype, 1, rng), weights(dtype, 1, rng)[0]):
        assert_bitwise_equal(fastact.prelu(x, w), _reference.prelu(x, np.asarray(w)))
        # The weight gradients: both within an ulp of the exact sum (see below).
        _, gw = backward_matching_reference(g, x, w)
        assert np.shape(gw) == np.shape(w)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_edge_values_against_leaky_relu(dtype):
    # Every edge value of x with every edge value as a weight: the leaky rule exactly.
    edges = edge_values(dtype)
    x = np.tile(edges, (edges.size, 1))[:, :, None]  # (C, edges, 1) -> channel axis 1
    x = np.ascontiguousarray(np.moveaxis(x, 0, 1))  # (edges, C, 1)
    for w_index, w in enumerate(edges):
        want = _reference.leaky_relu(x[:, w_index], float(w))
        assert_bitwise_equal(fastact.prelu(x, edges)[:, w_index], want)
    g = np.ones_like(x)
    gi, _ = fastact.prelu_backward(g, x, edges)
    for w_index, w in enumerate(edges):
        assert_bitwise_equal(
            gi[:, w_index], _reference.leaky_relu_backward(g[:, w_index], x[:, w_index], float(w))
        )


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("shape", "channels"), [*SHAPES, ((40, 64), 64)])
def test_backward_into_out_and_in_place(dtype, shape, channels):
    # out= gets the same grad_input and the same weight gradient, whether it is a fresh
    # array, a non-contiguous one, or an input itself (the loops read g again after
    # writing grad_input, so an input as out goes through a buffer).
    rng = np.random.default_rng(5)
    g, x = data(dtype, shape, rng)
    w = weights(dtype, channels, rng)
    want_gi, want_gw = _reference.prelu_backward(g, x, w)
    outs = {
        "fresh": lambda: np.full(shape, 7, dtype),
        "strided": lambda: np.full((*shape, 2), 7, dtype)[..., 0],
        "grad_output": lambda: g.copy(),
        "x": lambda: x.copy(),
    }
    for name, make in outs.items():
        gk, xk = g.copy(), x.copy()
        out = make()
        if name == "grad_output":
            gk = out
        elif name == "x":
            xk = out
        gi, gw = fastact.prelu_backward(gk, xk, w, out=out)
        assert gi is out, name
        assert_bitwise_equal(gi, want_gi)
        assert_bitwise_equal(gw, want_gw)


@pytest.mark.parametrize("dtype", (np.float16, *BFLOAT16_DTYPES), ids=DTYPE_IDS)
def test_backward_over_every_16_bit_pattern(dtype):
    # Every bit pattern as x and as g, in runs of 4096 (the AVX-512 build widens and
    # rounds such runs in the registers, the rest through blocks or element by element),
    # with slopes at the rules' edges: the same bits as the reference, sums included.
    rng = np.random.default_rng(16)
    patterns = rng.permutation(np.arange(1 << 16, dtype=np.uint16)).view(dtype).reshape(4, 4, -1)
    other = rng.integers(0, 1 << 16, patterns.shape, dtype=np.uint16).view(dtype)
    for w in ([0.25, -3.0, np.nan, np.inf], [1e-30, 0.0, -0.0, 3e4]):
        w = np.array(w).astype(dtype)
        for g, x in ((other, patterns), (patterns, other)):
            backward_matching_reference(g, x, w)


@pytest.mark.parametrize("dtype", (np.float16, *BFLOAT16_DTYPES), ids=DTYPE_IDS)
def test_backward_with_sparse_edge_values_in_long_runs(dtype):
    # Ordinary values with an edge value here and there, in runs of 4096: most vectors of
    # 32 take the fast path (bfloat16's conversion instruction, exact float32 products),
    # and the few with a zero, a subnormal or an out-of-range product take the exact one;
    # the two mixed in one run still give the reference's bits, sums included.
    rng = np.random.default_rng(17)
    shape = (2, 3, 4096)
    g, x = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    edges = edge_values(dtype)
    for v in (g, x):
        flat = v.reshape(-1)
        at = rng.choice(flat.size, flat.size // 200, replace=False)
        flat[at] = rng.choice(edges, at.size)
    info = finfo(dtype)
    w = np.array([0.25, float(info.smallest_normal), float(info.max)]).astype(dtype)
    with np.errstate(all="ignore"):  # the scaled copies overflow, and so do the sums
        # Products near float32's bottom (bfloat16's gradient and terms) and beyond the top.
        pairs = ((g, x), (g * np.asarray(info.smallest_normal, dtype), x), (g, x * 1e3))
    for gk, xk in pairs:
        backward_matching_reference(gk, xk, w)


@pytest.mark.parametrize("dtype", (np.float32, *BFLOAT16_DTYPES), ids=DTYPE_IDS)
def test_weight_gradient_terms_beyond_float32_range(dtype):
    # Terms that float32 cannot hold, in long runs (x > 0 elsewhere: no other term).
    # Channel 0: 2^-134 (half bfloat16's smallest subnormal, 2^-133) plus a term below
    # float32's subnormals; exactly summed, the total is just above the tie and rounds up
    # to 2^-133, where a float32 product (0) would leave the tie and round to 0.
    # Channel 1: 2^128 - 1.5 * 2^127 = 2^126, where a float32 product would be inf.
    x = np.ones((1, 2, 4096))
    g = np.ones_like(x)
    x[0, 0, [5, 20]] = -(2.0**-67), -(2.0**-75)
    g[0, 0, [5, 20]] = -(2.0**-67), -(1 + 2**-7) * 2.0**-76
    x[0, 1, [3, 40]] = -(2.0**64), -1.5 * 2.0**63
    g[0, 1, [3, 40]] = -(2.0**64), 2.0**64
    x, g = x.astype(dtype), g.astype(dtype)
    w = np.full(2, 0.25, dtype)
    _, gw = backward_matching_reference(g, x, w)
    bottom = 2.0**-133 if np.dtype(dtype).itemsize == 2 else 2.0**-134
    assert gw.astype(np.float64).tolist() == [bottom, 2.0**126]


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
# Long runs; short ones over 2 chunks; short rows of 50 (16-bit: a block of rows at a time).
@pytest.mark.parametrize("shape", [(4, 5, 300), (130, 700), (400, 50)])
def test_weight_gradient_is_within_an_ulp_of_the_exact_sum(dtype, shape):
    rng = np.random.default_rng(2)
    # Terms of both signs and many magnitudes, none so large that the sum overflows.
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3, shape)
    x = x.astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    channels = shape[1]
    w = np.full(channels, 0.25, dtype)
    gi, gw = fastact.prelu_backward(g, x, w)
    assert_bitwise_equal(gi, _reference.prelu_backward(g, x, w)[0])
    assert_bitwise_equal(fastact.prelu(x, w), _reference.prelu(x, w))
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    terms = np.moveaxis(np.where(x64 > 0, 0.0, x64 * g64), 1, 0).reshape(channels, -1)
    exact = [math.fsum(row.tolist()) for row in terms]
    tolerance = 4 if np.dtype(dtype) == np.float64 else 1
    for got, want in zip(gw.astype(np.float64), exact, strict=True):
        assert abs(got - want) <= tolerance * ulp(want, dtype), (got, want)


@pytest.mark.slow
def test_same_bits_for_any_thread_count():
    rng = np.random.default_rng(3)
    # Long runs (NCHW) and short ones (an (N, C) batch), each over many chunks; wide rows
    # (4096 channels), whose chunks are as deep as their partial sums ask.
    for shape in ((64, 16, 64, 64), (1 << 16, 48), (100, 4096)):
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(x.shape).astype(np.float32)
        w = rng.standard_normal(shape[1]).astype(np.float32)
        with fastact.threads(1):
            one = fastact.prelu(x, w), *fastact.prelu_backward(g, x, w)
        for n in (2, 3, 4):
            with fastact.threads(n):
                many = fastact.prelu(x, w), *fastact.prelu_backward(g, x, w)
            for a, b in zip(one, many, strict=True):
                assert_bitwise_equal(a, b)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_short_runs_with_out_at_every_offset_in_a_line(dtype):
    # Runs shorter than LONG_RUN go row by row (a row: as many of the array's rows as
    # reach 1024 elements), into another array in 256-byte chunks and a tail
    # (forward_row_ahead): rows of whole chunks and not, out at every element offset in a
    # line, x with it and apart, and in place.
    rng = np.random.default_rng(12)
    itemsize = np.dtype(dtype).itemsize
    for shape in ((40, 64), (33, 67), (50, 5), (12, 3, 7), (300, 1)):
        x = sample(dtype, math.prod(shape), rng).reshape(shape)
        w = weights(dtype, shape[1], rng)
        want = _reference.prelu(x, w)
        for offset in range(0, 64, itemsize):
            for x_offset in {offset, (offset + 24) % 64 // itemsize * itemsize}:
                out = at_offset(np.zeros_like(x), offset)
                assert fastact.prelu(at_offset(x, x_offset), w, out=out) is out
                assert_bitwise_equal(out, want)
                assert_guards_intact(out)
            y = at_offset(x, offset)
            assert fastact.prelu(y, w, out=y) is y
            assert_bitwise_equal(y, want)
            assert_guards_intact(y)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_short_runs_keep_subnormal_products(dtype):
    # Products just below the smallest normal: rounded, not flushed (bfloat16's rows are
    # narrowed 32 at a time by an instruction that flushes them; such a vector goes
    # through the integer code).
    rng = np.random.default_rng(13)
    tiny = float(finfo(dtype).tiny)
    x = (-np.abs(rng.standard_normal((64, 64))) * 1.5 * tiny).astype(dtype)
    w = np.full(64, 0.25, dtype)
    got = fastact.prelu(x, w)
    assert_bitwise_equal(got, _reference.prelu(x, w))
    magnitudes = np.abs(got.astype(np.float64))
    assert ((magnitudes > 0) & (magnitudes < tiny)).sum() > got.size // 2


def test_any_layout_gives_the_same_result():
    rng = np.random.default_rng(4)
    g, x = data(np.float32, (6, 4, 10), rng)
    w = weights(np.float32, 4, rng)
    want = fastact.prelu(x, w), *fastact.prelu_backward(g, x, w)
    for convert in (
        np.asfortranarray,
        lambda a: a.astype(">f4"),
        lambda a: np.repeat(a, 2, axis=2)[:, :, ::2],
        lambda a: np.frombuffer(b"\0" + a.tobytes(), np.float32, offset=1).reshape(a.shape),
    ):
        got = fastact.prelu(convert(x), w), *fastact.prelu_backward(convert(g), convert(x), w)
        for a, b in zip(got, want, strict=True):
            assert_bitwise_equal(a, b)
    out = np.empty_like(x)
    assert fastact.prelu(x, w, out=out) is out
    assert_bitwise_equal(out, want[0])
    y = x.copy()
    assert fastact.prelu(y, w, out=y) is y
    assert_bitwise_equal(y, want[0])


def test_zero_d_and_empty():
    w = np.float32(0.5)
    assert fastact.prelu(np.float32(-2.0), w) == np.float32(-1.0)
    gi, gw = fastact.prelu_backward(np.float32(3.0), np.float32(-2.0), w)
    assert gi == np.float32(1.5) and gw == np.float32(-6.0)
    empty = np.empty((0, 3, 2), np.float32)
    assert fastact.prelu(empty, np.ones(3, np.float32)).shape == (0, 3, 2)
    gi, gw = fastact.prelu_backward(empty, empty, np.ones(3, np.float32))
    assert gi.shape == (0, 3, 2) and np.array_equal(gw, np.zeros(3, np.float32))
    # No channel at all: one weight for all of them (none) gets the empty sum, 0.
    no_channels = np.empty((2, 0, 3), np.float32)
    for w in (np.float32(0.5), np.ones(1, np.float32), np.ones(0, np.float32)):
        gi, gw = fastact.prelu_backward(no_channels, no_channels, w)
        assert gi.shape == (2, 0, 3) and np.shape(gw) == np.shape(w)
        assert_bitwise_equal(gw, _reference.prelu_backward(no_channels, no_channels, w)[1])
        assert (np.asarray(gw) == 0).all()


def test_bad_weight_is_a_clear_error():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\) but x has shape \(2, 3, 4\)"):
        fastact.prelu(x, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="weight has shape"):
        fastact.prelu_backward(x, x, np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"one channel \(a 1-D x has no axis 1\).*hold 1 value$"):
        fastact.prelu(np.ones(2, np.float32), np.ones(2, np.float32))
    # A NumPy scalar is an array of its own dtype here (torch's weight is a tensor).
    with pytest.raises(TypeError, match="weight has dtype float64 but x has dtype float32"):
        fastact.prelu(x, np.float64(0.5))
    with pytest.raises(TypeError, match="weight has dtype float64 but x has dtype float32"):
        fastact.prelu(x, np.ones(3))
    with pytest.raises(TypeError, match="weight must be"):
        fastact.prelu(x, "0.25")
    with pytest.raises(TypeError, match="x has dtype int64"):
        fastact.prelu(np.ones(3, np.int64), 0.25)
    out = np.full((2, 3, 4), 7.0, np.float32)
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu(x, np.ones(5, np.float32), out=out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_a_list_of_numbers_takes_the_dtype_of_x(dtype):
    # Like a Python number, a list or tuple of them has no dtype of its own.
    rng = np.random.default_rng(6)
    g, x = data(dtype, (3, 4, 5), rng)
    values = [0.25, -1.5, 0.0, 3.0]
    w = np.array(values, np.float64).astype(dtype)
    for given in (values, tuple(values)):
        assert_bitwise_equal(fastact.prelu(x, given), fastact.prelu(x, w))
        got, want = fastact.prelu_backward(g, x, given), fastact.prelu_backward(g, x, w)
        for got_one, want_one in zip(got, want, strict=True):
            assert_bitwise_equal(got_one, want_one)
    assert_bitwise_equal(fastact.prelu(x, [0.5]), fastact.prelu(x, np.full(1, 0.5, dtype)))


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_a_python_float_weight_is_rounded_as_torch_rounds_it(dtype):
    # A float takes x's dtype as NumPy's cast rounds it (to nearest even: 0.1 and the
    # halfway cases), through float32 for the 16-bit types as torch rounds a number into
    # a 16-bit tensor (the two values just above a float16 and a bfloat16 midpoint round
    # up directly, down through float32), ±0, ±inf and NaN included, on 1-D and N-D x; a
    # finite value beyond the dtype is refused with out untouched.
    rng = np.random.default_rng(7)
    x = sample(dtype, 5 * 3 * 17, rng).reshape(5, 3, 17)
    largest = float(finfo(dtype).max)
    halfway = 1.0 + 2.0**-24  # float32's halfway case: rounds to 1.0
    for value in (
        0.25,
        0.1,
        halfway,
        1.0 + 3 * 2.0**-24,
        1.0 + 2.0**-11 + 2.0**-40,
        -(1.0 + 2.0**-8 + 2.0**-40),
        -0.0,
        0.0,
        -3.5,
        math.inf,
        -math.inf,
        math.nan,
        1e-300,
        largest,
        -largest,
    ):
        w = np.asarray(np.float64(value))
        w = (w.astype(np.float32) if np.dtype(dtype).itemsize == 2 else w).astype(dtype)
        for xs in (x, x.ravel(), x[0]):
            assert_bitwise_equal(fastact.prelu(xs, value), _reference.prelu(xs, w))
            out = np.empty_like(xs)
            assert fastact.prelu(xs, value, out=out) is out
            assert_bitwise_equal(out, _reference.prelu(xs, w))
    if largest < 1e300:  # every finite Python float fits float64
        out = np.full_like(x, 7.0)
        with pytest.raises(ValueError, match="overflows"):
            fastact.prelu(x, 1e300, out=out)
        assert (out == 7.0).all()


def test_a_bad_list_of_weights_is_a_clear_error():
    x = np.ones((2, 3), np.float16)
    out = np.full((2, 3), 7.0, np.float16)
    with pytest.raises(ValueError, match=r"weight value 100000\.0 overflows float16"):
        fastact.prelu(x, [0.5, 1e5, 0.5], out=out)
    with pytest.raises(TypeError, match="weight must hold real numbers"):
        fastact.prelu_backward(x, x, ["a", "b", "c"])
    with pytest.raises(TypeError, match="weight must hold real numbers"):
        fastact.prelu(x, [1j, 1, 1], out=out)
    for weight in (10**400, [0.5, 10**400, 0.5]):
        with pytest.raises(ValueError, match="weight holds a number too large for a float"):
            fastact.prelu(x, weight, out=out)
    with pytest.raises(ValueError, match="weight holds a number too large for a float"):
        fastact.prelu_backward(x, x, [0.5, 10**400, 0.5])
    with pytest.raises(ValueError, match=r"weight has shape \(2,\) but x has shape \(2, 3\)"):
        fastact.prelu(x, [1, 2], out=out)
    assert (out == 7.0).all()
    # inf and NaN are values, not overflow.
    assert np.isnan(fastact.prelu(-x, [np.nan, np.inf, 1])[0, 0])


def test_weight_gradient_beyond_float64_is_infinite():
    # Finite terms whose sum overflows float64: -inf, in the loops and in the reference
    # (math.fsum alone raises OverflowError on such a sum).
    x = np.full((3, 2, 5), -1e154)
    g = np.full(x.shape, 1.7e154)
    want = np.full(2, -np.inf)
    assert_bitwise_equal(fastact.prelu_backward(g, x, np.ones(2))[1], want)
    assert_bitwise_equal(_reference.prelu_backward(g, x, np.ones(2))[1], want)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_one_weight_shared_by_channels_adds_their_infinite_sums_as_ieee(dtype):
    # The channels' sums are added exactly into the one weight's gradient: opposite
    # infinities give NaN and a total beyond float64 -inf, as torch and the reference
    # give (math.fsum would raise on either).
    x = -np.ones((1, 2, 3), dtype)
    g = np.zeros((1, 2, 3), dtype)
    g[0, 0, 0], g[0, 1, 0] = np.inf, -np.inf
    for weight in (np.array([0.25], dtype), 0.25):
        grad_weight = fastact.prelu_backward(g, x, weight)[1]
        assert np.isnan(grad_weight).all(), grad_weight
    if dtype == np.float64:
        g = np.full((1, 2), 1.5e308)
        x = -np.ones((1, 2))
        assert_bitwise_equal(fastact.prelu_backward(g, x, np.array([0.25]))[1], [-np.inf])


torch = pytest.importorskip("torch")
from torch_bridge import from_torch, to_torch  # noqa: E402

F = torch.nn.functional


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("shape", "channels"), SHAPES)
def test_matches_torch(dtype, shape, channels):
    rng = np.random.default_rng(5)
    g, x = data(dtype, shape, rng)
    w = weights(dtype, channels, rng)
    xt, wt = to_torch(x).requires_grad_(True), to_torch(w).requires_grad_(True)
    yt = F.prelu(xt, wt)
    assert_bitwise_equal(fastact.prelu(x, w), from_torch(yt, dtype))
    gi_t, gw_t = torch.autograd.grad(yt, (xt, wt), to_torch(g))
    gi, gw = fastact.prelu_backward(g, x, w)
    assert_bitwise_equal(gi, from_torch(gi_t, dtype))
    # The weight gradient: torch sums in its own order and precision, so close, not the
    # same bits; on ordinary values, where neither sum overflows.
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    xt, wt = to_torch(x).requires_grad_(True), to_torch(w).requires_grad_(True)
    (gw_t,) = torch.autograd.grad(F.prelu(xt, wt), (wt,), to_torch(g))
    _, gw = fastact.prelu_backward(g, x, w)
    terms = np.where(x.astype(np.float64) > 0, 0.0, x.astype(np.float64) * g.astype(np.float64))
    by_channel = np.moveaxis(terms, min(1, x.ndim - 1), 0).reshape(channels, -1)
    scale = np.maximum(np.abs(by_channel).sum(1), 1.0)
    tolerance = 0.01 if np.dtype(dtype).itemsize == 2 else 1e-5
    got, want = gw.astype(np.float64), from_torch(gw_t, dtype).astype(np.float64)
    assert (np.abs(got - want) <= tolerance * scale).all(), (got, want)


# Gradients over rows of 16 to 80 positions (whole vectors, a tail, rows longer than the
# AVX-512 pass that holds its sums in registers; 16-bit rows through it a float32 block of
# rows at a time) and over long runs; bfloat16 where ml_dtypes is installed.
_SUM_SHAPES = ((700, 16), (300, 48), (2000, 64), (513, 50), (257, 80), (9, 64, 3, 3), (3, 5, 300))
_SUM_DTYPES = ["float16", "float32", "float64"] + ([] if BFLOAT16 is None else ["bfloat16"])
_SUM_SCRIPT = """
import hashlib, sys
import numpy as np
import fastact
dtypes = [np.dtype(name) for name in {dtypes} if name != "bfloat16"]
if "bfloat16" in {dtypes}:
    import ml_dtypes
    dtypes.append(np.dtype(ml_dtypes.bfloat16))
rng = np.random.default_rng(11)
for shape in {shapes}:
    for dtype in dtypes:
        x = rng.standard_normal(shape).astype(dtype)
        x.ravel()[::7] = 0.0
        x.ravel()[::11] = -0.0
        g = rng.standard_normal(shape).astype(dtype)
        grad_input, grad_weight = fastact.prelu_backward(g, x, np.full(shape[1], 0.25, dtype))
        print(hashlib.sha256(grad_input.tobytes() + grad_weight.tobytes()).hexdigest())
"""


@pytest.mark.slow
@requires_compiled
@pytest.mark.parametrize("build", other_runnable_builds())
def test_weight_gradient_has_the_same_bits_in_every_build(build):
    # Each build adds each term to its sum in the same order (the sums of every position
    # of a short row over the rows in row order; the 32 lanes of a long run), so the bits
    # agree, not just their distance from the exact sum.
    import os
    import subprocess
    import sys
    import tempfile

    script = _SUM_SCRIPT.format(shapes=_SUM_SHAPES, dtypes=_SUM_DTYPES)
    digests = []
    for env in ({}, {"FASTACT_SIMD": build}):
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **env},
            cwd=tempfile.gettempdir(),  # the installed package, not the source tree
        )
        assert result.returncode == 0, result.stderr[-3000:]
        digests.append(result.stdout.split())
    assert len(digests[0]) == len(_SUM_DTYPES) * len(_SUM_SHAPES)
    assert digests[0] == digests[1]


@pytest.mark.slow
@requires_compiled
@pytest.mark.parametrize("build", other_runnable_builds())
def test_every_runnable_build_too(build):
    """This file's tests in each other loop build: the channel loops (the AVX-512 float32
    pass, the generic vector pass, the scalar one) give the same bits in every build."""
    run_tests_under_build(build, __file__)
