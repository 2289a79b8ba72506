# Generated from fastact/_functions.py by fastact/_codegen.py: do not edit.

from typing import Any

from numpy.typing import ArrayLike, NDArray

__all__ = [
    "leaky_relu",
    "leaky_relu_backward",
    "leaky_relu_grad",
    "relu",
    "relu_backward",
    "relu_grad",
]

def relu(x: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def leaky_relu(
    x: ArrayLike, negative_slope: float = 0.01, out: NDArray[Any] | None = None
) -> Any: ...
def relu_grad(x: ArrayLike, out: NDArray[Any] | None = None) -> Any: ...
def leaky_relu_grad(
    x: ArrayLike, negative_slope: float = 0.01, out: NDArray[Any] | None = None
) -> Any: ...
def relu_backward(
    grad_output: ArrayLike, x: ArrayLike, out: NDArray[Any] | None = None
) -> Any: ...
def leaky_relu_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    negative_slope: float = 0.01,
    out: NDArray[Any] | None = None,
) -> Any: ...
