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
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint16_t
from cpython.mem cimport PyMem_RawMalloc
from cpython.pycapsule cimport PyCapsule_New
from libc.string cimport memcpy

from fastact._elementwise cimport (
    bfloat16_t,
    element_t,
    float16_t,
    leaky_relu_backward_rule,
    leaky_relu_grad_rule,
    leaky_relu_rule,
    relu_backward_rule,
    relu_grad_rule,
    relu_rule,
)

# ---------------------------------------------------------------------------------------
# The element types, in one place. relu also covers signed integers (unsigned relu is the
# identity); every function covers the four float formats.

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
# The loops, each written once over element steps: the public contiguous kernels call them
# with literal steps of 1, which the compiler propagates (the functions are inline) into a
# unit-stride loop that it vectorises; any other step gives the strided loop. Every operand
# is loaded before the select, so the compiler turns the ternary into a vector compare +
# blend instead of a branch (random signs would make a branch mispredict half the time).
# The rules, with the reason for each comparison, are in _elementwise.pxd (for 16-bit
# floats they compute the product before choosing, for the same reason).

cdef inline void relu_loop(const element_t* x, Py_ssize_t x_step, element_t* out,
                           Py_ssize_t out_step, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef element_t xi
    for i in range(n):
        xi = x[i * x_step]
        out[i * out_step] = relu_rule(xi)


cdef inline void leaky_relu_loop(const floating_t* x, Py_ssize_t x_step, floating_t* out,
                                 Py_ssize_t out_step, Py_ssize_t n,
                                 double negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i * x_step]
        out[i * out_step] = leaky_relu_rule(xi, negative_slope)


cdef inline void relu_grad_loop(const floating_t* x, Py_ssize_t x_step, floating_t* out,
                                Py_ssize_t out_step, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i * x_step]
        out[i * out_step] = relu_grad_rule(xi)


cdef inline void leaky_relu_grad_loop(const floating_t* x, Py_ssize_t x_step, floating_t* out,
                                      Py_ssize_t out_step, Py_ssize_t n,
                                      double negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i * x_step]
        out[i * out_step] = leaky_relu_grad_rule(xi, negative_slope)


cdef inline void relu_backward_loop(const floating_t* grad_output, Py_ssize_t g_step,
                                    const floating_t* x, Py_ssize_t x_step, floating_t* out,
                                    Py_ssize_t out_step, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t gi, xi
    for i in range(n):
        gi = grad_output[i * g_step]
        xi = x[i * x_step]
        out[i * out_step] = relu_backward_rule(gi, xi)


cdef inline void leaky_relu_backward_loop(const floating_t* grad_output, Py_ssize_t g_step,
                                          const floating_t* x, Py_ssize_t x_step,
                                          floating_t* out, Py_ssize_t out_step, Py_ssize_t n,
                                          double negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t gi, xi
    for i in range(n):
        gi = grad_output[i * g_step]
        xi = x[i * x_step]
        out[i * out_step] = leaky_relu_backward_rule(gi, xi, negative_slope)


# The contiguous kernels: the Cython API (see _kernels.pxd).

cdef inline void relu_kernel(const element_t* x, element_t* out, Py_ssize_t n) noexcept nogil:
    relu_loop(x, 1, out, 1, n)


cdef inline void leaky_relu_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                                   double negative_slope) noexcept nogil:
    leaky_relu_loop(x, 1, out, 1, n, negative_slope)


cdef inline void relu_grad_kernel(const floating_t* x, floating_t* out,
                                  Py_ssize_t n) noexcept nogil:
    relu_grad_loop(x, 1, out, 1, n)


cdef inline void leaky_relu_grad_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                                        double negative_slope) noexcept nogil:
    leaky_relu_grad_loop(x, 1, out, 1, n, negative_slope)


cdef inline void relu_backward_kernel(const floating_t* grad_output, const floating_t* x,
                                      floating_t* out, Py_ssize_t n) noexcept nogil:
    relu_backward_loop(grad_output, 1, x, 1, out, 1, n)


cdef inline void leaky_relu_backward_kernel(const floating_t* grad_output,
                                            const floating_t* x, floating_t* out,
                                            Py_ssize_t n, double negative_slope) noexcept nogil:
    leaky_relu_backward_loop(grad_output, 1, x, 1, out, 1, n, negative_slope)


# ---------------------------------------------------------------------------------------
# float16 products with F16C (the AVX2 build: every AVX2 CPU has it; the AVX-512 build
# converts 16 at a time): a block of halves is widened to float32 by the hardware, run
# through the float32 loop and narrowed back, ties to even. The same result as the portable rule (x > 0 selects x, whose round trip is
# exact; otherwise float32(x) * s rounded once), at a fraction of the bit-twiddling cost.

cdef extern from *:
    """
    #if defined(__F16C__)
    #include <immintrin.h>
    #define FASTACT_HAS_F16C 1
    static inline void fastact_widen_float16(const uint16_t *h, float *f, ptrdiff_t n)
    {
        ptrdiff_t i = 0;
    #if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(f + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    #endif
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
        for (; i < n; i++)
            f[i] = _cvtsh_ss(h[i]);
    }
    static inline void fastact_narrow_float16(const float *f, uint16_t *h, ptrdiff_t n)
    {
        ptrdiff_t i = 0;
    #if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            _mm256_storeu_si256((__m256i *)(h + i),
                                _mm512_cvtps_ph(_mm512_loadu_ps(f + i), _MM_FROUND_TO_NEAREST_INT));
    #endif
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(h + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(f + i), _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; i++)
            h[i] = _cvtss_sh(f[i], _MM_FROUND_TO_NEAREST_INT);
    }
    #else
    #define FASTACT_HAS_F16C 0
    static inline void fastact_widen_float16(const uint16_t *h, float *f, ptrdiff_t n) {}
    static inline void fastact_narrow_float16(const float *f, uint16_t *h, ptrdiff_t n) {}
    #endif
    """
    const bint FASTACT_HAS_F16C
    void fastact_widen_float16(const uint16_t* h, float* f, Py_ssize_t n) nogil
    void fastact_narrow_float16(const float* f, uint16_t* h, Py_ssize_t n) nogil

cdef enum:
    F16C_BLOCK = 256


cdef inline void float16_product_via_f16c(Op op, const float16_t* grad_output,
                                          const float16_t* x, float16_t* out, Py_ssize_t n,
                                          double negative_slope) noexcept nogil:
    """leaky_relu (grad_output NULL) or leaky_relu_backward over contiguous float16."""
    cdef float g_block[F16C_BLOCK]
    cdef float x_block[F16C_BLOCK]
    cdef float out_block[F16C_BLOCK]
    cdef Py_ssize_t start = 0, m
    while start < n:
        m = min(<Py_ssize_t>F16C_BLOCK, n - start)
        fastact_widen_float16(<const uint16_t*>(x + start), x_block, m)
        if op == LEAKY_RELU:
            leaky_relu_loop(<const float*>x_block, 1, <float*>out_block, 1, m, negative_slope)
        else:
            fastact_widen_float16(<const uint16_t*>(grad_output + start), g_block, m)
            leaky_relu_backward_loop(<const float*>g_block, 1, <const float*>x_block, 1,
                                     <float*>out_block, 1, m, negative_slope)
        fastact_narrow_float16(out_block, <uint16_t*>(out + start), m)
        start += m


# ---------------------------------------------------------------------------------------
# Dispatch from (operation, element type, steps) to a loop, behind one signature per arity
# so that a table of two function pointers selects a whole instruction-set build. Steps
# are in bytes here (NumPy's strides) and in elements below; the arrays are aligned, so
# they divide exactly.

cdef inline void unary_op(Op op, const element_t* x, Py_ssize_t x_step, element_t* out,
                          Py_ssize_t out_step, Py_ssize_t n,
                          double negative_slope) noexcept nogil:
    if op == RELU:
        relu_loop(x, x_step, out, out_step, n)
    elif element_t is float or element_t is double or element_t is float16_t \
            or element_t is bfloat16_t:
        if op == LEAKY_RELU:
            leaky_relu_loop(x, x_step, out, out_step, n, negative_slope)
        elif op == RELU_GRAD:
            relu_grad_loop(x, x_step, out, out_step, n)
        else:
            leaky_relu_grad_loop(x, x_step, out, out_step, n, negative_slope)


cdef inline void run_typed_unary(Op op, const element_t* x, Py_ssize_t x_stride, element_t* out,
                                 Py_ssize_t out_stride, Py_ssize_t n,
                                 double negative_slope) noexcept nogil:
    if x_stride == sizeof(element_t) and out_stride == sizeof(element_t):
        if element_t is float16_t:
            if FASTACT_HAS_F16C and op == LEAKY_RELU:
                float16_product_via_f16c(op, NULL, x, out, n, negative_slope)
                return
        unary_op(op, x, 1, out, 1, n, negative_slope)
    else:
        unary_op(op, x, x_stride // <Py_ssize_t>sizeof(element_t), out,
                 out_stride // <Py_ssize_t>sizeof(element_t), n, negative_slope)


cdef inline void run_typed_binary(Op op, const floating_t* grad_output, Py_ssize_t g_stride,
                                  const floating_t* x, Py_ssize_t x_stride, floating_t* out,
                                  Py_ssize_t out_stride, Py_ssize_t n,
                                  double negative_slope) noexcept nogil:
    cdef Py_ssize_t size = sizeof(floating_t)
    if g_stride == size and x_stride == size and out_stride == size:
        if floating_t is float16_t:
            if FASTACT_HAS_F16C and op == LEAKY_RELU_BACKWARD:
                float16_product_via_f16c(op, grad_output, x, out, n, negative_slope)
                return
        if op == RELU_BACKWARD:
            relu_backward_loop(grad_output, 1, x, 1, out, 1, n)
        else:
            leaky_relu_backward_loop(grad_output, 1, x, 1, out, 1, n, negative_slope)
    elif op == RELU_BACKWARD:
        relu_backward_loop(grad_output, g_stride // size, x, x_stride // size, out,
                           out_stride // size, n)
    else:
        leaky_relu_backward_loop(grad_output, g_stride // size, x, x_stride // size, out,
                                 out_stride // size, n, negative_slope)


cdef inline void copy_strided(const char* x, Py_ssize_t x_stride, char* out,
                              Py_ssize_t out_stride, Py_ssize_t n,
                              Py_ssize_t itemsize) noexcept nogil:
    cdef Py_ssize_t i
    if x == out and x_stride == out_stride:
        return
    if x_stride == itemsize and out_stride == itemsize:
        memcpy(out, x, n * itemsize)
        return
    for i in range(n):
        memcpy(out + i * out_stride, x + i * x_stride, itemsize)


cdef inline void run_unary(Op op, ElementType etype, const char* x, Py_ssize_t x_stride,
                           char* out, Py_ssize_t out_stride, Py_ssize_t n, Py_ssize_t itemsize,
                           double negative_slope) noexcept nogil:
    """Run a unary op; the caller has checked ``is_covered(op, etype)``."""
    if etype == FLOAT32:
        run_typed_unary(op, <const float*>x, x_stride, <float*>out, out_stride, n,
                        negative_slope)
    elif etype == FLOAT64:
        run_typed_unary(op, <const double*>x, x_stride, <double*>out, out_stride, n,
                        negative_slope)
    elif etype == FLOAT16:
        run_typed_unary(op, <const float16_t*>x, x_stride, <float16_t*>out, out_stride, n,
                        negative_slope)
    elif etype == BFLOAT16:
        run_typed_unary(op, <const bfloat16_t*>x, x_stride, <bfloat16_t*>out, out_stride, n,
                        negative_slope)
    elif etype == INT8:
        run_typed_unary(op, <const int8_t*>x, x_stride, <int8_t*>out, out_stride, n, 0.0)
    elif etype == INT16:
        run_typed_unary(op, <const int16_t*>x, x_stride, <int16_t*>out, out_stride, n, 0.0)
    elif etype == INT32:
        run_typed_unary(op, <const int32_t*>x, x_stride, <int32_t*>out, out_stride, n, 0.0)
    elif etype == INT64:
        run_typed_unary(op, <const int64_t*>x, x_stride, <int64_t*>out, out_stride, n, 0.0)
    elif etype == UNSIGNED:  # relu of an unsigned integer is the identity
        copy_strided(x, x_stride, out, out_stride, n, itemsize)


cdef inline void run_binary(Op op, ElementType etype, const char* grad_output,
                            Py_ssize_t g_stride, const char* x, Py_ssize_t x_stride, char* out,
                            Py_ssize_t out_stride, Py_ssize_t n,
                            double negative_slope) noexcept nogil:
    """Run a backward op; the caller has checked ``is_covered(op, etype)``."""
    if etype == FLOAT32:
        run_typed_binary(op, <const float*>grad_output, g_stride, <const float*>x, x_stride,
                         <float*>out, out_stride, n, negative_slope)
    elif etype == FLOAT64:
        run_typed_binary(op, <const double*>grad_output, g_stride, <const double*>x, x_stride,
                         <double*>out, out_stride, n, negative_slope)
    elif etype == FLOAT16:
        run_typed_binary(op, <const float16_t*>grad_output, g_stride, <const float16_t*>x,
                         x_stride, <float16_t*>out, out_stride, n, negative_slope)
    else:
        run_typed_binary(op, <const bfloat16_t*>grad_output, g_stride, <const bfloat16_t*>x,
                         x_stride, <bfloat16_t*>out, out_stride, n, negative_slope)


# Strides in bytes; a contiguous operand has its item size as stride.
ctypedef void (*unary_loop)(Op op, ElementType etype, const char* x, Py_ssize_t x_stride,
                            char* out, Py_ssize_t out_stride, Py_ssize_t n,
                            Py_ssize_t itemsize, double negative_slope) noexcept nogil
ctypedef void (*binary_loop)(Op op, ElementType etype, const char* grad_output,
                             Py_ssize_t g_stride, const char* x, Py_ssize_t x_stride,
                             char* out, Py_ssize_t out_stride, Py_ssize_t n,
                             double negative_slope) noexcept nogil

ctypedef struct LoopTable:
    const char* isa  # the instruction set the loops were compiled for
    const char* cflags  # and the compiler flags
    unary_loop unary
    binary_loop binary


cdef extern from *:
    """
    static const char FASTACT_LOOP_TABLE_NAME[] = "fastact._loops.LoopTable";
    #ifndef FASTACT_CFLAGS
    #  define FASTACT_CFLAGS "unknown"
    #endif
    static const char FASTACT_LOOP_CFLAGS[] = FASTACT_CFLAGS;
    """
    const char* FASTACT_LOOP_TABLE_NAME
    const char* FASTACT_LOOP_CFLAGS


cdef inline object export_loop_table(const char* isa):
    """A capsule holding this module's build of the loops; lives as long as the module."""
    cdef LoopTable* table = <LoopTable*>PyMem_RawMalloc(sizeof(LoopTable))
    if table == NULL:
        raise MemoryError()
    table.isa = isa
    table.cflags = FASTACT_LOOP_CFLAGS
    table.unary = run_unary
    table.binary = run_binary
    return PyCapsule_New(table, FASTACT_LOOP_TABLE_NAME, NULL)
