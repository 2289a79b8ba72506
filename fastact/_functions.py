"""The function table: every function of fastact, declared once.

Each row says what a function is: its name, its array operands, its scalar parameters
(with their defaults and the type torch rounds them to), the element rule that computes it
(``<rule>_rule`` in ``_elementwise.pxd``), which dtypes it takes and its docstring. The
reference is the function of the same name in ``_reference.py``. Everything else is derived
from this table, in one direction:

- at build time, ``_codegen.py`` writes ``_ops.pxi`` (the ``Op`` enum, the dispatch from an
  op to its rule, the Cython API kernels) for ``_loops.pxd``;
- at import, ``_api.py`` builds the public functions (signature, validation, docstring),
  ``_kernels`` the dtype coverage, ``_ufuncs`` the NumPy ufuncs, ``fastact.__all__`` and
  ``fastact.ufunc`` their name lists;
- the stubs (``__init__.pyi``, ``_ufuncs.pyi``) are written by ``python -m
  fastact._codegen`` and a test checks that they match;
- the tests and ``bench/`` parametrise over the table.

This module imports nothing from fastact (``setup.py`` runs it before anything is built).
Adding a function means one row here, one rule in ``_elementwise.pxd``, one reference
function and nothing else.

Functions that are not one elementwise rule (a per-channel weight with its gradient
reduction, random draws, bit masks) are ``COMPOSITES``: the table declares their name,
signature (for the stubs) and docstring, and ``module`` holds the hand-written
implementation, built from the same compiled loops where it can be.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

__all__ = ["BY_NAME", "COMPOSITES", "FUNCTIONS", "Composite", "Function", "Parameter"]

# How torch rounds a scalar parameter before it uses it, which also fixes which values
# it refuses (a finite value beyond the type's largest is a ValueError, as in torch;
# ±inf and NaN are accepted):
#: float32 for float16, bfloat16 and float32 input, float64 for float64 (torch's "opmath").
COMPUTE = "compute"
#: the element type itself (float16 bounds for float16 input), as torch's ``to<scalar_t>``.
ELEMENT = "element"


@dataclass(frozen=True)
class Parameter:
    """A scalar parameter: name, default (None: required) and torch's rounding of it.

    ``limit`` is the type whose range a finite value must fit, else torch refuses it: the
    rounding type, unless the autograd forward refuses more (``hardtanh_backward`` rounds
    its bounds to float32, but ``hardtanh`` would have refused any beyond float16).
    """

    name: str
    default: float | None
    rounding: str = COMPUTE
    limit: str | None = None

    @property
    def range_type(self) -> str:
        return self.limit or self.rounding


@dataclass(frozen=True)
class Function:
    """One elementwise function of the table.

    ``operands`` are the array arguments in call order (``grad_output`` first in a
    backward pass). ``rule`` names the element rule; ``fixed`` are rule parameters the
    function itself fixes (``relu6`` is the ``hardtanh`` rule at 0 and 6), else the rule
    takes ``parameters``. ``integers``: the function also takes integer dtypes. ``widens``:
    the 16-bit rule is the float32 rule on widened values, rounded once (a product), so
    hardware conversions may run it. ``ordered``: the first parameter may not exceed the
    second (``min_val <= max_val``).
    """

    name: str
    operands: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    rule: str
    doc: str
    fixed: tuple[float, ...] = ()
    integers: bool = False
    widens: bool = False
    ordered: bool = False

    @property
    def is_backward(self) -> bool:
        return len(self.operands) == 2

    @property
    def rule_arity(self) -> int:
        """Scalar arguments the rule takes (fixed or given)."""
        return len(self.fixed) if self.fixed else len(self.parameters)

    @property
    def op(self) -> str:
        """The name of the op in the compiled code."""
        return self.name.upper()


@dataclass(frozen=True)
class Composite:
    """A function that is not one elementwise rule, implemented in ``fastact.<module>``.

    ``parameters`` are the stub's parameters as written there (``"x: ArrayLike"``,
    ``"*"``, ``"out: NDArray[Any] | None = None"``) and ``returns`` its return annotation.
    """

    name: str
    module: str
    parameters: tuple[str, ...]
    returns: str
    doc: str


# Shared pieces of the docstrings.
_OUT = """\
    out : ndarray, optional
        Where to write the result: a writeable array of ``x``'s shape and dtype. It may be
        an input itself (in place); any other overlap with an input is handled as if
        ``out`` were a separate array."""
_RETURNS = """\
    Returns
    -------
    ndarray or scalar
        ``out`` if given; else a new array of ``x``'s dtype and shape (a NumPy scalar if
        ``x`` is 0-d)."""
_X = """\
    x : array_like
        float16, float32, float64 or bfloat16 (ml_dtypes)."""
_G = """\
    grad_output : array_like
        Gradient of the loss with respect to the forward output; same shape and dtype as
        ``x`` (no broadcasting)."""


def _raises(backward: bool, parameters: bool, ordered: bool = False) -> str:
    """The Raises section, from what the function takes."""
    inputs = (
        "an input is not float16/32/64/bfloat16, the two dtypes differ"
        if backward
        else "``x`` has another dtype (integers included, as in PyTorch)"
    )
    type_errors = [inputs, "a parameter is not a real number"] if parameters else [inputs]
    type_errors.append("``out`` is not an ndarray of the right dtype")
    value_errors = ["``grad_output`` and ``x`` differ in shape"] if backward else []
    if parameters:
        value_errors.append("a parameter overflows the type it is rounded to")
    if ordered:
        value_errors.append("``min_val > max_val``")
    value_errors.append("``out`` has the wrong shape or is read-only")
    return _raises_section(type_errors, value_errors)


def _raises_section(type_errors: list[str], value_errors: list[str]) -> str:
    """A NumPy-style Raises section: each list says "If a, b or c." under its error."""

    def sentence(causes: list[str]) -> str:
        listed = f"{', '.join(causes[:-1])} or {causes[-1]}" if len(causes) > 1 else causes[0]
        return _wrap(f"If {listed}.")

    return (
        "    Raises\n    ------\n    TypeError\n"
        + sentence(type_errors)
        + "\n    ValueError\n"
        + sentence(value_errors)
    )


def _wrap(text: str) -> str:
    indent = " " * 8
    return textwrap.fill(
        text, 88, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
    )


_SLOPE = """\
    negative_slope : float, default 0.01
        Slope ``s`` for ``x <= 0``: any real number, including 0, 1, values above 1,
        negative values, inf and NaN (as in PyTorch). Rounded to float32 for float16,
        bfloat16 and float32 input; a finite slope beyond that type's range is a
        ``ValueError`` (torch refuses it too)."""
_BOUNDS = """\
    min_val, max_val : float, default -1.0, 1.0
        The bounds, rounded to ``x``'s dtype as torch rounds them (a finite bound beyond
        that dtype's range is a ``ValueError``); ``min_val > max_val`` is a
        ``ValueError``. A NaN bound makes every result NaN, as in torch."""
_BOUNDS_BACKWARD = """\
    min_val, max_val : float, default -1.0, 1.0
        The bounds of the forward :func:`hardtanh`, rounded to float32 for float16,
        bfloat16 and float32 input (torch's backward compares in float32). What the
        forward refuses is a ``ValueError`` here too: a finite bound beyond ``x``'s dtype,
        ``min_val > max_val``."""
_THRESHOLD = """\
    threshold : float
        The threshold, rounded to float32 for float16, bfloat16 and float32 input (a finite
        value beyond float32 is a ``ValueError``)."""
_VALUE = """\
    value : float
        What replaces ``x <= threshold``, rounded to ``x``'s dtype (a finite value beyond
        that dtype's range is a ``ValueError``, as in torch)."""
_RELU6_BACKWARD_NOTES = """\
    The rule is ``(x <= 0 or x >= 6) ? +0 : g``, torch's ``hardtanh_backward(g, x, 0, 6)``:
    the gradient is 0 at exactly 0 and 6, and a NaN ``x`` passes ``g`` (torch's scalar
    rule; its vector loop gives 0 there, pytorch issue #195075: fastact takes one rule
    for every length)."""


def _doc(summary: str, parameters: str, notes: str, raises: str, returns: str = _RETURNS) -> str:
    return (
        f"{summary}\n\n    Parameters\n    ----------\n{parameters}\n{_OUT}\n\n{returns}\n\n"
        f"    Notes\n    -----\n{notes}\n\n{raises}\n    "
    )


_SLOPE_PARAM = Parameter("negative_slope", 0.01)
_MIN_MAX = (Parameter("min_val", -1.0, ELEMENT), Parameter("max_val", 1.0, ELEMENT))
_MIN_MAX_BACKWARD = (
    Parameter("min_val", -1.0, COMPUTE, limit=ELEMENT),
    Parameter("max_val", 1.0, COMPUTE, limit=ELEMENT),
)

FUNCTIONS: tuple[Function, ...] = (
    Function(
        "relu",
        ("x",),
        (),
        rule="relu",
        integers=True,
        doc=_doc(
            "Rectified linear unit, ``max(x, 0)``, elementwise.",
            """\
    x : array_like
        float16, float32, float64, bfloat16 (ml_dtypes), or any signed or unsigned
        integer dtype.""",
            """\
    The rule is ``x < 0 ? +0 : x``, bit-identical to ``torch.relu`` on CPU:
    ``relu(-0.0)`` is ``-0.0``, ``relu(nan)`` is ``nan``, ``relu(-inf)`` is ``+0.0`` and
    subnormals pass through unchanged. For integers the dtype is kept (``int8`` -128
    gives 0) and unsigned input is returned unchanged.""",
            """\
    Raises
    ------
    TypeError
        If ``x`` has another dtype (bool, complex, object, string, float128, ...) or
        ``out`` is not an ndarray of the right dtype.
    ValueError
        If ``out`` has the wrong shape or is read-only.""",
        ),
    ),
    Function(
        "leaky_relu",
        ("x",),
        (_SLOPE_PARAM,),
        rule="leaky_relu",
        widens=True,
        doc=_doc(
            "Leaky rectified linear unit, elementwise.",
            f"{_X}\n{_SLOPE}",
            """\
    The rule is ``x > 0 ? x : x * s``, bit-identical to
    ``torch.nn.functional.leaky_relu`` on CPU. ``±0`` and NaN take the product, so
    ``-0.0`` gives ``-0.0 * s`` and ``-inf`` with ``s = 0`` gives NaN. float32 multiplies
    in float32; float16 and bfloat16 compute ``float16(float32(x) * float32(s))``,
    rounding once.""",
            _raises(False, True),
        ),
    ),
    Function(
        "relu_grad",
        ("x",),
        (),
        rule="relu_grad",
        doc=_doc(
            "Derivative of :func:`relu` with respect to ``x``, elementwise.",
            _X,
            """\
    The rule is ``x <= 0 ? +0 : 1``, PyTorch's convention: the derivative at ``±0`` is
    taken as 0, and ``relu_grad(nan)`` is 1 (NaN fails ``x <= 0``).""",
            _raises(False, False),
        ),
    ),
    Function(
        "leaky_relu_grad",
        ("x",),
        (_SLOPE_PARAM,),
        rule="leaky_relu_grad",
        doc=_doc(
            "Derivative of :func:`leaky_relu` with respect to ``x``, elementwise.",
            f"{_X}\n{_SLOPE}",
            """\
    The rule is ``x > 0 ? 1 : s``, PyTorch's convention: the derivative at ``±0`` and at
    NaN is ``s``, rounded as the product ``1 * s`` is in :func:`leaky_relu` (float16:
    ``float16(float32(s))``).""",
            _raises(False, True),
        ),
    ),
    Function(
        "relu_backward",
        ("grad_output", "x"),
        (),
        rule="relu_backward",
        doc=_doc(
            "Backward pass of :func:`relu`: ``grad_output * relu_grad(x)`` in one pass.",
            f"{_G}\n{_X}",
            """\
    The rule is ``x <= 0 ? +0 : g``, as ``torch.ops.aten.threshold_backward(g, x, 0)``.
    It is a select, not a multiply: where ``x <= 0`` the result is ``+0.0`` even when
    ``g`` is NaN or inf; where ``x`` is NaN, ``g`` passes through.""",
            _raises(True, False),
        ),
    ),
    Function(
        "leaky_relu_backward",
        ("grad_output", "x"),
        (_SLOPE_PARAM,),
        rule="leaky_relu_backward",
        widens=True,
        doc=_doc(
            "Backward pass of :func:`leaky_relu`: ``grad_output * leaky_relu_grad(x)``.",
            f"{_G}\n{_X}\n{_SLOPE}",
            """\
    The rule is ``x > 0 ? g : g * s``, as ``torch.ops.aten.leaky_relu_backward``. It is a
    multiply: a NaN gradient stays NaN everywhere, and an infinite one times ``s = 0``
    gives NaN. Rounding follows :func:`leaky_relu` (16-bit floats multiply in float32).""",
            _raises(True, True),
        ),
    ),
    Function(
        "hardtanh",
        ("x",),
        _MIN_MAX,
        rule="hardtanh",
        ordered=True,
        doc=_doc(
            "Hard tanh: ``x`` clamped to ``[min_val, max_val]``, elementwise.",
            f"{_X}\n{_BOUNDS}",
            """\
    The rule is torch's clamp, ``min(max(x, min_val), max_val)``, bit-identical to
    ``torch.nn.functional.hardtanh`` on CPU: NaN passes, a NaN bound makes every result
    NaN, and ``±0`` is kept as it is at a bound of 0.""",
            _raises(False, True, ordered=True),
        ),
    ),
    Function(
        "hardtanh_backward",
        ("grad_output", "x"),
        _MIN_MAX_BACKWARD,
        rule="hardtanh_backward",
        ordered=True,
        doc=_doc(
            "Backward pass of :func:`hardtanh`: ``grad_output`` where ``x`` is inside.",
            f"{_G}\n{_X}\n{_BOUNDS_BACKWARD}",
            """\
    The rule is ``(x <= min_val or x >= max_val) ? +0 : g``, as torch's
    ``hardtanh_backward``: the gradient is 0 at exactly the bounds (a select: a NaN or inf
    ``g`` there gives ``+0.0``), and a NaN ``x`` passes ``g`` (torch's scalar rule; its
    vector loop gives 0 there, pytorch issue #195075: fastact takes one rule for every
    length).""",
            _raises(True, True, ordered=True),
        ),
    ),
    Function(
        "relu6",
        ("x",),
        (),
        rule="hardtanh",
        fixed=(0.0, 6.0),
        doc=_doc(
            "ReLU6, ``min(max(x, 0), 6)``, elementwise: :func:`hardtanh` at 0 and 6.",
            _X,
            """\
    Bit-identical to ``torch.nn.functional.relu6`` on CPU: ``relu6(-0.0)`` is ``-0.0``,
    NaN passes, ``-inf`` gives ``+0.0`` and ``+inf`` gives 6.""",
            _raises(False, False),
        ),
    ),
    Function(
        "relu6_backward",
        ("grad_output", "x"),
        (),
        rule="hardtanh_backward",
        fixed=(0.0, 6.0),
        doc=_doc(
            "Backward pass of :func:`relu6`.",
            f"{_G}\n{_X}",
            _RELU6_BACKWARD_NOTES,
            _raises(True, False),
        ),
    ),
    Function(
        "threshold",
        ("x",),
        (Parameter("threshold", None), Parameter("value", None, ELEMENT)),
        rule="threshold",
        doc=_doc(
            "Threshold: ``value`` where ``x <= threshold``, else ``x``, elementwise.",
            f"{_X}\n{_THRESHOLD}\n{_VALUE}",
            """\
    The rule is ``x <= threshold ? value : x``, bit-identical to
    ``torch.nn.functional.threshold`` on CPU: ``x`` equal to the threshold is replaced,
    NaN passes; ``relu`` would be ``threshold(x, 0, 0)`` but for ``-0.0``, which
    ``threshold`` replaces by ``value``.""",
            _raises(False, True),
        ),
    ),
    Function(
        "threshold_backward",
        ("grad_output", "x"),
        (Parameter("threshold", None),),
        rule="threshold_backward",
        doc=_doc(
            "Backward pass of :func:`threshold`: ``grad_output`` where ``x > threshold``.",
            f"{_G}\n{_X}\n{_THRESHOLD}",
            """\
    The rule is ``x <= threshold ? +0 : g``, as ``torch.ops.aten.threshold_backward``: a
    select, so a NaN or inf ``g`` where ``x <= threshold`` gives ``+0.0``, and a NaN ``x``
    passes ``g``.""",
            _raises(True, True),
        ),
    ),
)

_WEIGHT = """\
    weight : float or array_like
        The slopes: a number, a 0-d array, or a 1-D array of 1 or C values, where C is
        ``x.shape[1]`` (the channel axis, as in torch; 1 for 1-D and 0-d ``x``). An array
        or a NumPy scalar (``np.float64(0.5)`` included) must have ``x``'s dtype (torch's
        weight is a tensor, and it does not promote either); a Python number, or a list
        or tuple of them, takes ``x``'s dtype, rounded through float32 for float16 and
        bfloat16 as torch rounds a number into a 16-bit tensor (a finite value that
        overflows the dtype is a ``ValueError``)."""

_BOUNDS_RRELU = """\
    lower, upper : float, default 1/8, 1/3
        The range of the random slopes: finite, ``lower <= upper``, else a ``ValueError``
        (as in torch: a NaN or infinite bound too). In evaluation the slope is
        ``(lower + upper) / 2``, computed in float64 and then rounded as
        :func:`leaky_relu` rounds a slope.
    training : bool, default False
        Draw a random slope per element (training) or use the mean slope (evaluation)."""

# The rest of the ReLU family: a per-channel weight with its gradient, random slopes.
FAMILY_COMPOSITES: tuple[Composite, ...] = (
    Composite(
        "prelu",
        "_prelu",
        ("x: ArrayLike", "weight: ArrayLike", "out: NDArray[Any] | None = None"),
        "Any",
        doc=f"""PReLU: Leaky ReLU with one learned slope per channel (He et al., 2015).

    Parameters
    ----------
{_X}
{_WEIGHT}
{_OUT}

{_RETURNS}

    Notes
    -----
    The rule is ``x > 0 ? x : w[c] * x`` for channel ``c``, bit-identical to
    ``torch.nn.functional.prelu`` on CPU: :func:`leaky_relu`'s rule and rounding, with the
    channel's weight as the slope (±0 and NaN take the product; 16-bit floats multiply in
    float32 and round once).

    Raises
    ------
    TypeError
        If ``x`` is not float16/32/64/bfloat16, ``weight`` is an array of another dtype or
        not a number or array, or ``out`` is not an ndarray of the right dtype.
    ValueError
        If ``weight`` has more than one dimension or a length other than 1 or C (the
        message names both shapes), or ``out`` has the wrong shape or is read-only.
    """,
    ),
    Composite(
        "prelu_backward",
        "_prelu",
        (
            "grad_output: ArrayLike",
            "x: ArrayLike",
            "weight: ArrayLike",
            "out: NDArray[Any] | None = None",
        ),
        "tuple[Any, Any]",
        doc=f"""Backward pass of :func:`prelu`: the input gradient and the weight gradient.

    Parameters
    ----------
{_G}
{_X}
{_WEIGHT}
    out : ndarray, optional
        Where to write ``grad_input``: a writeable array of ``x``'s shape and dtype,
        returned as the first result. It may be ``grad_output`` or ``x`` itself (in
        place); any other overlap with an input is handled as if ``out`` were a separate
        array. Reusing one ``out`` across training steps saves allocating (and the OS
        zeroing) a fresh gradient per call.

    Returns
    -------
    grad_input : ndarray or scalar
        ``x > 0 ? g : w[c] * g``, bit-identical to torch's autograd input gradient.
    grad_weight : ndarray or scalar
        In ``weight``'s shape and dtype: for each channel, the sum over every other axis
        of ``x > 0 ? 0 : x * g`` (over everything, for a single weight), accumulated in
        float64 (compensated, for float64 input) and rounded once: within 1 ulp of the
        exact sum (4 ulp for float64) unless the terms cancel (a float64 sum loses what
        lies below 2^-53 of its largest partial sum), and the same bits for any thread
        count.

    Notes
    -----
    One pass over ``grad_output`` and ``x`` computes both results. A NaN in ``x`` or in
    ``g`` where ``x <= 0`` makes the channel's weight gradient NaN, as in torch.

    On dask arrays both results are lazy: ``grad_input`` chunk by chunk, the same bits
    as the eager call; ``grad_weight`` a reduction: each chunk's sums in float64
    (compensated), the chunks' sums added exactly (``math.fsum``), rounded once. It has
    the same accuracy bound and the same bits for the same chunks on any scheduler, but
    its sums are grouped by chunk, so its last bit can differ from the eager call's.

    Raises
    ------
    TypeError
        If an input is not float16/32/64/bfloat16, the dtypes differ, ``weight`` is not
        a number or an array of ``x``'s dtype, or ``out`` is not an ndarray of that dtype.
    ValueError
        If ``grad_output`` and ``x`` differ in shape, ``weight`` has a wrong shape, or
        ``out`` has the wrong shape or is read-only.
    """,
    ),
    Composite(
        "rrelu",
        "_rrelu",
        (
            "x: ArrayLike",
            "lower: _Real = 0.125",
            "upper: _Real = 0.3333333333333333",
            "training: bool = False",
            "*",
            "rng: np.random.Generator | np.random.SeedSequence | int | None = None",
            "out: NDArray[Any] | None = None",
        ),
        "Any",
        doc=f"""Randomized leaky ReLU (Xu et al., 2015), elementwise.

    Parameters
    ----------
{_X}
{_BOUNDS_RRELU}
    rng : numpy.random.Generator, SeedSequence, int or None, optional
        Where the training draws come from: a Generator (its bit generator is used
        through NumPy's C API, under its lock), a seed (a non-negative int or a
        SeedSequence), or None for fresh entropy. Checked in evaluation too, where
        nothing is drawn.
{_OUT}

    Returns
    -------
    y : ndarray or scalar
        In evaluation: ``x > 0 ? x : x * s`` with ``s = (lower + upper) / 2``,
        bit-identical to ``torch.nn.functional.rrelu(x, lower, upper, training=False)``.
    (y, noise) : tuple of ndarrays (scalars for a 0-d ``x``; ``y`` is ``out`` if given)
        In training: for each element with ``x <= 0`` (NaN excluded, as in torch) a slope
        ``r`` drawn uniformly from ``[lower, upper]`` in float64 and rounded to float32
        (float64 for float64 input); ``y = x * r`` rounded once and ``noise = r`` in
        ``x``'s dtype; elsewhere ``y = x`` and ``noise = 1``. The draws follow ``x``'s
        C order, one ``next_double`` each: the same seed gives the same bits.

    Notes
    -----
    On a dask array training is lazy (``out`` must be None): chunk ``k``, in C order of
    the chunk grid, draws as above on that chunk alone, from the ``k``-th generator of
    ``rng.spawn(number of chunks)`` (a seed: ``default_rng(seed).spawn(...)``). The same
    seed and the same chunks give the same bits on any scheduler; the bits differ from
    the eager call's on the whole array. Evaluation is :func:`leaky_relu`'s ufunc, lazy.

    Raises
    ------
    TypeError
        If ``x`` is not float16/32/64/bfloat16, a bound is not a real number, ``training``
        is not a bool, ``rng`` is not a Generator, seed or None, or ``out`` is not an
        ndarray of the right dtype (or is given with a dask array in training).
    ValueError
        If a bound is NaN or infinite, ``lower > upper``, a bound (training) or the mean
        slope (evaluation) overflows
        float32 below float64 input, ``rng`` is a negative seed, or ``out`` has the wrong
        shape or is read-only.
    """,
    ),
    Composite(
        "rrelu_backward",
        "_rrelu",
        (
            "grad_output: ArrayLike",
            "x: ArrayLike",
            "lower: _Real = 0.125",
            "upper: _Real = 0.3333333333333333",
            "training: bool = False",
            "noise: ArrayLike | None = None",
            "out: NDArray[Any] | None = None",
        ),
        "Any",
        doc=f"""Backward pass of :func:`rrelu`.

    Parameters
    ----------
{_G}
{_X}
{_BOUNDS_RRELU}
    noise : array_like, optional
        The ``noise`` :func:`rrelu` returned in training (required then).
{_OUT}

    Returns
    -------
    ndarray or scalar
        In evaluation, :func:`leaky_relu_backward` at the mean slope, bit-identical to
        torch's evaluation gradient; in training ``grad_output * noise``, rounded once in
        ``x``'s dtype, as torch computes it (lazily, on dask arrays).

    Raises
    ------
    TypeError
        If an input is not float16/32/64/bfloat16, the dtypes differ, a bound is not a
        real number, ``training`` is not a bool, or ``out`` is not an ndarray of the right
        dtype.
    ValueError
        If a bound is NaN or infinite, ``lower > upper``, shapes differ, ``training`` is
        set without ``noise``, or
        ``out`` has the wrong shape or is read-only.
    """,
    ),
)
# ---------------------------------------------------------------------------------------
# The mask functions: a forward pass that keeps its derivative as one bit per element, and
# the backward pass that reads it (fastact._masks).

_MASK_DEFINITION = """\
    The mask is ``np.packbits(passes.ravel(), bitorder="little")``: bit ``j`` of byte
    ``i`` for element ``8 i + j`` of ``x`` in C order, ``(x.size + 7) // 8`` bytes, the
    last byte's unused bits 0. Every check runs before anything is written."""
_MASK_OUT = """\
    mask : ndarray, optional
        Where to write the mask: a writeable 1-D uint8 array of ``(x.size + 7) // 8``
        bytes, sharing no memory with ``out``."""
_MASK_IN = """\
    mask : array_like
        The mask of the forward pass: uint8, 1-D, ``(grad_output.size + 7) // 8`` bytes
        (the last byte's unused bits are ignored)."""
_G_OUT = """\
    out : ndarray, optional
        Where to write the result: a writeable array of ``grad_output``'s shape and dtype.
        It may be ``grad_output`` itself (in place); any other overlap with an input is
        handled as if ``out`` were a separate array."""
_G_RETURNS = """\
    Returns
    -------
    ndarray or scalar
        ``out`` if given; else a new array of ``grad_output``'s dtype and shape (a NumPy
        scalar if it is 0-d)."""
_WITH_MASK_RETURNS = """\
    Returns
    -------
    (ndarray or scalar, ndarray)
        The activation (``out`` if given, else a new array of ``x``'s dtype and shape; a
        NumPy scalar if ``x`` is 0-d) and the mask (``mask`` if given)."""


def _mask_raises(backward: bool, slope: bool, bias: bool = False, mask: bool = True) -> str:
    """The Raises section of a mask or bias function, from what it takes."""
    operand = "grad_output" if backward else "x"
    type_errors = [f"``{operand}`` is not float16/32/64/bfloat16"]
    value_errors = []
    if bias and backward:
        value_errors.append("``grad_output`` is 0-d")
    elif bias:
        type_errors.append("``bias`` has another dtype than ``x``")
        value_errors.append("``x`` is 0-d, ``bias`` is not 1-D of length ``x.shape[-1]``")
    if slope:
        type_errors.append("the slope is not a real number")
    if backward:
        type_errors.append("``mask`` is not uint8")
        value_errors.append("``mask`` has the wrong length (the message names both lengths)")
    elif mask:
        type_errors.append("``mask`` is not a uint8 ndarray")
        value_errors.append(
            "``mask`` has the wrong length or is read-only, ``out`` and ``mask`` overlap"
        )
    type_errors.append("``out`` is not an ndarray of the right dtype")
    if slope:
        value_errors.append("the slope overflows the type it is rounded to")
    value_errors.append("``out`` has the wrong shape or is read-only")
    return _raises_section(type_errors, value_errors)


def _mask_doc(summary: str, parameters: str, returns: str, notes: str, raises: str) -> str:
    return (
        f"{summary}\n\n    Parameters\n    ----------\n{parameters}\n\n{returns}\n\n"
        f"    Notes\n    -----\n{notes}\n\n{raises}\n    "
    )


_ARRAY_OUT = "out: NDArray[Any] | None = None"
_MASK_PAIR = "tuple[Any, NDArray[Any]]"
MASK_COMPOSITES: tuple[Composite, ...] = (
    Composite(
        "relu_with_mask",
        "_masks",
        ("x: ArrayLike", _ARRAY_OUT, "mask: NDArray[Any] | None = None"),
        _MASK_PAIR,
        _mask_doc(
            "``relu(x)`` and the bit mask :func:`relu_backward_mask` needs, in one pass.",
            f"{_X}\n{_OUT}\n{_MASK_OUT}",
            _WITH_MASK_RETURNS,
            f"""\
    The activation is :func:`relu`'s, bit for bit. A bit is set where
    :func:`relu_backward` passes the gradient, ``!(x <= 0)``: so NaN sets it and ±0
    clears it, and ``relu_backward_mask(g, mask)`` equals ``relu_backward(g, x)`` bit for
    bit.

{_MASK_DEFINITION}""",
            _mask_raises(False, False),
        ),
    ),
    Composite(
        "leaky_relu_with_mask",
        "_masks",
        (
            "x: ArrayLike",
            "negative_slope: _Real = 0.01",
            _ARRAY_OUT,
            "mask: NDArray[Any] | None = None",
        ),
        _MASK_PAIR,
        _mask_doc(
            "``leaky_relu(x, negative_slope)`` and its bit mask, in one pass.",
            f"{_X}\n{_SLOPE}\n{_OUT}\n{_MASK_OUT}",
            _WITH_MASK_RETURNS,
            f"""\
    The activation is :func:`leaky_relu`'s, bit for bit. A bit is set where
    :func:`leaky_relu_backward` passes the gradient unscaled, ``x > 0``: NaN and ±0 clear
    it, and ``leaky_relu_backward_mask(g, mask, s)`` equals ``leaky_relu_backward(g, x,
    s)`` bit for bit.

{_MASK_DEFINITION}""",
            _mask_raises(False, True),
        ),
    ),
    Composite(
        "relu_backward_mask",
        "_masks",
        ("grad_output: ArrayLike", "mask: ArrayLike", _ARRAY_OUT),
        "Any",
        _mask_doc(
            "Backward pass of :func:`relu` from the mask of :func:`relu_with_mask`.",
            f"""\
    grad_output : array_like
        Gradient of the loss with respect to the forward output: float16, float32,
        float64 or bfloat16 (ml_dtypes), of the forward input's shape.
{_MASK_IN}
{_G_OUT}""",
            _G_RETURNS,
            """\
    The rule is ``bit ? g : +0``, :func:`relu_backward`'s select: where the bit is clear
    the result is ``+0.0`` even for a NaN or inf ``g``.""",
            _mask_raises(True, False),
        ),
    ),
    Composite(
        "leaky_relu_backward_mask",
        "_masks",
        (
            "grad_output: ArrayLike",
            "mask: ArrayLike",
            "negative_slope: _Real = 0.01",
            _ARRAY_OUT,
        ),
        "Any",
        _mask_doc(
            "Backward pass of :func:`leaky_relu` from the mask of :func:`leaky_relu_with_mask`.",
            f"""\
    grad_output : array_like
        Gradient of the loss with respect to the forward output: float16, float32,
        float64 or bfloat16 (ml_dtypes), of the forward input's shape.
{_MASK_IN}
{_SLOPE}
{_G_OUT}""",
            _G_RETURNS,
            """\
    The rule is ``bit ? g : g * s``, :func:`leaky_relu_backward`'s multiply, rounded as
    there (16-bit floats multiply in float32 and round once).""",
            _mask_raises(True, True),
        ),
    ),
)

_BIAS = """\
    bias : array_like
        Added along the last axis of ``x`` (as after a linear layer): 1-D, of length
        ``x.shape[-1]`` and ``x``'s dtype. ``x + bias`` is rounded once, as torch's add."""


def _paragraph(text: str) -> str:
    """``text`` as a Notes paragraph: indented by 4, wrapped at 88."""
    return textwrap.fill(
        text, 88, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
    )


_GRAD_BIAS_RETURNS = """\
    Returns
    -------
    (ndarray, ndarray)
        The gradient of ``x + bias`` (``out`` if given, else a new array of
        ``grad_output``'s dtype and shape), which is also the gradient of ``x``; and the
        gradient of ``bias``, its sum over every axis but the last, of
        ``grad_output``'s dtype."""
_GRAD_BIAS_NOTES = (
    "The gradient is {rule}. The bias gradient is summed in float64 (float64 input with "
    "Neumaier's compensation) over a partition of the rows fixed by the shape alone, so it "
    "has the same bits for any thread count; rounded once, it is within 1 ulp of the exact "
    "sum (``math.fsum``) for float32, float16 and bfloat16, and within a few ulp for "
    "float64, unless the column's terms cancel (a float64 sum loses what lies below "
    "2^-53 of its largest partial sum, ``[3e38, 1e-45, 1e-45, -3e38]`` sums to 0)."
)
# The bias runs along the last axis: a 0-d x is refused, so no scalar comes back.
_BIAS_RETURNS = """\
    Returns
    -------
    ndarray
        ``out`` if given; else a new array of ``x``'s dtype and shape."""
_BIAS_WITH_MASK_RETURNS = """\
    Returns
    -------
    (ndarray, ndarray)
        The activation (``out`` if given, else a new array of ``x``'s dtype and shape)
        and the mask (``mask`` if given)."""
_G_LAST = """\
    grad_output : array_like
        Gradient of the loss with respect to the forward output: float16, float32,
        float64 or bfloat16 (ml_dtypes), of the forward input's shape (at least 1-D)."""


BIAS_COMPOSITES: tuple[Composite, ...] = ()
for _leaky in (False, True):
    _name = "bias_leaky_relu" if _leaky else "bias_relu"
    _plain = "leaky_relu" if _leaky else "relu"
    _slope_sig = ("negative_slope: _Real = 0.01",) if _leaky else ()
    _slope_doc = f"\n{_SLOPE}" if _leaky else ""
    _call = f"{_plain}(x + bias{', negative_slope' if _leaky else ''})"
    _notes = f"Bit-identical to ``{_call}``, in one pass that never stores ``x + bias``."
    _rule = "``bit ? g : g * s``" if _leaky else "``bit ? g : +0``"
    BIAS_COMPOSITES += (
        Composite(
            _name,
            "_masks",
            ("x: ArrayLike", "bias: ArrayLike", *_slope_sig, _ARRAY_OUT),
            "Any",
            _doc(
                f"``{_plain}(x + bias)``, the bias along the last axis, in one pass.",
                f"{_X}\n{_BIAS}{_slope_doc}",
                _paragraph(_notes),
                _mask_raises(False, _leaky, bias=True, mask=False),
                _BIAS_RETURNS,
            ),
        ),
        Composite(
            f"{_name}_with_mask",
            "_masks",
            (
                "x: ArrayLike",
                "bias: ArrayLike",
                *_slope_sig,
                _ARRAY_OUT,
                "mask: NDArray[Any] | None = None",
            ),
            _MASK_PAIR,
            _mask_doc(
                f"``{_plain}_with_mask(x + bias)``, the bias along the last axis, in one pass.",
                f"{_X}\n{_BIAS}{_slope_doc}\n{_OUT}\n{_MASK_OUT}",
                _BIAS_WITH_MASK_RETURNS,
                _paragraph(f"{_notes[:-1]}; the mask is that of ``x + bias``.")
                + f"\n\n{_MASK_DEFINITION}",
                _mask_raises(False, _leaky, bias=True),
            ),
        ),
        Composite(
            f"{_name}_backward",
            "_masks",
            ("grad_output: ArrayLike", "mask: ArrayLike", *_slope_sig, _ARRAY_OUT),
            _MASK_PAIR,
            _mask_doc(
                f"Backward pass of :func:`{_name}_with_mask`: the gradients of ``x`` and "
                "``bias``.",
                f"{_G_LAST}\n{_MASK_IN}{_slope_doc}\n{_G_OUT}",
                _GRAD_BIAS_RETURNS,
                _paragraph(_GRAD_BIAS_NOTES.format(rule=_rule)),
                _mask_raises(True, _leaky, bias=True),
            ),
        ),
    )

# The composite functions, in the order of their issue.
COMPOSITES: tuple[Composite, ...] = (*FAMILY_COMPOSITES, *MASK_COMPOSITES, *BIAS_COMPOSITES)

BY_NAME: dict[str, Function] = {f.name: f for f in FUNCTIONS}
