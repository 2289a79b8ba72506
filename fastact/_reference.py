"""The semantics of fastact written once, in plain NumPy.

This module is both the fallback for every input the compiled loops do not cover
(float16, byte-swapped, misaligned, strided) and the oracle the tests compare the
compiled loops against, bit for bit. Each activation function takes validated ndarrays
and a float slope and returns a new array of ``x``'s dtype (``dead_units`` returns a
boolean mask). The rules are PyTorch CPU's:

==================== ======================= =========================================
function             rule                    why
==================== ======================= =========================================
relu                 x < 0 ? +0 : x          -0.0 and NaN pass through unchanged
leaky_relu           x > 0 ? x : x*s         ±0 and NaN take the product
relu_grad            x <= 0 ? +0 : 1         derivative at 0 is 0; NaN gets 1
leaky_relu_grad      x > 0 ? 1 : s           derivative at ±0 and NaN is s
relu_backward        x <= 0 ? +0 : g         a select: g = NaN/inf where x <= 0 gives 0
leaky_relu_backward  x > 0 ? g : g*s         a multiply: g = NaN stays NaN
hardtanh             clamp(x, lo, hi)        NaN passes; a NaN bound gives NaN; ±0 kept
hardtanh_backward    lo < x < hi ? g : +0    0 at the bounds; NaN x passes g
relu6                hardtanh(x, 0, 6)
relu6_backward       hardtanh_backward(0, 6)
threshold            x <= t ? v : x          NaN passes
threshold_backward   x <= t ? +0 : g         a select, as relu_backward
==================== ======================= =========================================

Parameters are rounded first, as torch rounds them: to float32 for 16-bit floats and
float32 (float64 for float64) where the table says "compute", to the element type itself
where it says "element".
"""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np

from ._sums import exact_sum

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "hardtanh",
    "hardtanh_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "leaky_relu_grad",
    "prelu",
    "prelu_backward",
    "relu",
    "relu6",
    "relu6_backward",
    "relu_backward",
    "relu_grad",
    "threshold",
    "threshold_backward",
]


def _compute_type(x: np.ndarray) -> np.dtype:
    return np.dtype(np.float32 if x.dtype.itemsize <= 4 else np.float64)


def _in_compute_type(value: float, x: np.ndarray) -> np.ndarray:
    """``value`` rounded to float32 (float64 for float64 input), as a 0-d array."""
    return np.array(value, dtype=_compute_type(x))


def _in_element_type(value: float, x: np.ndarray) -> np.ndarray:
    """``value`` rounded to ``x``'s type, through float32 as c10 rounds it."""
    with np.errstate(over="ignore"):  # the callers refuse finite values that overflow
        return _in_compute_type(value, x).astype(x.dtype.newbyteorder("="))


def _times_slope(v: np.ndarray, negative_slope: float) -> np.ndarray:
    """``v * s`` rounded as torch rounds it.

    float32 and float64 multiply in their own precision with ``s`` rounded to it first;
    float16 and bfloat16 multiply in float32 and round once (a float16 product would differ on
    about 12% of inputs).
    """
    # inf * 0 is NaN by the rule, not an error; overflow to inf likewise.
    with np.errstate(all="ignore"):
        slope = _in_compute_type(negative_slope, v)
        product: np.ndarray = np.multiply(v, slope, dtype=slope.dtype)
        return product.astype(v.dtype, copy=False)


