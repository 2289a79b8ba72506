"""The reference and the loops against PyTorch CPU, the contract's source (skipped without
torch)."""

import numpy as np
import pytest
from bitwise import (
    BFLOAT16,
    BFLOAT16_DTYPES,
    KERNEL_FLOAT_DTYPES,
    assert_bitwise_equal,
    edge_values,
    is_bfloat16,
    sample,
)

import fastact
from fastact import _reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

# The slopes the contract was measured with.
TORCH_SLOPES = (0.0, 0.01, 0.2, 1.0, 3.0, -0.5)
# 16-bit floats are few enough to try every value.
SHORT_FLOAT_DTYPES = (np.float16, *BFLOAT16_DTYPES)


def to_torch(a: np.ndarray):
    """A tensor with ``a``'s bits (torch.from_numpy knows no bfloat16)."""
    if is_bfloat16(a.dtype):
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def to_numpy(t) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(BFLOAT16)
    return t.detach().numpy()


def data(dtype):
    """Random values plus the full cross product of edge values as (g, x) pairs."""
    edges = edge_values(dtype)
    x, g = (a.ravel() for a in np.meshgrid(edges, edges))
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    return np.concatenate([g, sample(dtype, 5000, rng)]), np.concatenate(
        [x, sample(dtype, 5000, rng)]
    )


def grad_of(forward, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d(forward)/dx applied to g, by autograd."""
    xt = to_torch(x).requires_grad_(True)
    (grad,) = torch.autograd.grad(forward(xt), xt, to_torch(g))
    return to_numpy(grad)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def check_relu_family(g: np.ndarray, x: np.ndarray) -> None:
    """The reference and the loops against torch.relu, its autograd gradient and aten's
    fused backward."""
    ones = np.ones_like(x)
    forward = to_numpy(torch.relu(to_torch(x)))
    grad = grad_of(torch.relu, x, ones)
    backward = grad_of(torch.relu, x, g)
    fused = to_numpy(torch.ops.aten.threshold_backward(to_torch(g), to_torch(x), 0))
    assert_bitwise_equal(backward, fused)
    for impl in (_reference, fastact):
        assert_bitwise_equal(impl.relu(x), forward)
        assert_bitwise_equal(impl.relu_grad(x), grad)
        assert_bitwise_equal(impl.relu_backward(g, x), backward)


def check_leaky_relu_family(g: np.ndarray, x: np.ndarray, slope: float) -> None:
    def forward(t):
        return F.leaky_relu(t, slope)

    ones = np.ones_like(x)
    result = to_numpy(forward(to_torch(x)))
    grad = grad_of(forward, x, ones)
    backward = grad_of(forward, x, g)
    fused = torch.ops.aten.leaky_relu_backward(to_torch(g), to_torch(x), slope, False)
    assert_bitwise_equal(backward, to_numpy(fused))
    for impl in (_reference, fastact):
        assert_bitwise_equal(impl.leaky_relu(x, slope), result)
        assert_bitwise_equal(impl.leaky_relu_grad(x, slope), grad)
        assert_bitwise_equal(impl.leaky_relu_backward(g, x, slope), backward)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_relu_family(dtype):
    check_relu_family(*data(dtype))


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
@pytest.mark.parametrize("slope", TORCH_SLOPES)
def test_leaky_relu_family(dtype, slope):
    check_leaky_relu_family(*data(dtype), slope)


def every_value(dtype) -> tuple[np.ndarray, np.ndarray]:
    """All 65,536 values of a 16-bit float as x, and the same values shuffled as g."""
    x = np.arange(1 << 16, dtype=np.uint16).view(dtype)
    return np.random.default_rng(16).permutation(x), x


@pytest.mark.parametrize("dtype", SHORT_FLOAT_DTYPES)
def test_every_16_bit_value_relu_family(dtype):
    check_relu_family(*every_value(dtype))


@pytest.mark.parametrize("dtype", SHORT_FLOAT_DTYPES)
@pytest.mark.parametrize("slope", (0.01, 0.1, 0.3, 3.0, -0.5))
def test_every_16_bit_value_leaky_relu_family(dtype, slope):
    # Each product is rounded once from float32: a double rounding or a truncation shows
    # on thousands of these values.
    check_leaky_relu_family(*every_value(dtype), slope)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8])
def test_integer_relu(dtype):
    x = np.concatenate([edge_values(dtype), sample(dtype, 1000, np.random.default_rng(0))])
    assert_bitwise_equal(fastact.relu(x), torch.relu(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("name", ["leaky_relu", "relu_backward", "leaky_relu_backward"])
def test_torch_rejects_integers_too(name):
    x = torch.arange(-3, 3)
    with pytest.raises((RuntimeError, NotImplementedError)):
        if name == "leaky_relu":
            F.leaky_relu(x, 0.1)
        elif name == "leaky_relu_backward":
            torch.ops.aten.leaky_relu_backward(x, x, 0.1, False)
        else:
            # aten's threshold_backward kernel takes integers, but autograd never calls it
            # on them: an integer tensor cannot require a gradient.
            x.requires_grad_(True)
    with pytest.raises(TypeError):
        getattr(fastact, name)(*([x.numpy()] * (2 if "backward" in name else 1)))
