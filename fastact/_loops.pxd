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
from libc.math cimport INFINITY, NAN

from fastact._dead_loops cimport BFLOAT16_INF_BITS, FLOAT16_INF_BITS, dead_flags
from fastact._elementwise cimport *
from fastact._gate_vectors cimport FASTACT_HAS_GATE_VECTORS, gate_vectors
from fastact._short_float_vectors cimport FASTACT_HAS_SHORT_VECTORS, leaky_short_floats
from fastact._stream cimport (
    FASTACT_OUTPUT_AHEAD_BYTES,
    fastact_prefetch_at,
    fastact_prefetch_lines,
    fastact_stream_copy,
    fastact_stream_fence,
)

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


cdef extern from *:
    """
    /* A value the compiler must treat as unknown from here on, at no cost (it stays in its
       register). relu6's bounds are the constants 0 and 6: GCC folds them into the loop and
       gives up its min/max for a chain of four compares per vector (0.69x np.copyto in L1);
       as unknown values they get vmaxps/vminps, as hardtanh's do. */
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #define FASTACT_OPAQUE_DOUBLE(v) __asm__("" : "+x"(v))
    #elif defined(__GNUC__) && defined(__aarch64__)
    #define FASTACT_OPAQUE_DOUBLE(v) __asm__("" : "+w"(v))
    #else
    #define FASTACT_OPAQUE_DOUBLE(v) ((void)0)
    #endif
    """
    void opaque_double "FASTACT_OPAQUE_DOUBLE"(double v) nogil


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
# The 16-bit gates and clamps as integer compares of the bits (``order_key`` in
# _elementwise.pxd), with the bounds' keys computed once per call: no conversion, so the
# vectors hold 16-bit lanes, and no float16 rounding code in the loop. The same results
# as the rules (which compare in float32), NaN x included: it fails every comparison.

cdef inline void gate_short_floats(const short_float_t* g, const short_float_t* x,
                                   short_float_t* out, Py_ssize_t n, int16_t at_most_low,
                                   int16_t at_least_high) noexcept nogil:
    """``(x <= low) | (x >= high) ? +0 : g``, from the keys of the window's edges."""
    cdef Py_ssize_t i
    cdef int16_t key
    cdef bint blocked
    cdef short_float_t gi, xi
    for i in range(n):
        # Both loaded before the select: a load inside it would be a masked load, which
        # only AVX-512 has for 16-bit lanes (the other builds would not vectorise).
        gi, xi = g[i], x[i]
        key = order_key(xi)
        blocked = is_ordered(xi) & ((key <= at_most_low) | (key >= at_least_high))
        out[i] = with_bits(gi, 0 if blocked else gi.bits)


cdef inline void clamp_short_floats(const short_float_t* x, short_float_t* out,
                                    Py_ssize_t n, int16_t below_key, uint16_t below_bits,
                                    int16_t above_key, uint16_t above_bits) noexcept nogil:
    """``below_bits`` where x's key is under ``below_key``, ``above_bits`` where it is
    over ``above_key``, x itself elsewhere (NaN x included). Where both hold (a low edge
    above the high one) the caller has made ``below_bits`` the high edge's value, so two
    selects in a row give the same result as nested ones, and vectorise better."""
    cdef Py_ssize_t i
    cdef int16_t key
    cdef bint ordered
    cdef uint16_t bits
    cdef short_float_t xi
    for i in range(n):
        xi = x[i]
        key = order_key(xi)
        ordered = is_ordered(xi)
        bits = below_bits if ordered & (key < below_key) else xi.bits
        out[i] = with_bits(xi, above_bits if ordered & (key > above_key) else bits)


cdef inline bint run_short_float_keys(op_t* op, const short_float_t* g,
                                      const short_float_t* x, short_float_t* out,
                                      Py_ssize_t n, double p0, double p1) noexcept nogil:
    """Run a gate or a clamp on contiguous 16-bit floats by their keys; False for any
    other op (and for a clamp with a NaN edge, which the rule gives its NaN)."""
    cdef double low, high, low_value, high_value
    cdef bint inclusive
    cdef int16_t below_key
    cdef uint16_t below_bits
    cdef short_float_t like = x[0]
    if op_gate(op, p0, p1, &low, &high):
        # A NaN edge's key is one no value reaches (no upper edge for high NaN).
        gate_short_floats(g, x, out, n, key_at_most(<float>low, like),
                          key_at_least(<float>high, like))
        return True
    if not op_clamp(op, p0, p1, &low, &low_value, &inclusive, &high, &high_value):
        return False
    if (low != low) | (high != high):
        return False
    # x <= low iff key <= key_at_most(low); x < low iff key < key_at_least(low).
    below_key = key_at_most(<float>low, like) + 1 if inclusive else key_at_least(<float>low, like)
    # Below the low edge the result is low_value, then compared with the high edge (torch's
    # clamp applies its max before its min, so low > high gives high).
    below_bits = narrow(<float>(high_value if low_value > high else low_value), like)
    clamp_short_floats(x, out, n, below_key, below_bits, key_at_most(<float>high, like),
                       narrow(<float>high_value, like))
    return True


# ---------------------------------------------------------------------------------------
# From byte strides and an element type to a typed loop. Strides are in bytes here
# (NumPy's) and in elements in the loop; the arrays are aligned, so they divide exactly.

cdef enum:
    # The widest vector a loop build stores (AVX-512: a cache line).
    VECTOR_ALIGN_BYTES = 64
    # Below this many bytes of output the head is not split off. Splitting it from 128
    # bytes up made no measurable difference at 2^6-2^11 elements (the call's fixed cost
    # dominates there), and this keeps the 1 KiB blocks of a streamed call whole.
    ALIGN_MIN_BYTES = 4096


cdef enum:
    # A contiguous pass into another array asks for out's lines a chunk of this many
    # bytes at a time (see contiguous_loop).
    OUT_CHUNK_BYTES = 256


