# cython: language_level=3
"""The typed elementwise loops: one fused-type body for every op, and their dispatch.

Everything here is ``inline``, so each module that cimports it compiles its own copy with
its own flags: ``_loops_baseline`` (the platform's baseline ISA) and, on x86-64,
``_loops_avx2``; ``_kernels`` picks one at import. Another Cython project that cimports
the kernels (through ``fastact._kernels``) compiles them with its flags too.

The ops come from the function table (``_functions.py``) through the generated
``_ops.pxi`` (the ``Op`` enum, one tag type per op, the op -> rule mapping) and
``_ops_dispatch.pxi`` (the run-time dispatch and the Cython API kernels). A loop here is
written once over ``op_t`` and ``element_t``; the compiler gets one copy per op and type,
with the rule inlined. Parameters come as doubles and the rules round them as torch does.
"""
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.mem cimport PyMem_RawMalloc
from cpython.pycapsule cimport PyCapsule_New

from fastact._elementwise cimport *
from fastact._short_float_vectors cimport FASTACT_HAS_SHORT_VECTORS, leaky_short_floats

# ---------------------------------------------------------------------------------------
# The element types, in one place.

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
    UINT8
    UINT16
    UINT32
    UINT64


cdef inline bint is_float_type(ElementType etype) noexcept nogil:
    return etype == FLOAT16 or etype == BFLOAT16 or etype == FLOAT32 or etype == FLOAT64


include "_ops.pxi"

# ---------------------------------------------------------------------------------------
# The loop, written once over element steps: the contiguous paths call it with literal
# steps of 1, which the compiler propagates (it is inline) into a unit-stride loop that it
# vectorises; any other step gives the strided loop. Every operand is loaded before the
# select, so the compiler turns the rule's ternary into a vector compare + blend instead of
# a branch (random signs would make a branch mispredict half the time). A forward op gets
# ``g = x``: its rule ignores ``g``, and the dead load goes away. The rules, with the reason
# for each comparison, are in _elementwise.pxd.

cdef inline void elementwise_loop(op_t* op, const element_t* g, Py_ssize_t g_step,
                                  const element_t* x, Py_ssize_t x_step, element_t* out,
                                  Py_ssize_t out_step, Py_ssize_t n, double p0,
                                  double p1) noexcept nogil:
    cdef Py_ssize_t i
    cdef element_t gi, xi
    for i in range(n):
        gi = g[i * g_step]
        xi = x[i * x_step]
        out[i * out_step] = apply_op(op, gi, xi, p0, p1)


# ---------------------------------------------------------------------------------------
# float16 products with F16C (the AVX2 build: every AVX2 CPU has it; the AVX-512 build
# converts 16 at a time): a block of halves is widened to float32 by the hardware, run
# through the float32 loop and narrowed back, ties to even. The same result as the
# portable rule for the ops whose 16-bit rule is the float32 rule rounded once
# (``op_widens``), at a fraction of the bit-twiddling cost.

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


cdef inline void float16_via_f16c(op_t* op, const float16_t* g, const float16_t* x,
                                  float16_t* out, Py_ssize_t n, double p0,
                                  double p1) noexcept nogil:
    cdef float g_block[F16C_BLOCK]
    cdef float x_block[F16C_BLOCK]
    cdef float out_block[F16C_BLOCK]
    cdef Py_ssize_t start = 0, m
    # A forward op has g == x: its block is x's.
    cdef const float* g_widened = &g_block[0]
    if g == x:
        g_widened = &x_block[0]
    while start < n:
        m = min(<Py_ssize_t>F16C_BLOCK, n - start)
        fastact_widen_float16(<const uint16_t*>(x + start), x_block, m)
        if g != x:
            fastact_widen_float16(<const uint16_t*>(g + start), g_block, m)
        elementwise_loop(op, g_widened, 1, <const float*>x_block, 1, <float*>out_block, 1, m,
                         p0, p1)
        fastact_narrow_float16(out_block, <uint16_t*>(out + start), m)
        start += m


# ---------------------------------------------------------------------------------------
# From byte strides and an element type to a typed loop. Strides are in bytes here
# (NumPy's) and in elements in the loop; the arrays are aligned, so they divide exactly.

