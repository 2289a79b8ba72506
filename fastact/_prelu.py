"""PReLU (He et al., 2015): Leaky ReLU whose slope is learned, one per channel.

The channel axis is axis 1, as in torch (``(N, C, ...)``; a 1-D or 0-d input has one
channel). The forward pass is :func:`leaky_relu`'s rule with channel ``c``'s weight as the
slope; the backward pass gives ``grad_input`` by :func:`leaky_relu_backward`'s rule and the
weight gradient, ``sum(x > 0 ? 0 : x * g)`` over every axis but the channel axis, in the
same pass. Contiguous native arrays run the compiled loops of ``_channels``; any other
layout is copied to one first (the result is the same); without the compiled extension,
the NumPy reference runs.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _dispatch, _reference, _sums

try:
    from . import _channels
except ImportError:  # a source tree that was never built
    _channels = None


def _channel_count(x: np.ndarray) -> int:
    return x.shape[1] if x.ndim >= 2 else 1


def _check_weight(weight: Any, x: np.ndarray, func: str) -> np.ndarray:
    """``weight`` as an array of ``x``'s dtype: 0-d, or 1-D of one or C values."""
    python_number = isinstance(weight, numbers.Real) and not isinstance(weight, np.generic)
    if python_number or isinstance(weight, (list, tuple)):
        w = _numbers_as(weight, x.dtype, func)
    elif isinstance(weight, (np.ndarray, np.generic)):
        w = np.asarray(weight)
        if not _dispatch._same_type(w.dtype, x.dtype):
            raise TypeError(
                f"fastact.{func}: weight has dtype {w.dtype} but x has dtype {x.dtype}; "
                "they must be equal (as in torch, which does not promote)"
            )
    else:
        raise TypeError(
            f"fastact.{func}: weight must be a real number, a list of them or an array of "
            f"x's dtype, not {type(weight).__name__}"
        )
    channels = _channel_count(x)
    if w.ndim > 1 or (w.ndim == 1 and w.size not in (1, channels)):
        if x.ndim >= 2:
            channels_are = f"{channels} channel{'s' if channels != 1 else ''} (axis 1)"
            allowed = f"1 or {channels} values"
        else:
            channels_are = f"one channel (a {x.ndim}-D x has no axis 1)"
            allowed = "1 value"
        raise ValueError(
            f"fastact.{func}: weight has shape {w.shape} but x has shape {x.shape}, "
            f"{channels_are}: the weight must be a scalar or hold {allowed}"
        )
    return w.astype(w.dtype.newbyteorder("="), copy=False)


def _numbers_as(values: Any, dtype: np.dtype, func: str) -> np.ndarray:
    """A Python number, or a list or tuple of them, in ``dtype``: they have no dtype of
    their own, so they take x's, as a NumPy scalar would; a finite value that overflows
    ``dtype`` is refused."""
    try:
        wide = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer such as 10**400
        raise ValueError(f"fastact.{func}: weight holds a number too large for a float") from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"fastact.{func}: weight must hold real numbers: {exc}") from None
    with np.errstate(over="ignore"):
        # A 16-bit weight is rounded through float32, as torch rounds a Python number into
        # a float16 or bfloat16 tensor (and fastact its 16-bit scalar parameters): a
        # direct rounding differs where the number lies just off a 16-bit midpoint.
        rounded = wide.astype(np.float32) if dtype.itemsize == 2 else wide
        w = rounded.astype(dtype.newbyteorder("="))
    overflows = np.isfinite(wide) & ~np.isfinite(w.astype(np.float64))
    if overflows.any():
        raise ValueError(
            f"fastact.{func}: weight value {float(wide[overflows].flat[0])!r} overflows {dtype}"
        )
    return w


def _weight_per_channel(w: np.ndarray, channels: int) -> np.ndarray:
    """The weight as float64, one value per channel (every value exact)."""
    return np.ascontiguousarray(np.broadcast_to(w.astype(np.float64).ravel(), (channels,)))


