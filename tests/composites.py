"""What the generic suites need to call each composite function of the table.

The elementwise functions are one rule each, so the suites derive their calls from the
table alone (``bitwise.args_for``). A composite takes other operands (a per-channel
weight, a bias, a bit mask, the training noise, a random generator) and returns more than
one array, so each has an entry here, keyed by its name in ``fastact._functions.COMPOSITES``
(``test_every_composite_has_an_entry`` fails on a new one without): how to build a valid
call from an ``x`` and a ``grad_output`` of one shape and dtype, the NumPy reference of its
results, which keyword arguments are outputs, and which of its operands may have a wrong
length. The suites then loop over ``COMPOSITE_CASES`` as they loop over the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastact import _masks, _reference, _rrelu
from fastact._functions import COMPOSITES
from fastact._sums import exact_sum

#: Keyword arguments of one call, in signature order.
Call = dict[str, Any]


def _native(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C")


def channels(shape: tuple[int, ...]) -> int:
    """PReLU's channel count: axis 1, one for 1-D and 0-d input."""
    return shape[1] if len(shape) >= 2 else 1


def passes(x: np.ndarray, leaky: bool) -> np.ndarray:
    """The mask bits' rule, in float64 (exact for every float type): relu passes
    ``!(x <= 0)`` (NaN included), leaky_relu ``x > 0``."""
    with np.errstate(invalid="ignore"):  # ml_dtypes flags a NaN's cast and comparison
        wide = _native(x).astype(np.float64)
        return wide > 0 if leaky else ~(wide <= 0)


def mask_of(x: np.ndarray, leaky: bool) -> np.ndarray:
    return np.packbits(passes(x, leaky).ravel(), bitorder="little")


def noise_for(x: np.ndarray, lower: float, upper: float, rng: np.random.Generator) -> np.ndarray:
    """Training noise as rrelu returns it: a slope in [lower, upper] where ``x <= 0``."""
    with np.errstate(over="ignore", invalid="ignore"):  # bounds beyond a 16-bit type, NaN
        drew = _native(x).astype(np.float64) <= 0
        r = lower + (upper - lower) * rng.random(np.shape(x))
        return np.where(drew, r, 1.0).astype(np.asarray(x).dtype)


@dataclass(frozen=True)
class CompositeCase:
    """How the suites call one composite.

    ``build(x, g, params, rng)`` gives the keyword arguments of a valid call (no outputs):
    ``x`` and ``g`` are arrays of one shape and dtype, ``params`` the scalar parameters
    (``default_params`` or drawn), ``rng`` a NumPy Generator for operands of its own
    (weights, biases). ``reference(call)`` gives the expected results, as a tuple, from
    the call's arguments. ``outputs`` are the keyword arguments a caller may pass to be
    written (``out``, ``mask``). ``sized`` are the operands whose length follows from
    ``x``'s shape (a wrong one is a ValueError naming them). ``sums`` are the indices of
    results that are reductions accumulated in float64 (compared within the bound of
    that accumulation, not bit for bit: see ``assert_sum_close``). ``min_ndim``: the
    lowest dimension the function takes (the bias runs along the last axis).
    """

    name: str
    build: Callable[[np.ndarray, np.ndarray, dict[str, float], np.random.Generator], Call]
    reference: Callable[[Call], tuple[np.ndarray, ...]]
    default_params: dict[str, Any]
    outputs: tuple[str, ...] = ()
    sized: tuple[str, ...] = ()
    sums: tuple[int, ...] = ()
    min_ndim: int = 0

    def call(self, call: Call, **outputs: Any) -> tuple[Any, ...]:
        """Call the function; its results as a tuple."""
        import fastact

        result = getattr(fastact, self.name)(**call, **outputs)
        return result if isinstance(result, tuple) else (result,)

    @property
    def arrays(self) -> tuple[str, ...]:
        """The array operands a built call holds (``x``/``grad_output`` first)."""
        return _ARRAYS[self.name]

    def sum_terms(self, call: Call) -> list[np.ndarray]:
        """For each result in ``sums``: its terms, one row per output element."""
        return [_SUM_TERMS[self.name](call)]


# ---------------------------------------------------------------------------------------
# PReLU: the weight is drawn per channel (or one for all, or a 0-d one).


