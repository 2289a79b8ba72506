"""ReLU and Leaky ReLU that keep their derivative as a bit mask, and the backward passes
that read it.

A training step needs, for the backward pass, only which elements pass the gradient: one
bit per element instead of the whole input (1/32 of the memory for float32). The mask
is ``np.packbits(passes.ravel(), bitorder="little")``: bit ``j`` of byte ``i`` for element
``8 i + j`` of the input in C order, the last byte's unused bits 0, where ``passes`` is the
backward rule's own comparison, so that the mask path gives the same bits as the path
through ``x``:

- relu: ``!(x <= 0)``, as :func:`relu_backward` passes ``g`` (NaN sets the bit);
- leaky_relu: ``x > 0``, as :func:`leaky_relu_backward` passes ``g`` (NaN takes ``g * s``).

The compiled loops (``_mask_loops.pxd``, run by ``_mask_kernels``) take C-contiguous,
aligned, native arrays; anything else is copied to that first (an ``out`` the loops cannot
write is written once, after the whole result exists). Every check runs before anything
is written. Without the compiled extension, the reference below computes the same bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _dispatch, _reference, _sums
from ._functions import BY_NAME

__all__ = [
    "leaky_relu_backward_mask",
    "leaky_relu_with_mask",
    "relu_backward_mask",
    "relu_with_mask",
]

_SLOPE = BY_NAME["leaky_relu"].parameters[0]


def _load() -> Any:
    if _dispatch._kernels is None:
        return None
    from . import _mask_kernels

    return _mask_kernels


_compiled = _load()


def mask_length(n: int) -> int:
    """Bytes of the mask of ``n`` elements."""
    return (n + 7) // 8


# ---------------------------------------------------------------------------------------
# The reference: plain NumPy, the fallback and the tests' oracle.


def reference_with_mask(x: np.ndarray, leaky: bool, negative_slope: float) -> tuple:
    with np.errstate(invalid="ignore"):
        passes = x > 0 if leaky else ~(x <= 0)
    y = _reference.leaky_relu(x, negative_slope) if leaky else _reference.relu(x)
    return y, np.packbits(passes.ravel(order="C"), bitorder="little")


def reference_backward_mask(
    grad_output: np.ndarray, mask: np.ndarray, leaky: bool, negative_slope: float
) -> np.ndarray:
    bits = np.unpackbits(mask, count=grad_output.size, bitorder="little")
    passes = bits.reshape(grad_output.shape).astype(bool)
    g = grad_output
    blocked = _reference._times_slope(g, negative_slope) if leaky else _reference._zero(g)
    return np.where(passes, g, blocked)


# ---------------------------------------------------------------------------------------
# Checks.


def _check_mask(mask: Any, n: int, arg: str, func: str, output: bool) -> np.ndarray:
    """``mask`` as a uint8 array of ``(n + 7) // 8`` bytes, else the documented error."""
    # None is a missing mask, not an array of dtype object.
    if (output or mask is None) and not isinstance(mask, np.ndarray):
        raise TypeError(
            f"fastact.{func}: {arg} must be a numpy.ndarray, not {type(mask).__name__}"
        )
    array = _dispatch._to_array(mask, arg, func)
    if array.dtype != np.uint8:
        raise TypeError(
            f"fastact.{func}: {arg} has dtype {array.dtype}; a mask is uint8, packed as "
            "np.packbits(..., bitorder='little')"
        )
    expected = mask_length(n)
    if array.ndim != 1 or array.shape[0] != expected:
        has = f"length {array.shape[0]}" if array.ndim == 1 else f"shape {array.shape}"
        raise ValueError(
            f"fastact.{func}: {arg} has {has} but {n} elements need a mask of "
            f"length {expected} ((n + 7) // 8 bytes, 1-D)"
        )
    if output and not array.flags.writeable:
        raise ValueError(f"fastact.{func}: {arg} is read-only")
    return array


def _check_out(out: Any, like: np.ndarray, func: str) -> None:
    # The common case first: the dispatcher's checks name dtypes, which is slow.
    if out is None or (
        type(out) is np.ndarray
        and out.dtype == like.dtype
        and out.shape == like.shape
        and out.flags.writeable
    ):
        return
    _dispatch._check_out(out, like, func)


def _check_disjoint(out: np.ndarray | None, mask: np.ndarray | None, func: str) -> None:
    if out is not None and mask is not None and np.shares_memory(out, mask):
        raise ValueError(f"fastact.{func}: out and mask overlap; they must be separate")


# ---------------------------------------------------------------------------------------
# Layouts.


