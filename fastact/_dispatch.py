"""The public functions: validate the input, run a compiled loop or the NumPy reference.

Every call first offers its arguments untouched to the compiled entry point, which takes
them only when they are already exactly what a loop covers (ndarrays of a covered dtype,
aligned, native byte order, at any strides, and a compatible ``out``) and otherwise
returns ``None``. Only then does the Python path below convert and validate (raising the
documented errors before anything is written), try the compiled loop again on the
converted arrays, run byte-swapped or misaligned arrays through the ufunc form (the same
loops over NumPy's buffered iterator) and fall back to the reference for the rest
(byte-swapped bfloat16).
``out`` is written once, after the whole result exists, unless a loop can write it
directly without any partial overlap with an input.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _reference
from ._functions import COMPUTE, Function, Parameter

__all__ = ["COMPILED", "call"]

#: Set to a non-empty value other than "0" to force the NumPy reference path.
DISABLE_ENV_VAR = "FASTACT_DISABLE_COMPILED"

_DISABLED = os.environ.get(DISABLE_ENV_VAR, "") not in ("", "0")


def _load_extensions() -> tuple[Any, Any]:
    """The compiled kernels and ufuncs, or (None, None) when disabled or not built."""
    if _DISABLED:
        return None, None
    try:
        kernels = importlib.import_module(f"{__package__}._kernels")
        ufuncs = importlib.import_module(f"{__package__}._ufuncs")
    except ImportError:  # a source checkout that was never built
        return None, None
    return kernels, ufuncs


_kernels, _ufuncs = _load_extensions()

#: Whether the compiled loops are in use.
COMPILED: bool = _kernels is not None


class _NoKernels:
    """Stands in for the extension: every entry point declines."""

    @staticmethod
    def _decline(*args: Any) -> None:
        return None

    unary = binary = dead_units = _decline


_compiled: Any = _kernels if _kernels is not None else _NoKernels()

# What each function accepts, by NumPy dtype kind and item size. float128 and friends are
# refused: PyTorch has no such type, so the contract says nothing about them. bfloat16 is
# ml_dtypes' (a NumPy user-defined type), accepted when that package is installed.
_FLOAT_TYPES = "float16, float32, float64, bfloat16 (ml_dtypes)"
_INT_TYPES = "int8, int16, int32, int64, uint8, uint16, uint32, uint64"


def _is_bfloat16(dtype: np.dtype) -> bool:
    # The scalar type's name: dtype.name is computed in Python, 1.6 us a call.
    return dtype.type.__name__ == "bfloat16" and dtype.type.__module__.startswith("ml_dtypes")


def _is_float(dtype: np.dtype) -> bool:
    return (dtype.kind == "f" and dtype.itemsize in (2, 4, 8)) or _is_bfloat16(dtype)


def _same_type(a: np.dtype, b: np.dtype) -> bool:
    """The same element type, in either byte order: the same scalar type (which does not
    depend on the byte order), or integers of one kind and size (``np.longlong`` is not
    ``np.int64`` on Linux, but holds the same values). Comparing ``dtype.name`` instead
    cost 3 us a call."""
    if a.itemsize != b.itemsize:
        return False
    return a.type is b.type or (a.kind in "iu" and a.kind == b.kind)


def _is_int(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" and dtype.itemsize in (1, 2, 4, 8)


def _check_dtype(dtype: np.dtype, arg: str, func: str, integers_ok: bool) -> None:
    if _is_float(dtype) or (integers_ok and _is_int(dtype)):
        return
    allowed = f"{_FLOAT_TYPES}, {_INT_TYPES}" if integers_ok else _FLOAT_TYPES
    activation = not func.startswith("dead_")
    hint = " (of the fastact functions only relu takes integers, as in PyTorch)"
    raise TypeError(
        f"fastact.{func}: {arg} has dtype {dtype}, which is not supported; "
        f"expected one of {allowed}" + (hint if activation and _is_int(dtype) else "")
    )


def _to_array(value: Any, arg: str, func: str) -> np.ndarray:
    """``np.asarray(value)``, its failure an error that names the argument.

    A duck array (dask, xarray, pandas, ...) that reaches this conversion is refused: the
    paths that keep one lazy or labelled have taken it before, and converting it here
    would compute a dask graph in full, silently, and drop an xarray's dims and coords.
    """
    if _is_duck_array(value):
        raise TypeError(
            f"fastact.{func}: {arg} is of type {_type_name(value)}, which {func} would "
            f"convert to a NumPy array here (computing it, dropping its labels): pass "
            f"numpy.asarray({arg}) to do that knowingly"
        )
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise ValueError(f"fastact.{func}: {arg} cannot be converted to an array: {exc}") from exc
    except Exception as exc:
        raise TypeError(f"fastact.{func}: {arg} cannot be converted to an array: {exc}") from exc


def _as_array(value: Any, arg: str, func: str, integers_ok: bool = False) -> np.ndarray:
    arr = _to_array(value, arg, func)
    _check_dtype(arr.dtype, arg, func, integers_ok)
    return arr


# The largest finite value of each type a parameter can be rounded to (see _functions).
_LARGEST = {name: float(np.finfo(name).max) for name in ("float16", "float32", "float64")}
_LARGEST["bfloat16"] = 3.3895313892515355e38  # (2 - 2**-7) * 2**127


def _range_type(param: Parameter, dtype: np.dtype) -> str:
    """The name of the type whose range ``param`` must fit for input of ``dtype``."""
    if dtype.itemsize == 8 and dtype.kind == "f":
        return "float64"
    if param.range_type == COMPUTE or dtype.itemsize == 4:
        return "float32"
    return "bfloat16" if _is_bfloat16(dtype) else "float16"


def _real_number(value: Any, name: str, func: str) -> float:
    """A scalar parameter as a float: a ``TypeError`` unless it is a real number, a
    ``ValueError`` if it is too large for one (an integer such as ``10**400``, which the
    message sizes rather than prints)."""
    if type(value) is float:  # the usual case, before the slower check of the ABC
        return value
    # np.bool_ is not registered as a numbers.Real, but Python's bool is: accept both;
    # nor is ml_dtypes' bfloat16 scalar, a real number as much as np.float16.
    if not (
        isinstance(value, (numbers.Real, np.bool_))
        or (isinstance(value, np.generic) and _is_bfloat16(np.dtype(type(value))))
    ):
        raise TypeError(
            f"fastact.{func}: {name} must be a real number, not {type(value).__name__}"
        )
    try:
        return float(value)
    except OverflowError:
        size = f" of {len(str(abs(value)))} digits" if isinstance(value, numbers.Integral) else ""
        raise ValueError(
            f"fastact.{func}: {name} (a number{size}) is too large for a float"
        ) from None
    except TypeError:  # registered as a number but not one: np.timedelta64
        raise TypeError(
            f"fastact.{func}: {name} must be a real number, not {type(value).__name__}"
        ) from None


def _check_param(value: Any, param: Parameter, dtype: np.dtype, func: str) -> float:
    number = _real_number(value, param.name, func)
    # torch's rule: a finite value beyond the range of the type it is rounded to (or, for
    # a backward pass, that its forward rounds it to) is an error, not an infinity; inf
    # and NaN themselves are accepted.
    target = _range_type(param, dtype)
    if math.isfinite(number) and abs(number) > _LARGEST[target]:
        raise ValueError(
            f"fastact.{func}: {param.name}={value!r} overflows {target}, as torch refuses "
            f"it for {dtype.newbyteorder('=').name} input"
        )
    return number


def _check_params(spec: Function, values: tuple[Any, ...], dtype: np.dtype) -> tuple[float, ...]:
    params = tuple(
        _check_param(v, p, dtype, spec.name) for v, p in zip(values, spec.parameters, strict=True)
    )
    if spec.ordered and params[0] > params[1]:
        first, second = spec.parameters
        raise ValueError(
            f"fastact.{spec.name}: {first.name}={values[0]!r} is greater than "
            f"{second.name}={values[1]!r}"
        )
    return params


def _shapes_differ(first: Any, second: Any) -> bool:
    """Whether two shapes are known to differ: a length a shape does not know (None, or a
    dask array's NaN before its chunks are computed) matches any."""
    if first is None or second is None:
        return False
    if len(first) != len(second):
        return True
    return any(
        isinstance(m, numbers.Integral) and isinstance(n, numbers.Integral) and m != n
        for m, n in zip(first, second, strict=True)
    )


def _check_same(
    shapes: tuple[Any, Any], dtypes: tuple[np.dtype | None, np.dtype | None], func: str
) -> None:
    """grad_output's and x's shapes and dtypes (None: unknown) must be equal."""
    g_shape, x_shape = shapes
    # No broadcasting in a backward pass: a shape mismatch there is always a bug upstream.
    if _shapes_differ(g_shape, x_shape):
        raise ValueError(
            f"fastact.{func}: grad_output has shape {tuple(g_shape)} "
            f"but x has shape {tuple(x_shape)}; they must be equal"
        )
    g_dtype, x_dtype = dtypes
    if g_dtype is not None and x_dtype is not None and not _same_type(g_dtype, x_dtype):
        raise TypeError(
            f"fastact.{func}: grad_output has dtype {g_dtype} "
            f"but x has dtype {x_dtype}; they must be equal"
        )


def _labels(value: Any) -> dict[str, Any]:
    """What a labelled duck array's ufunc protocol matches operands by: xarray's dimension
    names and indexes, pandas' index and columns (nothing for other types)."""
    labels: dict[str, Any] = {}
    dims = getattr(value, "dims", None)
    if isinstance(dims, tuple):
        labels["dims"] = dims
    indexes = getattr(value, "indexes", None)  # xarray: one pandas index per labelled dim
    if indexes is not None and hasattr(indexes, "items"):
        for dim, index in indexes.items():
            labels[f"index along {dim!r}"] = index
    for attr in ("index", "columns"):  # pandas
        index = getattr(value, attr, None)
        if hasattr(index, "equals"):
            labels[attr] = index
    return labels


def _check_pair(
    g: Any, x: Any, dtypes: tuple[np.dtype | None, np.dtype | None], func: str
) -> None:
    """grad_output and x where either is a duck array: the same shape and dtype, as
    ``_check_same`` asks, and, where both carry the same kind of label, the same labels.
    xarray would broadcast operands with other dimension names into an outer product, and
    xarray and pandas would align other indexes into an inner join or NaN-padded union: a
    backward pass pairs grad_output with x element by element, so either is an error."""
    _check_same((getattr(g, "shape", None), getattr(x, "shape", None)), dtypes, func)
    g_labels, x_labels = _labels(g), _labels(x)
    for name in g_labels.keys() & x_labels.keys():
        first, second = g_labels[name], x_labels[name]
        same = first == second if isinstance(first, tuple) else bool(first.equals(second))
        if not same:
            raise ValueError(
                f"fastact.{func}: grad_output and x differ in their {name}; a backward pass "
                f"pairs them element by element, without broadcasting by name or aligning by "
                f"label (grad_output: {first!r}; x: {second!r})"
            )


def _duck_operand(value: Any, arg: str, func: str, integers_ok: bool = False) -> Any:
    """An operand beside a duck array: a duck array as it is, anything else (a list, a
    number) as the NumPy array the ufunc would make of it, with the NumPy path's checks,
    so that its shape and dtype are known before the duck type broadcasts or casts it."""
    return value if _is_duck_array(value) else _as_array(value, arg, func, integers_ok)


def _check_out(out: Any, like: np.ndarray, func: str) -> None:
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"fastact.{func}: out must be a numpy.ndarray, not {type(out).__name__}")
    _check_out_matches(out, like.dtype, like.shape, func)
    if not out.flags.writeable:
        raise ValueError(f"fastact.{func}: out is read-only")


