# Generated from fastact/_functions.py by fastact/_codegen.py: do not edit.

from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Real: TypeAlias = float | np.floating[Any] | np.integer[Any] | np.bool_

__all__ = [
    "bias_leaky_relu",
    "bias_leaky_relu_backward",
    "bias_leaky_relu_with_mask",
    "bias_relu",
    "bias_relu_backward",
    "bias_relu_with_mask",
    "hardtanh",
    "hardtanh_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "leaky_relu_backward_mask",
    "leaky_relu_grad",
    "leaky_relu_with_mask",
    "prelu",
    "prelu_backward",
    "relu",
    "relu6",
    "relu6_backward",
    "relu_backward",
    "relu_backward_mask",
    "relu_grad",
    "relu_with_mask",
    "rrelu",
    "rrelu_backward",
    "threshold",
    "threshold_backward",
]

def relu(x: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def leaky_relu(
    x: ArrayLike, negative_slope: _Real = 0.01, out: NDArray[Any] | None = None
) -> Any: ...
def relu_grad(x: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def leaky_relu_grad(
    x: ArrayLike, negative_slope: _Real = 0.01, out: NDArray[Any] | None = None
) -> Any: ...
def relu_backward(
    grad_output: ArrayLike, x: ArrayLike, out: NDArray[Any] | None = None
) -> Any: ...
def leaky_relu_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    negative_slope: _Real = 0.01,
    out: NDArray[Any] | None = None,
) -> Any: ...
def hardtanh(
    x: ArrayLike, min_val: _Real = -1.0, max_val: _Real = 1.0, out: NDArray[Any] | None = None
) -> Any: ...
def hardtanh_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    min_val: _Real = -1.0,
    max_val: _Real = 1.0,
    out: NDArray[Any] | None = None,
) -> Any: ...
def relu6(x: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def relu6_backward(
    grad_output: ArrayLike, x: ArrayLike, out: NDArray[Any] | None = None
) -> Any: ...
def threshold(
    x: ArrayLike, threshold: _Real, value: _Real, out: NDArray[Any] | None = None
) -> Any: ...
def threshold_backward(
    grad_output: ArrayLike, x: ArrayLike, threshold: _Real, out: NDArray[Any] | None = None
) -> Any: ...
def prelu(x: ArrayLike, weight: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def prelu_backward(
    grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike, out: NDArray[Any] | None = None
) -> tuple[Any, Any]: ...
def rrelu(
    x: ArrayLike,
    lower: _Real = 0.125,
    upper: _Real = 0.3333333333333333,
    training: bool = False,
    *,
    rng: np.random.Generator | np.random.SeedSequence | int | None = None,
    out: NDArray[Any] | None = None,
) -> Any: ...
def rrelu_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    lower: _Real = 0.125,
    upper: _Real = 0.3333333333333333,
    training: bool = False,
    noise: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
) -> Any: ...
def relu_with_mask(
    x: ArrayLike, out: NDArray[Any] | None = None, mask: NDArray[Any] | None = None
) -> tuple[Any, NDArray[Any]]: ...
def leaky_relu_with_mask(
    x: ArrayLike,
    negative_slope: _Real = 0.01,
    out: NDArray[Any] | None = None,
    mask: NDArray[Any] | None = None,
) -> tuple[Any, NDArray[Any]]: ...
def relu_backward_mask(
    grad_output: ArrayLike, mask: ArrayLike, out: NDArray[Any] | None = None
) -> Any: ...
def leaky_relu_backward_mask(
    grad_output: ArrayLike,
    mask: ArrayLike,
    negative_slope: _Real = 0.01,
    out: NDArray[Any] | None = None,
) -> Any: ...
def bias_relu(x: ArrayLike, bias: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def bias_relu_with_mask(
    x: ArrayLike,
    bias: ArrayLike,
    out: NDArray[Any] | None = None,
    mask: NDArray[Any] | None = None,
) -> tuple[Any, NDArray[Any]]: ...
def bias_relu_backward(
    grad_output: ArrayLike, mask: ArrayLike, out: NDArray[Any] | None = None
) -> tuple[Any, NDArray[Any]]: ...
def bias_leaky_relu(
    x: ArrayLike, bias: ArrayLike, negative_slope: _Real = 0.01, out: NDArray[Any] | None = None
) -> Any: ...
def bias_leaky_relu_with_mask(
    x: ArrayLike,
    bias: ArrayLike,
    negative_slope: _Real = 0.01,
    out: NDArray[Any] | None = None,
    mask: NDArray[Any] | None = None,
) -> tuple[Any, NDArray[Any]]: ...
def bias_leaky_relu_backward(
    grad_output: ArrayLike,
    mask: ArrayLike,
    negative_slope: _Real = 0.01,
    out: NDArray[Any] | None = None,
) -> tuple[Any, NDArray[Any]]: ...
