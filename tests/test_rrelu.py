"""RReLU: the mean slope in evaluation, NumPy-drawn slopes in training."""

import numpy as np
import pytest
from bitwise import (
    BFLOAT16_DTYPES,
    KERNEL_FLOAT_DTYPES,
    assert_bitwise_equal,
    edge_values,
    sample,
)

import fastact
from fastact import _reference, _rrelu


def DTYPE_IDS(d):
    return np.dtype(d).name


BOUNDS = [(1 / 8, 1 / 3), (0.0, 0.0), (0.2, 0.2), (-0.5, 0.5), (0.1, 3.0), (1e-45, 2e-45)]


def data(dtype):
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    edges = edge_values(dtype)
    x, g = (a.ravel() for a in np.meshgrid(edges, edges))
    return np.concatenate([g, sample(dtype, 2000, rng)]), np.concatenate(
        [x, sample(dtype, 2000, rng)]
    )


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_evaluation_is_leaky_relu_at_the_mean_slope(dtype):
    g, x = data(dtype)
    for lower, upper in BOUNDS:
        slope = (lower + upper) / 2
        assert_bitwise_equal(fastact.rrelu(x, lower, upper), _reference.leaky_relu(x, slope))
        assert_bitwise_equal(
            fastact.rrelu_backward(g, x, lower, upper),
            _reference.leaky_relu_backward(g, x, slope),
        )


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_training_draws_are_reproducible_and_follow_the_rule(dtype):
    _, x = data(dtype)
    y, noise = fastact.rrelu(x, 0.1, 0.3, training=True, rng=7)
    y2, noise2 = fastact.rrelu(x, 0.1, 0.3, training=True, rng=np.random.default_rng(7))
    assert_bitwise_equal(y, y2)
    assert_bitwise_equal(noise, noise2)
    # The same stream of doubles as NumPy's own Generator.random, drawn in C order.
    y_ref, noise_ref = np.empty_like(x), np.empty_like(x)
    _rrelu._draw_with_numpy(x, y_ref, noise_ref, 0.1, 0.3, np.random.default_rng(7))
    assert_bitwise_equal(y, y_ref)
    assert_bitwise_equal(noise, noise_ref)
    x64 = x.astype(np.float64)
    drew = x64 <= 0
    assert (noise.astype(np.float64)[~drew] == 1).all()  # x > 0 and NaN: noise 1, y = x
    assert_bitwise_equal(y[~drew], x[~drew])
    r = noise.astype(np.float64)[drew]
    assert ((r >= 0.1 * (1 - 1e-2)) & (r <= 0.3 * (1 + 1e-2))).all()
    if not np.dtype(dtype).itemsize == 2:  # there noise is r rounded to 16 bits, y is not
        with np.errstate(invalid="ignore", over="ignore"):
            assert_bitwise_equal(y[drew], x[drew] * noise[drew])


def test_training_draws_are_uniform():
    # Kolmogorov-Smirnov against U[lower, upper]: the largest gap between the empirical
    # and the uniform distribution function, below its 0.1% critical value.
    x = -np.ones(200_000)
    _, noise = fastact.rrelu(x, 0.25, 0.75, training=True, rng=2024)
    r = np.sort((noise - 0.25) / 0.5)
    n = r.size
    gap = max(np.max(np.arange(1, n + 1) / n - r), np.max(r - np.arange(n) / n))
    assert gap < 1.95 / np.sqrt(n), gap
    # And the draws differ between seeds and between calls on one Generator.
    gen = np.random.default_rng(5)
    a, b = (fastact.rrelu(x[:100], training=True, rng=gen)[1] for _ in range(2))
    assert not np.array_equal(a, b)


def test_training_is_the_same_for_any_thread_count_and_layout():
    x = np.random.default_rng(0).standard_normal((300, 400)).astype(np.float32)
    with fastact.threads(1):
        want = fastact.rrelu(x, training=True, rng=3)
    with fastact.threads(2):
        got = fastact.rrelu(np.asfortranarray(x), training=True, rng=3)
    for a, b in zip(want, got, strict=True):
        assert_bitwise_equal(a, b)
    out = np.empty_like(x)
    y, _ = fastact.rrelu(x, training=True, rng=3, out=out)
    assert y is out
    assert_bitwise_equal(out, want[0])


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_training_on_a_misaligned_buffer(dtype):
    # The loops load whole elements: a buffer one byte off is copied first (the sanitized
    # build reports a misaligned load otherwise), with the same draws.
    x = sample(dtype, 301, np.random.default_rng(4))
    raw = np.empty(x.nbytes + 1, np.uint8)[1:]
    misaligned = raw.view(x.dtype)
    misaligned[...] = x
    assert not misaligned.flags.aligned
    for a, b in zip(
        fastact.rrelu(misaligned, training=True, rng=9),
        fastact.rrelu(x, training=True, rng=9),
        strict=True,
    ):
        assert_bitwise_equal(a, b)