cdef inline void contiguous_loop(op_t* op, const element_t* g, const element_t* x,
                                 element_t* out, Py_ssize_t n, double p0,
                                 double p1) noexcept nogil:
    """The element loop over contiguous arrays, with out's lines asked for ahead
    (``FASTACT_OUTPUT_AHEAD_BYTES`` says why) where out is another array of 1 KiB or
    more (ahead of a shorter one lies other memory)."""
    cdef Py_ssize_t chunk = OUT_CHUNK_BYTES // sizeof(element_t)
    cdef Py_ssize_t i = 0, k, whole
    if (n * <Py_ssize_t>sizeof(element_t) >= FASTACT_OUTPUT_AHEAD_BYTES
            and <const void*>out != <const void*>x and <const void*>out != <const void*>g):
        whole = n - n % chunk
        while i < whole:
            for k in range(0, OUT_CHUNK_BYTES, 64):
                fastact_prefetch_at(<const char*>(out + i) + k, FASTACT_OUTPUT_AHEAD_BYTES)
            elementwise_loop(op, g + i, 1, x + i, 1, out + i, 1, chunk, p0, p1)
            i += chunk
    elementwise_loop(op, g + i, 1, x + i, 1, out + i, 1, n - i, p0, p1)


cdef inline void run_typed(op_t* op, const element_t* g, Py_ssize_t g_stride,
                           const element_t* x, Py_ssize_t x_stride, element_t* out,
                           Py_ssize_t out_stride, Py_ssize_t n, double p0, double p1,
                           bint out_ahead) noexcept nogil:
    """The loop over ``n`` elements at the given byte strides. ``out_ahead``: a contiguous
    pass into another array asks for out's lines ahead (``contiguous_loop``); the loops
    that call this on short runs (a prelu channel, a mask block) pass False, a constant
    that keeps their inlined copies as they were: with it, GCC compiled the run's tail
    as a scalar loop that branched on each sign, and prelu's (16, 64, 8, 8) float32
    forward took 1.4x as long (Intel Xeon VM)."""
    cdef Py_ssize_t size = sizeof(element_t), done
    cdef double low, high
    if n <= 0:
        return
    round_params(op, x[0], &p0, &p1)
    opaque_double(p0)
    opaque_double(p1)
    if g_stride == size and x_stride == size and out_stride == size:
        if n * size >= ALIGN_MIN_BYTES:
            # The few elements before out's first 64-byte boundary by themselves, so that
            # the vector loop's stores (and, where x and out are equally aligned, as
            # NumPy's allocations are, its loads) never straddle two cache lines: NumPy
            # gives a large array an address 16 bytes past a page, and in place the
            # split 64-byte accesses took 1.15-1.2x as long (AMD EPYC Zen 5, 2^18-2^23
            # float32). The head runs through the plain loop: the same rule, bit for bit.
            done = min(n, <Py_ssize_t>((-<size_t>out) % VECTOR_ALIGN_BYTES) // size)
            elementwise_loop(op, g, 1, x, 1, out, 1, done, p0, p1)
            g, x, out, n = g + done, x + done, out + done, n - done
        if element_t is float or element_t is double:
            if FASTACT_HAS_GATE_VECTORS and op_gate(op, p0, p1, &low, &high):
                done = gate_vectors(g, x, out, n, low, high)
                g, x, out, n = g + done, x + done, out + done, n - done
        if element_t is float16_t or element_t is bfloat16_t:
            if run_short_float_keys(op, g, x, out, n, p0, p1):
                return
            if FASTACT_HAS_SHORT_VECTORS and op_is_leaky(op):
                leaky_short_floats(g, x, out, n, <float>p0)
                return
        if element_t is float16_t:
            if FASTACT_HAS_F16C and op_widens(op):
                float16_via_f16c(op, g, x, out, n, p0, p1)
                return
        if out_ahead:
            contiguous_loop(op, g, x, out, n, p0, p1)
        else:
            elementwise_loop(op, g, 1, x, 1, out, 1, n, p0, p1)
    elif ((element_t is float or element_t is double) and out_stride == size
          and x_stride == 2 * size and g_stride == 2 * size):
        # Every other element (``x[::2]``): literal steps, so the compiler loads two
        # vectors and shuffles their even lanes together instead of one load per element.
        elementwise_loop(op, g, 2, x, 2, out, 1, n, p0, p1)
    else:
        elementwise_loop(op, g, g_stride // size, x, x_stride // size, out,
                         out_stride // size, n, p0, p1)


cdef inline void run_float_type(op_t* op, ElementType etype, const char* g,
                                Py_ssize_t g_stride, const char* x, Py_ssize_t x_stride,
                                char* out, Py_ssize_t out_stride, Py_ssize_t n, double p0,
                                double p1) noexcept nogil:
    if etype == FLOAT32:
        run_typed(op, <const float*>g, g_stride, <const float*>x, x_stride, <float*>out,
                  out_stride, n, p0, p1, True)
    elif etype == FLOAT64:
        run_typed(op, <const double*>g, g_stride, <const double*>x, x_stride, <double*>out,
                  out_stride, n, p0, p1, True)
    elif etype == FLOAT16:
        run_typed(op, <const float16_t*>g, g_stride, <const float16_t*>x, x_stride,
                  <float16_t*>out, out_stride, n, p0, p1, True)
    elif etype == BFLOAT16:
        run_typed(op, <const bfloat16_t*>g, g_stride, <const bfloat16_t*>x, x_stride,
                  <bfloat16_t*>out, out_stride, n, p0, p1, True)


cdef inline void run_any_type(op_t* op, ElementType etype, const char* g,
                              Py_ssize_t g_stride, const char* x, Py_ssize_t x_stride,
                              char* out, Py_ssize_t out_stride, Py_ssize_t n, double p0,
                              double p1) noexcept nogil:
    if etype == INT8:
        run_typed(op, <const int8_t*>g, g_stride, <const int8_t*>x, x_stride, <int8_t*>out,
                  out_stride, n, p0, p1, True)
    elif etype == INT16:
        run_typed(op, <const int16_t*>g, g_stride, <const int16_t*>x, x_stride,
                  <int16_t*>out, out_stride, n, p0, p1, True)
    elif etype == INT32:
        run_typed(op, <const int32_t*>g, g_stride, <const int32_t*>x, x_stride,
                  <int32_t*>out, out_stride, n, p0, p1, True)
    elif etype == INT64:
        run_typed(op, <const int64_t*>g, g_stride, <const int64_t*>x, x_stride,
                  <int64_t*>out, out_stride, n, p0, p1, True)
    elif etype == UINT8:
        run_typed(op, <const uint8_t*>g, g_stride, <const uint8_t*>x, x_stride,
                  <uint8_t*>out, out_stride, n, p0, p1, True)
    elif etype == UINT16:
        run_typed(op, <const uint16_t*>g, g_stride, <const uint16_t*>x, x_stride,
                  <uint16_t*>out, out_stride, n, p0, p1, True)
    elif etype == UINT32:
        run_typed(op, <const uint32_t*>g, g_stride, <const uint32_t*>x, x_stride,
                  <uint32_t*>out, out_stride, n, p0, p1, True)
    elif etype == UINT64:
        run_typed(op, <const uint64_t*>g, g_stride, <const uint64_t*>x, x_stride,
                  <uint64_t*>out, out_stride, n, p0, p1, True)
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
# Strided blocks through L1 tiles. A block of ``rows`` x ``cols`` elements at any byte
# steps, ``cols`` being the output's fastest axis: an operand whose columns are contiguous
# is read (or written) where it lies, row by row; any other is copied a tile at a time
# into a contiguous buffer that stays in L1, so the vector loop always runs on contiguous
# rows. So ``x[::2]`` becomes a gather into a block, and a transposed operand a tile
# copied along its own contiguous axis (whole cache lines per column; an element-by-element
# strided loop touches a new line, and soon a new page, at every element). The copies move
# bits as unsigned integers (NaN payloads untouched), and the loop is the contiguous one:
# the result is the contiguous call's, bit for bit.

cdef enum:
    # One operand's buffer, in 8-byte words (aligned for every type): 16 KiB. A transposed
    # tile's result goes back into an input's buffer, so that a forward tile keeps one
    # buffer in L1 and a backward tile two.
    TILE_WORDS = 2048
    TILE_BYTES = 8 * TILE_WORDS
    # A tile's height along a transposed column: four cache lines (so 64 x 64 float32).
    # Against two lines (32 x 128), a transposed 1024^2-4096^2 input into a C-ordered out
    # took 0.73-0.88x the time in float64, 0.5-0.7x in float16 (to 2048^2; mixed at
    # 4096^2) and 0.93x in float32 at 4096^2;
    # eight lines (128 x 32) took 1.3-1.8x (AMD EPYC Zen 5; interleaved runs of the two
    # builds). A tile's columns are separate memory streams: fewer, longer ones suit the
    # DRAM better, while the out side, a row per tile row, wants the tile wide.
    TILE_COLUMN_BYTES = 256
    LINE_BYTES = 64

cdef extern from *:
    """
    /* Transposes between two row-major layouts: d[j * ds + i] = s[i * ss + j] for i < rows,
       j < cols (steps in elements, either sign). In square blocks of SSE2 unpacks where
       the ISA has them (every x86-64 build; for 4- and 8-byte elements, AVX2 unpacks in
       the AVX2 build and AVX-512 ones in the AVX-512 build): moves and shuffles only, so
       every bit passes unchanged; the edges element by element. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define FASTACT_LOAD(p) _mm_loadu_si128((const __m128i *)(p))
    #define FASTACT_STORE(p, v) _mm_storeu_si128((__m128i *)(p), (v))
    #if defined(__AVX512F__)
    #include <immintrin.h>
    /* 16 x 16 and 8 x 8 blocks into whole ZMM rows. Each 128-bit lane of a register is
       loaded from its own row (a broadcast, then merge-masked broadcasts: loads and blends,
       off the shuffle port that every shuffle needs), so that only the transposes within
       the lanes are shuffles: 32 per 16 x 16 block against 64 for unpacks and lane
       shuffles of whole rows, which ran 1.25x as long in L1 (Intel Xeon VM). */
    #define FASTACT_BLOCK_u64 8
    #define FASTACT_BLOCK_u32 16
    /* Lane k: the 16 bytes at s + k * step. */
    static inline __m512i fastact_lanes_of_rows(const char *s, ptrdiff_t step)
    {
        __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)s));
        v = _mm512_mask_broadcast_i32x4(v, 0x00F0, _mm_loadu_si128((const __m128i *)(s + step)));
        v = _mm512_mask_broadcast_i32x4(v, 0x0F00,
                                        _mm_loadu_si128((const __m128i *)(s + 2 * step)));
        return _mm512_mask_broadcast_i32x4(v, 0xF000,
                                           _mm_loadu_si128((const __m128i *)(s + 3 * step)));
    }
    static inline void fastact_block_u64(const uint64_t *s, ptrdiff_t ss, uint64_t *d, ptrdiff_t ds)
    {
        /* For each 16-byte column a: lane k of v_b holds row b + 2k's pair, so unpacking
           v_0 with v_1 gives columns 2a and 2a + 1, rows 0-7 in order. */
        for (int a = 0; a < 4; a++) {
            const char *c = (const char *)(s + 2 * a);
            __m512i v0 = fastact_lanes_of_rows(c, 16 * ss);
            __m512i v1 = fastact_lanes_of_rows(c + 8 * ss, 16 * ss);
            _mm512_storeu_si512((void *)(d + 2 * a * ds), _mm512_unpacklo_epi64(v0, v1));
            _mm512_storeu_si512((void *)(d + (2 * a + 1) * ds), _mm512_unpackhi_epi64(v0, v1));
        }
    }
    static inline void fastact_block_u32(const uint32_t *s, ptrdiff_t ss, uint32_t *d, ptrdiff_t ds)
    {
        /* For each 16-byte column a: lane k of v_b holds row b + 4k's quad, so a 4 x 4
           transpose within the lanes of v_0..v_3 gives columns 4a..4a + 3, rows 0-15. */
        for (int a = 0; a < 4; a++) {
            const char *c = (const char *)(s + 4 * a);
            __m512i v0 = fastact_lanes_of_rows(c, 16 * ss);
            __m512i v1 = fastact_lanes_of_rows(c + 4 * ss, 16 * ss);
            __m512i v2 = fastact_lanes_of_rows(c + 8 * ss, 16 * ss);
            __m512i v3 = fastact_lanes_of_rows(c + 12 * ss, 16 * ss);
            __m512i lo01 = _mm512_unpacklo_epi32(v0, v1), hi01 = _mm512_unpackhi_epi32(v0, v1);
            __m512i lo23 = _mm512_unpacklo_epi32(v2, v3), hi23 = _mm512_unpackhi_epi32(v2, v3);
            _mm512_storeu_si512((void *)(d + 4 * a * ds), _mm512_unpacklo_epi64(lo01, lo23));
            _mm512_storeu_si512((void *)(d + (4 * a + 1) * ds), _mm512_unpackhi_epi64(lo01, lo23));
            _mm512_storeu_si512((void *)(d + (4 * a + 2) * ds), _mm512_unpacklo_epi64(hi01, hi23));
            _mm512_storeu_si512((void *)(d + (4 * a + 3) * ds), _mm512_unpackhi_epi64(hi01, hi23));
        }
    }
    #elif defined(__AVX2__)
    #include <immintrin.h>
    #define FASTACT_LOAD256(p) _mm256_loadu_si256((const __m256i *)(p))
    #define FASTACT_STORE256(p, v) _mm256_storeu_si256((__m256i *)(p), (v))
    #define FASTACT_BLOCK_u64 4
    #define FASTACT_BLOCK_u32 8
    static inline void fastact_block_u64(const uint64_t *s, ptrdiff_t ss, uint64_t *d, ptrdiff_t ds)
    {
        __m256i a = FASTACT_LOAD256(s), b = FASTACT_LOAD256(s + ss);
        __m256i c = FASTACT_LOAD256(s + 2 * ss), e = FASTACT_LOAD256(s + 3 * ss);
        __m256i ab_even = _mm256_unpacklo_epi64(a, b), ab_odd = _mm256_unpackhi_epi64(a, b);
        __m256i ce_even = _mm256_unpacklo_epi64(c, e), ce_odd = _mm256_unpackhi_epi64(c, e);
        FASTACT_STORE256(d, _mm256_permute2x128_si256(ab_even, ce_even, 0x20));
        FASTACT_STORE256(d + ds, _mm256_permute2x128_si256(ab_odd, ce_odd, 0x20));
        FASTACT_STORE256(d + 2 * ds, _mm256_permute2x128_si256(ab_even, ce_even, 0x31));
        FASTACT_STORE256(d + 3 * ds, _mm256_permute2x128_si256(ab_odd, ce_odd, 0x31));
    }
    static inline void fastact_block_u32(const uint32_t *s, ptrdiff_t ss, uint32_t *d, ptrdiff_t ds)
    {
        __m256i r[8], pairs[8], quads[8];
        int k;
        for (k = 0; k < 8; k++)
            r[k] = FASTACT_LOAD256(s + k * ss);
        for (k = 0; k < 4; k++) {
            pairs[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
            pairs[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
        }
        /* quads[k]: column k (and k + 4 in the high lane) of rows 0-3, then of rows 4-7. */
        for (k = 0; k < 2; k++) {
            quads[4 * k] = _mm256_unpacklo_epi64(pairs[4 * k], pairs[4 * k + 2]);
            quads[4 * k + 1] = _mm256_unpackhi_epi64(pairs[4 * k], pairs[4 * k + 2]);
            quads[4 * k + 2] = _mm256_unpacklo_epi64(pairs[4 * k + 1], pairs[4 * k + 3]);
            quads[4 * k + 3] = _mm256_unpackhi_epi64(pairs[4 * k + 1], pairs[4 * k + 3]);
        }
        for (k = 0; k < 4; k++) {
            FASTACT_STORE256(d + k * ds, _mm256_permute2x128_si256(quads[k], quads[k + 4], 0x20));
            FASTACT_STORE256(d + (k + 4) * ds,
                             _mm256_permute2x128_si256(quads[k], quads[k + 4], 0x31));
        }
    }
    #else
    #define FASTACT_BLOCK_u64 2
    #define FASTACT_BLOCK_u32 4
    static inline void fastact_block_u64(const uint64_t *s, ptrdiff_t ss, uint64_t *d, ptrdiff_t ds)
    {
        __m128i a = FASTACT_LOAD(s), b = FASTACT_LOAD(s + ss);
        FASTACT_STORE(d, _mm_unpacklo_epi64(a, b));
        FASTACT_STORE(d + ds, _mm_unpackhi_epi64(a, b));
    }
    static inline void fastact_block_u32(const uint32_t *s, ptrdiff_t ss, uint32_t *d, ptrdiff_t ds)
    {
        __m128i a = FASTACT_LOAD(s), b = FASTACT_LOAD(s + ss);
        __m128i c = FASTACT_LOAD(s + 2 * ss), e = FASTACT_LOAD(s + 3 * ss);
        __m128i ab_low = _mm_unpacklo_epi32(a, b), ce_low = _mm_unpacklo_epi32(c, e);
        __m128i ab_high = _mm_unpackhi_epi32(a, b), ce_high = _mm_unpackhi_epi32(c, e);
        FASTACT_STORE(d, _mm_unpacklo_epi64(ab_low, ce_low));
        FASTACT_STORE(d + ds, _mm_unpackhi_epi64(ab_low, ce_low));
        FASTACT_STORE(d + 2 * ds, _mm_unpacklo_epi64(ab_high, ce_high));
        FASTACT_STORE(d + 3 * ds, _mm_unpackhi_epi64(ab_high, ce_high));
    }
    #endif
    static inline void fastact_block_u16(const uint16_t *s, ptrdiff_t ss, uint16_t *d, ptrdiff_t ds)
    {
        __m128i r[8], pairs[8], quads[8];
        int k;
        for (k = 0; k < 8; k++)
            r[k] = FASTACT_LOAD(s + k * ss);
        for (k = 0; k < 4; k++) {
            pairs[k] = _mm_unpacklo_epi16(r[2 * k], r[2 * k + 1]);
            pairs[k + 4] = _mm_unpackhi_epi16(r[2 * k], r[2 * k + 1]);
        }
        for (k = 0; k < 2; k++) {
            quads[4 * k] = _mm_unpacklo_epi32(pairs[4 * k], pairs[4 * k + 1]);
            quads[4 * k + 1] = _mm_unpackhi_epi32(pairs[4 * k], pairs[4 * k + 1]);
            quads[4 * k + 2] = _mm_unpacklo_epi32(pairs[4 * k + 2], pairs[4 * k + 3]);
            quads[4 * k + 3] = _mm_unpackhi_epi32(pairs[4 * k + 2], pairs[4 * k + 3]);
        }
        for (k = 0; k < 2; k++) {
            FASTACT_STORE(d + (4 * k) * ds, _mm_unpacklo_epi64(quads[4 * k], quads[4 * k + 2]));
            FASTACT_STORE(d + (4 * k + 1) * ds, _mm_unpackhi_epi64(quads[4 * k], quads[4 * k + 2]));
            FASTACT_STORE(d + (4 * k + 2) * ds, _mm_unpacklo_epi64(quads[4 * k + 1], quads[4 * k + 3]));
            FASTACT_STORE(d + (4 * k + 3) * ds, _mm_unpackhi_epi64(quads[4 * k + 1], quads[4 * k + 3]));
        }
    }
    #define FASTACT_BLOCK_u16 8
    #define FASTACT_TRANSPOSE_BLOCKS(T, S, D, rows, cols, i)                              \
        for (; i + FASTACT_BLOCK_##T <= rows; i += FASTACT_BLOCK_##T) {                    \
            ptrdiff_t j = 0, k;                                                            \
            for (; j + FASTACT_BLOCK_##T <= cols; j += FASTACT_BLOCK_##T)                  \
                fastact_block_##T(S + i * ss + j, ss, D + j * ds + i, ds);                 \
            for (; j < cols; j++)                                                          \
                for (k = i; k < i + FASTACT_BLOCK_##T; k++)                                \
                    D[j * ds + k] = S[k * ss + j];                                         \
        }
    #else
    #define FASTACT_TRANSPOSE_BLOCKS(T, S, D, rows, cols, i)
    #endif
    #define FASTACT_TRANSPOSE(T, C_TYPE, BLOCKS)                                           \
        static inline void fastact_transpose_##T(const C_TYPE *s, ptrdiff_t ss, C_TYPE *d,  \
                                                 ptrdiff_t ds, ptrdiff_t rows, ptrdiff_t cols) \
        {                                                                                  \
            ptrdiff_t i = 0, j;                                                            \
            BLOCKS                                                                         \
            for (; i < rows; i++)                                                          \
                for (j = 0; j < cols; j++)                                                 \
                    d[j * ds + i] = s[i * ss + j];                                         \
        }
    FASTACT_TRANSPOSE(u64, uint64_t, FASTACT_TRANSPOSE_BLOCKS(u64, s, d, rows, cols, i))
    FASTACT_TRANSPOSE(u32, uint32_t, FASTACT_TRANSPOSE_BLOCKS(u32, s, d, rows, cols, i))
    FASTACT_TRANSPOSE(u16, uint16_t, FASTACT_TRANSPOSE_BLOCKS(u16, s, d, rows, cols, i))
    FASTACT_TRANSPOSE(u8, uint8_t, )

    /* `rows` rows of `bytes` bytes between two row steps, 64 bytes at a time with moves the
       compiler inlines, the rest of a row by memcpy. A transposed tile's rows are a few
       cache lines long, and a memcpy call per row made a transposed pass in cache take
       1.05-1.15x as long (float32 and float64, 128^2-512^2, AMD EPYC Zen 5). */
    #include <string.h>
    static inline void fastact_copy_rows(const char *s, ptrdiff_t ss, char *d, ptrdiff_t ds,
                                         ptrdiff_t rows, size_t bytes)
    {
        for (ptrdiff_t r = 0; r < rows; r++, s += ss, d += ds) {
            size_t k = 0;
            for (; k + 64 <= bytes; k += 64)
                memcpy(d + k, s + k, 64);
            if (k < bytes)
                memcpy(d + k, s + k, bytes - k);
        }
    }
    """
    void fastact_copy_rows(const char* s, Py_ssize_t ss, char* d, Py_ssize_t ds,
                           Py_ssize_t rows, size_t bytes) nogil
    void fastact_transpose_u64(const uint64_t* s, Py_ssize_t ss, uint64_t* d, Py_ssize_t ds,
                               Py_ssize_t rows, Py_ssize_t cols) nogil
    void fastact_transpose_u32(const uint32_t* s, Py_ssize_t ss, uint32_t* d, Py_ssize_t ds,
                               Py_ssize_t rows, Py_ssize_t cols) nogil
    void fastact_transpose_u16(const uint16_t* s, Py_ssize_t ss, uint16_t* d, Py_ssize_t ds,
                               Py_ssize_t rows, Py_ssize_t cols) nogil
    void fastact_transpose_u8(const uint8_t* s, Py_ssize_t ss, uint8_t* d, Py_ssize_t ds,
                              Py_ssize_t rows, Py_ssize_t cols) nogil


ctypedef fused bits_t:
    uint8_t
    uint16_t
    uint32_t
    uint64_t


cdef inline Py_ssize_t magnitude(Py_ssize_t step) noexcept nogil:
    return -step if step < 0 else step


cdef inline void copy_run(const bits_t* src, Py_ssize_t src_step, bits_t* dst,
                          Py_ssize_t dst_step, Py_ssize_t n) noexcept nogil:
    """``dst[i * dst_step] = src[i * src_step]``: literal steps where they are common, so
    the compiler can vectorise them (a stride-2 gather becomes loads and a shuffle)."""
    cdef Py_ssize_t i
    if src_step == 1 and dst_step == 1:
        for i in range(n):
            dst[i] = src[i]
    elif src_step == 2 and dst_step == 1:
        for i in range(n):
            dst[i] = src[2 * i]
    elif src_step == -1 and dst_step == 1:
        for i in range(n):
            dst[i] = src[-i]
    elif src_step == 1:
        for i in range(n):
            dst[i * dst_step] = src[i]
    elif dst_step == 1:
        for i in range(n):
            dst[i] = src[i * src_step]
    else:
        for i in range(n):
            dst[i * dst_step] = src[i * src_step]


cdef inline void transpose(const bits_t* src, Py_ssize_t src_step, bits_t* dst,
                           Py_ssize_t dst_step, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """``dst[j * dst_step + i] = src[i * src_step + j]``, ``i < rows``, ``j < cols``."""
    if bits_t is uint64_t:
        fastact_transpose_u64(src, src_step, dst, dst_step, rows, cols)
    elif bits_t is uint32_t:
        fastact_transpose_u32(src, src_step, dst, dst_step, rows, cols)
    elif bits_t is uint16_t:
        fastact_transpose_u16(src, src_step, dst, dst_step, rows, cols)
    else:
        fastact_transpose_u8(src, src_step, dst, dst_step, rows, cols)


cdef inline void copy_tile_typed(const bits_t* src, Py_ssize_t src_row, Py_ssize_t src_col,
                                 bits_t* dst, Py_ssize_t dst_row, Py_ssize_t dst_col,
                                 Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """Copy a ``rows`` x ``cols`` tile between two layouts (steps in elements), the inner
    loop along the axis where the strided side is closer to contiguous."""
    cdef Py_ssize_t r, c
    cdef Py_ssize_t strided_row = src_row if dst_col == 1 else dst_row
    cdef Py_ssize_t strided_col = src_col if dst_col == 1 else dst_col
    if rows > 1 and magnitude(strided_row) < magnitude(strided_col):
        if src_row == 1 and dst_col == 1:
            transpose(src, src_col, dst, dst_row, cols, rows)
        elif src_col == 1 and dst_row == 1:
            transpose(src, src_row, dst, dst_col, rows, cols)
        else:
            for c in range(cols):
                copy_run(src + c * src_col, src_row, dst + c * dst_col, dst_row, rows)
    else:
        for r in range(rows):
            copy_run(src + r * src_row, src_col, dst + r * dst_row, dst_col, cols)


cdef inline void copy_tile(const char* src, Py_ssize_t src_row, Py_ssize_t src_col, char* dst,
                           Py_ssize_t dst_row, Py_ssize_t dst_col, Py_ssize_t rows,
                           Py_ssize_t cols, Py_ssize_t itemsize) noexcept nogil:
    """``copy_tile_typed`` at byte steps, by element size."""
    if src_col == itemsize and dst_col == itemsize:
        # Rows contiguous on both sides (a packed tile written out).
        fastact_copy_rows(src, src_row, dst, dst_row, rows, cols * itemsize)
    elif itemsize == 4:
        copy_tile_typed(<const uint32_t*>src, src_row // 4, src_col // 4, <uint32_t*>dst,
                        dst_row // 4, dst_col // 4, rows, cols)
    elif itemsize == 8:
        copy_tile_typed(<const uint64_t*>src, src_row // 8, src_col // 8, <uint64_t*>dst,
                        dst_row // 8, dst_col // 8, rows, cols)
    elif itemsize == 2:
        copy_tile_typed(<const uint16_t*>src, src_row // 2, src_col // 2, <uint16_t*>dst,
                        dst_row // 2, dst_col // 2, rows, cols)
    else:
        copy_tile_typed(<const uint8_t*>src, src_row, src_col, <uint8_t*>dst, dst_row,
                        dst_col, rows, cols)


cdef inline const char* tile_rows(const char* data, const Py_ssize_t* steps, char* buffer,
                                  Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t itemsize,
                                  bint pack, Py_ssize_t* row_step) noexcept nogil:
    """Where an input tile's contiguous rows are: in place (unless ``pack``), or packed
    into ``buffer``."""
    if steps[1] == itemsize and not pack:
        row_step[0] = steps[0]
        return data
    copy_tile(data, steps[0], steps[1], buffer, cols * itemsize, itemsize, rows, cols,
              itemsize)
    row_step[0] = cols * itemsize
    return buffer


ctypedef struct TileGrid:
    # A rows x cols block cut into tiles of height x width, the column tiles shifted left by
    # col_shift (the first one narrower); down_columns: tile after tile down each column
    # strip, else along each row strip.
    Py_ssize_t rows, cols, height, width, col_shift, row_tiles, col_tiles
    bint down_columns


cdef inline void tile_at(const TileGrid* grid, Py_ssize_t t, Py_ssize_t* span) noexcept nogil:
    """Tile ``t``'s first row, first column, rows and columns, into ``span``."""
    cdef Py_ssize_t i, j, first_col
    if grid.down_columns:
        i, j = t % grid.row_tiles, t // grid.row_tiles
    else:
        i, j = t // grid.col_tiles, t % grid.col_tiles
    span[0] = i * grid.height
    span[2] = min(grid.height, grid.rows - span[0])
    first_col = j * grid.width - grid.col_shift
    span[1] = max(<Py_ssize_t>0, first_col)
    span[3] = min(grid.cols, first_col + grid.width) - span[1]


cdef inline void stream_rows(const char* src, Py_ssize_t src_row, char* dst,
                             Py_ssize_t dst_row, Py_ssize_t rows,
                             Py_ssize_t row_bytes) noexcept nogil:
    """A packed tile's rows written out, their whole cache lines with streaming stores and
    any part-lines at their ends the plain way (a streamed part-line becomes a
    read-modify-write in memory: 20-40x the time where rows were not line-aligned). A
    transposed tile's out rows are a few lines each, scattered over the whole output:
    plain stores read each line in first and write it back later on its own."""
    cdef Py_ssize_t r, head, body
    cdef char* row
    for r in range(rows):
        row = dst + r * dst_row
        head = min(row_bytes, <Py_ssize_t>((-<size_t>row) % LINE_BYTES))
        body = (row_bytes - head) // LINE_BYTES * LINE_BYTES
        fastact_copy_rows(src + r * src_row, 0, row, 0, 1, head)
        fastact_stream_copy(row + head, src + r * src_row + head, body)
        fastact_copy_rows(src + r * src_row + head + body, 0, row + head + body, 0, 1,
                          row_bytes - head - body)


cdef inline void prefetch_tile(const char* data, const Py_ssize_t* steps, Py_ssize_t rows,
                               Py_ssize_t cols, Py_ssize_t itemsize) noexcept nogil:
    """Ask for a tile's cache lines (byte steps), a run at a time along the axis where it
    is contiguous: a transposed tile's operand is dozens of runs a few lines long, too
    short and too many for the hardware prefetchers to follow from DRAM."""
    cdef Py_ssize_t k
    if steps[1] == itemsize:
        for k in range(rows):
            fastact_prefetch_lines(data + k * steps[0], cols * itemsize)
    elif steps[0] == itemsize:
        for k in range(cols):
            fastact_prefetch_lines(data + k * steps[1], rows * itemsize)


cdef inline bint packs_transposed(const Py_ssize_t* steps, Py_ssize_t itemsize) noexcept nogil:
    return steps[1] != itemsize and magnitude(steps[0]) < magnitude(steps[1])


cdef inline void run_op_tiles(Op op, ElementType etype, Py_ssize_t itemsize, const char* g,
                              const Py_ssize_t* g_steps, const char* x,
                              const Py_ssize_t* x_steps, char* out,
                              const Py_ssize_t* out_steps, Py_ssize_t rows, Py_ssize_t cols,
                              double p0, double p1, bint streaming) noexcept nogil:
    """Run ``op`` over a ``rows`` x ``cols`` block; ``*_steps`` are the byte steps
    (row, column) of each operand, and ``g`` is ``x`` (with its steps) for a forward op.
    An input may be the output itself with the same steps (in place): each tile is read
    before it is written. ``streaming``: a transposed tile's rows go out with streaming
    stores (see ``stream_rows``)."""
    cdef uint64_t g_buffer[TILE_WORDS]
    cdef uint64_t x_buffer[TILE_WORDS]
    cdef uint64_t out_buffer[TILE_WORDS]
    cdef bint forward = g == x and g_steps[0] == x_steps[0] and g_steps[1] == x_steps[1]
    cdef bint out_in_place = out_steps[1] == itemsize
    cdef bint all_in_place = (out_in_place and x_steps[1] == itemsize
                              and g_steps[1] == itemsize)
    # A packed operand closer to contiguous along the rows than along the columns is a
    # transposed one: its tiles are tall (whole cache lines down each column) and walk
    # down the columns, a strip at a time, so that it is read (or written) along its
    # contiguous axis from one tile to the next, as the prefetchers expect. Otherwise a
    # tile is a stretch of one row.
    cdef bint transposed = rows > 1 and (
        packs_transposed(x_steps, itemsize) or packs_transposed(g_steps, itemsize)
        or packs_transposed(out_steps, itemsize))
    cdef Py_ssize_t height = rows if all_in_place else 1
    # A transposed tile is short (its rows a few cache lines long): its operands are all
    # packed, so that one call of the loop runs over the whole tile, and the result is
    # copied out. Unless out's rows are short enough that a tile of whole rows is still
    # two lines tall: then the tile is contiguous in out, and the loop writes it there
    # (not streamed). The copy took a third of a 128^2 float32 relu's time.
    cdef Py_ssize_t row_bytes = cols * itemsize
    cdef bint whole_rows = (
        transposed and not streaming and out_steps[1] == itemsize
        and out_steps[0] == row_bytes and TILE_BYTES // row_bytes * itemsize >= 2 * LINE_BYTES)
    if whole_rows:
        height = min(rows, TILE_BYTES // row_bytes)
    elif transposed:
        height = min(rows, max(<Py_ssize_t>1, TILE_COLUMN_BYTES // itemsize))
    out_in_place = whole_rows or (out_in_place and not transposed)
    cdef Py_ssize_t width = cols if all_in_place or whole_rows else max(
        <Py_ssize_t>1, TILE_BYTES // itemsize // height)
    cdef TileGrid grid
    grid.rows, grid.cols, grid.height, grid.width = rows, cols, height, width
    grid.down_columns = transposed
    # A streamed transposed tile's out rows start on out's cache lines where out's rows
    # step by whole lines: only whole lines stream (see stream_rows), and NumPy's large
    # arrays start 16 bytes into a page, which split 4 lines of each row 5 ways. Not in
    # cache, where a split line costs little and the narrow first tiles cost more (a
    # 128^2 float32 transpose took 1.05x as long).
    grid.col_shift = 0
    cdef Py_ssize_t misaligned = <Py_ssize_t>((-<size_t>out) % LINE_BYTES)
    if (streaming and transposed and out_steps[1] == itemsize
            and out_steps[0] % LINE_BYTES == 0):
        if misaligned % itemsize == 0:
            grid.col_shift = (width - misaligned // itemsize % width) % width
    grid.row_tiles = (rows + height - 1) // height
    grid.col_tiles = (cols + grid.col_shift + width - 1) // width
    cdef Py_ssize_t t, r, r0, c0, n_rows, n_cols, g_row, x_row, out_row
    cdef Py_ssize_t span[4]
    cdef const char* g_rows
    cdef const char* x_rows
    cdef char* out_rows
    if (not transposed and out_in_place and x_steps[1] == 2 * itemsize
            and g_steps[1] == 2 * itemsize and (etype == FLOAT32 or etype == FLOAT64)):
        # Every other element into contiguous rows: the loop reads the pairs where they
        # lie (see ``run_typed``), with no tile buffer in between.
        for r in range(rows):
            run_op(op, etype, g + r * g_steps[0], g_steps[1], x + r * x_steps[0],
                   x_steps[1], out + r * out_steps[0], itemsize, cols, p0, p1)
        return
    for t in range(grid.row_tiles * grid.col_tiles):
        tile_at(&grid, t, span)
        r0, c0, n_rows, n_cols = span[0], span[1], span[2], span[3]
        if transposed and t + 1 < grid.row_tiles * grid.col_tiles:
            # The next tile's lines, fetched while this one runs (see prefetch_tile).
            tile_at(&grid, t + 1, span)
            prefetch_tile(x + span[0] * x_steps[0] + span[1] * x_steps[1], x_steps, span[2],
                          span[3], itemsize)
            if not forward:
                prefetch_tile(g + span[0] * g_steps[0] + span[1] * g_steps[1], g_steps,
                              span[2], span[3], itemsize)
            if not streaming:
                prefetch_tile(out + span[0] * out_steps[0] + span[1] * out_steps[1],
                              out_steps, span[2], span[3], itemsize)
        x_rows = tile_rows(x + r0 * x_steps[0] + c0 * x_steps[1], x_steps,
                           <char*>x_buffer, n_rows, n_cols, itemsize, transposed, &x_row)
        if forward:
            g_rows, g_row = x_rows, x_row
        else:
            g_rows = tile_rows(g + r0 * g_steps[0] + c0 * g_steps[1], g_steps,
                               <char*>g_buffer, n_rows, n_cols, itemsize, transposed,
                               &g_row)
        out_rows = out + r0 * out_steps[0] + c0 * out_steps[1]
        out_row = out_steps[0]
        if transposed and not out_in_place:
            # In place over the packed g (x for a forward op): the tile's buffers fit L1.
            out_rows, out_row = <char*>g_rows, g_row
        elif not out_in_place:
            out_rows, out_row = <char*>out_buffer, n_cols * itemsize
        if g_row == x_row == out_row == n_cols * itemsize:  # rows end to end: one run
            run_op(op, etype, g_rows, itemsize, x_rows, itemsize, out_rows, itemsize,
                   n_rows * n_cols, p0, p1)
        else:
            for r in range(n_rows):
                run_op(op, etype, g_rows + r * g_row, itemsize, x_rows + r * x_row,
                       itemsize, out_rows + r * out_row, itemsize, n_cols, p0, p1)
        if streaming and transposed and out_steps[1] == itemsize:
            stream_rows(out_rows, out_row, out + r0 * out_steps[0] + c0 * out_steps[1],
                        out_steps[0], n_rows, n_cols * itemsize)
        elif not out_in_place:
            copy_tile(out_rows, out_row, itemsize,
                      out + r0 * out_steps[0] + c0 * out_steps[1], out_steps[0],
                      out_steps[1], n_rows, n_cols, itemsize)
    if streaming:
        fastact_stream_fence()


# ---------------------------------------------------------------------------------------
# One build of the loops behind one function pointer, so that a table selects a whole
# instruction-set build at run time.

ctypedef void (*op_loop)(Op op, ElementType etype, const char* g, Py_ssize_t g_stride,
                         const char* x, Py_ssize_t x_stride, char* out, Py_ssize_t out_stride,
                         Py_ssize_t n, double p0, double p1) noexcept nogil

ctypedef void (*op_tiles_loop)(Op op, ElementType etype, Py_ssize_t itemsize, const char* g,
                               const Py_ssize_t* g_steps, const char* x,
                               const Py_ssize_t* x_steps, char* out,
                               const Py_ssize_t* out_steps, Py_ssize_t rows, Py_ssize_t cols,
                               double p0, double p1, bint streaming) noexcept nogil

ctypedef void (*dead_units_loop)(ElementType etype, const void* x, uint8_t* dead,
                                 Py_ssize_t rows, Py_ssize_t cols) noexcept nogil

ctypedef struct LoopTable:
    const char* isa  # the instruction set the loops were compiled for
    const char* cflags  # and the compiler flags
    op_loop run
    op_tiles_loop run_tiles  # a strided 2-D block (run_op_tiles)
    dead_units_loop dead_units  # the dead-unit flags of a C-contiguous block


cdef inline void run_dead_units(ElementType etype, const void* x, uint8_t* dead,
                                Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """``dead_flags`` by element type: the 16-bit floats as their bits."""
    if etype == FLOAT32:
        dead_flags(<const float*>x, dead, rows, cols, 0)
    elif etype == FLOAT64:
        dead_flags(<const double*>x, dead, rows, cols, 0)
    else:
        dead_flags(<const uint16_t*>x, dead, rows, cols,
                   FLOAT16_INF_BITS if etype == FLOAT16 else BFLOAT16_INF_BITS)


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
    table.run_tiles = run_op_tiles
    table.dead_units = run_dead_units
    return PyCapsule_New(table, FASTACT_LOOP_TABLE_NAME, NULL)
