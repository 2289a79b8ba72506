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
    with fastact.threads(2):
        fastact.relu_backward(grad, x, out=grad)
    fastact.set_num_threads(fastact.get_num_threads())
    config: dict[str, object] = fastact.show_config(print_out=False)
    version: str = fastact.__version__
    return (
        float(np.sum(hidden) + np.sum(dx) + np.sum(mask) + np.sum(per_channel))
        + len(config)
        + len(version)
    )
