"""Every function of the table against PyTorch CPU, forward and autograd (needs torch).

Each forward function is compared with its torch counterpart; ``<name>_grad`` with the
autograd derivative (a gradient of ones) and ``<name>_backward`` with the autograd input
gradient, for every dtype (bfloat16 included), on random values plus the full cross
product of edge values, for every parameter case of the function (its boundaries
included). The compiled functions and the NumPy reference must both match, bit for bit.
"""

import math

import numpy as np
import pytest
from bitwise import (
    KERNEL_FLOAT_DTYPES,
    assert_bitwise_equal,
    edge_values,
    parameter_cases,
    sample,
)

import fastact
from fastact import _reference
from fastact._functions import BY_NAME, FUNCTIONS

torch = pytest.importorskip("torch")
from torch_bridge import from_torch, to_torch  # noqa: E402

F = torch.nn.functional

# The torch counterpart of each forward function; derivatives come from autograd.
TORCH_FORWARD = {
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "hardtanh": F.hardtanh,
    "relu6": F.relu6,
    "threshold": F.threshold,
}
# Backward functions whose forward takes more parameters than they do (the forward's
# `value` does not change the gradient).
EXTRA_FORWARD_PARAMETERS = {"threshold_backward": (0.0,)}


def forward_of(name: str) -> str:
    for suffix in ("_backward", "_grad"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_every_function_has_a_torch_counterpart():
    assert {forward_of(f.name) for f in FUNCTIONS} <= set(TORCH_FORWARD)


def data(dtype):
    """Random values plus the full cross product of edge values, as (g, x) pairs."""
    edges = edge_values(dtype)
    x, g = (a.ravel() for a in np.meshgrid(edges, edges))
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    return (
        np.concatenate([g, sample(dtype, 3000, rng)]),
        np.concatenate([x, sample(dtype, 3000, rng)]),
    )


def torch_result(name: str, g: np.ndarray, x: np.ndarray, params: tuple) -> np.ndarray:
    forward = TORCH_FORWARD[forward_of(name)]
    forward_params = (*params, *EXTRA_FORWARD_PARAMETERS.get(name, ()))
    if name == forward_of(name):
        return from_torch(forward(to_torch(x), *forward_params), x.dtype)
    xt = to_torch(x).requires_grad_(True)
    gt = torch.ones_like(xt) if name.endswith("_grad") else to_torch(g)
    (grad,) = torch.autograd.grad(forward(xt, *forward_params), xt, gt)
    return from_torch(grad, x.dtype)


def scalar_hardtanh_backward(g, x, spec, params) -> np.ndarray:
    """torch's hardtanh_backward through its scalar loop (strided tensors)."""
    bounds = spec.fixed or params
    strided_g, strided_x = (to_torch(np.repeat(a, 2))[::2] for a in (g, x))
    return from_torch(torch.ops.aten.hardtanh_backward(strided_g, strided_x, *bounds), x.dtype)


def refused_by_torch(name: str, x: np.ndarray, params: tuple) -> bool:
    try:
        torch_result(name, x, x, params)
    except (RuntimeError, ValueError) as exc:
        assert "cannot be converted" in str(exc) or "greater than" in str(exc), exc
        return True
    return False


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", [f.name for f in FUNCTIONS])
def test_matches_torch(name, dtype):
    spec = BY_NAME[name]
    g, x = data(dtype)
    for params in parameter_cases(name):
        if refused_by_torch(name, x[:1], params):
            continue  # the rule for refused parameters is checked below
        want = torch_result(name, g, x, params)
        args = (g, x, *params) if spec.is_backward else (x, *params)
        got = getattr(fastact, name)(*args)
        if spec.rule == "hardtanh_backward":
            # torch's vector loop gives 0 at NaN x (and, for float32/64, everywhere when a
            # bound is NaN); its scalar loop passes g there (pytorch issue #195075).
            # fastact takes the scalar rule at every length: the one torch runs on strided
            # tensors, where it has no vector loop.
            assert_bitwise_equal(got, scalar_hardtanh_backward(g, x, spec, params))
            nan = np.isnan(x.astype(np.float64)) | any(math.isnan(p) for p in params)
            got, want = got[~nan], want[~nan]
        assert_bitwise_equal(got, want)
        assert_bitwise_equal(getattr(_reference, name)(*args), getattr(fastact, name)(*args))


# Parameters beyond the range of the type torch rounds them to, and bounds out of order.
BAD_PARAMETERS = [
    (1e39, 1e39), (-1e39, 1.0), (1.0, 3.5e38), (7e4, 8e4), (-1e5, 1.0), (65520.0, 7e4),
    (2.0, 1.0), (3.4e38, 3.41e38),
]  # fmt: skip


@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", [f.name for f in FUNCTIONS if f.parameters])
def test_refuses_what_torch_refuses(name, dtype):
    spec = BY_NAME[name]
    x = np.array([-1.0, 0.5, 2.0], dtype)
    n = len(spec.parameters)
    tried = {bad[:n] for bad in BAD_PARAMETERS} | {(math.inf,) * n, (math.nan,) * n}
    refusals = 0
    for params in sorted(tried, key=repr):
        args = (x, x, *params) if spec.is_backward else (x, *params)
        if refused_by_torch(name, x, params):
            refusals += 1
            with pytest.raises(ValueError, match="|".join(p.name for p in spec.parameters)):
                getattr(fastact, name)(*args)
        else:
            getattr(fastact, name)(*args)  # accepted by both
    # float64 takes every float as a parameter: only bounds out of order are refused there.
    if np.dtype(dtype) != np.float64 or spec.ordered:
        assert refusals > 0, "no case torch refuses was tried"