def _check_out_matches(out: Any, dtype: Any, shape: Any, func: str) -> None:
    """``out`` (an ndarray or a duck array) has the result's element type and shape; a
    ``dtype`` or ``shape`` of None (a duck array that keeps it to itself, a dask shape
    with unknown lengths) is not checked."""
    # Either byte order will do: only the element type has to match.
    if dtype is not None and not _same_type(np.dtype(out.dtype), np.dtype(dtype)):
        raise TypeError(
            f"fastact.{func}: out has dtype {out.dtype} but the result has dtype {dtype}"
        )
    known = shape is not None and all(isinstance(n, numbers.Integral) for n in shape)
    if known and tuple(out.shape) != tuple(shape):
        raise ValueError(
            f"fastact.{func}: out has shape {tuple(out.shape)} but the result has shape "
            f"{tuple(shape)}"
        )


def _ufunc_signature(spec: Function, x: np.ndarray) -> tuple[str, ...] | None:
    """The ufunc loop for ``x``'s dtype, or None where the ufuncs have none (bfloat16)."""
    if x.dtype.kind not in "fiu":
        return None
    char = x.dtype.newbyteorder("=").char
    # Parameters are float32 for float16 (torch computes in float32), else x's type.
    param = "f" if char == "e" else char
    n_params = 0 if spec.fixed else len(spec.parameters)
    return (char,) * len(spec.operands) + (param,) * n_params + (char,)