def test_training_backward_is_grad_times_noise():
    rng = np.random.default_rng(1)
    g, x = rng.standard_normal((2, 50)).astype(np.float32)
    _, noise = fastact.rrelu(x, training=True, rng=1)
    assert_bitwise_equal(fastact.rrelu_backward(g, x, training=True, noise=noise), g * noise)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    ("lower", "upper", "named"),
    [
        (np.nan, 0.3, "lower"),
        (0.1, np.nan, "upper"),
        (-np.inf, 0.3, "lower"),
        (0.1, np.inf, "upper"),
        (np.inf, np.inf, "lower"),
        (-np.inf, -np.inf, "lower"),
        (np.float32(np.nan), 0.3, "lower"),
    ],
)
def test_bounds_must_be_finite(lower, upper, named, training):
    # torch 2.13: "rrelu: lower bound must be finite, got nan", the lower bound first, in
    # training and evaluation alike.
    x = np.array([-1.0, 2.0], np.float32)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match=rf"{named}=.* is not finite"):
        fastact.rrelu(x, lower, upper, training, rng=0, out=out)
    noise = np.ones_like(x) if training else None
    with pytest.raises(ValueError, match=rf"{named}=.* is not finite"):
        fastact.rrelu_backward(x, x, lower, upper, training, noise, out=out)
    assert_bitwise_equal(out, np.full_like(x, 7.0))


def test_errors():
    x = np.array([-1.0, 1.0], np.float32)
    with pytest.raises(ValueError, match=r"lower=0\.5 is greater than upper=0\.25"):
        fastact.rrelu(x, 0.5, 0.25)
    with pytest.raises(ValueError, match=r"lower=0\.5 is greater than upper=0\.25"):
        fastact.rrelu_backward(x, x, 0.5, 0.25)
    with pytest.raises(ValueError, match="needs the noise"):
        fastact.rrelu_backward(x, x, training=True)
    with pytest.raises(ValueError, match="noise has shape"):
        fastact.rrelu_backward(x, x, training=True, noise=np.ones(3, np.float32))
    for training in (True, False):  # a bad rng is an error even where nothing is drawn
        with pytest.raises(TypeError, match="rng must be"):
            fastact.rrelu(x, training=training, rng="seed")
        with pytest.raises(ValueError, match="a seed must be a non-negative integer"):
            fastact.rrelu(x, training=training, rng=-1)
    # As torch: training is a bool ("False" would otherwise train); NumPy's bool will do.
    for training in ("False", None, 0, 1.0, np.array([True, False])):
        with pytest.raises(TypeError, match="training must be a bool"):
            fastact.rrelu(x, training=training, rng=0)
        with pytest.raises(TypeError, match="training must be a bool"):
            fastact.rrelu_backward(x, x, training=training, noise=x)
    assert_bitwise_equal(fastact.rrelu(x, training=np.bool_(False)), fastact.rrelu(x))
    with pytest.raises(TypeError, match="lower must be a real number"):
        fastact.rrelu(x, "0.1")
    with pytest.raises(ValueError, match=r"\(lower \+ upper\) / 2"):
        fastact.rrelu(x, 1e39, 1e39)
    with pytest.raises(ValueError, match="upper=1e\\+39 overflows"):
        fastact.rrelu(x, 0.1, 1e39, training=True)
    fastact.rrelu(x.astype(np.float64), 0.1, 1e39, training=True)  # float64 takes it
    fastact.rrelu(x.astype(">f8"), 0.1, 1e39, training=True)  # in either byte order
    with pytest.raises(TypeError, match="x has dtype int64"):
        fastact.rrelu(np.ones(2, np.int64), training=True)


def test_zero_d_gives_scalars_as_numpy_does():
    x = np.float32(-3)
    y, noise = fastact.rrelu(x, training=True, rng=0)
    assert type(y) is np.float32 and type(noise) is np.float32
    out = np.zeros((), np.float32)
    y_out, noise_out = fastact.rrelu(x, training=True, rng=0, out=out)
    assert y_out is out and type(noise_out) is np.float32
    assert out == y and noise_out == noise


torch = pytest.importorskip("torch")
from torch_bridge import from_torch, to_torch  # noqa: E402

F = torch.nn.functional


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=DTYPE_IDS)
def test_evaluation_matches_torch(dtype):
    g, x = data(dtype)
    for lower, upper in BOUNDS:
        xt = to_torch(x).requires_grad_(True)
        yt = F.rrelu(xt, lower, upper, training=False)
        assert_bitwise_equal(fastact.rrelu(x, lower, upper), from_torch(yt, dtype))
        (gt,) = torch.autograd.grad(yt, xt, to_torch(g))
        assert_bitwise_equal(fastact.rrelu_backward(g, x, lower, upper), from_torch(gt, dtype))


@pytest.mark.parametrize("dtype", (np.float32, np.float64, *BFLOAT16_DTYPES), ids=DTYPE_IDS)
def test_training_backward_matches_torch_with_its_noise(dtype):
    # torch's draws cannot be reproduced, but given its noise the gradient must match.
    # (torch has no float16 training kernel on CPU.)
    g, x = data(dtype)
    xt = to_torch(x).requires_grad_(True)
    noise_t = torch.empty_like(xt)
    yt = torch.ops.aten.rrelu_with_noise(xt, noise_t, 0.1, 0.3, True)
    (gt,) = torch.autograd.grad(yt, xt, to_torch(g))
    noise = from_torch(noise_t, dtype)
    got = fastact.rrelu_backward(g, x, 0.1, 0.3, training=True, noise=noise)
    assert_bitwise_equal(got, from_torch(gt, dtype))
    # torch's own draws obey the rule fastact follows: noise 1 where x > 0 or NaN.
    drew = x.astype(np.float64) <= 0
    assert (noise.astype(np.float64)[~drew] == 1).all()
