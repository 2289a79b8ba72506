"""fastact's functions as real NumPy ufuncs, over the same element rules and loops.

Each ufunc has one inner loop per dtype. A loop whose operands are all contiguous (and
whose slope, if any, is one scalar) calls the very kernel the main functions use; any
other stride pattern (broadcasting, views, a per-channel slope) runs the strided loop
built from the same element rules (``_elementwise.pxd``). NumPy supplies broadcasting,
``out=``, ``where=``, casting, overlap handling and ``__array_ufunc__`` dispatch to duck
arrays (dask, xarray, ...); it also releases the GIL around every inner loop.
"""
cimport numpy as cnp
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t
from numpy cimport npy_intp

import numpy as np

from fastact._elementwise cimport (
    element_t,
    float16_t,
    leaky_relu_backward_rule,
    leaky_relu_grad_rule,
    leaky_relu_rule,
)
from fastact._kernels cimport active_loops
from fastact._loops cimport (
    FLOAT16,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    UNSIGNED,
    LEAKY_RELU,
    LEAKY_RELU_BACKWARD,
    LEAKY_RELU_GRAD,
    RELU,
    RELU_BACKWARD,
    RELU_GRAD,
    ElementType,
    Op,
)

cdef extern from "fenv.h" nogil:
    int FE_ALL_EXCEPT
    int feclearexcept(int excepts)

cnp.import_array()
cnp.import_ufunc()


cdef inline bint has_slope(Op op) noexcept nogil:
    return op == LEAKY_RELU or op == LEAKY_RELU_GRAD or op == LEAKY_RELU_BACKWARD


cdef inline bint is_backward(Op op) noexcept nogil:
    return op == RELU_BACKWARD or op == LEAKY_RELU_BACKWARD


cdef inline int n_arrays(Op op) noexcept nogil:
    """Operands of the ufunc, output included."""
    return 2 + is_backward(op) + has_slope(op)


# ---------------------------------------------------------------------------------------
# Typed loops. args/steps hold the operands in ufunc order: [g,] x, [s,] out. With one
# slope for the whole run (step 0), or none, a run goes to the very loops the main
# functions use (the build chosen at import), at any strides. A slope per element
# (PReLU-style broadcasting) goes through the element rules one by one.

cdef inline ElementType element_type(char t) noexcept nogil:
    if t == b'f':
        return FLOAT32
    if t == b'd':
        return FLOAT64
    if t == b'e':
        return FLOAT16
    if t == b'b':
        return INT8
    if t == b'h':
        return INT16
    if t == b'i' or (t == b'l' and sizeof(long) == 4):
        return INT32
    if t == b'l' or t == b'q':
        return INT64
    return UNSIGNED  # relu alone has integer loops: B, H, I, L, Q


cdef inline npy_intp item_size(char t) noexcept nogil:
    if t == b'b' or t == b'B':
        return 1
    if t == b'h' or t == b'H' or t == b'e':
        return 2
    if t == b'i' or t == b'I' or t == b'f':
        return 4
    if t == b'l' or t == b'L':
        return sizeof(long)
    return 8  # q, Q, d


cdef inline void run_table(Op op, ElementType etype, char** a, npy_intp n, npy_intp* s,
                           npy_intp itemsize, double slope) noexcept nogil:
    cdef int last = n_arrays(op) - 1
    if is_backward(op):
        active_loops().binary(op, etype, a[0], s[0], a[1], s[1], a[last], s[last], n, slope)
    else:
        active_loops().unary(op, etype, a[0], s[0], a[last], s[last], n, itemsize, slope)


cdef inline element_t at(char** a, npy_intp* steps, int k, npy_intp i,
                         element_t tag) noexcept nogil:
    return (<element_t*>(a[k] + i * steps[k]))[0]


cdef inline double slope_at(char** a, npy_intp* s, int k, npy_intp i, char t) noexcept nogil:
    # float16 loops take the slope as float32: torch rounds it to float32, not float16.
    if t == b'd':
        return (<double*>(a[k] + i * s[k]))[0]
    return (<float*>(a[k] + i * s[k]))[0]