def _run(
    spec: Function,
    op: int,
    arrays: tuple[np.ndarray, ...],
    params: tuple[float, ...],
    out: np.ndarray | None,
) -> Any:
    """Compute from validated arguments into ``out`` (or a new array) and return it."""
    kernel = _compiled.binary if spec.is_backward else _compiled.unary
    padded = (*params, 0.0, 0.0)[:2]
    if out is not None:
        result = kernel(op, *arrays, out, *padded)
        if result is not None:
            return result
    # `out` is incompatible with the loops (layout, byte order, partial overlap): compute
    # into a fresh array, so that no input is overwritten before it is read.
    result = kernel(op, *arrays, None, *padded)
    if result is None:
        signature = _ufunc_signature(spec, arrays[-1]) if _ufuncs is not None else None
        if signature is not None:
            # Byte-swapped or misaligned inputs: the same loops through NumPy's buffered
            # iterator, which writes `out` directly (and copes with any overlap by itself).
            # No error can arise once the arguments are validated, so `out` is never left
            # half written.
            ufunc = getattr(_ufuncs, spec.name)
            if out is None:
                return ufunc(*arrays, *params, signature=signature)
            # Into out's memory as a plain ndarray, as the loops write it: a subclass's
            # ufunc hooks (a masked array's, which would reset its mask) stay out of it.
            ufunc(*arrays, *params, out=out.view(np.ndarray), signature=signature)
            return out
        result = getattr(_reference, spec.name)(*arrays, *params)
    if out is None:
        # As NumPy's ufuncs do: a 0-d result comes back as a NumPy scalar.
        return result[()] if result.ndim == 0 else result
    np.copyto(out, result)
    return out