def _as_kernel_array(a: np.ndarray) -> np.ndarray:
    """C-contiguous, aligned, native order, at least 1-D: a copy only where needed."""
    native = np.require(a, a.dtype.newbyteorder("="), ["C_CONTIGUOUS", "ALIGNED"])
    return native.reshape(1) if native.ndim == 0 else native


def _writable_directly(out: np.ndarray | None, inputs: tuple[np.ndarray, ...]) -> bool:
    """Whether the loops can write ``out`` itself: C-contiguous, aligned, native, and no
    partial overlap with an input (being the very same array is fine)."""
    if out is None or not (out.flags.c_contiguous and out.flags.aligned):
        return False
    if not out.dtype.isnative or out.ndim == 0:
        return False
    return all(
        a is out
        or not np.shares_memory(a, out)
        or (
            a.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and a.strides == out.strides
        )
        for a in inputs
    )


def _duck_prelu(x: Any, weight: Any, out: Any) -> Any:
    """Duck arrays (dask, xarray): the ufunc with the weight broadcast along axis 1."""
    from . import ufunc

    # The eager call's checks: x's dtype, the weight's dtype and length.
    dtype = _dispatch._check_lazy_dtype(x, "x", "prelu")
    slopes = _reference._per_channel(_check_weight(weight, x, "prelu"), x)
    return _dispatch._duck_ufunc(ufunc.leaky_relu, (x, slopes), out, dtype, x.shape, "prelu")


def prelu(x: Any, weight: Any, out: np.ndarray | None = None) -> Any:
    if _dispatch.COMPILED and _channels is not None:
        result = _channels.prelu_fast(x, weight, out)
        if result is not None:
            return result
    if _dispatch._is_duck_array(x) and _dispatch._ufuncs is not None:
        return _duck_prelu(x, weight, out)
    x = _dispatch._as_array(x, "x", "prelu")
    w = _check_weight(weight, x, "prelu")
    _dispatch._check_out(out, x, "prelu")
    if not _dispatch.COMPILED or _channels is None:
        result = _reference.prelu(x.astype(x.dtype.newbyteorder("="), copy=False), w)
    else:
        xk = _as_kernel_array(x)
        weights = _weight_per_channel(w, _channel_count(x))
        if _writable_directly(out, (x,)) and xk is x:
            return _channels.prelu(xk, weights, out)
        result = _channels.prelu(xk, weights, np.empty_like(xk)).reshape(x.shape)
    if out is None:
        return result[()] if result.ndim == 0 else result
    np.copyto(out, result)
    return out


