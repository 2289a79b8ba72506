"""RReLU (Xu et al., 2015): Leaky ReLU with a random slope while training.

In evaluation (``training=False``) it is :func:`leaky_relu` with the slope
``(lower + upper) / 2``, computed in float64 as torch computes it. In training, every
element with ``x <= 0`` draws its own slope uniformly from ``[lower, upper]`` (``_noise``),
and the slopes (``noise``, 1 elsewhere) are returned for the backward pass, which is then
``grad_output * noise``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _api, _dispatch

try:
    from . import _noise
except ImportError:  # a source tree that was never built
    _noise = None

_LOWER, _UPPER = 1.0 / 8.0, 1.0 / 3.0


def _check_bounds(lower: Any, upper: Any, func: str) -> tuple[float, float]:
    bounds = []
    for name, value in (("lower", lower), ("upper", upper)):
        if not isinstance(value, (numbers.Real, np.bool_)):
            raise TypeError(
                f"fastact.{func}: {name} must be a real number, not {type(value).__name__}"
            )
        try:
            bounds.append(float(value))
        except OverflowError as exc:
            raise ValueError(f"fastact.{func}: {name}={value!r} is too large for a float") from exc
    if bounds[0] > bounds[1]:
        raise ValueError(
            f"fastact.{func}: lower={lower!r} is greater than upper={upper!r} (torch: lower "
            "bound should be less than or equal to the upper bound)"
        )
    return bounds[0], bounds[1]


def _eval_slope(lower: float, upper: float) -> float:
    # torch adds the bounds as float64 tensors and halves: an overflow of their sum is
    # inf, and the leaky slope check then applies to the result.
    return (lower + upper) / 2.0


def _evaluated(leaky: Any, arrays: tuple, low: float, high: float, func: str, **kw: Any) -> Any:
    """The leaky function at the evaluation slope, its errors named as rrelu's."""
    slope = _eval_slope(low, high)
    try:
        return leaky(*arrays, slope, **kw)
    except (TypeError, ValueError) as exc:
        message = str(exc).replace(f"fastact.{leaky.__name__}", f"fastact.{func}")
        message = message.replace(f"negative_slope={slope!r}", f"(lower + upper) / 2 = {slope!r}")
        raise type(exc)(message) from exc


def _check_in_range(bounds: tuple[float, float], x: np.ndarray, func: str) -> None:
    """Training rounds each bound to the compute type: torch refuses one that overflows."""
    # Either byte order: a byte-swapped float64 input computes in float64 too.
    wide = x.dtype.kind == "f" and x.dtype.itemsize == 8
    largest = float(np.finfo(np.float64 if wide else np.float32).max)
    for name, value in zip(("lower", "upper"), bounds, strict=True):
        if math.isfinite(value) and abs(value) > largest:
            raise ValueError(
                f"fastact.{func}: {name}={value!r} overflows the float32 computation of "
                f"{x.dtype} input"
            )


def _generator(rng: Any, func: str) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"fastact.{func}: rng must be a numpy.random.Generator, a seed or None, "
        f"not {type(rng).__name__}"
    )


def rrelu(
    x: Any,
    lower: float = _LOWER,
    upper: float = _UPPER,
    training: bool = False,
    *,
    rng: Any = None,
    out: np.ndarray | None = None,
) -> Any:
    low, high = _check_bounds(lower, upper, "rrelu")
    if not training:
        return _evaluated(_api.leaky_relu, (x,), low, high, "rrelu", out=out)
    generator = _generator(rng, "rrelu")
    x = _dispatch._as_array(x, "x", "rrelu")
    _check_in_range((low, high), x, "rrelu")
    _dispatch._check_out(out, x, "rrelu")
    native = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("=")).reshape(-1)
    y, noise = np.empty_like(native), np.empty_like(native)
    if _noise is not None and _dispatch.COMPILED:
        _noise.rrelu_train(native, y, noise, low, high, generator.bit_generator)
    else:
        _draw_with_numpy(native, y, noise, low, high, generator)
    y, noise = y.reshape(x.shape), noise.reshape(x.shape)
    if out is not None:
        np.copyto(out, y)
        y = out
    return (y[()], noise[()]) if x.ndim == 0 and out is None else (y, noise)


def _draw_with_numpy(
    x: np.ndarray,
    y: np.ndarray,
    noise: np.ndarray,
    low: float,
    high: float,
    generator: np.random.Generator,
) -> None:
    """The reference draws: the same stream of doubles, in C order, for ``x <= 0``."""
    compute = np.float64 if x.dtype == np.float64 else np.float32
    with np.errstate(invalid="ignore"):
        negative = x <= 0
    r = (low + (high - low) * generator.random(int(negative.sum()))).astype(compute)
    y[...] = x
    noise[...] = 1
    with np.errstate(all="ignore"):
        y[negative] = (x[negative].astype(compute) * r).astype(x.dtype)
    noise[negative] = r.astype(x.dtype)


def rrelu_backward(
    grad_output: Any,
    x: Any,
    lower: float = _LOWER,
    upper: float = _UPPER,
    training: bool = False,
    noise: Any = None,
) -> Any:
    low, high = _check_bounds(lower, upper, "rrelu_backward")
    if not training:
        return _evaluated(_api.leaky_relu_backward, (grad_output, x), low, high, "rrelu_backward")
    if noise is None:
        raise ValueError(
            "fastact.rrelu_backward: training=True needs the noise rrelu returned with y"
        )
    g = _dispatch._as_array(grad_output, "grad_output", "rrelu_backward")
    x = _dispatch._as_array(x, "x", "rrelu_backward")
    slopes = _dispatch._as_array(noise, "noise", "rrelu_backward")
    _dispatch._check_same((g.shape, x.shape), (g.dtype, x.dtype), "rrelu_backward")
    if not _dispatch._same_type(slopes.dtype, x.dtype):
        raise TypeError(
            f"fastact.rrelu_backward: noise has dtype {slopes.dtype} but x has dtype "
            f"{x.dtype}; they must be equal"
        )
    if slopes.shape != x.shape:
        raise ValueError(
            f"fastact.rrelu_backward: noise has shape {slopes.shape} but x has shape "
            f"{x.shape}; they must be equal"
        )
    # torch's training gradient, grad_output * noise: a product rounded once in x's type
    # (16-bit floats multiply in float32, as NumPy and ml_dtypes do).
    with np.errstate(all="ignore"):
        result = np.multiply(g, slopes, dtype=g.dtype.newbyteorder("="))
    return result[()] if result.ndim == 0 else result