# ml_dtypes' bfloat16 comparisons flag NaN as "invalid" (NumPy's own do not): NaN is an
# ordinary input here, so no comparison may warn. A fresh errstate per call: one instance
# is not meant to be entered from several threads at once.
def _quiet(func: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(func)
    def quiet(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with np.errstate(invalid="ignore"):
            return func(*args, **kwargs)

    return quiet


def _zero(x: np.ndarray) -> np.ndarray:
    return np.zeros((), dtype=x.dtype.newbyteorder("="))


def _one(x: np.ndarray) -> np.ndarray:
    return np.ones((), dtype=x.dtype.newbyteorder("="))


@_quiet
def relu(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, _zero(x), x)


@_quiet
def leaky_relu(x: np.ndarray, negative_slope: float) -> np.ndarray:
    return np.where(x > 0, x, _times_slope(x, negative_slope))


@_quiet
def relu_grad(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0, _zero(x), _one(x))


@_quiet
def leaky_relu_grad(x: np.ndarray, negative_slope: float) -> np.ndarray:
    slope = _times_slope(np.ones((), dtype=x.dtype), negative_slope)
    return np.where(x > 0, _one(x), slope)


@_quiet
def relu_backward(grad_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0, _zero(grad_output), grad_output)


@_quiet
def leaky_relu_backward(
    grad_output: np.ndarray, x: np.ndarray, negative_slope: float
) -> np.ndarray:
    return np.where(x > 0, grad_output, _times_slope(grad_output, negative_slope))


@_quiet
def hardtanh(x: np.ndarray, min_val: float, max_val: float) -> np.ndarray:
    low, high = _in_element_type(min_val, x), _in_element_type(max_val, x)
    clamped_low = np.where((x < low) | np.isnan(low), low, x)
    return np.where((clamped_low > high) | np.isnan(high), high, clamped_low)


@_quiet
def hardtanh_backward(
    grad_output: np.ndarray, x: np.ndarray, min_val: float, max_val: float
) -> np.ndarray:
    low, high = _in_compute_type(min_val, x), _in_compute_type(max_val, x)
    return np.where((x <= low) | (x >= high), _zero(grad_output), grad_output)


def relu6(x: np.ndarray) -> np.ndarray:
    return hardtanh(x, 0.0, 6.0)


def relu6_backward(grad_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    return hardtanh_backward(grad_output, x, 0.0, 6.0)


@_quiet
def threshold(x: np.ndarray, threshold: float, value: float) -> np.ndarray:
    return np.where(x <= _in_compute_type(threshold, x), _in_element_type(value, x), x)


@_quiet
def threshold_backward(grad_output: np.ndarray, x: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(x <= _in_compute_type(threshold, x), _zero(grad_output), grad_output)


# PReLU: the leaky rule with a slope per channel (axis 1; one channel below 2-D). The weight
# has x's dtype and one value, or one per channel.


def _per_channel(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The weight shaped to broadcast along x's channel axis."""
    if x.ndim < 2 or w.size == 1:
        return w.reshape(())
    return w.reshape((w.size,) + (1,) * (x.ndim - 2))


@_quiet
def prelu(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = _per_channel(weight, x)
    with np.errstate(all="ignore"):
        product = np.multiply(x, w, dtype=_compute_type(x)).astype(x.dtype)
    return np.where(x > 0, x, product)


@_quiet
def prelu_backward(
    grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    w = _per_channel(weight, x)
    with np.errstate(all="ignore"):
        product = np.multiply(grad_output, w, dtype=_compute_type(x)).astype(x.dtype)
        grad_input = np.where(x > 0, grad_output, product)
        # The weight gradient: every term x * g in float64 (exact below float64), summed
        # exactly (math.fsum) over all but the channel axis, rounded once.
        terms = np.where(x > 0, 0.0, x.astype(np.float64) * grad_output.astype(np.float64))
    if weight.size == 1 or x.ndim < 2:
        sums = [exact_sum(terms.ravel())]
    else:
        # The count given: reshape(C, -1) cannot infer it when C or the rest is empty.
        by_channel = np.moveaxis(terms, 1, 0).reshape(x.shape[1], terms.size // max(x.shape[1], 1))
        sums = [exact_sum(row) for row in by_channel]
    with np.errstate(over="ignore"):  # a sum beyond the weight's type is infinite
        return grad_input, np.array(sums).astype(weight.dtype).reshape(weight.shape)


# Dead units: a reduction, not an elementwise rule, so it returns bool, not x's dtype.
# Dead means relu_grad is 0 for every sample: `x <= 0` all along the axis. NaN fails
# `x <= 0` (relu_grad(NaN) is 1), so it keeps a unit alive; no samples at all leave every
# unit dead, as `np.all` of nothing is True.
__all__ += ["dead_units"]


@_quiet
def dead_units(x: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.all(x <= 0, axis=axis))
