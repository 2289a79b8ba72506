"""Code derived from the function table (``_functions.py``), written out as files.

- ``_ops.pxi`` and ``_ops_dispatch.pxi``, Cython included by ``_loops.pxd``: the ``Op``
  enum, one tag type per op, the op -> rule mapping, the run-time dispatch from an op to its
  compiled loop, and the Cython API kernels. ``setup.py`` writes them before cythonizing;
  they are build outputs, never edited or committed.
- ``_api.pyi`` and ``_ufuncs.pyi``, the stubs type checkers read for the functions that
  ``_api.py`` and ``_ufuncs.pyx`` build at import. They are committed (type checkers read
  the source tree); ``python fastact/_codegen.py`` rewrites them and a test checks that
  they match the table.

Runs on the table alone: nothing else of fastact is imported, so ``setup.py`` can call it
before anything is compiled.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from . import _functions
except ImportError:  # run by path from setup.py, before the package exists
    import _functions  # type: ignore[no-redef]

Function = _functions.Function
FUNCTIONS = _functions.FUNCTIONS

HERE = Path(__file__).resolve().parent
_HEADER = "# Generated from fastact/_functions.py by fastact/_codegen.py: do not edit.\n"


# The rules of leaky_relu's shape, whose slope is their first parameter.
LEAKY_RULES = ("leaky_relu", "leaky_relu_backward")

# The gradient gates, ``(x <= low) | (x >= high) ? +0 : g``, and their window in the rule's
# own arguments ({0}, {1}: its first and second; NAN: no upper edge), which the AVX-512
# build runs as written-out selects (_gate_vectors.pxd).
GATE_RULES = {
    "relu_backward": ("0.0", "NAN"),
    "threshold_backward": ("{0}", "NAN"),
    "hardtanh_backward": ("{0}", "{1}"),
}


# The forward clamps, ``x < low ? low_value : x > high ? high_value : x`` (``<=`` for the
# low edge where ``inclusive``; NaN ``x`` passes), and their edges in the rule's own
# arguments (INFINITY: no upper edge), which the 16-bit loops run as integer compares of
# the bits (``clamp_short_floats`` in _loops.pxd).
CLAMP_RULES = {
    "hardtanh": ("{0}", "{0}", "False", "{1}", "{1}"),
    "threshold": ("{0}", "{1}", "True", "INFINITY", "INFINITY"),
}


def _tag(func: Function) -> str:
    return f"{func.name}_op"


def _rule_call(func: Function) -> str:
    operands = "g, x" if func.is_backward else "x"
    params = [f"p{k}" for k in range(func.rule_arity)]
    return f"{func.rule}_rule({', '.join([operands, *params])})"


def _edge_predicate(header: str, rules: dict[str, tuple[str, ...]], targets: str) -> list[str]:
    """A predicate on the op that also writes its edges: ``targets`` get the rule's entry
    in ``rules`` ({0}, {1}: the rule's first and second parameters)."""
    lines = [header]
    matching = [f for f in FUNCTIONS if f.rule in rules]
    for k, f in enumerate(matching):
        edges = ", ".join(edge.format("p0", "p1") for edge in rules[f.rule])
        lines.append(f"    {'if' if k == 0 else 'elif'} op_t is {_tag(f)}:")
        lines.append(f"        {targets} = {edges}")
        lines.append("        return True")
    # An `else`, not a last `return`: Cython drops the branches of other ops at compile
    # time and would call a trailing statement unreachable.
    lines += ["    else:", "        return False"] if matching else ["    return False"]
    return lines


def ops_pxi() -> str:
    """The op enum, the op tags and the op -> rule mapping (before the loops)."""
    lines = [_HEADER, "cdef enum Op:"]
    lines += [f"    {f.op} = {k}" for k, f in enumerate(FUNCTIONS)]
    lines.append(f"    N_OPS = {len(FUNCTIONS)}\n")
    lines.append("# One empty struct per op, so that a fused type tells the ops apart at compile")
    lines.append("# time: a loop over `op_t* op` is compiled once per op, with its rule inlined.")
    for f in FUNCTIONS:
        lines += [f"ctypedef struct {_tag(f)}:", "    char unused", ""]
    lines.append("ctypedef fused op_t:")
    lines += [f"    {_tag(f)}" for f in FUNCTIONS]
    lines.append("")
    lines.append("")
    lines.append(
        "cdef inline element_t apply_op(op_t* op, element_t g, element_t x, double p0,\n"
        "                               double p1) noexcept nogil:\n"
        '    """The element rule of ``op``; ``g`` is ignored by a forward op."""'
    )
    for k, f in enumerate(FUNCTIONS):
        keyword = "if" if k == 0 else "elif"
        lines += [f"    {keyword} op_t is {_tag(f)}:", f"        return {_rule_call(f)}"]
    lines.append("")
    lines.append("")
    lines.append(
        "cdef inline void round_params(op_t* op, element_t like, double* p0,\n"
        "                              double* p1) noexcept nogil:\n"
        '    """Round the parameters as torch does, once, before a loop passes them to the\n'
        "    rule: to the compute type (float32 below float64) or the element type. A\n"
        '    function that fixes its rule\'s parameters (relu6) gets them here."""'
    )
    rounding = {_functions.COMPUTE: "to_compute_type", _functions.ELEMENT: "to_element_type"}
    keyword = "if"
    for f in FUNCTIONS:
        if not f.rule_arity:
            continue
        lines.append(f"    {keyword} op_t is {_tag(f)}:")
        if f.fixed:  # exact in every type
            lines += [f"        p{k}[0] = {float(v)!r}" for k, v in enumerate(f.fixed)]
        for k, p in enumerate(f.parameters):
            lines.append(f"        p{k}[0] = {rounding[p.rounding]}(p{k}[0], like)")
        keyword = "elif"
    lines.append("")
    lines.append("")
    lines.append(
        "cdef inline bint op_widens(op_t* op) noexcept nogil:\n"
        '    """Whether the 16-bit rule is the float32 rule, rounded once (a product)."""'
    )
    widening = [f for f in FUNCTIONS if f.widens]
    if widening:
        test = " or ".join(f"op_t is {_tag(f)}" for f in widening)
        lines.append(f"    return {test}")
    else:
        lines.append("    return False")
    lines.append("")
    lines.append("")
    lines.append(
        "cdef inline bint op_is_leaky(op_t* op) noexcept nogil:\n"
        '    """Whether the rule is ``x > 0 ? g : g * p0`` (``g`` is ``x`` in a forward op),\n'
        '    which the 16-bit loops run on whole vectors of bits (_short_float_vectors.pxd)."""'
    )
    leaky = [f for f in FUNCTIONS if f.rule in LEAKY_RULES and not f.fixed]
    if leaky:
        test = " or ".join(f"op_t is {_tag(f)}" for f in leaky)
        lines.append(f"    return {test}")
    else:
        lines.append("    return False")
    lines.append("")
    lines.append("")
    lines += _edge_predicate(
        "cdef inline bint op_gate(op_t* op, double p0, double p1, double* low,\n"
        "                         double* high) noexcept nogil:\n"
        '    """Whether the rule is a gradient gate, ``(x <= low) | (x >= high) ? +0 : g``\n'
        '    (``high`` NaN: no upper edge), and its window from the rounded parameters."""',
        GATE_RULES,
        "low[0], high[0]",
    )
    lines.append("")
    lines.append("")
    lines += _edge_predicate(
        "cdef inline bint op_clamp(op_t* op, double p0, double p1, double* low,\n"
        "                          double* low_value, bint* inclusive, double* high,\n"
        "                          double* high_value) noexcept nogil:\n"
        '    """Whether the rule is a clamp, ``x < low ? low_value : x > high ? high_value : x``\n'
        '    (``x <= low`` where ``inclusive``), and its edges from the rounded parameters."""',
        CLAMP_RULES,
        "low[0], low_value[0], inclusive[0], high[0], high_value[0]",
    )
    return "\n".join(lines) + "\n"


_SIGNATURE = (
    "(Op op, ElementType etype, const char* g, Py_ssize_t g_stride,\n"
    "                        const char* x, Py_ssize_t x_stride, char* out,\n"
    "                        Py_ssize_t out_stride, Py_ssize_t n, double p0,\n"
    "                        double p1) noexcept nogil:"
)


def ops_dispatch_pxi() -> str:
    """The run-time dispatch to each op's loops, and the Cython API (after the loops)."""
    lines = [_HEADER]
    lines.append(f"cdef inline void run_op{_SIGNATURE}")
    lines.append(
        '    """Run ``op`` on ``n`` elements at byte strides; ``g`` is ``x`` for a forward\n'
        '    op. The caller has checked ``is_covered(op, etype)``."""'
    )
    for k, f in enumerate(FUNCTIONS):
        keyword = "if" if k == 0 else "elif"
        runner = "run_any_type" if f.integers else "run_float_type"
        lines.append(f"    {keyword} op == {f.op}:")
        lines.append(
            f"        {runner}(<{_tag(f)}*>NULL, etype, g, g_stride, x, x_stride, out,"
            " out_stride, n, p0, p1)"
        )
    lines.append("\n")
    lines.append("cdef inline bint is_covered(Op op, ElementType etype) noexcept nogil:")
    integer_ops = [f for f in FUNCTIONS if f.integers]
    if integer_ops:
        test = " or ".join(f"op == {f.op}" for f in integer_ops)
        lines.append(f"    if {test}:")
        lines.append("        return etype != UNSUPPORTED")
    lines.append("    return is_float_type(etype)\n\n")
    lines.append(
        "cdef inline void run_op_per_element(Op op, char** args, Py_ssize_t* steps,\n"
        "                                    Py_ssize_t n, char type_char) noexcept nogil:\n"
        '    """A ufunc loop whose parameters vary along the run (see ``per_element_loop``)."""'
    )
    for k, f in enumerate(FUNCTIONS):
        keyword = "if" if k == 0 else "elif"
        lines.append(f"    {keyword} op == {f.op}:")
        lines.append(
            f"        per_element_typed(<{_tag(f)}*>NULL, args, steps, n, {len(f.operands)}, "
            f"{f.rule_arity if not f.fixed else 0}, type_char)"
        )
    lines.append("\n")
    lines.append(
        "# The Cython API: contiguous kernels over a pointer and a length (_kernels.pxd)."
    )
    for f in FUNCTIONS:
        ctype = "element_t" if f.integers else "floating_t"
        operands = [f"const {ctype}* {name}" for name in f.operands]
        params = [f"double {p.name}" for p in f.parameters]
        args = ", ".join([*operands, f"{ctype}* out", "Py_ssize_t n", *params])
        g = f.operands[0]
        x = f.operands[-1]
        values = [p.name for p in f.parameters] + ["0.0"] * (2 - len(f.parameters))
        lines.append(f"cdef inline void {f.name}_kernel({args}) noexcept nogil:")
        lines.append(f"    cdef double p0 = {values[0]}, p1 = {values[1]}")
        lines.append("    if n > 0:")
        lines.append(f"        round_params(<{_tag(f)}*>NULL, {x}[0], &p0, &p1)")
        lines.append(
            f"    elementwise_loop(<{_tag(f)}*>NULL, {g}, 1, {x}, 1, out, 1, n, p0, p1)\n\n"
        )
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------
# Stubs.

_ARRAY_LIKE = "ArrayLike"
# A scalar parameter's type in the stubs: the functions take any real number, Python's or
# NumPy's (np.float32 is not a float subclass, so ``float`` alone would refuse it).
_REAL = "_Real"
_LINE_LENGTH = 99  # pyproject.toml's [tool.ruff] line-length


def _stub_parameters(func: Function) -> list[str]:
    parts = [f"{name}: {_ARRAY_LIKE}" for name in func.operands]
    for p in func.parameters:
        default = "" if p.default is None else f" = {p.default!r}"
        parts.append(f"{p.name}: {_REAL}{default}")
    parts.append("out: NDArray[Any] | None = None")
    return parts


def _stub_def(name: str, parts: list[str] | tuple[str, ...], returns: str) -> str:
    """A ``def`` line for the stub, laid out as ``ruff format`` lays it out."""
    joined = ", ".join(parts)
    one_line = f"def {name}({joined}) -> {returns}: ..."
    if len(one_line) <= _LINE_LENGTH:
        return one_line
    if len(joined) + 4 <= _LINE_LENGTH:
        return f"def {name}(\n    {joined}\n) -> {returns}: ..."
    body = "".join(f"    {part},\n" for part in parts)
    return f"def {name}(\n{body}) -> {returns}: ..."


def api_stub() -> str:
    names = sorted(f.name for f in (*FUNCTIONS, *_functions.COMPOSITES))
    lines = [
        _HEADER,
        "from typing import Any, TypeAlias",
        "",
        "import numpy as np",
        "from numpy.typing import ArrayLike, NDArray",
        "",
        f"{_REAL}: TypeAlias = float | np.floating[Any] | np.integer[Any] | np.bool_",
        "",
        "__all__ = [",
        *(f'    "{n}",' for n in names),
        "]",
        "",
    ]
    lines += [_stub_def(f.name, _stub_parameters(f), "Any") for f in FUNCTIONS]
    lines += [_stub_def(c.name, c.parameters, c.returns) for c in _functions.COMPOSITES]
    return "\n".join(lines) + "\n"


def ufuncs_stub() -> str:
    lines = [_HEADER, "import numpy as np", ""]
    lines += [f"{f.name}: np.ufunc" for f in FUNCTIONS]
    lines.append("UFUNCS: dict[str, np.ufunc]")
    return "\n".join(lines) + "\n"


GENERATED_PXI = {"_ops.pxi": ops_pxi, "_ops_dispatch.pxi": ops_dispatch_pxi}
STUBS = {"_api.pyi": api_stub, "_ufuncs.pyi": ufuncs_stub}


def write(files: dict, folder: Path = HERE) -> None:
    """Write each file whose text changed (an unchanged file keeps its time stamp)."""
    for name, make in files.items():
        path = folder / name
        text = make()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


if __name__ == "__main__":
    write({**GENERATED_PXI, **STUBS})
    sys.exit(0)
