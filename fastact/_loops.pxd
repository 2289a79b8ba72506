# cython: language_level=3
"""The typed elementwise loops: one fused-type body per function, and their dispatch.

Everything here is ``inline``, so each module that cimports it compiles its own copy with
its own flags: ``_loops_baseline`` (the platform's baseline ISA) and, on x86-64,
``_loops_avx2``; ``_kernels`` picks one at import. Another Cython project that cimports
the kernels (through ``fastact._kernels``) compiles them with its flags too.

Each kernel reads ``n`` contiguous elements and writes ``n`` contiguous elements. ``out``
may be the very same pointer as an input (in place); any other overlap is the caller's
business. A slope is passed as a double and rounded to the element type first (float32 for
16-bit floats), as torch rounds it.
"""
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t
from cpython.mem cimport PyMem_RawMalloc
from cpython.pycapsule cimport PyCapsule_New
from libc.string cimport memcpy

from fastact._elementwise cimport (
    bfloat16_t,
    float16_t,
    leaky_relu_backward_rule,
    leaky_relu_grad_rule,
    leaky_relu_rule,
    relu_backward_rule,
    relu_grad_rule,
    relu_rule,
    short_leaky_relu,
    short_leaky_relu_backward,
    short_leaky_relu_grad,
    short_relu,
    short_relu_backward,
    short_relu_grad,
)

# ---------------------------------------------------------------------------------------
# The element types, in one place. relu also covers signed integers (unsigned relu is the
# identity); every function covers the four float formats.

ctypedef fused signed_t:
    int8_t
    int16_t
    int32_t
    int64_t
    float
    double
    float16_t
    bfloat16_t

ctypedef fused floating_t:
    float
    double
    float16_t
    bfloat16_t

cdef enum Op:
    RELU
    LEAKY_RELU
    RELU_GRAD
    LEAKY_RELU_GRAD
    RELU_BACKWARD
    LEAKY_RELU_BACKWARD

cdef enum ElementType:
    UNSUPPORTED
    FLOAT16
    BFLOAT16
    FLOAT32
    FLOAT64
    INT8
    INT16
    INT32
    INT64
    UNSIGNED  # any width


cdef inline bint is_covered(Op op, ElementType etype) noexcept nogil:
    if op == RELU:
        return etype != UNSUPPORTED
    return etype == FLOAT16 or etype == BFLOAT16 or etype == FLOAT32 or etype == FLOAT64


# ---------------------------------------------------------------------------------------
# The loops. Every operand is loaded before the select, so the compiler turns the ternary
# into a vector compare + blend instead of a branch (random signs would make a branch
# mispredict half the time). The rules, with the reason for each comparison, are in
# _elementwise.pxd. For 16-bit floats both sides of a select are computed (the product
# included) before choosing, for the same reason.

