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
import re
from dataclasses import dataclass
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
        bound = _dispatch._real_number(value, name, func)
        # torch refuses a NaN or infinite bound in training and evaluation alike (a slope
        # drawn from [lower, inf] has no distribution), the lower bound first.
        if not math.isfinite(bound):
            raise ValueError(
                f"fastact.{func}: {name}={value!r} is not finite (torch: {name} bound must "
                "be finite)"
            )
        bounds.append(bound)
    if bounds[0] > bounds[1]:
        raise ValueError(
            f"fastact.{func}: lower={lower!r} is greater than upper={upper!r} (torch: lower "
            "bound should be less than or equal to the upper bound)"
        )
    return bounds[0], bounds[1]


def _check_training(training: Any, func: str) -> None:
    # As torch: a flag that picks random slopes and another return type is a bool, not
    # whatever is truthy ("False" would train).
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"fastact.{func}: training must be a bool, not {type(training).__name__}")


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
        # The leaky function's name, wherever its message says it, is rrelu's.
        message = re.sub(rf"\b{leaky.__name__}\b", func, str(exc))
        message = message.replace(f"negative_slope={slope!r}", f"(lower + upper) / 2 = {slope!r}")
        raise type(exc)(message) from exc


def _check_in_range(bounds: tuple[float, float], x: np.ndarray, func: str) -> None:
    """Training rounds each bound to the compute type: torch refuses one that overflows."""
    # Either byte order: a byte-swapped float64 input computes in float64 too.
    wide = x.dtype.kind == "f" and x.dtype.itemsize == 8
    largest = _dispatch._LARGEST["float64" if wide else "float32"]
    for name, value in zip(("lower", "upper"), bounds, strict=True):
        if math.isfinite(value) and abs(value) > largest:
            raise ValueError(
                f"fastact.{func}: {name}={value!r} overflows the float32 computation of "
                f"{x.dtype} input"
            )