cdef inline void run_typed(op_t* op, const element_t* g, Py_ssize_t g_stride,
                           const element_t* x, Py_ssize_t x_stride, element_t* out,
                           Py_ssize_t out_stride, Py_ssize_t n, double p0,
                           double p1) noexcept nogil:
    cdef Py_ssize_t size = sizeof(element_t)
    if n <= 0:
        return
    round_params(op, x[0], &p0, &p1)
    if g_stride == size and x_stride == size and out_stride == size:
        if element_t is float16_t or element_t is bfloat16_t:
            if FASTACT_HAS_SHORT_VECTORS and op_is_leaky(op):
                leaky_short_floats(g, x, out, n, <float>p0)
                return
        if element_t is float16_t:
            if FASTACT_HAS_F16C and op_widens(op):
                float16_via_f16c(op, g, x, out, n, p0, p1)
                return
        elementwise_loop(op, g, 1, x, 1, out, 1, n, p0, p1)
    else:
        elementwise_loop(op, g, g_stride // size, x, x_stride // size, out,
                         out_stride // size, n, p0, p1)


cdef inline void run_float_type(op_t* op, ElementType etype, const char* g,
                                Py_ssize_t g_stride, const char* x, Py_ssize_t x_stride,
                                char* out, Py_ssize_t out_stride, Py_ssize_t n, double p0,
                                double p1) noexcept nogil:
    if etype == FLOAT32:
        run_typed(op, <const float*>g, g_stride, <const float*>x, x_stride, <float*>out,
                  out_stride, n, p0, p1)
    elif etype == FLOAT64:
        run_typed(op, <const double*>g, g_stride, <const double*>x, x_stride, <double*>out,
                  out_stride, n, p0, p1)
    elif etype == FLOAT16:
        run_typed(op, <const float16_t*>g, g_stride, <const float16_t*>x, x_stride,
                  <float16_t*>out, out_stride, n, p0, p1)
    elif etype == BFLOAT16:
        run_typed(op, <const bfloat16_t*>g, g_stride, <const bfloat16_t*>x, x_stride,
                  <bfloat16_t*>out, out_stride, n, p0, p1)


cdef inline void run_any_type(op_t* op, ElementType etype, const char* g,
                              Py_ssize_t g_stride, const char* x, Py_ssize_t x_stride,
                              char* out, Py_ssize_t out_stride, Py_ssize_t n, double p0,
                              double p1) noexcept nogil:
    if etype == INT8:
        run_typed(op, <const int8_t*>g, g_stride, <const int8_t*>x, x_stride, <int8_t*>out,
                  out_stride, n, p0, p1)
    elif etype == INT16:
        run_typed(op, <const int16_t*>g, g_stride, <const int16_t*>x, x_stride,
                  <int16_t*>out, out_stride, n, p0, p1)
    elif etype == INT32:
        run_typed(op, <const int32_t*>g, g_stride, <const int32_t*>x, x_stride,
                  <int32_t*>out, out_stride, n, p0, p1)
    elif etype == INT64:
        run_typed(op, <const int64_t*>g, g_stride, <const int64_t*>x, x_stride,
                  <int64_t*>out, out_stride, n, p0, p1)
    elif etype == UINT8:
        run_typed(op, <const uint8_t*>g, g_stride, <const uint8_t*>x, x_stride,
                  <uint8_t*>out, out_stride, n, p0, p1)
    elif etype == UINT16:
        run_typed(op, <const uint16_t*>g, g_stride, <const uint16_t*>x, x_stride,
                  <uint16_t*>out, out_stride, n, p0, p1)
    elif etype == UINT32:
        run_typed(op, <const uint32_t*>g, g_stride, <const uint32_t*>x, x_stride,
                  <uint32_t*>out, out_stride, n, p0, p1)
    elif etype == UINT64:
        run_typed(op, <const uint64_t*>g, g_stride, <const uint64_t*>x, x_stride,
                  <uint64_t*>out, out_stride, n, p0, p1)
    else:
        run_float_type(op, etype, g, g_stride, x, x_stride, out, out_stride, n, p0, p1)


# ---------------------------------------------------------------------------------------
# A ufunc loop whose parameters vary along the run (a slope per channel, broadcast): the
# rule element by element. args/steps hold the ufunc's operands in order: [g,] x, the
# parameters, out. float16 and bfloat16 loops take their parameters as float32, as torch
# computes in float32; float32 and float64 loops in their own type.

cdef inline double param_at(char** args, Py_ssize_t* steps, int k, Py_ssize_t i,
                            bint is_double) noexcept nogil:
    if is_double:
        return (<double*>(args[k] + i * steps[k]))[0]
    return (<float*>(args[k] + i * steps[k]))[0]


cdef inline void per_element_loop(op_t* op, char** args, Py_ssize_t* steps, Py_ssize_t n,
                                  int n_operands, int n_params,
                                  element_t* tag) noexcept nogil:
    cdef Py_ssize_t i
    cdef int last = n_operands + n_params
    cdef int xk = n_operands - 1
    cdef bint is_double = element_t is double
    cdef double p0, p1
    cdef element_t g, x
    for i in range(n):
        p0 = param_at(args, steps, n_operands, i, is_double) if n_params > 0 else 0.0
        p1 = param_at(args, steps, n_operands + 1, i, is_double) if n_params > 1 else 0.0
        g = (<element_t*>(args[0] + i * steps[0]))[0]
        x = (<element_t*>(args[xk] + i * steps[xk]))[0]
        round_params(op, x, &p0, &p1)
        (<element_t*>(args[last] + i * steps[last]))[0] = apply_op(op, g, x, p0, p1)


cdef inline void per_element_typed(op_t* op, char** args, Py_ssize_t* steps, Py_ssize_t n,
                                   int n_operands, int n_params,
                                   char type_char) noexcept nogil:
    if type_char == b'f':
        per_element_loop(op, args, steps, n, n_operands, n_params, <float*>NULL)
    elif type_char == b'd':
        per_element_loop(op, args, steps, n, n_operands, n_params, <double*>NULL)
    elif type_char == b'e':
        per_element_loop(op, args, steps, n, n_operands, n_params, <float16_t*>NULL)


include "_ops_dispatch.pxi"


# ---------------------------------------------------------------------------------------
# One build of the loops behind one function pointer, so that a table selects a whole
# instruction-set build at run time.

ctypedef void (*op_loop)(Op op, ElementType etype, const char* g, Py_ssize_t g_stride,
                         const char* x, Py_ssize_t x_stride, char* out, Py_ssize_t out_stride,
                         Py_ssize_t n, double p0, double p1) noexcept nogil

ctypedef struct LoopTable:
    const char* isa  # the instruction set the loops were compiled for
    const char* cflags  # and the compiler flags
    op_loop run


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
    table.run = run_op
    return PyCapsule_New(table, FASTACT_LOOP_TABLE_NAME, NULL)