cdef inline void run_per_element_slope(Op op, char** a, npy_intp n, npy_intp* s, char t,
                                       element_t tag) noexcept nogil:
    cdef npy_intp i
    cdef int last = n_arrays(op) - 1
    cdef element_t r
    for i in range(n):
        if op == LEAKY_RELU:
            r = leaky_relu_rule(at(a, s, 0, i, tag), slope_at(a, s, 1, i, t))
        elif op == LEAKY_RELU_GRAD:
            r = leaky_relu_grad_rule(at(a, s, 0, i, tag), slope_at(a, s, 1, i, t))
        else:
            r = leaky_relu_backward_rule(at(a, s, 0, i, tag), at(a, s, 1, i, tag),
                                         slope_at(a, s, 2, i, t))
        (<element_t*>(a[last] + i * s[last]))[0] = r


cdef void run(Op op, char** a, npy_intp* dims, npy_intp* s, void* data) noexcept nogil:
    """Dispatch on the loop's dtype: ``data`` points at its NumPy type character."""
    cdef char t = (<char*>data)[0]
    cdef float16_t half_tag
    cdef npy_intp n = dims[0]
    cdef int slope_index = n_arrays(op) - 2
    cdef double slope = 0.0
    if not has_slope(op) or s[slope_index] == 0:
        if has_slope(op):
            slope = slope_at(a, s, slope_index, 0, t)
        run_table(op, element_type(t), a, n, s, item_size(t), slope)
    elif t == b'f':
        run_per_element_slope(op, a, n, s, t, <float>0)
    elif t == b'd':
        run_per_element_slope(op, a, n, s, t, <double>0)
    else:
        run_per_element_slope(op, a, n, s, t, half_tag)
    # NumPy turns the FPU's exception flags into warnings after each loop. The contract
    # has none: ordered compares with NaN and inf * 0 raise "invalid" by design, as in
    # NumPy's own maximum/minimum loops, which clear the flags the same way.
    feclearexcept(FE_ALL_EXCEPT)


cdef void relu_loop(char** a, npy_intp* d, npy_intp* s, void* data) noexcept nogil:
    run(RELU, a, d, s, data)

cdef void leaky_relu_loop(char** a, npy_intp* d, npy_intp* s, void* data) noexcept nogil:
    run(LEAKY_RELU, a, d, s, data)

cdef void relu_grad_loop(char** a, npy_intp* d, npy_intp* s, void* data) noexcept nogil:
    run(RELU_GRAD, a, d, s, data)

cdef void leaky_relu_grad_loop(char** a, npy_intp* d, npy_intp* s, void* data) noexcept nogil:
    run(LEAKY_RELU_GRAD, a, d, s, data)

cdef void relu_backward_loop(char** a, npy_intp* d, npy_intp* s, void* data) noexcept nogil:
    run(RELU_BACKWARD, a, d, s, data)

cdef void leaky_relu_backward_loop(char** a, npy_intp* d, npy_intp* s,
                                   void* data) noexcept nogil:
    run(LEAKY_RELU_BACKWARD, a, d, s, data)


# ---------------------------------------------------------------------------------------
# Registration. NumPy keeps pointers into these tables for the life of the process, so
# they are module-level C arrays, filled once at import.

cdef enum:
    MAX_LOOPS = 13

cdef char TYPE_CHARS[MAX_LOOPS]
cdef void* LOOP_DATA[6][MAX_LOOPS]
cdef cnp.PyUFuncGenericFunction LOOP_FUNCS[6][MAX_LOOPS]
cdef char LOOP_TYPES[6][MAX_LOOPS * 4]

# Loop dtypes, in NumPy's search order. float16 comes first so that float16 input picks
# its own loop (computing in float32 internally) instead of being cast up; relu alone
# has integer loops (signed: the rule; unsigned: the identity), as in the main API.
_FLOATS = "efd"
_INTEGERS = "bhilqBHILQ"