def _prelu_weight(x: np.ndarray, rng: np.random.Generator, kind: int = 0) -> np.ndarray:
    from bitwise import sample

    dtype = np.asarray(x).dtype.newbyteorder("=")
    c = channels(np.shape(x))
    w = sample(dtype, c if kind == 0 else 1, rng)
    if kind == 1:
        return w[:1]
    if kind == 2:
        return w[0].reshape(())
    return w


def _prelu_backward_terms(call: Call) -> np.ndarray:
    x, g, w = _native(call["x"]), _native(call["grad_output"]), _native(call["weight"])
    with np.errstate(all="ignore"):
        terms = np.where(x > 0, 0.0, x.astype(np.float64) * g.astype(np.float64))
    if w.size == 1 or x.ndim < 2:
        return terms.reshape(1, -1)
    return np.moveaxis(terms, 1, 0).reshape(x.shape[1], terms.size // max(x.shape[1], 1))


def _bias_terms(call: Call, leaky: bool) -> np.ndarray:
    g, mask = _native(call["grad_output"]), _native(call["mask"])
    slope = call.get("negative_slope", 0.0)
    grad = _masks.reference_backward_mask(g, mask, leaky, slope)
    with np.errstate(invalid="ignore"):  # ml_dtypes flags a NaN's cast
        return grad.reshape(math.prod(g.shape[:-1]), g.shape[-1]).astype(np.float64).T


# ---------------------------------------------------------------------------------------
# RReLU: the reference of training is NumPy's own Generator.random, drawn in C order.


def _rrelu_reference(call: Call) -> tuple[np.ndarray, ...]:
    x = _native(call["x"])
    low, high = float(call["lower"]), float(call["upper"])
    if not call["training"]:
        return (_reference.leaky_relu(x, (low + high) / 2),)
    y, noise = np.empty_like(x.reshape(-1)), np.empty_like(x.reshape(-1))
    rng = np.random.default_rng(call["rng"])
    _rrelu._draw_with_numpy(x.reshape(-1), y, noise, low, high, rng)
    return y.reshape(x.shape), noise.reshape(x.shape)


def _rrelu_backward_reference(call: Call) -> tuple[np.ndarray, ...]:
    g, x = _native(call["grad_output"]), _native(call["x"])
    low, high = float(call["lower"]), float(call["upper"])
    if not call["training"]:
        return (_reference.leaky_relu_backward(g, x, (low + high) / 2),)
    with np.errstate(all="ignore"):
        return (np.multiply(g, _native(call["noise"]), dtype=g.dtype),)


def _rrelu_build(x, g, params, rng) -> Call:
    return {"x": x, **params, "rng": int(rng.integers(2**32))}


def _rrelu_backward_build(x, g, params, rng) -> Call:
    call = {"grad_output": g, "x": x, **params}
    if params["training"]:
        call["noise"] = noise_for(x, params["lower"], params["upper"], rng)
    return call


# ---------------------------------------------------------------------------------------
# The mask and bias functions.


def _with_mask(leaky: bool, bias: bool) -> Callable[[Call], tuple[np.ndarray, ...]]:
    def reference(call: Call) -> tuple[np.ndarray, ...]:
        x = _native(call["x"])
        if bias:
            with np.errstate(all="ignore"):
                x = x + _native(call["bias"])
        return _masks.reference_with_mask(x, leaky, call.get("negative_slope", 0.0))

    return reference


def _backward_mask(leaky: bool) -> Callable[[Call], tuple[np.ndarray, ...]]:
    def reference(call: Call) -> tuple[np.ndarray, ...]:
        g, mask = _native(call["grad_output"]), _native(call["mask"])
        slope = call.get("negative_slope", 0.0)
        return (_masks.reference_backward_mask(g, mask, leaky, slope),)

    return reference


def _bias_backward(leaky: bool) -> Callable[[Call], tuple[np.ndarray, ...]]:
    def reference(call: Call) -> tuple[np.ndarray, ...]:
        g, mask = _native(call["grad_output"]), _native(call["mask"])
        grad, _ = _masks.reference_bias_backward(g, mask, leaky, call.get("negative_slope", 0.0))
        exact = np.array([exact_sum(row) for row in _bias_terms(call, leaky)])
        with np.errstate(over="ignore"):
            return grad, exact.astype(g.dtype).reshape(g.shape[-1:])

    return reference


def _bias(x, rng):
    from bitwise import sample

    return sample(np.asarray(x).dtype.newbyteorder("="), np.shape(x)[-1], rng)


_SLOPE = {"negative_slope": 0.2}
_BOUNDS = {"lower": 0.125, "upper": 1 / 3}

_CASES = [
    CompositeCase(
        "prelu",
        lambda x, g, p, rng: {"x": x, "weight": _prelu_weight(x, rng, int(rng.integers(3)))},
        lambda c: (_reference.prelu(_native(c["x"]), _native(c["weight"])),),
        {},
        outputs=("out",),
        sized=("weight",),
    ),
    CompositeCase(
        "prelu_backward",
        lambda x, g, p, rng: {
            "grad_output": g,
            "x": x,
            "weight": _prelu_weight(x, rng, int(rng.integers(3))),
        },
        lambda c: _reference.prelu_backward(
            _native(c["grad_output"]), _native(c["x"]), _native(c["weight"])
        ),
        {},
        outputs=("out",),
        sized=("weight",),
        sums=(1,),
    ),
    CompositeCase(
        "rrelu",
        _rrelu_build,
        _rrelu_reference,
        {**_BOUNDS, "training": True},
        outputs=("out",),
    ),
    CompositeCase(
        "rrelu_backward",
        _rrelu_backward_build,
        _rrelu_backward_reference,
        {**_BOUNDS, "training": True},
        outputs=("out",),
        sized=("noise",),
    ),
    CompositeCase(
        "relu_with_mask",
        lambda x, g, p, rng: {"x": x},
        _with_mask(False, False),
        {},
        outputs=("out", "mask"),
    ),
    CompositeCase(
        "leaky_relu_with_mask",
        lambda x, g, p, rng: {"x": x, **p},
        _with_mask(True, False),
        _SLOPE,
        outputs=("out", "mask"),
    ),
    CompositeCase(
        "relu_backward_mask",
        lambda x, g, p, rng: {"grad_output": g, "mask": mask_of(x, False)},
        _backward_mask(False),
        {},
        outputs=("out",),
        sized=("mask",),
    ),
    CompositeCase(
        "leaky_relu_backward_mask",
        lambda x, g, p, rng: {"grad_output": g, "mask": mask_of(x, True), **p},
        _backward_mask(True),
        _SLOPE,
        outputs=("out",),
        sized=("mask",),
    ),
]
for _leaky in (False, True):
    _name = "bias_leaky_relu" if _leaky else "bias_relu"
    _params = _SLOPE if _leaky else {}
    _forward = _with_mask(_leaky, True)
    _CASES += [
        CompositeCase(
            _name,
            lambda x, g, p, rng: {"x": x, "bias": _bias(x, rng), **p},
            lambda c, _forward=_forward: _forward(c)[:1],
            _params,
            outputs=("out",),
            sized=("bias",),
            min_ndim=1,
        ),
        CompositeCase(
            f"{_name}_with_mask",
            lambda x, g, p, rng: {"x": x, "bias": _bias(x, rng), **p},
            _forward,
            _params,
            outputs=("out", "mask"),
            sized=("bias",),
            min_ndim=1,
        ),
        CompositeCase(
            f"{_name}_backward",
            lambda x, g, p, rng, _leaky=_leaky: {
                "grad_output": g,
                "mask": mask_of(x, _leaky),
                **p,
            },
            _bias_backward(_leaky),
            _params,
            outputs=("out",),
            sized=("mask",),
            sums=(1,),
            min_ndim=1,
        ),
    ]

#: Every composite function's case, in the table's order.
COMPOSITE_CASES: dict[str, CompositeCase] = {
    c.name: c for c in sorted(_CASES, key=lambda c: [f.name for f in COMPOSITES].index(c.name))
}

_ARRAYS = {
    "prelu": ("x", "weight"),
    "prelu_backward": ("grad_output", "x", "weight"),
    "rrelu": ("x",),
    "rrelu_backward": ("grad_output", "x", "noise"),
    "relu_with_mask": ("x",),
    "leaky_relu_with_mask": ("x",),
    "relu_backward_mask": ("grad_output", "mask"),
    "leaky_relu_backward_mask": ("grad_output", "mask"),
    "bias_relu": ("x", "bias"),
    "bias_leaky_relu": ("x", "bias"),
    "bias_relu_with_mask": ("x", "bias"),
    "bias_leaky_relu_with_mask": ("x", "bias"),
    "bias_relu_backward": ("grad_output", "mask"),
    "bias_leaky_relu_backward": ("grad_output", "mask"),
}
_SUM_TERMS = {
    "prelu_backward": _prelu_backward_terms,
    "bias_relu_backward": lambda c: _bias_terms(c, False),
    "bias_leaky_relu_backward": lambda c: _bias_terms(c, True),
}


def build_call(
    case: CompositeCase,
    dtype: Any,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    params: dict[str, Any] | None = None,
) -> Call:
    """A valid call of ``case`` on sampled data of ``shape`` and ``dtype``."""
    from bitwise import sample

    n = math.prod(shape)
    x = sample(dtype, n, rng).reshape(shape)
    g = sample(dtype, n, rng).reshape(shape)
    return case.build(x, g, dict(case.default_params if params is None else params), rng)


def empty_outputs(case: CompositeCase, call: Call) -> dict[str, np.ndarray]:
    """Fresh arrays for every output of ``case``, filled with a sentinel."""
    like = _native(call["x"] if "x" in call else call["grad_output"])
    outputs: dict[str, np.ndarray] = {}
    if "out" in case.outputs:
        outputs["out"] = np.full(like.shape, 7, like.dtype)
    if "mask" in case.outputs:
        outputs["mask"] = np.full(_masks.mask_length(like.size), 0xAB, np.uint8)
    return outputs


def ulp(value: np.ndarray, dtype: Any) -> np.ndarray:
    """The spacing of ``dtype``'s values at each of ``value`` (float64)."""
    from bitwise import is_bfloat16, ml_dtypes

    info = ml_dtypes.finfo(dtype) if is_bfloat16(dtype) else np.finfo(dtype)
    smallest = float(info.smallest_normal)
    exponent = np.floor(np.log2(np.maximum(np.abs(value), smallest)))
    return 2.0 ** (exponent - int(info.nmant))


def assert_sum_close(got: Any, terms: np.ndarray, ulps: int) -> None:
    """A float64 accumulation of ``terms`` (one row per element of ``got``) rounded once:
    within ``ulps`` of the exact sum, plus what float64 addition may lose when the terms
    cancel (``2^-52`` of the sum of their magnitudes per term added). A non-finite sum
    must be the exact one: a NaN term makes it NaN, an infinite one that infinity."""
    got_a = np.asarray(got)
    g64 = got_a.astype(np.float64).ravel()
    exact = np.array([exact_sum(row) for row in terms], np.float64)
    assert g64.shape == exact.shape, (got_a.shape, terms.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = exact.astype(got_a.dtype).astype(np.float64)
        magnitude = np.abs(terms).sum(axis=1)
    finite = np.isfinite(rounded) & np.isfinite(g64)
    same_nan = np.isnan(g64) == np.isnan(rounded)
    assert (same_nan & (finite | np.isnan(g64) | (g64 == rounded))).all(), (g64, exact)
    with np.errstate(over="ignore", invalid="ignore"):
        bound = ulps * ulp(exact, got_a.dtype) + terms.shape[1] * 2.0**-52 * magnitude
        bad = finite & ~(np.abs(g64 - exact) <= bound)
    assert not bad.any(), f"sums {g64[bad]} are not within {bound[bad]} of {exact[bad]}"


def sum_ulps(dtype: Any) -> int:
    """The documented accuracy of a float64-accumulated sum: 1 ulp, 4 for float64."""
    return 4 if np.dtype(dtype) == np.float64 else 1


def expected(case: CompositeCase, call: Call) -> tuple[tuple, list[np.ndarray]]:
    """The reference results of ``call`` and the terms of its sums, taken before the call
    (an ``out`` that is an input overwrites it)."""
    return case.reference(call), case.sum_terms(call) if case.sums else []


def assert_results(
    case: CompositeCase, call: Call, got: tuple[Any, ...], want: tuple | None = None
) -> None:
    """``got`` (the function's results as a tuple) against the reference: bit for bit,
    masks byte for byte, the sums within the bound of their float64 accumulation.
    ``want``: what ``expected`` gave before the call, else computed from ``call`` now."""
    from bitwise import assert_bitwise_equal

    results, terms = want if want is not None else expected(case, call)
    assert len(got) == len(results), (len(got), len(results))
    rows = iter(terms)
    for index, (a, b) in enumerate(zip(got, results, strict=True)):
        if index in case.sums:
            assert np.shape(a) == np.shape(b) and np.asarray(a).dtype == b.dtype, (a, b)
            assert_sum_close(a, next(rows), sum_ulps(b.dtype))
        else:
            assert_bitwise_equal(a, b)