def _check_rng(rng: Any, func: str) -> None:
    """A Generator, a SeedSequence, a non-negative integer seed or None; checked in
    evaluation too, where nothing is drawn, so that a slip shows on the first call."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"fastact.{func}: rng={rng!r}: a seed must be a non-negative integer")
        return
    if not (rng is None or isinstance(rng, (np.random.Generator, np.random.SeedSequence))):
        raise TypeError(
            f"fastact.{func}: rng must be a numpy.random.Generator, a seed or None, "
            f"not {type(rng).__name__}"
        )


def _generator(rng: Any, func: str) -> np.random.Generator:
    _check_rng(rng, func)
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


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
    _check_training(training, "rrelu")
    if not training:
        _check_rng(rng, "rrelu")
        return _evaluated(_api.leaky_relu, (x,), low, high, "rrelu", out=out)
    if _dispatch._is_dask_array(x):
        return _lazy_training(x, low, high, rng, out)
    generator = _generator(rng, "rrelu")
    x = _dispatch._as_array(x, "x", "rrelu")
    _check_in_range((low, high), x, "rrelu")
    _dispatch._check_out(out, x, "rrelu")
    # Aligned too: the loops load whole elements (a misaligned buffer is copied).
    if x.flags.c_contiguous and x.flags.aligned and x.dtype.isnative:
        native = x.reshape(-1)
    else:
        native = np.require(x, x.dtype.newbyteorder("="), ["C_CONTIGUOUS", "ALIGNED"]).reshape(-1)
    y, noise = np.empty_like(native), np.empty_like(native)
    if _noise is not None and _dispatch.COMPILED:
        _noise.rrelu_train(native, y, noise, low, high, generator.bit_generator)
    else:
        _draw_with_numpy(native, y, noise, low, high, generator)
    y, noise = y.reshape(x.shape), noise.reshape(x.shape)
    if out is not None:
        np.copyto(out, y)
        y = out
    # A 0-d x gives scalars, as NumPy's functions do; an out given is returned as it is.
    if x.ndim == 0:
        return (y if out is not None else y[()]), noise[()]
    return y, noise


# ---------------------------------------------------------------------------------------
# Training on a dask array, lazily. The eager draws follow x's C order over the whole
# array, which no chunk can know without the counts of every chunk before it; instead each
# chunk draws from a generator of its own, spawned from the caller's: chunk k (in C order
# of the chunk grid) takes the k-th of ``rng.spawn(number of chunks)`` and draws as the
# eager function does on that chunk alone. Same seed and same chunks, same bits, on any
# scheduler and any number of workers; not the bits of the eager call on the whole array.


@dataclass(frozen=True)
class _Spawned:
    """What a chunk needs to rebuild its generator: ``rng.spawn(n)[k]`` is the bit
    generator's type seeded by ``SeedSequence(entropy, spawn_key=(*spawn_key, first + k),
    pool_size=pool_size)`` (NumPy's definition of spawning)."""

    bit_generator: type
    entropy: Any
    spawn_key: tuple[int, ...]
    pool_size: int
    first: int
    grid: tuple[int, ...]

    def generator(self, k: int) -> np.random.Generator:
        seeds = np.random.SeedSequence(
            self.entropy, spawn_key=(*self.spawn_key, self.first + k), pool_size=self.pool_size
        )
        return np.random.Generator(self.bit_generator(seeds))


def _spawn_chunks(generator: np.random.Generator, grid: tuple[int, ...]) -> _Spawned:
    seeds = generator.bit_generator.seed_seq
    if not isinstance(seeds, np.random.SeedSequence):
        raise TypeError(
            "fastact.rrelu: rng must be seeded by a numpy.random.SeedSequence to draw for a "
            f"dask array (its chunks spawn generators of their own), not {type(seeds).__name__}"
        )
    first = seeds.n_children_spawned
    generator.spawn(math.prod(grid))  # taken, as draws are: the next call spawns others
    return _Spawned(
        type(generator.bit_generator), seeds.entropy, seeds.spawn_key, seeds.pool_size, first, grid
    )


def _train_chunk(
    x: np.ndarray, lower: float, upper: float, spawned: _Spawned, block_id: tuple = ()
) -> np.ndarray:
    k = int(np.ravel_multi_index(block_id[1:], spawned.grid)) if spawned.grid else 0
    y, noise = rrelu(x, lower, upper, True, rng=spawned.generator(k))
    return np.stack([y, noise])


def _lazy_training(x: Any, low: float, high: float, rng: Any, out: Any) -> tuple[Any, Any]:
    if out is not None:
        raise TypeError("fastact.rrelu: out must be None for a dask array (the result is lazy)")
    _dispatch._check_lazy_dtype(x, "x", "rrelu")
    _check_in_range((low, high), x, "rrelu")
    spawned = _spawn_chunks(_generator(rng, "rrelu"), tuple(x.numblocks))
    both = x.map_blocks(
        _train_chunk,
        low,
        high,
        spawned,
        new_axis=0,
        chunks=((2,), *x.chunks),
        dtype=x.dtype,
        meta=np.empty((0,) * (x.ndim + 1), x.dtype),
    )
    return both[0], both[1]


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
    with np.errstate(all="ignore"):  # a bound beyond a 16-bit type gives inf, not a warning
        y[negative] = (x[negative].astype(compute) * r).astype(x.dtype)
        noise[negative] = r.astype(x.dtype)


def rrelu_backward(
    grad_output: Any,
    x: Any,
    lower: float = _LOWER,
    upper: float = _UPPER,
    training: bool = False,
    noise: Any = None,
    out: np.ndarray | None = None,
) -> Any:
    func = "rrelu_backward"
    low, high = _check_bounds(lower, upper, func)
    _check_training(training, func)
    if not training:
        arrays = (grad_output, x)
        return _evaluated(_api.leaky_relu_backward, arrays, low, high, func, out=out)
    if noise is None:
        raise ValueError(f"fastact.{func}: training=True needs the noise rrelu returned with y")
    if any(_dispatch._is_dask_array(a) for a in (grad_output, x, noise)):
        return _lazy_training_backward(grad_output, x, noise, out)
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
    _dispatch._check_out(out, x, func)
    # torch's training gradient, grad_output * noise: a product rounded once in x's type
    # (16-bit floats multiply in float32, as NumPy and ml_dtypes do). NumPy's multiply
    # buffers an out that overlaps an input by part.
    with np.errstate(all="ignore"):
        result = np.multiply(g, slopes, out=out, dtype=g.dtype.newbyteorder("="))
    return result[()] if result.ndim == 0 and out is None else result


def _lazy_training_backward(grad_output: Any, x: Any, noise: Any, out: Any) -> Any:
    """``grad_output * noise`` on dask arrays, lazily, rounded once in the element type
    (16-bit floats through float32), as the eager product (NaN by NaN-ness: a float16
    NaN's payload may differ)."""
    func = "rrelu_backward"
    arrays = {"grad_output": grad_output, "x": x, "noise": noise}
    arrays = {name: _dispatch._duck_operand(a, name, func) for name, a in arrays.items()}
    grad_output, x, noise = arrays.values()
    dtypes = {name: _dispatch._check_lazy_dtype(a, name, func) for name, a in arrays.items()}
    _dispatch._check_pair(grad_output, x, (dtypes["grad_output"], dtypes["x"]), func)
    if not _dispatch._same_type(dtypes["noise"], dtypes["x"]):
        raise TypeError(
            f"fastact.{func}: noise has dtype {dtypes['noise']} but x has dtype {dtypes['x']}; "
            "they must be equal"
        )
    if _dispatch._shapes_differ(noise.shape, x.shape):
        raise ValueError(
            f"fastact.{func}: noise has shape {tuple(noise.shape)} but x has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    if _dispatch._ufuncs is None:  # the reference build: NumPy's product, NumPy's warnings
        product, args = np.multiply, (grad_output, noise)
    else:
        # grad_output * noise is leaky_relu_backward's x <= 0 branch with a slope per
        # element: its ufunc at x = -1 rounds that product once in x's type, as the eager
        # path does, and leaves no floating-point flags for dask to turn into warnings at
        # compute time (an overflow to inf is the product's value, quiet on the eager path).
        product = _dispatch._ufuncs.leaky_relu_backward
        args = (grad_output, np.array(-1, dtypes["x"]), noise)
    return _dispatch._duck_ufunc(product, args, out, dtypes["x"], x.shape, func)
