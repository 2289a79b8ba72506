# cython: language_level=3
"""PReLU's loops: the leaky rule with one slope per channel, and the fused backward.

A block of ``rows`` C-contiguous rows, each ``channels`` runs of ``inner`` elements (channel
``c`` of a row is ``inner`` contiguous elements). Like the rest of the loops everything
here is ``inline``: each ``_loops_*`` module compiles its own copy with its instruction
set's flags and exports it as a ``ChannelTable``, so the per-channel loops, the weight
gradient's float64 sums included, run at the width of the build in use.

- A long run (``inner >= LONG_RUN``, NCHW images) goes through ``leaky_relu``'s loop
  (forward) or ``leaky_relu_backward``'s rule (backward), with its channel's weight as the
  slope.
- Short runs (an ``(N, C)`` batch, runs of one) go row by row with the weights spread over
  the row (``slopes``: channel ``c``'s weight at each of its positions), one vector loop
  per row instead of a strided call per channel.

The backward pass reads ``g`` and ``x`` once: one loop writes ``grad_input`` and adds the
weight-gradient terms ``x > 0 ? 0 : x * g`` to float64 sums. float32 and float64 (and
the 16-bit types, widened to float32 blocks in L1: bfloat16 always, float16 by F16C) add
them to the lanes in registers as they go; float16 without F16C computes them into a
block of terms that stays in L1 first; short runs add them straight into per-position
sums. ``x * g`` is exact in float64 for every format but float64 itself, whose sums are
compensated. The order of the additions depends on the shape alone (element ``i`` of a
run goes to lane ``i % LANES`` of its channel, and the lanes are folded once per chunk of
rows; short runs sum each position over the rows), so every build and every thread count
gives the same bits.
"""
from libc.stdint cimport uint16_t
from cpython.mem cimport PyMem_RawMalloc
from cpython.pycapsule cimport PyCapsule_New

from fastact._elementwise cimport (
    bfloat16_t,
    fastact_bfloat16_to_float,
    fastact_float_to_bfloat16,
    float16_t,
    floating_t,
    leaky_relu_backward_rule,
    leaky_relu_rule,
    widen,
)
from fastact._stream cimport (
    FASTACT_OUTPUT_AHEAD_BYTES,
    fastact_prefetch_at,
    fastact_prefetch_lines,
)
from fastact._loops cimport (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    FASTACT_HAS_F16C,
    F16C_BLOCK,
    OUT_CHUNK_BYTES,
    VECTOR_ALIGN_BYTES,
    ElementType,
    fastact_narrow_float16,
    fastact_widen_float16,
    leaky_relu_op,
    run_typed,
)

cdef enum:
    # A channel run this long or longer is run on its own; shorter ones row by row.
    LONG_RUN = 64
    # Independent float64 sums per channel: four vectors of them (fastact_add_terms).
    LANES = 32
    # Terms of a run computed into L1 and then added to the lanes, a block at a time.
    TERM_BLOCK = 1024
    # Positions of a row summed together over the rows of a block: their sums (and
    # compensations) stay in L1.
    ROW_TILE = 512
    # The forward pass's slopes of a row, as float32, on the stack (8 KiB).
    FLOAT_SLOPES = 2048
    # Positions of a float32 row whose sums fit in registers across the rows.
    SHORT_ROW = 64

# A forward row's slopes: float32 below float64 (the rule's compute type), else double.
ctypedef fused slope_t:
    float
    double