def _is_ready(a: np.ndarray) -> bool:
    """What the loops take as it is: C-contiguous, aligned, native byte order."""
    return a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative


def _ready(a: np.ndarray) -> np.ndarray:
    if _is_ready(a):
        return a
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)


def _writes_directly(target: np.ndarray | None, inputs: tuple[np.ndarray, ...]) -> bool:
    """Whether the loops can write ``target`` itself: ready, and each input either the
    very same memory (in place: each element is read before it is written) or apart."""
    if target is None or not _is_ready(target):
        return False
    for a in inputs:
        if np.shares_memory(a, target) and not _same_memory(a, target):
            return False
    return True


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and (
        a.nbytes == b.nbytes
    )


def _threads(traffic_bytes: int) -> int:
    return int(_dispatch._kernels._threads_for(traffic_bytes))


# ---------------------------------------------------------------------------------------
# The functions.


def _with_mask(
    func: str, leaky: bool, x: Any, negative_slope: float, out: Any, mask: Any
) -> tuple[Any, np.ndarray]:
    x = _dispatch._as_array(x, "x", func)
    slope = _dispatch._check_param(negative_slope, _SLOPE, x.dtype, func) if leaky else 0.0
    _check_out(out, x, func)
    if mask is not None:
        mask = _check_mask(mask, x.size, "mask", func, output=True)
    _check_disjoint(out, mask, func)
    source = _ready(x)
    y = out if _writes_directly(out, (source,)) else None
    if y is None:
        y = np.empty(x.shape, dtype=source.dtype)
    bits = mask if _writes_directly(mask, (source, y)) else None
    if bits is None:
        bits = np.empty(mask_length(x.size), dtype=np.uint8)
    if _compiled is not None:
        traffic = 2 * source.nbytes + bits.nbytes
        _compiled.forward(leaky, source, y, bits, slope, _threads(traffic))
    else:
        y[...], bits[...] = reference_with_mask(source, leaky, slope)
    if mask is not None and bits is not mask:
        np.copyto(mask, bits)
        bits = mask
    if out is None:
        return (y[()] if y.ndim == 0 else y), bits
    if y is not out:
        np.copyto(out, y)
    return out, bits


