"""The NumPy reference against PyTorch CPU, the contract's source (skipped without torch)."""

import numpy as np
import pytest
from bitwise import FLOAT_DTYPES, assert_bitwise_equal, edge_values, sample

import fastact
from fastact import _reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

# The slopes the contract was measured with.
TORCH_SLOPES = (0.0, 0.01, 0.2, 1.0, 3.0, -0.5)


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
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    (grad,) = torch.autograd.grad(forward(xt), xt, torch.from_numpy(g.copy()))
    return grad.numpy()


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_relu_family(dtype):
    g, x = data(dtype)
    ones = np.ones_like(x)
    assert_bitwise_equal(_reference.relu(x), torch.relu(torch.from_numpy(x)).numpy())
    assert_bitwise_equal(_reference.relu_grad(x), grad_of(torch.relu, x, ones))
    assert_bitwise_equal(_reference.relu_backward(g, x), grad_of(torch.relu, x, g))
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    fused = torch.ops.aten.threshold_backward(gt, xt, 0).numpy()
    assert_bitwise_equal(_reference.relu_backward(g, x), fused)
    assert_bitwise_equal(fastact.relu_backward(g, x), fused)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("slope", TORCH_SLOPES)
def test_leaky_relu_family(dtype, slope):
    g, x = data(dtype)
    ones = np.ones_like(x)

    def forward(t):
        return F.leaky_relu(t, slope)

    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    assert_bitwise_equal(_reference.leaky_relu(x, slope), forward(xt).numpy())
    assert_bitwise_equal(_reference.leaky_relu_grad(x, slope), grad_of(forward, x, ones))
    assert_bitwise_equal(_reference.leaky_relu_backward(g, x, slope), grad_of(forward, x, g))
    fused = torch.ops.aten.leaky_relu_backward(gt, xt, slope, False).numpy()
    assert_bitwise_equal(_reference.leaky_relu_backward(g, x, slope), fused)
    assert_bitwise_equal(fastact.leaky_relu(x, slope), forward(xt).numpy())
    assert_bitwise_equal(fastact.leaky_relu_backward(g, x, slope), fused)


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