def _is_duck_array(value: Any) -> bool:
    """Not an ndarray, but takes part in NumPy's ufunc protocol (dask, xarray, ...)."""
    if isinstance(value, np.ndarray):
        return False
    return getattr(type(value), "__array_ufunc__", None) is not None


def _is_dask_array(value: Any) -> bool:
    """A dask array: the functions that are not one ufunc build their lazy graph for it."""
    return type(value).__module__.startswith("dask.") and hasattr(value, "map_blocks")


def _duck_dtype(value: Any, arg: str, func: str) -> np.dtype:
    """A duck array's dtype as NumPy's: a TypeError naming it where it has none (pandas'
    nullable ``Float32``, for one)."""
    try:
        return np.dtype(value.dtype)
    except TypeError:
        raise TypeError(
            f"fastact.{func}: {arg} has dtype {value.dtype}, which is not a NumPy dtype"
        ) from None


def _check_lazy_dtype(value: Any, arg: str, func: str) -> np.dtype:
    """A duck array's dtype under the main functions' rules; bfloat16 is refused, as the
    ufuncs that keep it lazy would widen it."""
    dtype = _duck_dtype(value, arg, func)
    _check_dtype(dtype, arg, func, False)
    if _is_bfloat16(dtype):
        raise TypeError(
            f"fastact.{func}: {arg} is a bfloat16 {type(value).__name__}; the lazy form has "
            "no bfloat16 loops (pass a NumPy array)"
        )
    return dtype