def _backward_operands(
    func: str,
    leaky: bool,
    grad_output: Any,
    mask: Any,
    negative_slope: float,
    out: Any,
    along_last_axis: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """A backward pass's checked operands: ``(g, g ready for the loops, the mask bits,
    the array to write, the slope)``; every check runs before anything is written."""
    g = _dispatch._as_array(grad_output, "grad_output", func)
    if along_last_axis and g.ndim == 0:
        raise ValueError(f"fastact.{func}: grad_output is 0-d; the bias runs along its last axis")
    mask = _check_mask(mask, g.size, "mask", func, output=False)
    slope = _dispatch._check_param(negative_slope, _SLOPE, g.dtype, func) if leaky else 0.0
    _check_out(out, g, func)
    source = _ready(g)
    bits = np.ascontiguousarray(mask)
    result = out if _writes_directly(out, (source, bits)) else None
    if result is None:
        result = np.empty(g.shape, dtype=source.dtype)
    return g, source, bits, result, slope


def _backward_mask(
    func: str, leaky: bool, grad_output: Any, mask: Any, negative_slope: float, out: Any
) -> Any:
    _, source, bits, result, slope = _backward_operands(
        func, leaky, grad_output, mask, negative_slope, out
    )
    if _compiled is not None:
        traffic = 2 * source.nbytes + bits.nbytes
        _compiled.backward(leaky, source, bits, result, slope, _threads(traffic))
    else:
        result[...] = reference_backward_mask(source, bits, leaky, slope)
    if out is None:
        return result[()] if result.ndim == 0 else result
    if result is not out:
        np.copyto(out, result)
    return out


# The common call (ready arrays, a float slope) goes straight to the compiled entry point,
# which declines (None) anything that needs a check, a copy or an error message.
def _decline(*args: Any) -> None:
    return None


_forward_fast = _compiled.forward_fast if _compiled is not None else _decline
_backward_fast = _compiled.backward_fast if _compiled is not None else _decline
_bias_forward_fast = _compiled.bias_forward_fast if _compiled is not None else _decline
_bias_backward_fast = _compiled.bias_backward_fast if _compiled is not None else _decline


def relu_with_mask(x: Any, out: Any = None, mask: Any = None) -> tuple[Any, np.ndarray]:
    result = _forward_fast(False, x, 0.0, out, mask)
    if result is not None:
        return result
    return _with_mask("relu_with_mask", False, x, 0.0, out, mask)


def leaky_relu_with_mask(
    x: Any, negative_slope: float = 0.01, out: Any = None, mask: Any = None
) -> tuple[Any, np.ndarray]:
    result = _forward_fast(True, x, negative_slope, out, mask)
    if result is not None:
        return result
    return _with_mask("leaky_relu_with_mask", True, x, negative_slope, out, mask)


def relu_backward_mask(grad_output: Any, mask: Any, out: Any = None) -> Any:
    result = _backward_fast(False, grad_output, mask, 0.0, out)
    if result is not None:
        return result
    return _backward_mask("relu_backward_mask", False, grad_output, mask, 0.0, out)


def leaky_relu_backward_mask(
    grad_output: Any, mask: Any, negative_slope: float = 0.01, out: Any = None
) -> Any:
    result = _backward_fast(True, grad_output, mask, negative_slope, out)
    if result is not None:
        return result
    return _backward_mask("leaky_relu_backward_mask", True, grad_output, mask, negative_slope, out)


# ---------------------------------------------------------------------------------------
# A bias along the last axis before the activation, as after a linear layer: the forward
# pass computes ``z = x + bias`` (rounded once, as torch's add) and keeps only the mask of
# ``z``; the backward pass gives the gradient of ``z`` (of ``x``, and of the bias summed
# over every other axis). The bias gradient is summed in float64 over a partition of the
# rows fixed by the shape (chunks of at least 65536 elements, at most 64 of them, then the
# chunks in order), so it
# has the same bits for any thread count; float64 input is summed with Neumaier's
# compensation. It is then rounded once to the input's type.

__all__ += [
    "bias_leaky_relu",
    "bias_leaky_relu_backward",
    "bias_leaky_relu_with_mask",
    "bias_relu",
    "bias_relu_backward",
    "bias_relu_with_mask",
]


def _ieee_sums_of_infinities(sums: np.ndarray, grad: np.ndarray) -> None:
    """Where a compensated sum came out NaN, put IEEE's sum of the column instead.

    The compensation term of an infinite addend (or partial sum) is ``inf - inf``, NaN,
    even when the column holds infinities of one sign only, or finite terms whose sum
    overflows: IEEE's sum is then that infinity (as torch's).
    Only such columns are summed again, plainly: a NaN term or infinities of both signs
    still give NaN there.
    """
    columns = np.flatnonzero(np.isnan(sums))
    if columns.size:
        rows = grad.reshape(math.prod(grad.shape[:-1]), grad.shape[-1])
        with np.errstate(invalid="ignore", over="ignore"):
            sums[columns] = rows[:, columns].sum(axis=0, dtype=np.float64)


def reference_bias_backward(
    grad_output: np.ndarray, mask: np.ndarray, leaky: bool, negative_slope: float
) -> tuple[np.ndarray, np.ndarray]:
    grad = reference_backward_mask(grad_output, mask, leaky, negative_slope)
    # Rows counted from the shape: reshape(-1, 0) cannot infer them for an empty last axis.
    rows = grad.reshape(math.prod(grad.shape[:-1]), grad.shape[-1])
    # Infinities of both signs: NaN, as IEEE's sum; ml_dtypes flags a NaN's cast.
    with np.errstate(invalid="ignore"):
        columns = rows.astype(np.float64)
        sums = np.array([_sums.exact_sum(columns[:, j]) for j in range(columns.shape[1])])
    with np.errstate(over="ignore"):
        return grad, sums.astype(np.float64).astype(grad.dtype)


def _check_bias(bias: Any, x: np.ndarray, func: str) -> np.ndarray:
    if x.ndim == 0:
        raise ValueError(f"fastact.{func}: x is 0-d; the bias runs along its last axis")
    b = _dispatch._as_array(bias, "bias", func)
    if not _dispatch._same_type(b.dtype, x.dtype):
        raise TypeError(
            f"fastact.{func}: bias has dtype {b.dtype} but x has dtype {x.dtype}; they must "
            "be equal"
        )
    if b.ndim != 1 or b.shape[0] != x.shape[-1]:
        raise ValueError(
            f"fastact.{func}: bias has shape {b.shape} but x's last axis has length "
            f"{x.shape[-1]}; it must be ({x.shape[-1]},)"
        )
    return b


def _bias_forward(
    func: str,
    leaky: bool,
    with_mask: bool,
    x: Any,
    bias: Any,
    negative_slope: float,
    out: Any,
    mask: Any,
) -> Any:
    fast = _bias_forward_fast(leaky, with_mask, x, bias, negative_slope, out, mask)
    if fast is not None:
        return fast
    x = _dispatch._as_array(x, "x", func)
    b = _check_bias(bias, x, func)
    slope = _dispatch._check_param(negative_slope, _SLOPE, x.dtype, func) if leaky else 0.0
    _check_out(out, x, func)
    if mask is not None:
        mask = _check_mask(mask, x.size, "mask", func, output=True)
    _check_disjoint(out, mask, func)
    source, b_source = _ready(x), _ready(b)
    y = out if _writes_directly(out, (source,)) and not np.shares_memory(out, b_source) else None
    if y is None:
        y = np.empty(x.shape, dtype=source.dtype)
    bits = None
    if with_mask:
        bits = mask if _writes_directly(mask, (source, b_source, y)) else None
        if bits is None:
            bits = np.empty(mask_length(x.size), dtype=np.uint8)
    if _compiled is not None:
        traffic = 2 * source.nbytes + (bits.nbytes if bits is not None else 0)
        _compiled.bias_forward(leaky, source, b_source, y, bits, slope, _threads(traffic))
    else:
        with np.errstate(all="ignore"):
            z = source + b_source
        y[...], bits = reference_with_mask(z, leaky, slope)
        if bits is not None:
            bits[...] = bits
    if mask is not None and bits is not mask:
        np.copyto(mask, bits)
        bits = mask
    if out is not None and y is not out:
        np.copyto(out, y)
        y = out
    return (y, bits) if with_mask else y


def _bias_backward(
    func: str, leaky: bool, grad_output: Any, mask: Any, negative_slope: float, out: Any
) -> tuple[Any, np.ndarray]:
    fast = _bias_backward_fast(leaky, grad_output, mask, negative_slope, out)
    if fast is not None:
        grad, sums, plain = fast
        return grad, _bias_gradient(sums, grad, plain)
    g, source, bits, result, slope = _backward_operands(
        func, leaky, grad_output, mask, negative_slope, out, along_last_axis=True
    )
    if _compiled is not None:
        traffic = 2 * source.nbytes + bits.nbytes
        sums = _compiled.bias_backward(
            leaky, source, bits, result, g.shape[-1], slope, _threads(traffic)
        )
        grad_bias = _bias_gradient(sums, result, plain=False)
    else:
        result[...], grad_bias = reference_bias_backward(source, bits, leaky, slope)
    if out is not None and result is not out:
        np.copyto(out, result)
        result = out
    return result, grad_bias


def _bias_gradient(sums: np.ndarray, grad: np.ndarray, plain: bool) -> np.ndarray:
    """The float64 column sums of ``grad`` rounded to its type; unless ``plain`` (every
    sum finite and in range), mended first where IEEE's sum is an infinity, and rounded
    with a sum beyond the type's range becoming infinite, silently."""
    if plain:
        return sums.astype(grad.dtype)
    _ieee_sums_of_infinities(sums, grad)
    with np.errstate(over="ignore"):
        return sums.astype(grad.dtype)


def bias_relu(x: Any, bias: Any, out: Any = None) -> Any:
    return _bias_forward("bias_relu", False, False, x, bias, 0.0, out, None)


def bias_leaky_relu(x: Any, bias: Any, negative_slope: float = 0.01, out: Any = None) -> Any:
    return _bias_forward("bias_leaky_relu", True, False, x, bias, negative_slope, out, None)


def bias_relu_with_mask(
    x: Any, bias: Any, out: Any = None, mask: Any = None
) -> tuple[Any, np.ndarray]:
    return _bias_forward("bias_relu_with_mask", False, True, x, bias, 0.0, out, mask)


def bias_leaky_relu_with_mask(
    x: Any, bias: Any, negative_slope: float = 0.01, out: Any = None, mask: Any = None
) -> tuple[Any, np.ndarray]:
    return _bias_forward(
        "bias_leaky_relu_with_mask", True, True, x, bias, negative_slope, out, mask
    )


def bias_relu_backward(grad_output: Any, mask: Any, out: Any = None) -> tuple[Any, np.ndarray]:
    return _bias_backward("bias_relu_backward", False, grad_output, mask, 0.0, out)


def bias_leaky_relu_backward(
    grad_output: Any, mask: Any, negative_slope: float = 0.01, out: Any = None
) -> tuple[Any, np.ndarray]:
    return _bias_backward("bias_leaky_relu_backward", True, grad_output, mask, negative_slope, out)