def _chunk_sums(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """One chunk's weight-gradient sums, per channel, in float64 and unrounded: the terms
    x * g are exact in float64 below float64 input, and float64 sums are compensated.
    Shaped to keep the chunk's place: length 1 on every axis but the channel axis."""
    channels = _channel_count(x)
    wide = (a.astype(np.float64) for a in (g, x))
    _, sums = prelu_backward(*wide, np.ones(channels))
    place = [1] * x.ndim
    if x.ndim >= 2:
        place[1] = channels
    return np.asarray(sums, np.float64).reshape(place)


def _rounded_sums(partials: np.ndarray, one_weight: bool, weight: np.ndarray) -> np.ndarray:
    """Every chunk's sums of a channel added exactly, then rounded once to the weight."""
    by_channel = partials.reshape(1, -1) if partials.ndim < 2 else np.moveaxis(partials, 1, 0)
    rows = by_channel.reshape(by_channel.shape[0], -1)
    if one_weight:
        rows = rows.reshape(1, -1)
    sums = np.array([_sums.exact_sum(row) for row in rows], np.float64)
    with np.errstate(over="ignore"):  # a sum beyond the weight's type is infinite
        return sums.astype(weight.dtype).reshape(weight.shape)


def _lazy_prelu_backward(grad_output: Any, x: Any, weight: Any, out: Any) -> tuple[Any, Any]:
    """dask arrays: the input gradient elementwise (the ufunc with the weight broadcast
    along axis 1), the weight gradient a reduction over the chunks; both lazy."""
    import dask
    import dask.array as da

    from . import ufunc

    func = "prelu_backward"
    grad_output = _dispatch._duck_operand(grad_output, "grad_output", func)
    x = _dispatch._duck_operand(x, "x", func)
    g_dtype = _dispatch._check_lazy_dtype(grad_output, "grad_output", func)
    x_dtype = _dispatch._check_lazy_dtype(x, "x", func)
    _dispatch._check_pair(grad_output, x, (g_dtype, x_dtype), func)
    w = _check_weight(weight, x, func)
    g, x = da.asarray(grad_output), da.asarray(x)
    g = g.rechunk(x.chunks)
    slopes = _reference._per_channel(w, x)
    grad_input = _dispatch._duck_ufunc(
        ufunc.leaky_relu_backward, (g, x, slopes), out, x_dtype, x.shape, func
    )
    place = tuple(c if axis == 1 else (1,) * len(c) for axis, c in enumerate(x.chunks))
    partials = da.map_blocks(
        _chunk_sums, g, x, chunks=place, dtype=np.float64, meta=np.empty((0,) * x.ndim)
    )
    one_weight = w.size == 1 and _channel_count(x) != 1
    rounded = dask.delayed(_rounded_sums, pure=True)(partials, one_weight, w)
    return grad_input, da.from_delayed(rounded, shape=w.shape, dtype=w.dtype)


def _separate(out: np.ndarray | None, inputs: tuple[np.ndarray, ...]) -> bool:
    """Whether the backward loops can write ``out`` itself: C-contiguous, aligned, native
    and clear of every input (they read ``g`` again after writing ``grad_input``, so not
    even an input itself will do)."""
    return _writable_directly(out, ()) and not any(np.may_share_memory(a, out) for a in inputs)


def prelu_backward(
    grad_output: Any, x: Any, weight: Any, out: np.ndarray | None = None
) -> tuple[Any, Any]:
    if _dispatch.COMPILED and _channels is not None:
        fast = _channels.prelu_backward_fast(grad_output, x, weight, out)
        if fast is not None:
            grad_input, sums = fast
            if sums.dtype == weight.dtype:
                return grad_input, sums
            with np.errstate(over="ignore"):  # a sum beyond the weight's type is infinite
                return grad_input, sums.astype(weight.dtype)
    lazy = _dispatch._is_dask_array(grad_output) or _dispatch._is_dask_array(x)
    if lazy and _dispatch._ufuncs is not None:  # the input gradient is the ufunc's
        return _lazy_prelu_backward(grad_output, x, weight, out)
    g = _dispatch._as_array(grad_output, "grad_output", "prelu_backward")
    x = _dispatch._as_array(x, "x", "prelu_backward")
    _dispatch._check_same((g.shape, x.shape), (g.dtype, x.dtype), "prelu_backward")
    w = _check_weight(weight, x, "prelu_backward")
    _dispatch._check_out(out, x, "prelu_backward")
    if not _dispatch.COMPILED or _channels is None:
        native = x.dtype.newbyteorder("=")
        grad_input, grad_weight = _reference.prelu_backward(
            g.astype(native, copy=False), x.astype(native, copy=False), w
        )
    else:
        gk, xk = _as_kernel_array(g), _as_kernel_array(x)
        channels = _channel_count(x)
        direct = _separate(out, (gk, xk))
        grad_input = out if direct else np.empty_like(xk)
        sums = _channels.prelu_backward(gk, xk, _weight_per_channel(w, channels), grad_input)
        if w.size == 1 and channels != 1:  # one weight shared by every channel (or none)
            # Added exactly, with IEEE's answer where a channel's sum is infinite or NaN
            # (inf - inf is NaN, as torch gives; math.fsum would raise).
            sums = np.array([_sums.exact_sum(sums)])
        with np.errstate(over="ignore"):  # a sum beyond the weight's type is infinite
            grad_weight = sums.astype(w.dtype).reshape(w.shape)
        if not direct:
            grad_input = grad_input.reshape(x.shape)
    grad_weight = grad_weight[()] if grad_weight.ndim == 0 else grad_weight
    if out is not None:
        if grad_input is not out:
            np.copyto(out, grad_input)
        return out, grad_weight
    if grad_input.ndim == 0:
        return grad_input[()], grad_weight
    return grad_input, grad_weight