def _apply_ufunc(
    spec: Function, inputs: tuple[Any, ...], params: tuple[Any, ...], out: Any
) -> Any:
    """Hand duck arrays to the ufunc form, so that e.g. a dask array stays lazy.

    The ufunc would cast what the main functions refuse, so the same dtype rules are
    checked first, on each operand's ``dtype``.
    """
    func = spec.name
    inputs = tuple(
        _duck_operand(value, arg, func, spec.integers)
        for arg, value in zip(spec.operands, inputs, strict=True)
    )
    dtypes: list[np.dtype | None] = []
    for arg, value in zip(spec.operands, inputs, strict=True):
        if getattr(value, "dtype", None) is None:  # a duck array that keeps it to itself
            dtypes.append(None)
            continue
        dtype = _duck_dtype(value, arg, func)
        _check_dtype(dtype, arg, func, spec.integers)
        if _is_bfloat16(dtype):
            # NumPy would cast it to float32 for the ufunc: refuse rather than change dtype.
            raise TypeError(
                f"fastact.{func}: {arg} is a bfloat16 {type(value).__name__}; the ufunc form "
                "that keeps it lazy has no bfloat16 loops (pass a NumPy array)"
            )
        dtypes.append(dtype)
    if spec.is_backward:
        _check_pair(inputs[0], inputs[1], (dtypes[0], dtypes[1]), func)
    like = dtypes[-1] if dtypes[-1] is not None else np.dtype(np.float64)
    checked = _check_params(spec, params, like)
    shape = getattr(inputs[-1], "shape", None)
    return _duck_ufunc(getattr(_ufuncs, func), (*inputs, *checked), out, dtypes[-1], shape, func)


def _duck_ufunc(
    ufunc: Any, args: tuple[Any, ...], out: Any, dtype: Any, shape: Any, func: str
) -> Any:
    """A ufunc on duck arrays, which keeps them lazy (dask) or labelled (xarray).

    An ``out`` is checked against the result's ``dtype`` and ``shape`` as on the NumPy
    path (dask would otherwise give its ``out`` the result's dtype, silently), then handed
    to the duck type, whose ufunc protocol writes it; a type that cannot take that ``out``
    says so in a ``TypeError`` naming it.
    """
    if out is None:
        return ufunc(*args)
    if getattr(out, "dtype", None) is None:
        raise TypeError(f"fastact.{func}: out must be an array, not {type(out).__name__}")
    _check_out_matches(out, dtype, shape, func)
    duck = next(a for a in args if _is_duck_array(a))
    if _type_name(duck).startswith("xarray."):
        # xarray refuses an xarray `out` and, given a NumPy one, writes it but returns a
        # new object around it: not `out`, as the functions promise. Refused either way,
        # before anything is written.
        raise TypeError(
            f"fastact.{func}: out is a {_type_name(out)}, which a {_type_name(duck)} input "
            "cannot write into (xarray takes no out); pass out=None"
        )
    try:
        return ufunc(*args, out=out)
    except NotImplementedError as exc:  # e.g. dask into a NumPy out
        raise TypeError(
            f"fastact.{func}: out is a {_type_name(out)}, which a {_type_name(duck)} input "
            f"cannot write into ({exc}); pass out=None"
        ) from None


def _type_name(value: Any) -> str:
    """``numpy.ndarray``, ``dask.Array``, ``xarray.DataArray``: the package and the type."""
    return f"{type(value).__module__.partition('.')[0]}.{type(value).__name__}"


def call(
    spec: Function, op: int, inputs: tuple[Any, ...], params: tuple[Any, ...], out: Any
) -> Any:
    """The path for everything the compiled entry point declined: validate, then compute.

    ``inputs`` are the array arguments in the table's order, ``params`` the scalar
    parameters as given. Every check runs before anything is written.
    """
    if _ufuncs is not None and any(_is_duck_array(value) for value in inputs):
        return _apply_ufunc(spec, inputs, params, out)
    arrays = tuple(
        _as_array(value, arg, spec.name, spec.integers)
        for arg, value in zip(spec.operands, inputs, strict=True)
    )
    if spec.is_backward:
        g, x = arrays
        _check_same((g.shape, x.shape), (g.dtype, x.dtype), spec.name)
    _check_out(out, arrays[-1], spec.name)
    checked = _check_params(spec, params, arrays[-1].dtype)
    return _run(spec, op, arrays, checked, out)