_DOCS = {
    "relu": "relu(x, /, out=None, *, where=True, ...)\n\nUfunc form of fastact.relu.",
    "leaky_relu": (
        "leaky_relu(x, negative_slope, /, out=None, *, where=True, ...)\n\n"
        "Ufunc form of fastact.leaky_relu. negative_slope broadcasts against x: an array "
        "of per-channel slopes gives PReLU."
    ),
    "relu_grad": "relu_grad(x, /, out=None, *, where=True, ...)\n\nUfunc form of fastact.relu_grad.",
    "leaky_relu_grad": (
        "leaky_relu_grad(x, negative_slope, /, out=None, *, where=True, ...)\n\n"
        "Ufunc form of fastact.leaky_relu_grad."
    ),
    "relu_backward": (
        "relu_backward(grad_output, x, /, out=None, *, where=True, ...)\n\n"
        "Ufunc form of fastact.relu_backward (it broadcasts, unlike the main function)."
    ),
    "leaky_relu_backward": (
        "leaky_relu_backward(grad_output, x, negative_slope, /, out=None, *, where=True, ...)"
        "\n\nUfunc form of fastact.leaky_relu_backward (it broadcasts, unlike the main "
        "function)."
    ),
}

_SIGNATURES = (
    # name, loop, inputs as (role, ...) where "x" is the array dtype and "s" the slope
    ("relu", 0, "x"),
    ("leaky_relu", 1, "xs"),
    ("relu_grad", 2, "x"),
    ("leaky_relu_grad", 3, "xs"),
    ("relu_backward", 4, "xx"),
    ("leaky_relu_backward", 5, "xxs"),
)

cdef cnp.PyUFuncGenericFunction LOOPS[6]
LOOPS[0] = relu_loop
LOOPS[1] = leaky_relu_loop
LOOPS[2] = relu_grad_loop
LOOPS[3] = leaky_relu_grad_loop
LOOPS[4] = relu_backward_loop
LOOPS[5] = leaky_relu_backward_loop

for _i, _c in enumerate(_FLOATS + _INTEGERS):
    TYPE_CHARS[_i] = ord(_c)


def _typenum(type_char):
    return np.dtype(type_char).num


def _make(name, int index, roles):
    chars = _FLOATS + _INTEGERS if name == "relu" else _FLOATS
    cdef int nin = len(roles)
    cdef int ntypes = len(chars)
    cdef int k, j
    for k in range(ntypes):
        c = chars[k]
        LOOP_FUNCS[index][k] = LOOPS[index]
        LOOP_DATA[index][k] = &TYPE_CHARS[(_FLOATS + _INTEGERS).index(c)]
        for j in range(nin):
            # The slope of a float16 loop is float32 (see slope_at).
            LOOP_TYPES[index][k * (nin + 1) + j] = _typenum("f" if roles[j] == "s" and c == "e" else c)
        LOOP_TYPES[index][k * (nin + 1) + nin] = _typenum(c)
    cdef bytes name_bytes = name.encode()
    cdef bytes doc_bytes = _DOCS[name].encode()
    # NumPy keeps the name and doc pointers: the bytes objects must live as long.
    _KEEP_ALIVE.extend((name_bytes, doc_bytes))
    return cnp.PyUFunc_FromFuncAndData(
        LOOP_FUNCS[index], LOOP_DATA[index], LOOP_TYPES[index], ntypes, nin, 1,
        cnp.PyUFunc_None, <char*>name_bytes, <char*>doc_bytes, 0,
    )


_KEEP_ALIVE = []

relu = _make(*_SIGNATURES[0])
leaky_relu = _make(*_SIGNATURES[1])
relu_grad = _make(*_SIGNATURES[2])
leaky_relu_grad = _make(*_SIGNATURES[3])
relu_backward = _make(*_SIGNATURES[4])
leaky_relu_backward = _make(*_SIGNATURES[5])