cdef inline void relu_kernel(const signed_t* x, signed_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef signed_t xi
    for i in range(n):
        xi = x[i]
        if signed_t is float16_t or signed_t is bfloat16_t:
            out[i].bits = short_relu(xi)
        else:
            out[i] = relu_rule(xi)


cdef inline void leaky_relu_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                                   double negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    if floating_t is float or floating_t is double:
        for i in range(n):
            xi = x[i]
            out[i] = leaky_relu_rule(xi, <floating_t>negative_slope)
    else:
        for i in range(n):
            xi = x[i]
            out[i].bits = short_leaky_relu(xi, <float>negative_slope)


cdef inline void relu_grad_kernel(const floating_t* x, floating_t* out,
                                  Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i]
        if floating_t is float or floating_t is double:
            out[i] = relu_grad_rule(xi)
        else:
            out[i].bits = short_relu_grad(xi)


cdef inline void leaky_relu_grad_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                                        double negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    if floating_t is float or floating_t is double:
        for i in range(n):
            xi = x[i]
            out[i] = leaky_relu_grad_rule(xi, <floating_t>negative_slope)
    else:
        for i in range(n):
            xi = x[i]
            out[i].bits = short_leaky_relu_grad(xi, <float>negative_slope)


cdef inline void relu_backward_kernel(const floating_t* grad_output, const floating_t* x,
                                      floating_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t gi, xi
    for i in range(n):
        gi = grad_output[i]
        xi = x[i]
        if floating_t is float or floating_t is double:
            out[i] = relu_backward_rule(gi, xi)
        else:
            out[i].bits = short_relu_backward(gi, xi)


cdef inline void leaky_relu_backward_kernel(const floating_t* grad_output,
                                            const floating_t* x, floating_t* out,
                                            Py_ssize_t n, double negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t gi, xi
    if floating_t is float or floating_t is double:
        for i in range(n):
            gi = grad_output[i]
            xi = x[i]
            out[i] = leaky_relu_backward_rule(gi, xi, <floating_t>negative_slope)
    else:
        for i in range(n):
            gi = grad_output[i]
            xi = x[i]
            out[i].bits = short_leaky_relu_backward(gi, xi, <float>negative_slope)


# ---------------------------------------------------------------------------------------
# Dispatch from (operation, element type) to a loop, behind one signature per arity so
# that a table of two function pointers selects a whole instruction-set build.

cdef inline void run_float_unary(Op op, const floating_t* x, floating_t* out, Py_ssize_t n,
                                 double negative_slope) noexcept nogil:
    if op == RELU:
        relu_kernel(x, out, n)
    elif op == LEAKY_RELU:
        leaky_relu_kernel(x, out, n, negative_slope)
    elif op == RELU_GRAD:
        relu_grad_kernel(x, out, n)
    else:
        leaky_relu_grad_kernel(x, out, n, negative_slope)


cdef inline void run_float_binary(Op op, const floating_t* grad_output, const floating_t* x,
                                  floating_t* out, Py_ssize_t n,
                                  double negative_slope) noexcept nogil:
    if op == RELU_BACKWARD:
        relu_backward_kernel(grad_output, x, out, n)
    else:
        leaky_relu_backward_kernel(grad_output, x, out, n, negative_slope)


cdef inline void run_unary(Op op, ElementType etype, const void* x, void* out, Py_ssize_t n,
                           Py_ssize_t itemsize, double negative_slope) noexcept nogil:
    """Run a unary op; the caller has checked ``is_covered(op, etype)``."""
    if etype == FLOAT32:
        run_float_unary(op, <const float*>x, <float*>out, n, negative_slope)
    elif etype == FLOAT64:
        run_float_unary(op, <const double*>x, <double*>out, n, negative_slope)
    elif etype == FLOAT16:
        run_float_unary(op, <const float16_t*>x, <float16_t*>out, n, negative_slope)
    elif etype == BFLOAT16:
        run_float_unary(op, <const bfloat16_t*>x, <bfloat16_t*>out, n, negative_slope)
    elif etype == INT8:
        relu_kernel(<const int8_t*>x, <int8_t*>out, n)
    elif etype == INT16:
        relu_kernel(<const int16_t*>x, <int16_t*>out, n)
    elif etype == INT32:
        relu_kernel(<const int32_t*>x, <int32_t*>out, n)
    elif etype == INT64:
        relu_kernel(<const int64_t*>x, <int64_t*>out, n)
    elif etype == UNSIGNED and x != out:
        memcpy(out, x, n * itemsize)


cdef inline void run_binary(Op op, ElementType etype, const void* grad_output, const void* x,
                            void* out, Py_ssize_t n, double negative_slope) noexcept nogil:
    """Run a backward op; the caller has checked ``is_covered(op, etype)``."""
    if etype == FLOAT32:
        run_float_binary(op, <const float*>grad_output, <const float*>x, <float*>out, n,
                         negative_slope)
    elif etype == FLOAT64:
        run_float_binary(op, <const double*>grad_output, <const double*>x, <double*>out, n,
                         negative_slope)
    elif etype == FLOAT16:
        run_float_binary(op, <const float16_t*>grad_output, <const float16_t*>x,
                         <float16_t*>out, n, negative_slope)
    else:
        run_float_binary(op, <const bfloat16_t*>grad_output, <const bfloat16_t*>x,
                         <bfloat16_t*>out, n, negative_slope)


ctypedef void (*unary_loop)(Op op, ElementType etype, const void* x, void* out, Py_ssize_t n,
                            Py_ssize_t itemsize, double negative_slope) noexcept nogil
ctypedef void (*binary_loop)(Op op, ElementType etype, const void* grad_output,
                             const void* x, void* out, Py_ssize_t n,
                             double negative_slope) noexcept nogil

ctypedef struct LoopTable:
    const char* isa  # the instruction set the loops were compiled for
    unary_loop unary
    binary_loop binary


cdef extern from *:
    """
    static const char FASTACT_LOOP_TABLE_NAME[] = "fastact._loops.LoopTable";
    """
    const char* FASTACT_LOOP_TABLE_NAME


cdef inline object export_loop_table(const char* isa):
    """A capsule holding this module's build of the loops; lives as long as the module."""
    cdef LoopTable* table = <LoopTable*>PyMem_RawMalloc(sizeof(LoopTable))
    if table == NULL:
        raise MemoryError()
    table.isa = isa
    table.unary = run_unary
    table.binary = run_binary
    return PyCapsule_New(table, FASTACT_LOOP_TABLE_NAME, NULL)