# ---------------------------------------------------------------------------------------
# The weight-gradient terms and their sums.

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    /* terms[i] added to lane i % 32 of sums (LANES = 32): plain float64 adds, or with each
     * add's rounding error added to comps (Knuth's TwoSum: exact, and no select). Four
     * vectors of eight doubles, so that four chains of adds overlap (one alone waits on
     * the add latency); written with the compiler's vector extension, so that every build
     * gets its own width (512-, 256- or 128-bit registers) without relying on the
     * vectoriser; element by element elsewhere. Either way each lane sees the same
     * additions in the same order: the same bits in every build. */
    static inline void fastact_add_term(double *sums, double *comps, double term,
                                        int compensated)
    {
        double a = *sums, r = a + term;
        if (compensated) {
            double part = r - a;
            *comps += (a - (r - part)) + (term - part);
        }
        *sums = r;
    }
    #if defined(__GNUC__) || defined(__clang__)
    typedef double fastact_lanes_t __attribute__((vector_size(64)));
    static inline void fastact_add_vector_of(fastact_lanes_t *s, fastact_lanes_t *c,
                                             fastact_lanes_t v, int compensated)
    {
        fastact_lanes_t t = *s + v, part;
        if (compensated) {
            part = t - *s;
            *c += (*s - (t - part)) + (v - part);
        }
        *s = t;
    }
    static inline void fastact_add_vector(fastact_lanes_t *s, fastact_lanes_t *c,
                                          const double *terms, int compensated)
    {
        fastact_lanes_t v;
        memcpy(&v, terms, sizeof v);
        fastact_add_vector_of(s, c, v, compensated);
    }
    static inline void fastact_add_terms(const double *terms, ptrdiff_t n, double *sums,
                                         double *comps, int compensated)
    {
        fastact_lanes_t s[4], c[4];
        ptrdiff_t i = 0;
        memcpy(s, sums, sizeof s);
        memcpy(c, comps, sizeof c);
        for (; i + 32 <= n; i += 32)
            for (int k = 0; k < 4; k++)
                fastact_add_vector(&s[k], &c[k], terms + i + 8 * k, compensated);
        memcpy(sums, s, sizeof s);
        memcpy(comps, c, sizeof c);
        for (; i < n; i++)
            fastact_add_term(&sums[i % 32], &comps[i % 32], terms[i], compensated);
    }
    #else
    static inline void fastact_add_terms(const double *terms, ptrdiff_t n, double *sums,
                                         double *comps, int compensated)
    {
        for (ptrdiff_t i = 0; i < n; i++)
            fastact_add_term(&sums[i % 32], &comps[i % 32], terms[i], compensated);
    }
    #endif

    /* One run of float32 or float64 in a single pass: out[i] by leaky_relu_backward's rule
     * (x > 0 ? g : g * slope, in the element type) and the term x > 0 ? 0 : x * g (in
     * float64) added to lane i % 32, the terms never stored. Eight elements a step, four
     * steps a round, step k's terms into lane vector k: each lane sees the same terms in
     * the same order as fastact_add_terms gives it. The rule is a select of the bits, as
     * the scalar rule's: the same bits, NaN payloads included. The elements past the last
     * round of 32 go one by one, into the same lanes. */
    #define FASTACT_DEFINE_BACKWARD_TAIL(NAME, T)                                          \
    static inline void NAME(const T *g, const T *x, T *out, ptrdiff_t i, ptrdiff_t n,      \
                            T slope, double *sums, double *comps, int compensated)         \
    {                                                                                      \
        for (; i < n; i++) {                                                               \
            T gi = g[i], xi = x[i];                                                        \
            double xd = xi, product = xd * (double)gi;                                     \
            out[i] = xi > 0 ? gi : gi * slope;                                             \
            fastact_add_term(&sums[i % 32], &comps[i % 32], xd > 0 ? 0.0 : product,        \
                             compensated);                                                 \
        }                                                                                  \
    }
    FASTACT_DEFINE_BACKWARD_TAIL(fastact_backward_tail_float, float)
    FASTACT_DEFINE_BACKWARD_TAIL(fastact_backward_tail_double, double)
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTACT_DEFINE_BACKWARD_RUN(NAME, T)                                           \
    static inline void NAME(const T *g, const T *x, T *out, ptrdiff_t n, T slope,          \
                            double *sums, double *comps, int compensated)                  \
    {                                                                                      \
        typedef T vector_t __attribute__((vector_size(8 * sizeof(T))));                    \
        const vector_t zero = {0};                                                         \
        const fastact_lanes_t zero_lanes = {0};                                            \
        fastact_lanes_t s[4], c[4];                                                        \
        ptrdiff_t i = 0;                                                                   \
        memcpy(s, sums, sizeof s);                                                         \
        memcpy(c, comps, sizeof c);                                                        \
        for (; i + 32 <= n; i += 32)                                                       \
            for (int k = 0; k < 4; k++) {                                                  \
                vector_t gv, xv, scaled, result;                                           \
                fastact_lanes_t gd, xd, term;                                              \
                memcpy(&gv, g + i + 8 * k, sizeof gv);                                     \
                memcpy(&xv, x + i + 8 * k, sizeof xv);                                     \
                __typeof__(xv > zero) positive = xv > zero;                                \
                scaled = gv * slope;                                                       \
                result = (vector_t)(((__typeof__(positive))gv & positive)                  \
                                    | ((__typeof__(positive))scaled & ~positive));         \
                memcpy(out + i + 8 * k, &result, sizeof result);                           \
                gd = __builtin_convertvector(gv, fastact_lanes_t);                         \
                xd = __builtin_convertvector(xv, fastact_lanes_t);                         \
                __typeof__(xd > zero_lanes) lanes_positive = xd > zero_lanes;              \
                term = (fastact_lanes_t)((__typeof__(lanes_positive))(xd * gd)             \
                                         & ~lanes_positive);                               \
                fastact_add_vector_of(&s[k], &c[k], term, compensated);                    \
            }                                                                              \
        memcpy(sums, s, sizeof s);                                                         \
        memcpy(comps, c, sizeof c);                                                        \
        NAME##_tail(g, x, out, i, n, slope, sums, comps, compensated);                     \
    }
    #else
    #define FASTACT_DEFINE_BACKWARD_RUN(NAME, T)                                           \
    static inline void NAME(const T *g, const T *x, T *out, ptrdiff_t n, T slope,          \
                            double *sums, double *comps, int compensated)                  \
    {                                                                                      \
        NAME##_tail(g, x, out, 0, n, slope, sums, comps, compensated);                     \
    }
    #endif
    #define fastact_backward_run_float_tail fastact_backward_tail_float
    #define fastact_backward_run_double_tail fastact_backward_tail_double
    #if defined(__AVX512F__)
    /* float32 in the AVX-512 build: GCC, tuned for 256-bit vectors, splits the widening to
     * float64 into halves and shuffles, and compares twice (once per width); these made
     * the pass compute-bound. One compare per 16 elements gives both selects (its mask,
     * halved, is the float64 lanes' too) and each conversion is one instruction. The same
     * operations in the same order as the generic loop: the same bits. float32's sums are
     * never compensated (callers pass 0): its lanes stay in four registers.
     *
     * float16 widened to float32 (fastact_backward_run_half): the product of two halves
     * has at most 22 significant bits and lies between 2^-48 and 2^32, so x * g is exact
     * in float32 and widening that product gives the float64 product itself: one
     * multiply and two conversions per 16 terms instead of four conversions and two
     * float64 multiplies. Not bfloat16: its range is float32's, its products can
     * overflow or underflow there. */
    #include <immintrin.h>
    /* The terms of 32 elements whose float32 products are exact (float16's) added to the
     * four vectors of lanes: the product widened, where x > 0 does not hold. */
    static inline __attribute__((always_inline)) void
    fastact_add_exact_products(__m512 x0, __m512 x1, __m512 g0, __m512 g1, __mmask16 other0,
                               __mmask16 other1, __m512d *s0, __m512d *s1, __m512d *s2,
                               __m512d *s3)
    {
        __m512 p0 = _mm512_mul_ps(x0, g0), p1 = _mm512_mul_ps(x1, g1);
    #define FASTACT_UPPER(p) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1))
        *s0 = _mm512_add_pd(*s0, _mm512_maskz_cvtps_pd((__mmask8)other0,
                                                       _mm512_castps512_ps256(p0)));
        *s1 = _mm512_add_pd(*s1, _mm512_maskz_cvtps_pd((__mmask8)(other0 >> 8),
                                                       FASTACT_UPPER(p0)));
        *s2 = _mm512_add_pd(*s2, _mm512_maskz_cvtps_pd((__mmask8)other1,
                                                       _mm512_castps512_ps256(p1)));
        *s3 = _mm512_add_pd(*s3, _mm512_maskz_cvtps_pd((__mmask8)(other1 >> 8),
                                                       FASTACT_UPPER(p1)));
    #undef FASTACT_UPPER
    }
    static inline __attribute__((always_inline)) void
    fastact_backward_run_avx512(const float *g, const float *x, float *out, ptrdiff_t n,
                                float slope, double *sums, double *comps, int compensated,
                                int exact_float_products)
    {
        const __m512 slopes = _mm512_set1_ps(slope), zero = _mm512_setzero_ps();
        __m512d s0 = _mm512_loadu_pd(sums), s1 = _mm512_loadu_pd(sums + 8);
        __m512d s2 = _mm512_loadu_pd(sums + 16), s3 = _mm512_loadu_pd(sums + 24);
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m512 g0 = _mm512_loadu_ps(g + i), g1 = _mm512_loadu_ps(g + i + 16);
            __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
            /* !(x > 0): x <= 0 or NaN, where both rules take the product. */
            __mmask16 other0 = _mm512_cmp_ps_mask(x0, zero, _CMP_NGT_UQ);
            __mmask16 other1 = _mm512_cmp_ps_mask(x1, zero, _CMP_NGT_UQ);
            _mm512_storeu_ps(out + i, _mm512_mask_mul_ps(g0, other0, g0, slopes));
            _mm512_storeu_ps(out + i + 16, _mm512_mask_mul_ps(g1, other1, g1, slopes));
            if (exact_float_products) {
                fastact_add_exact_products(x0, x1, g0, g1, other0, other1, &s0, &s1, &s2, &s3);
                continue;
            }
    #define FASTACT_TERMS(k, other)                                                       \
            _mm512_maskz_mul_pd((__mmask8)(other), _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * k)), \
                                _mm512_cvtps_pd(_mm256_loadu_ps(g + i + 8 * k)))
            s0 = _mm512_add_pd(s0, FASTACT_TERMS(0, other0));
            s1 = _mm512_add_pd(s1, FASTACT_TERMS(1, other0 >> 8));
            s2 = _mm512_add_pd(s2, FASTACT_TERMS(2, other1));
            s3 = _mm512_add_pd(s3, FASTACT_TERMS(3, other1 >> 8));
    #undef FASTACT_TERMS
        }
        _mm512_storeu_pd(sums, s0);
        _mm512_storeu_pd(sums + 8, s1);
        _mm512_storeu_pd(sums + 16, s2);
        _mm512_storeu_pd(sums + 24, s3);
        fastact_backward_tail_float(g, x, out, i, n, slope, sums, comps, compensated);
    }
    static inline void fastact_backward_run_float(const float *g, const float *x, float *out,
                                                  ptrdiff_t n, float slope, double *sums,
                                                  double *comps, int compensated)
    {
        fastact_backward_run_avx512(g, x, out, n, slope, sums, comps, compensated, 0);
    }
    static inline void fastact_backward_run_half(const float *g, const float *x, float *out,
                                                 ptrdiff_t n, float slope, double *sums,
                                                 double *comps, int compensated)
    {
        fastact_backward_run_avx512(g, x, out, n, slope, sums, comps, compensated, 1);
    }
    /* 16-bit runs (float16, bfloat16): the loop above on values widened in the registers,
     * 16 at a time straight from memory, and the gradient narrowed there, as the float32
     * blocks in L1 are widened and narrowed: the same operations on the same values, so
     * the same bits, without three passes through L1. float16 converts with
     * vcvtph2ps/vcvtps2ph and adds its exact float32 products; bfloat16 widens with a
     * shift, takes its terms in float64 as fastact_backward_run_avx512 does where its
     * products overflow or underflow float32 (below), and rounds the gradient as
     * fastact_float_to_bfloat16 does (to nearest even; a NaN quieted, its upper half
     * kept). Whole steps of 32 from the run's start (so each term's lane is its index mod
     * 32); returns how many it did, the rest left to the blocks. Through registers rather
     * than blocks, bfloat16's pass took 0.7x the time at (16, 64, 64, 64) (Intel Xeon VM,
     * warm caches). */
    static inline __m256i fastact_round_to_bfloat16_lanes(__m512 f)
    {
        __m512i u = _mm512_castps_si512(f);
        __m512i rounded = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                             _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))),
            16);
        __m512i quiet_nan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
        __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
        return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet_nan));
    }
    static inline __attribute__((always_inline)) __m512
    fastact_widen_short_lanes(const uint16_t *h, int bfloat)
    {
        __m256i v = _mm256_loadu_si256((const __m256i *)h);
        return bfloat ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16))
                      : _mm512_cvtph_ps(v);
    }
    static inline __attribute__((always_inline)) void
    fastact_narrow_short_lanes(__m512 f, uint16_t *h, int bfloat)
    {
        _mm256_storeu_si256((__m256i *)h,
                            bfloat ? fastact_round_to_bfloat16_lanes(f)
                                   : _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
    }
    /* format: 0 float16, 1 bfloat16, 2 bfloat16 on a CPU with AVX512_BF16.
     * The gradient in format 2: vcvtne2ps2bf16 rounds to nearest even and quiets a NaN as
     * fastact_round_to_bfloat16_lanes does, but flushes subnormals to zero, so a vector
     * with a zero result from a non-zero float32 value is rounded by the integer code
     * instead. bfloat16's terms: the product of two bfloat16 has at most 16 significant
     * bits, so it is exact in float32 wherever it is normal; a vector with a zero,
     * subnormal or infinite product (an exact zero or infinite input included, which the
     * check does not tell apart) takes its terms in float64 as above. Either way the bits
     * are the integer code's and the lanes the same; what real data hardly has (a zero, a
     * product beyond float32's range) costs the old path's time for its vector of 32. The
     * pass took 0.75x the time at (16, 64, 16, 16) and (16, 64, 64, 64) (Intel Xeon VM,
     * warm caches). */
    #if FASTACT_HAS_BF16_INSTRUCTIONS
    __attribute__((target("avx512bf16"))) static inline int
    fastact_narrow_bfloat16_pair(__m512 low, __m512 high, uint16_t *h)
    {
        const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
        __m512i packed = (__m512i)_mm512_cvtne2ps_pbh(high, low);
        __mmask32 zero = _mm512_testn_epi16_mask(packed, _mm512_set1_epi16(0x7fff));
        if (zero && (_mm512_mask_test_epi32_mask((__mmask16)zero, _mm512_castps_si512(low),
                                                 magnitude)
                     | _mm512_mask_test_epi32_mask((__mmask16)(zero >> 16),
                                                   _mm512_castps_si512(high), magnitude)))
            return 0;
        _mm512_storeu_si512(h, packed);
        return 1;
    }
    #else
    static inline int fastact_narrow_bfloat16_pair(__m512 low, __m512 high, uint16_t *h)
    {
        return 0;
    }
    #endif
    static inline __attribute__((always_inline)) ptrdiff_t
    fastact_backward_run_short(const uint16_t *g, const uint16_t *x, uint16_t *out,
                               ptrdiff_t n, float slope, double *sums, int format)
    {
        const __m512 slopes = _mm512_set1_ps(slope), zero = _mm512_setzero_ps();
        __m512d s0 = _mm512_loadu_pd(sums), s1 = _mm512_loadu_pd(sums + 8);
        __m512d s2 = _mm512_loadu_pd(sums + 16), s3 = _mm512_loadu_pd(sums + 24);
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            fastact_prefetch_at(g + i, FASTACT_INPUT_AHEAD_BYTES); /* _stream.pxd says why */
            fastact_prefetch_at(x + i, FASTACT_INPUT_AHEAD_BYTES);
            __m512 g0 = fastact_widen_short_lanes(g + i, format);
            __m512 g1 = fastact_widen_short_lanes(g + i + 16, format);
            __m512 x0 = fastact_widen_short_lanes(x + i, format);
            __m512 x1 = fastact_widen_short_lanes(x + i + 16, format);
            __mmask16 other0 = _mm512_cmp_ps_mask(x0, zero, _CMP_NGT_UQ);
            __mmask16 other1 = _mm512_cmp_ps_mask(x1, zero, _CMP_NGT_UQ);
            __m512 r0 = _mm512_mask_mul_ps(g0, other0, g0, slopes);
            __m512 r1 = _mm512_mask_mul_ps(g1, other1, g1, slopes);
            if (format != 2 || !fastact_narrow_bfloat16_pair(r0, r1, out + i)) {
                fastact_narrow_short_lanes(r0, out + i, format);
                fastact_narrow_short_lanes(r1, out + i + 16, format);
            }
            /* 0x3e: ±0, ±inf, subnormal */
            if (format == 0
                || !(_mm512_mask_fpclass_ps_mask(other0, _mm512_mul_ps(x0, g0), 0x3e)
                     | _mm512_mask_fpclass_ps_mask(other1, _mm512_mul_ps(x1, g1), 0x3e))) {
                fastact_add_exact_products(x0, x1, g0, g1, other0, other1, &s0, &s1, &s2, &s3);
                continue;
            }
    #define FASTACT_LOWER(v) _mm512_castps512_ps256(v)
    #define FASTACT_UPPER(v) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))
    #define FASTACT_TERMS(half, x, g, other)                                              \
            _mm512_maskz_mul_pd((__mmask8)(other), _mm512_cvtps_pd(half(x)),              \
                                _mm512_cvtps_pd(half(g)))
            s0 = _mm512_add_pd(s0, FASTACT_TERMS(FASTACT_LOWER, x0, g0, other0));
            s1 = _mm512_add_pd(s1, FASTACT_TERMS(FASTACT_UPPER, x0, g0, other0 >> 8));
            s2 = _mm512_add_pd(s2, FASTACT_TERMS(FASTACT_LOWER, x1, g1, other1));
            s3 = _mm512_add_pd(s3, FASTACT_TERMS(FASTACT_UPPER, x1, g1, other1 >> 8));
    #undef FASTACT_TERMS
    #undef FASTACT_UPPER
    #undef FASTACT_LOWER
        }
        _mm512_storeu_pd(sums, s0);
        _mm512_storeu_pd(sums + 8, s1);
        _mm512_storeu_pd(sums + 16, s2);
        _mm512_storeu_pd(sums + 24, s3);
        return i;
    }
    static inline ptrdiff_t fastact_backward_run_float16(const uint16_t *g, const uint16_t *x,
                                                         uint16_t *out, ptrdiff_t n,
                                                         float slope, double *sums)
    {
        return fastact_backward_run_short(g, x, out, n, slope, sums, 0);
    }
    #if FASTACT_HAS_BF16_INSTRUCTIONS
    __attribute__((noinline, target("avx512bf16"))) static ptrdiff_t
    fastact_backward_run_bfloat16_instructions(const uint16_t *g, const uint16_t *x,
                                               uint16_t *out, ptrdiff_t n, float slope,
                                               double *sums)
    {
        return fastact_backward_run_short(g, x, out, n, slope, sums, 2);
    }
    #endif
    static inline ptrdiff_t fastact_backward_run_bfloat16(const uint16_t *g, const uint16_t *x,
                                                          uint16_t *out, ptrdiff_t n,
                                                          float slope, double *sums)
    {
    #if FASTACT_HAS_BF16_INSTRUCTIONS
        /* A load and a test: libgcc's constructor has read CPUID when the module loaded. */
        if (__builtin_cpu_supports("avx512bf16"))
            return fastact_backward_run_bfloat16_instructions(g, x, out, n, slope, sums);
    #endif
        return fastact_backward_run_short(g, x, out, n, slope, sums, 1);
    }
    /* Short rows, float32: whole steps of 16 of the first m <= 64 positions of `rows` rows
     * `stride` apart, the gradient and each term added to its position's sum, row after
     * row (one add per position and row, in row order, as the generic loop). The sums stay
     * in registers across the rows, and the slopes are converted once: the row-by-row
     * loop below reloads and stores both for every row. Returns how many positions it
     * did, the rest left to that loop. */
    static inline ptrdiff_t fastact_backward_short_rows_float(const float *g, const float *x,
                                                              float *out, const double *slopes,
                                                              ptrdiff_t rows, ptrdiff_t stride,
                                                              ptrdiff_t m, double *sums)
    {
        __m512 w[4];
        __m512d s[8];
        const int steps = (int)(m / 16);
        for (int v = 0; v < steps; v++) {
            w[v] = _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(slopes + 16 * v))),
                _mm512_cvtpd_ps(_mm512_loadu_pd(slopes + 16 * v + 8)), 1);
            s[2 * v] = _mm512_loadu_pd(sums + 16 * v);
            s[2 * v + 1] = _mm512_loadu_pd(sums + 16 * v + 8);
        }
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *gr = g + r * stride, *xr = x + r * stride;
            float *outr = out + r * stride;
            for (int v = 0; v < steps; v++) {
                __m512 gv = _mm512_loadu_ps(gr + 16 * v), xv = _mm512_loadu_ps(xr + 16 * v);
                __mmask16 other = _mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_NGT_UQ);
                _mm512_storeu_ps(outr + 16 * v, _mm512_mask_mul_ps(gv, other, gv, w[v]));
                s[2 * v] = _mm512_add_pd(s[2 * v], _mm512_maskz_mul_pd(
                    (__mmask8)other, _mm512_cvtps_pd(_mm512_castps512_ps256(xv)),
                    _mm512_cvtps_pd(_mm512_castps512_ps256(gv))));
                s[2 * v + 1] = _mm512_add_pd(s[2 * v + 1], _mm512_maskz_mul_pd(
                    (__mmask8)(other >> 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(xv, 1)),
                    _mm512_cvtps_pd(_mm512_extractf32x8_ps(gv, 1))));
            }
        }
        for (int v = 0; v < steps; v++) {
            _mm512_storeu_pd(sums + 16 * v, s[2 * v]);
            _mm512_storeu_pd(sums + 16 * v + 8, s[2 * v + 1]);
        }
        return 16 * (ptrdiff_t)steps;
    }
    /* Short runs, float32: whole steps of 16 positions of a row, each term added to its
     * position's sum (one add per position and row, as the generic loop); returns how many
     * positions it did, the rest left to that loop. */
    static inline ptrdiff_t fastact_backward_positions_float(const float *g, const float *x,
                                                             float *out, const double *slopes,
                                                             ptrdiff_t n, double *sums)
    {
        ptrdiff_t k = 0;
        for (; k + 16 <= n; k += 16) {
            __m512 gv = _mm512_loadu_ps(g + k);
            __m512 sv = _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(slopes + k))),
                _mm512_cvtpd_ps(_mm512_loadu_pd(slopes + k + 8)), 1);
            __mmask16 other = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + k), _mm512_setzero_ps(),
                                                 _CMP_NGT_UQ);
            _mm512_storeu_ps(out + k, _mm512_mask_mul_ps(gv, other, gv, sv));
            for (int q = 0; q < 2; q++) {
                __m512d term = _mm512_maskz_mul_pd(
                    (__mmask8)(other >> (8 * q)), _mm512_cvtps_pd(_mm256_loadu_ps(x + k + 8 * q)),
                    _mm512_cvtps_pd(_mm256_loadu_ps(g + k + 8 * q)));
                _mm512_storeu_pd(sums + k + 8 * q,
                                 _mm512_add_pd(_mm512_loadu_pd(sums + k + 8 * q), term));
            }
        }
        return k;
    }
    #else
    FASTACT_DEFINE_BACKWARD_RUN(fastact_backward_run_float, float)
    #define fastact_backward_run_half fastact_backward_run_float
    static inline ptrdiff_t fastact_backward_positions_float(const float *g, const float *x,
                                                             float *out, const double *slopes,
                                                             ptrdiff_t n, double *sums)
    {
        return 0;
    }
    static inline ptrdiff_t fastact_backward_short_rows_float(const float *g, const float *x,
                                                              float *out, const double *slopes,
                                                              ptrdiff_t rows, ptrdiff_t stride,
                                                              ptrdiff_t m, double *sums)
    {
        return 0;
    }
    static inline ptrdiff_t fastact_backward_run_float16(const uint16_t *g, const uint16_t *x,
                                                         uint16_t *out, ptrdiff_t n,
                                                         float slope, double *sums)
    {
        return 0;
    }
    #define fastact_backward_run_bfloat16 fastact_backward_run_float16
    #endif
    FASTACT_DEFINE_BACKWARD_RUN(fastact_backward_run_double, double)

    /* The lanes of every channel added to its total in lane order, each add's error to its
     * compensation, then the lane's own compensation (Neumaier's sum of the lanes): the
     * order of fastact_add_term's adds, channel by channel. Eight channels at a time in
     * vectors, whose chains of adds overlap (one channel's 32 dependent adds at a time
     * cost as much as the pass over a chunk). */
    static inline void fastact_fold_lanes(const double *lanes, const double *lane_comps,
                                          ptrdiff_t channels, double *totals, double *comps)
    {
        ptrdiff_t c = 0;
    #if defined(__GNUC__) || defined(__clang__)
        for (; c + 8 <= channels; c += 8) {
            fastact_lanes_t t, k;
            memcpy(&t, totals + c, sizeof t);
            memcpy(&k, comps + c, sizeof k);
            for (int j = 0; j < 32; j++) {
                fastact_lanes_t v, vc;
                for (int q = 0; q < 8; q++) {
                    v[q] = lanes[(c + q) * 32 + j];
                    vc[q] = lane_comps[(c + q) * 32 + j];
                }
                fastact_add_vector_of(&t, &k, v, 1);
                k += vc;
            }
            memcpy(totals + c, &t, sizeof t);
            memcpy(comps + c, &k, sizeof k);
        }
    #endif
        for (; c < channels; c++)
            for (int j = 0; j < 32; j++) {
                fastact_add_term(&totals[c], &comps[c], lanes[c * 32 + j], 1);
                comps[c] += lane_comps[c * 32 + j];
            }
    }

    /* A float32 block rounded to bfloat16 (narrow_block): 32 at a time through
       vcvtne2ps2bf16 where the CPU has it (fastact_narrow_bfloat16_pair; a vector it
       would flush goes through the integer code), the rest through the integer code.
       The (4096, 64) prelu forward took 0.7-0.75x the time, its backward 0.9x (Intel Xeon
       VM). */
    #if FASTACT_HAS_BF16_INSTRUCTIONS
    __attribute__((noinline, target("avx512bf16"))) static void
    fastact_narrow_bfloat16_instructions(const float *f, uint16_t *h, ptrdiff_t n)
    {
        for (ptrdiff_t i = 0; i + 32 <= n; i += 32)
            if (!fastact_narrow_bfloat16_pair(_mm512_loadu_ps(f + i),
                                              _mm512_loadu_ps(f + i + 16), h + i))
                for (int k = 0; k < 32; k++)
                    h[i + k] = fastact_float_to_bfloat16(f[i + k]);
    }
    #endif
    static inline void fastact_narrow_bfloat16(const float *f, uint16_t *h, ptrdiff_t n)
    {
        ptrdiff_t i = 0;
    #if FASTACT_HAS_BF16_INSTRUCTIONS
        /* A load and a test: libgcc's constructor has read CPUID when the module loaded. */
        if (__builtin_cpu_supports("avx512bf16")) {
            i = n - n % 32;
            fastact_narrow_bfloat16_instructions(f, h, i);
        }
    #endif
        for (; i < n; i++)
            h[i] = fastact_float_to_bfloat16(f[i]);
    }
    """
    void fastact_narrow_bfloat16(const float* f, uint16_t* h, Py_ssize_t n) nogil
    void fastact_add_terms(const double* terms, Py_ssize_t n, double* sums, double* comps,
                           bint compensated) nogil
    Py_ssize_t fastact_backward_positions_float(const float* g, const float* x, float* out,
                                                const double* slopes, Py_ssize_t n,
                                                double* sums) nogil
    Py_ssize_t fastact_backward_run_float16(const uint16_t* g, const uint16_t* x, uint16_t* out,
                                            Py_ssize_t n, float slope, double* sums) nogil
    Py_ssize_t fastact_backward_run_bfloat16(const uint16_t* g, const uint16_t* x,
                                             uint16_t* out, Py_ssize_t n, float slope,
                                             double* sums) nogil
    Py_ssize_t fastact_backward_short_rows_float(const float* g, const float* x, float* out,
                                                 const double* slopes, Py_ssize_t rows,
                                                 Py_ssize_t stride, Py_ssize_t m,
                                                 double* sums) nogil
    void fastact_fold_lanes(const double* lanes, const double* lane_comps, Py_ssize_t channels,
                            double* totals, double* comps) nogil
    void fastact_backward_run_float(const float* g, const float* x, float* out, Py_ssize_t n,
                                    float slope, double* sums, double* comps,
                                    bint compensated) nogil
    void fastact_backward_run_double(const double* g, const double* x, double* out,
                                     Py_ssize_t n, double slope, double* sums, double* comps,
                                     bint compensated) nogil
    void fastact_backward_run_half(const float* g, const float* x, float* out, Py_ssize_t n,
                                   float slope, double* sums, double* comps,
                                   bint compensated) nogil


cdef inline double as_double(floating_t v) noexcept nogil:
    if floating_t is float16_t or floating_t is bfloat16_t:
        return widen(v)
    else:
        return v


cdef inline double term_of(floating_t g, floating_t x) noexcept nogil:
    """``x > 0 ? 0 : x * g`` in float64; both operands loaded before the select."""
    cdef double xd = as_double(x)
    cdef double product = xd * as_double(g)
    # `> 0`, as the rule: NaN and ±0 take the product (a NaN propagates to the sum).
    return 0.0 if xd > 0 else product


cdef inline void add_compensated(double* total, double* compensation,
                                 double value) noexcept nogil:
    """``total += value``, its rounding error added to ``compensation`` (Neumaier's sum).
    The error by Knuth's TwoSum, exact whichever operand is larger: the same error as
    Neumaier's comparison picks, with no select, so a vector loop stays branch-free."""
    cdef double s = total[0]
    cdef double t = s + value
    cdef double value_part = t - s
    compensation[0] += (s - (t - value_part)) + (value - value_part)
    total[0] = t


# ---------------------------------------------------------------------------------------
# 16-bit floats through float32 blocks: widened, the float32 loops, narrowed once. The
# 16-bit rules are the float32 rule rounded once, and the terms are exact in float64 from
# either width, so the bits are the element rules'. Blocks are multiples of LANES: each
# term goes to the same lane as in the element loop.

cdef inline bint in_float32_blocks(const floating_t* values) noexcept nogil:
    """Whether runs of this type go through float32 blocks: bfloat16 always (its widening
    is a shift and its rounding exact integer code, both vectorised, or the instruction:
    fastact_narrow_bfloat16), float16 where the
    build has F16C (without it, the integer conversions cost more than the element loop)."""
    # One branch per type: fused-type pruning leaves each specialisation a single return.
    if floating_t is bfloat16_t:
        return True
    elif floating_t is float16_t:
        return FASTACT_HAS_F16C
    else:
        return False


cdef inline void widen_block(const floating_t* values, float* block,
                             Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    if floating_t is float16_t:
        fastact_widen_float16(<const uint16_t*>values, block, n)
    elif floating_t is bfloat16_t:
        for k in range(n):
            block[k] = fastact_bfloat16_to_float(values[k].bits)


cdef inline void narrow_block(const float* block, floating_t* values,
                              Py_ssize_t n) noexcept nogil:
    if floating_t is float16_t:
        fastact_narrow_float16(block, <uint16_t*>values, n)
    elif floating_t is bfloat16_t:
        fastact_narrow_bfloat16(block, <uint16_t*>values, n)


# ---------------------------------------------------------------------------------------
# Long runs.

cdef inline void backward_lanes(const floating_t* g, const floating_t* x, floating_t* out,
                                Py_ssize_t n, double slope, double* lane_sums,
                                double* lane_compensations) noexcept nogil:
    """One contiguous run: ``out`` by leaky_relu_backward's rule and the terms added to
    ``lane_sums[i % LANES]``, through a block of terms in L1 (an elementwise loop with two
    outputs, which the compiler vectorises as the other loops)."""
    cdef double terms[TERM_BLOCK]
    cdef Py_ssize_t start = 0, m, k
    cdef floating_t gi, xi
    while start < n:
        m = min(<Py_ssize_t>TERM_BLOCK, n - start)
        for k in range(m):
            gi = g[start + k]
            xi = x[start + k]
            out[start + k] = leaky_relu_backward_rule(gi, xi, slope)
            terms[k] = term_of(gi, xi)
        fastact_add_terms(terms, m, lane_sums, lane_compensations, floating_t is double)
        start += m


cdef inline void backward_run(const floating_t* g, const floating_t* x, floating_t* out,
                              Py_ssize_t n, double slope, double* lane_sums,
                              double* lane_compensations) noexcept nogil:
    """A channel's run: its gradient, and its terms added to the channel's lanes."""
    cdef float g_block[F16C_BLOCK]
    cdef float x_block[F16C_BLOCK]
    cdef float out_block[F16C_BLOCK]
    cdef Py_ssize_t start, m
    if floating_t is float:
        fastact_backward_run_float(g, x, out, n, <float>slope, lane_sums, lane_compensations,
                                   False)
    elif floating_t is double:
        fastact_backward_run_double(g, x, out, n, slope, lane_sums, lane_compensations, True)
    elif in_float32_blocks(x):
        start = 0
        if floating_t is float16_t:
            start = fastact_backward_run_float16(<const uint16_t*>g, <const uint16_t*>x,
                                                 <uint16_t*>out, n, <float>slope, lane_sums)
        else:
            start = fastact_backward_run_bfloat16(<const uint16_t*>g, <const uint16_t*>x,
                                                  <uint16_t*>out, n, <float>slope, lane_sums)
        while start < n:
            m = min(<Py_ssize_t>F16C_BLOCK, n - start)
            widen_block(g + start, g_block, m)
            widen_block(x + start, x_block, m)
            if floating_t is float16_t:
                fastact_backward_run_half(g_block, x_block, out_block, m, <float>slope,
                                          lane_sums, lane_compensations, False)
            else:
                fastact_backward_run_float(g_block, x_block, out_block, m, <float>slope,
                                           lane_sums, lane_compensations, False)
            narrow_block(out_block, out + start, m)
            start += m
    else:
        backward_lanes(g, x, out, n, slope, lane_sums, lane_compensations)


# ---------------------------------------------------------------------------------------
# Short runs: whole rows, a slope per position. A 16-bit row goes through float32 blocks
# as the long runs do (widened, the float32 rule, narrowed once).

cdef inline void forward_positions(const floating_t* x, floating_t* out, const slope_t* slopes,
                                   Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating_t xi
    for k in range(n):
        xi = x[k]
        out[k] = leaky_relu_rule(xi, slopes[k])


cdef inline void backward_positions(const floating_t* g, const floating_t* x,
                                    floating_t* out, const double* slopes, Py_ssize_t n,
                                    double* sums, double* sum_compensations) noexcept nogil:
    """One row's ``n`` positions: the gradient, and each term added to its position's sum."""
    cdef Py_ssize_t k, done = 0
    cdef floating_t gi, xi
    if floating_t is float:
        done = fastact_backward_positions_float(g, x, out, slopes, n, sums)
    for k in range(done, n):
        gi = g[k]
        xi = x[k]
        out[k] = leaky_relu_backward_rule(gi, xi, slopes[k])
        if floating_t is double:
            add_compensated(&sums[k], &sum_compensations[k], term_of(gi, xi))
        else:
            sums[k] += term_of(gi, xi)


cdef inline void forward_row(const floating_t* x, floating_t* out, const slope_t* slopes,
                             Py_ssize_t n) noexcept nogil:
    cdef float x_block[F16C_BLOCK]
    cdef float out_block[F16C_BLOCK]
    cdef Py_ssize_t start = 0, m
    if in_float32_blocks(x):
        while start < n:
            m = min(<Py_ssize_t>F16C_BLOCK, n - start)
            widen_block(x + start, x_block, m)
            forward_positions(<const float*>x_block, out_block, slopes + start, m)
            narrow_block(out_block, out + start, m)
            start += m
        return
    forward_positions(x, out, slopes, n)


cdef inline void backward_row(const floating_t* g, const floating_t* x, floating_t* out,
                              const double* slopes, Py_ssize_t n, double* sums,
                              double* sum_compensations) noexcept nogil:
    cdef float g_block[F16C_BLOCK]
    cdef float x_block[F16C_BLOCK]
    cdef float out_block[F16C_BLOCK]
    cdef Py_ssize_t start = 0, m
    if in_float32_blocks(x):
        while start < n:
            m = min(<Py_ssize_t>F16C_BLOCK, n - start)
            widen_block(g + start, g_block, m)
            widen_block(x + start, x_block, m)
            backward_positions(<const float*>g_block, <const float*>x_block, out_block,
                               slopes + start, m, sums + start, sum_compensations + start)
            narrow_block(out_block, out + start, m)
            start += m
        return
    backward_positions(g, x, out, slopes, n, sums, sum_compensations)


cdef inline void forward_row_ahead(const floating_t* x, floating_t* out,
                                   const slope_t* slopes, Py_ssize_t n,
                                   bint ahead) noexcept nogil:
    """``forward_row``; where ``ahead`` (out is another array), out's lines asked for
    1 KiB ahead, as a flat pass does (``FASTACT_OUTPUT_AHEAD_BYTES`` says why), a 256-byte
    chunk at a time: a row of grouped short runs is up to 4 KiB long."""
    cdef Py_ssize_t chunk = OUT_CHUNK_BYTES // sizeof(floating_t)
    cdef Py_ssize_t i = 0, whole = n - n % chunk if ahead else 0
    while i < whole:
        fastact_prefetch_lines(<const char*>(out + i) + FASTACT_OUTPUT_AHEAD_BYTES,
                               OUT_CHUNK_BYTES)
        forward_row(x + i, out + i, slopes + i, chunk)
        i += chunk
    forward_row(x + i, out + i, slopes + i, n - i)


cdef inline void forward_rows(const floating_t* x, floating_t* out, const double* slopes,
                              Py_ssize_t rows, Py_ssize_t row_length) noexcept nogil:
    # Below float64 the rule multiplies by the slope as float32: converted once here, not
    # at every element of every row (a double load and a conversion per element held the
    # float32 (N, 64) pass below torch's speed).
    cdef float float_slopes[FLOAT_SLOPES]
    cdef Py_ssize_t r, k
    cdef bint ahead = <const void*>out != <const void*>x
    if floating_t is not double and row_length <= FLOAT_SLOPES:
        for k in range(row_length):
            float_slopes[k] = <float>slopes[k]
        for r in range(rows):
            forward_row_ahead(x + r * row_length, out + r * row_length,
                              <const float*>float_slopes, row_length, ahead)
        return
    for r in range(rows):
        forward_row_ahead(x + r * row_length, out + r * row_length, slopes, row_length, ahead)


cdef inline void backward_whole_rows(const floating_t* g, const floating_t* x,
                                     floating_t* out, const double* slopes, Py_ssize_t rows,
                                     Py_ssize_t m, double* sums,
                                     double* sum_compensations) noexcept nogil:
    """16-bit rows of ``m <= SHORT_ROW`` positions one after another: as many rows as
    fill a float32 block are widened and narrowed at once, and go through float32's
    short-row loop, which keeps the sums in registers across those rows (row by row,
    each row's sums went through memory), then its generic one for the positions left.
    Each position's terms are added in row order, as ``backward_row`` adds them."""
    cdef float g_block[F16C_BLOCK]
    cdef float x_block[F16C_BLOCK]
    cdef float out_block[F16C_BLOCK]
    cdef Py_ssize_t per_block = F16C_BLOCK // m, r = 0, k, j, done
    while r < rows:
        k = min(per_block, rows - r)
        widen_block(g + r * m, g_block, k * m)
        widen_block(x + r * m, x_block, k * m)
        done = fastact_backward_short_rows_float(g_block, x_block, out_block, slopes, k, m,
                                                 m, sums)
        if done < m:
            for j in range(k):
                backward_positions(<const float*>g_block + j * m + done,
                                   <const float*>x_block + j * m + done,
                                   out_block + j * m + done, slopes + done, m - done,
                                   sums + done, sum_compensations + done)
        narrow_block(out_block, out + r * m, k * m)
        r += k


cdef inline void backward_rows(const floating_t* g, const floating_t* x, floating_t* out,
                               const double* slopes, Py_ssize_t rows, Py_ssize_t row_length,
                               Py_ssize_t inner, double* totals,
                               double* compensations) noexcept nogil:
    """Tiles of positions: each position's terms summed over the rows (a vector loop
    along the row), then the tile's positions folded into their channels in order."""
    cdef double sums[ROW_TILE]
    cdef double sum_compensations[ROW_TILE]
    cdef Py_ssize_t tile, first, m, r, k, offset, c, done
    cdef double total, compensation
    for tile in range((row_length + ROW_TILE - 1) // ROW_TILE):
        first = tile * ROW_TILE
        m = min(<Py_ssize_t>ROW_TILE, row_length - first)
        for k in range(m):
            sums[k] = 0.0
            sum_compensations[k] = 0.0
        done = 0
        if floating_t is float and m <= SHORT_ROW:
            done = fastact_backward_short_rows_float(g + first, x + first, out + first,
                                                     slopes + first, rows, row_length, m, sums)
        if in_float32_blocks(x) and m == row_length and m <= SHORT_ROW:
            backward_whole_rows(g, x, out, slopes, rows, m, sums, sum_compensations)
            done = m
        if done < m:
            for r in range(rows):
                offset = r * row_length + first + done
                backward_row(g + offset, x + offset, out + offset, slopes + first + done,
                             m - done, sums + done, sum_compensations + done)
        for c in range(first // inner, (first + m - 1) // inner + 1):
            # In locals, as the lanes of long runs; each channel's positions in order.
            total = totals[c]
            compensation = compensations[c]
            for k in range(max(c * inner, first), min((c + 1) * inner, first + m)):
                add_compensated(&total, &compensation, sums[k - first])
                compensation += sum_compensations[k - first]
            totals[c] = total
            compensations[c] = compensation


# ---------------------------------------------------------------------------------------
# One block of rows, typed. ``weight`` holds a value of x's type per channel (exact in the
# rules' compute type, so the rules' rounding of the slope changes nothing); ``slopes`` the
# weights spread over a row, given for short runs only.

cdef inline void forward_typed(const floating_t* x, floating_t* out, const double* weight,
                               const double* slopes, Py_ssize_t rows, Py_ssize_t channels,
                               Py_ssize_t inner) noexcept nogil:
    cdef Py_ssize_t size = sizeof(floating_t)
    cdef Py_ssize_t r, c, head, k
    if inner < LONG_RUN:
        forward_rows(x, out, slopes, rows, channels * inner)
        return
    for r in range(rows):
        for c in range(channels):
            # float32 and float64: the elements before out's first 64-byte boundary as a
            # run of their own, so that the run's vector stores do not straddle cache
            # lines, as run_typed does for runs of 4 KiB and up: channel runs are shorter,
            # and NumPy puts a large array 16 bytes past a page, so every run of (16, 64,
            # 16, 16) float32 began 16 bytes past a line and took 1.2x as long (Intel Xeon
            # VM). Not the 16-bit types: their loops take a run's last partial vector
            # through a padded copy, and a second partial vector per run cost more (2.7x
            # the time at (16, 64, 16, 16) float16) than the split stores.
            head = 0
            if floating_t is float or floating_t is double:
                head = min(inner, <Py_ssize_t>((-<size_t>out) % VECTOR_ALIGN_BYTES) // size)
                # The next run's first lines of out, asked for ahead as a flat pass does
                # (FASTACT_OUTPUT_AHEAD_BYTES says why); a run is too short for the
                # flat pass's own (see run_typed's out_ahead).
                for k in range(0, min(inner * size, <Py_ssize_t>FASTACT_OUTPUT_AHEAD_BYTES),
                               64):
                    fastact_prefetch_at(out, inner * size + k)
            if head:
                run_typed(<leaky_relu_op*>NULL, x, size, x, size, out, size, head, weight[c],
                          0.0, False)
            run_typed(<leaky_relu_op*>NULL, x + head, size, x + head, size, out + head, size,
                      inner - head, weight[c], 0.0, False)
            x += inner
            out += inner


cdef inline void backward_typed(const floating_t* g, const floating_t* x, floating_t* out,
                                const double* weight, const double* slopes, Py_ssize_t rows,
                                Py_ssize_t channels, Py_ssize_t inner, double* totals,
                                double* compensations, double* lanes) noexcept nogil:
    """Long runs add to ``LANES`` sums per channel (``lanes``: ``2 * LANES * channels``
    doubles of scratch), folded into the totals once, after the block."""
    cdef Py_ssize_t r, c, j, offset
    cdef double* lane_compensations = lanes + channels * LANES
    if inner < LONG_RUN:
        backward_rows(g, x, out, slopes, rows, channels * inner, inner, totals,
                      compensations)
        return
    for j in range(2 * channels * LANES):
        lanes[j] = 0.0
    for r in range(rows):
        for c in range(channels):
            offset = (r * channels + c) * inner
            backward_run(g + offset, x + offset, out + offset, inner, weight[c],
                         &lanes[c * LANES], &lane_compensations[c * LANES])
    fastact_fold_lanes(lanes, lane_compensations, channels, totals, compensations)


# ---------------------------------------------------------------------------------------
# The run-time dispatch from an element type, behind function pointers.

cdef inline void channel_forward(ElementType etype, const char* x, char* out,
                                 const double* weight, const double* slopes, Py_ssize_t rows,
                                 Py_ssize_t channels, Py_ssize_t inner) noexcept nogil:
    if etype == FLOAT32:
        forward_typed(<const float*>x, <float*>out, weight, slopes, rows, channels, inner)
    elif etype == FLOAT64:
        forward_typed(<const double*>x, <double*>out, weight, slopes, rows, channels, inner)
    elif etype == FLOAT16:
        forward_typed(<const float16_t*>x, <float16_t*>out, weight, slopes, rows, channels,
                      inner)
    elif etype == BFLOAT16:
        forward_typed(<const bfloat16_t*>x, <bfloat16_t*>out, weight, slopes, rows, channels,
                      inner)


cdef inline void channel_backward(ElementType etype, const char* g, const char* x, char* out,
                                  const double* weight, const double* slopes, Py_ssize_t rows,
                                  Py_ssize_t channels, Py_ssize_t inner, double* totals,
                                  double* compensations, double* lanes) noexcept nogil:
    if etype == FLOAT32:
        backward_typed(<const float*>g, <const float*>x, <float*>out, weight, slopes, rows,
                       channels, inner, totals, compensations, lanes)
    elif etype == FLOAT64:
        backward_typed(<const double*>g, <const double*>x, <double*>out, weight, slopes, rows,
                       channels, inner, totals, compensations, lanes)
    elif etype == FLOAT16:
        backward_typed(<const float16_t*>g, <const float16_t*>x, <float16_t*>out, weight,
                       slopes, rows, channels, inner, totals, compensations, lanes)
    elif etype == BFLOAT16:
        backward_typed(<const bfloat16_t*>g, <const bfloat16_t*>x, <bfloat16_t*>out, weight,
                       slopes, rows, channels, inner, totals, compensations, lanes)


ctypedef void (*channel_forward_loop)(ElementType etype, const char* x, char* out,
                                      const double* weight, const double* slopes,
                                      Py_ssize_t rows, Py_ssize_t channels,
                                      Py_ssize_t inner) noexcept nogil
ctypedef void (*channel_backward_loop)(ElementType etype, const char* g, const char* x,
                                       char* out, const double* weight, const double* slopes,
                                       Py_ssize_t rows, Py_ssize_t channels, Py_ssize_t inner,
                                       double* totals, double* compensations,
                                       double* lanes) noexcept nogil

ctypedef struct ChannelTable:
    const char* isa
    channel_forward_loop forward
    channel_backward_loop backward


cdef extern from *:
    """
    static const char FASTACT_CHANNEL_TABLE_NAME[] = "fastact._channel_loops.ChannelTable";
    """
    const char* FASTACT_CHANNEL_TABLE_NAME


cdef inline object export_channel_table(const char* isa):
    """A capsule holding this module's build of the channel loops; lives as long as the
    module."""
    cdef ChannelTable* table = <ChannelTable*>PyMem_RawMalloc(sizeof(ChannelTable))
    if table == NULL:
        raise MemoryError()
    table.isa = isa
    table.forward = channel_forward
    table.backward = channel_backward
    return PyCapsule_New(table, FASTACT_CHANNEL_TABLE_NAME, NULL)
