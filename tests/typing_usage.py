"""Checked by ``mypy --strict`` in test_typing.py: how a typed user calls fastact."""

import numpy as np
import numpy.typing as npt

import fastact
from fastact import ufunc


def train_step(x: npt.NDArray[np.float32], grad: npt.NDArray[np.float32]) -> float:
    hidden = fastact.leaky_relu(x, negative_slope=0.1)
    fastact.relu(x, out=x)
    dx = fastact.leaky_relu_backward(grad, x, 0.1, out=grad)
    mask = fastact.relu_grad(x)
    per_channel = ufunc.leaky_relu(x, np.float32(0.2))
    clipped = fastact.hardtanh(x, -2.0, 2.0) + fastact.relu6(x) + fastact.threshold(x, 0.1, 0.0)
    learned = fastact.prelu(x, np.full(x.shape[1], 0.25, np.float32))
    grad_input, grad_weight = fastact.prelu_backward(grad, x, np.float32(0.25))
    noisy, noise = fastact.rrelu(x, training=True, rng=0)
    mean_slope = fastact.rrelu(x) + fastact.rrelu_backward(grad, x, training=True, noise=noise)
    with fastact.threads(2):
        fastact.relu_backward(grad, x, out=grad)
    # NumPy scalars as parameters (np.float32 is not a float subclass), a SeedSequence.
    scaled = fastact.leaky_relu(x, np.float32(0.1)) + fastact.hardtanh(x, np.int64(-1), 1)
    seeded, _ = fastact.rrelu(x, training=True, rng=np.random.SeedSequence(1))
    with fastact.threads(np.int64(2)):
        lazily: np.ndarray = fastact.ufunc.relu(x)
    fastact.set_num_threads(fastact.get_num_threads())
    config: dict[str, object] = fastact.show_config(print_out=False)
    version: str = fastact.__version__
    return (
        float(np.sum(hidden) + np.sum(dx) + np.sum(mask) + np.sum(per_channel))
        + float(np.sum(clipped) + np.sum(learned) + np.sum(grad_input) + np.sum(grad_weight))
        + float(np.sum(noisy) + np.sum(mean_slope))
        + float(np.sum(scaled) + np.sum(seeded) + np.sum(lazily))
        + len(config)
        + len(version)
    )