# ---------------------------------------------------------------------------------------
# Dead units: a diagnostic over a batch of pre-activations. A reduction along one axis,
# so it has its own entry point and takes no ``out``.

__all__ += ["dead_fraction", "dead_units"]

_compiled_dead_units: Callable[[Any, Any], np.ndarray | None] = _compiled.dead_units


def _check_axis(axis: Any, ndim: int, func: str) -> int:
    # bool is an int to Python, but `axis=True` is a slip, not an axis.
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"fastact.{func}: axis must be an int, not {type(axis).__name__}")
    # AxisError is a ValueError, as NumPy's own reductions raise it; raised here for any
    # axis out of range, as normalize_axis_index overflows on one beyond a C long.
    index = int(axis)
    if not -ndim <= index < ndim:
        raise np.exceptions.AxisError(index, ndim, msg_prefix=f"fastact.{func}")
    return index % ndim


def _dead_mask(pre_activation: Any, axis: Any, func: str) -> np.ndarray:
    mask = _compiled_dead_units(pre_activation, axis)
    if mask is not None:
        return mask
    x = _as_array(pre_activation, "pre_activation", func)
    axis = _check_axis(axis, x.ndim, func)
    mask = _compiled_dead_units(x, axis)
    return mask if mask is not None else _reference.dead_units(x, axis)


def dead_units(pre_activation: Any, axis: int = 0) -> Any:
    """Which ReLU units are dead over a batch: no sample gives them a gradient.

    Parameters
    ----------
    pre_activation : array_like
        float16, float32, float64 or bfloat16 (ml_dtypes): the input ``x`` of a ReLU
        layer for a batch of samples, for example of shape ``(samples, units)``.
    axis : int, default 0
        The axis along which the samples lie; negative values count from the end.

    Returns
    -------
    ndarray of bool or numpy.bool
        ``pre_activation``'s shape without ``axis``: True where the unit is dead. A NumPy
        bool scalar if ``pre_activation`` is 1-D.

    Notes
    -----
    A unit is dead iff :func:`relu_grad` is 0 for every sample, that is
    ``np.all(x <= 0, axis=axis)``: neither ReLU nor anything before it receives a
    gradient through that unit from this batch. ``±0`` counts as dead (the derivative
    at 0 is 0) and NaN as alive (``relu_grad(nan)`` is 1). With no samples (length 0
    along ``axis``) every unit is dead, as ``np.all`` of nothing is True.

    The compiled loop covers every float type (float16 and bfloat16 by integer compares of
    their bits) when ``axis`` is the leading axis of a C-contiguous array or the trailing
    axis of a Fortran-contiguous one, in one pass over the data; every other valid input
    goes through NumPy with the same result.

    Raises
    ------
    TypeError
        If ``pre_activation`` is not float16/32/64 or bfloat16 (integers, bool, complex,
        object, strings, ...) or is a duck array (dask, xarray: no lazy form), or
        ``axis`` is not an int.
    ValueError
        ``numpy.exceptions.AxisError`` if ``axis`` is out of range (a 0-d input has no
        axis).
    """
    mask = _dead_mask(pre_activation, axis, "dead_units")
    return mask[()] if mask.ndim == 0 else mask


def dead_fraction(pre_activation: Any, axis: int = 0) -> float:
    """The fraction of ReLU units that are dead over a batch (see :func:`dead_units`).

    Parameters
    ----------
    pre_activation : array_like
        float16, float32, float64 or bfloat16 (ml_dtypes): the input of a ReLU layer for
        a batch of samples.
    axis : int, default 0
        The axis along which the samples lie; negative values count from the end.

    Returns
    -------
    float
        The number of dead units divided by the number of units, in [0, 1]. Never NaN:
        with no units at all it is 0.0 (there is no dead unit), so that averaging over
        layers stays finite and nothing warns.

    Raises
    ------
    TypeError
        If ``pre_activation`` is not float16/32/64 or bfloat16, is a duck array, or
        ``axis`` is not an int.
    ValueError
        ``numpy.exceptions.AxisError`` if ``axis`` is out of range.
    """
    mask = _dead_mask(pre_activation, axis, "dead_fraction")
    return int(np.count_nonzero(mask)) / mask.size if mask.size else 0.0
