# cython: language_level=3
"""The loops of the mask functions: a ReLU whose derivative is kept as one bit per element.

A mask is the packed predicate "the backward pass passes ``g`` here", bit ``j`` of byte
``i`` for element ``8 i + j`` (``np.packbits(..., bitorder="little")``), the last byte's
unused bits 0. The predicate is the backward rule's own comparison:

- relu: ``!(x <= 0)``, as ``relu_backward`` (``x <= 0 ? +0 : g``): NaN sets the bit;
- leaky_relu: ``x > 0``, as ``leaky_relu_backward`` (``x > 0 ? g : g * s``): NaN clears it.

The values themselves come from the table's rules, through the same inline loops
(``run_typed`` of ``_loops.pxd``): the forward pass packs a block's bits from ``x`` and then
runs ``relu``/``leaky_relu`` over it; the backward pass expands a block's bits to ``1.0``
and ``+0.0`` of the element type and runs ``relu_backward``/``leaky_relu_backward`` with
that block in ``x``'s place (the rules only compare ``x`` with 0). So the results are the
table's bit for bit, and a block stays in L1 between the two steps.

Packing and expanding are C with intrinsics per instruction set (AVX-512 mask registers,
AVX2/SSE2 compares + movemask), chosen by the flags of the module that compiles them, as
the rest of the loops; a portable scalar version elsewhere. Everything is ``inline``:
each ``_loops_*`` module compiles its own copy and exports it as a ``MaskTable``.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from cpython.mem cimport PyMem_RawMalloc
from cpython.pycapsule cimport PyCapsule_New

from fastact._elementwise cimport bfloat16_t, float16_t, narrow, widen, with_bits
from fastact._stream cimport (
    STREAM_BLOCK_BYTES,
    STREAM_SCRATCH_BYTES,
    fastact_stream_copy,
    fastact_stream_fence,
    stream_block,
)
from fastact._loops cimport (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    ElementType,
    leaky_relu_backward_op,
    leaky_relu_op,
    relu_backward_op,
    relu_op,
    run_typed,
)

cdef extern from *:
    """
    #ifndef FASTACT_MASKS_H
    #define FASTACT_MASKS_H
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__SSE2__)
    #include <immintrin.h>
    #endif
    #include <math.h>
    /* A row run's column sums, in float64; restrict, so that the compiler vectorises. */
    static inline void fastact_sum_run_f32(double *restrict sums, const float *restrict v,
                                           ptrdiff_t n)
    {
        for (ptrdiff_t i = 0; i < n; i++)
            sums[i] += (double)v[i];
    }
    /* float64 input, compensated (Neumaier): each add's rounding error goes to carries. */
    static inline void fastact_sum_run_f64(double *restrict sums, double *restrict carries,
                                           const double *restrict v, ptrdiff_t n)
    {
        for (ptrdiff_t i = 0; i < n; i++) {
            double s = sums[i], value = v[i], t = s + value;
            carries[i] += fabs(s) >= fabs(value) ? (s - t) + value : (value - t) + s;
            sums[i] = t;
        }
    }

    /* The predicates, element by element (the tails, and every element off x86-64).
       16-bit floats compare their bits as int16 s: x > 0 is 0 < s <= inf; NaN is
       (s & 0x7fff) > inf. */
    static inline int fastact_f32_bit(float v, int leaky) { return leaky ? v > 0 : !(v <= 0); }
    static inline int fastact_f64_bit(double v, int leaky) { return leaky ? v > 0 : !(v <= 0); }
    static inline int fastact_half_bit(uint16_t b, int leaky, int16_t inf)
    {
        int16_t s = (int16_t)b;
        int16_t magnitude = (int16_t)(b & 0x7fff);
        return leaky ? (s > 0) & (s <= inf) : (s > 0) | (magnitude > inf);
    }

    /* Pack n elements' bits into (n + 7) / 8 bytes. */
    static inline void fastact_pack_f32(const float *x, uint8_t *mask, ptrdiff_t n, int leaky)
    {
        ptrdiff_t nbytes = (n + 7) / 8, full = n / 8, i = 0;
    #if defined(__AVX512F__)
        const __m512 zero = _mm512_setzero_ps();
        for (; i + 2 <= full; i += 2) {
            __m512 v = _mm512_loadu_ps(x + 8 * i);
            __mmask16 k = leaky ? _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ)
                                : _mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ);
            uint16_t bits = (uint16_t)k;
            memcpy(mask + i, &bits, 2);
        }
    #elif defined(__AVX2__)
        const __m256 zero = _mm256_setzero_ps();
        for (; i < full; i++) {
            __m256 v = _mm256_loadu_ps(x + 8 * i);
            __m256 c = leaky ? _mm256_cmp_ps(v, zero, _CMP_GT_OQ)
                             : _mm256_cmp_ps(v, zero, _CMP_NLE_UQ);
            mask[i] = (uint8_t)_mm256_movemask_ps(c);
        }
    #elif defined(__SSE2__)
        const __m128 zero = _mm_setzero_ps();
        for (; i < full; i++) {
            __m128 lo = _mm_loadu_ps(x + 8 * i), hi = _mm_loadu_ps(x + 8 * i + 4);
            __m128 c_lo = leaky ? _mm_cmpgt_ps(lo, zero) : _mm_cmpnle_ps(lo, zero);
            __m128 c_hi = leaky ? _mm_cmpgt_ps(hi, zero) : _mm_cmpnle_ps(hi, zero);
            mask[i] = (uint8_t)(_mm_movemask_ps(c_lo) | (_mm_movemask_ps(c_hi) << 4));
        }
    #endif
        /* The rest, and the partial last byte, zero padded. */
        for (; i < nbytes; i++) {
            unsigned bits = 0;
            for (ptrdiff_t j = 0; j < 8 && 8 * i + j < n; j++)
                bits |= (unsigned)fastact_f32_bit(x[8 * i + j], leaky) << j;
            mask[i] = (uint8_t)bits;
        }
    }

    static inline void fastact_pack_f64(const double *x, uint8_t *mask, ptrdiff_t n, int leaky)
    {
        ptrdiff_t nbytes = (n + 7) / 8, full = n / 8, i = 0;
        (void)full; /* whole bytes: the vector loops', none in the baseline build */
    #if defined(__AVX512F__)
        const __m512d zero = _mm512_setzero_pd();
        for (; i < full; i++) {
            __m512d v = _mm512_loadu_pd(x + 8 * i);
            __mmask8 k = leaky ? _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ)
                               : _mm512_cmp_pd_mask(v, zero, _CMP_NLE_UQ);
            mask[i] = (uint8_t)k;
        }
    #elif defined(__AVX2__)
        const __m256d zero = _mm256_setzero_pd();
        for (; i < full; i++) {
            __m256d lo = _mm256_loadu_pd(x + 8 * i), hi = _mm256_loadu_pd(x + 8 * i + 4);
            __m256d c_lo = leaky ? _mm256_cmp_pd(lo, zero, _CMP_GT_OQ)
                                 : _mm256_cmp_pd(lo, zero, _CMP_NLE_UQ);
            __m256d c_hi = leaky ? _mm256_cmp_pd(hi, zero, _CMP_GT_OQ)
                                 : _mm256_cmp_pd(hi, zero, _CMP_NLE_UQ);
            mask[i] = (uint8_t)(_mm256_movemask_pd(c_lo) | (_mm256_movemask_pd(c_hi) << 4));
        }
    #endif
        /* The rest, and the partial last byte, zero padded. */
        for (; i < nbytes; i++) {
            unsigned bits = 0;
            for (ptrdiff_t j = 0; j < 8 && 8 * i + j < n; j++)
                bits |= (unsigned)fastact_f64_bit(x[8 * i + j], leaky) << j;
            mask[i] = (uint8_t)bits;
        }
    }

    /* float16 and bfloat16 by their bits; inf is the format's infinity (0x7c00, 0x7f80). */
    static inline void fastact_pack_half(const uint16_t *x, uint8_t *mask, ptrdiff_t n,
                                         int leaky, int16_t inf)
    {
        ptrdiff_t nbytes = (n + 7) / 8, full = n / 8, i = 0;
    #if defined(__AVX512BW__)
        const __m512i infs = _mm512_set1_epi16(inf), zero = _mm512_setzero_si512();
        const __m512i magnitude_bits = _mm512_set1_epi16(0x7fff);
        for (; i + 4 <= full; i += 4) {
            __m512i s = _mm512_loadu_si512((const void *)(x + 8 * i));
            __mmask32 positive = _mm512_cmpgt_epi16_mask(s, zero);
            __mmask32 above_inf = _mm512_cmpgt_epi16_mask(s, infs);
            __mmask32 nan = _mm512_cmpgt_epi16_mask(_mm512_and_si512(s, magnitude_bits), infs);
            uint32_t bits = leaky ? (uint32_t)(positive & ~above_inf) : (uint32_t)(positive | nan);
            memcpy(mask + i, &bits, 4);
        }
    #elif defined(__AVX2__)
        const __m256i infs = _mm256_set1_epi16(inf), zero = _mm256_setzero_si256();
        const __m256i magnitude_bits = _mm256_set1_epi16(0x7fff);
        for (; i + 2 <= full; i += 2) {
            __m256i s = _mm256_loadu_si256((const __m256i *)(x + 8 * i));
            __m256i positive = _mm256_cmpgt_epi16(s, zero);
            __m256i c = leaky
                ? _mm256_andnot_si256(_mm256_cmpgt_epi16(s, infs), positive)
                : _mm256_or_si256(positive, _mm256_cmpgt_epi16(
                                                _mm256_and_si256(s, magnitude_bits), infs));
            __m128i packed = _mm_packs_epi16(_mm256_castsi256_si128(c),
                                             _mm256_extracti128_si256(c, 1));
            uint16_t bits = (uint16_t)_mm_movemask_epi8(packed);
            memcpy(mask + i, &bits, 2);
        }
    #elif defined(__SSE2__)
        const __m128i infs = _mm_set1_epi16(inf), zero = _mm_setzero_si128();
        const __m128i magnitude_bits = _mm_set1_epi16(0x7fff);
        for (; i < full; i++) {
            __m128i s = _mm_loadu_si128((const __m128i *)(x + 8 * i));
            __m128i positive = _mm_cmpgt_epi16(s, zero);
            __m128i c = leaky
                ? _mm_andnot_si128(_mm_cmpgt_epi16(s, infs), positive)
                : _mm_or_si128(positive, _mm_cmpgt_epi16(_mm_and_si128(s, magnitude_bits), infs));
            mask[i] = (uint8_t)_mm_movemask_epi8(_mm_packs_epi16(c, c));
        }
    #endif
        /* The rest, and the partial last byte, zero padded. */
        for (; i < nbytes; i++) {
            unsigned bits = 0;
            for (ptrdiff_t j = 0; j < 8 && 8 * i + j < n; j++)
                bits |= (unsigned)fastact_half_bit(x[8 * i + j], leaky, inf) << j;
            mask[i] = (uint8_t)bits;
        }
    }

    /* Expand n bits into n lanes: `one` where the bit is set, else 0 (the bits of 1.0 and
       +0.0 of the element type). The lanes are then read as floats: each scalar store goes
       through memcpy, which may alias anything. A plain uint32_t store may not alias a
       float, and GCC moved a float load of a lane above it (a stale lane, now and then, in
       the bias gradient's first element of a chunk). The vector stores' types may alias. */
    #define FASTACT_STORE_LANE(T, lanes, i, value)                                           \
        do {                                                                              \
            T lane_ = (value);                                                            \
            memcpy((lanes) + (i), &lane_, sizeof lane_);                                  \
        } while (0)
    static inline void fastact_expand_32(const uint8_t *mask, uint32_t *lanes, ptrdiff_t n,
                                         uint32_t one)
    {
        ptrdiff_t i = 0;
    #if defined(__AVX512F__)
        const __m512i ones = _mm512_set1_epi32((int)one);
        for (; i + 16 <= n; i += 16) {
            uint16_t k;
            memcpy(&k, mask + i / 8, 2);
            _mm512_storeu_si512((void *)(lanes + i), _mm512_maskz_mov_epi32((__mmask16)k, ones));
        }
    #elif defined(__AVX2__)
        const __m256i ones = _mm256_set1_epi32((int)one);
        const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        for (; i + 8 <= n; i += 8) {
            __m256i b = _mm256_and_si256(_mm256_set1_epi32(mask[i / 8]), bit);
            __m256i set = _mm256_cmpeq_epi32(b, bit);
            _mm256_storeu_si256((__m256i *)(lanes + i), _mm256_and_si256(set, ones));
        }
    #endif
        for (; i < n; i++)
            FASTACT_STORE_LANE(uint32_t, lanes, i, ((mask[i / 8] >> (i % 8)) & 1) ? one : 0);
    }

    static inline void fastact_expand_64(const uint8_t *mask, uint64_t *lanes, ptrdiff_t n,
                                         uint64_t one)
    {
        ptrdiff_t i = 0;
    #if defined(__AVX512F__)
        const __m512i ones = _mm512_set1_epi64((long long)one);
        for (; i + 8 <= n; i += 8)
            _mm512_storeu_si512((void *)(lanes + i),
                                _mm512_maskz_mov_epi64((__mmask8)mask[i / 8], ones));
    #elif defined(__AVX2__)
        const __m256i ones = _mm256_set1_epi64x((long long)one);
        const __m256i bit_lo = _mm256_setr_epi64x(1, 2, 4, 8);
        const __m256i bit_hi = _mm256_setr_epi64x(16, 32, 64, 128);
        for (; i + 8 <= n; i += 8) {
            __m256i b = _mm256_set1_epi64x(mask[i / 8]);
            __m256i lo = _mm256_cmpeq_epi64(_mm256_and_si256(b, bit_lo), bit_lo);
            __m256i hi = _mm256_cmpeq_epi64(_mm256_and_si256(b, bit_hi), bit_hi);
            _mm256_storeu_si256((__m256i *)(lanes + i), _mm256_and_si256(lo, ones));
            _mm256_storeu_si256((__m256i *)(lanes + i + 4), _mm256_and_si256(hi, ones));
        }
    #endif
        for (; i < n; i++)
            FASTACT_STORE_LANE(uint64_t, lanes, i, ((mask[i / 8] >> (i % 8)) & 1) ? one : 0);
    }

    static inline void fastact_expand_16(const uint8_t *mask, uint16_t *lanes, ptrdiff_t n,
                                         uint16_t one)
    {
        ptrdiff_t i = 0;
    #if defined(__AVX512BW__)
        const __m512i ones = _mm512_set1_epi16((short)one);
        for (; i + 32 <= n; i += 32) {
            uint32_t k;
            memcpy(&k, mask + i / 8, 4);
            _mm512_storeu_si512((void *)(lanes + i), _mm512_maskz_mov_epi16((__mmask32)k, ones));
        }
    #elif defined(__AVX2__)
        const __m256i ones = _mm256_set1_epi16((short)one);
        const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024,
                                              2048, 4096, 8192, 16384, (short)0x8000);
        for (; i + 16 <= n; i += 16) {
            uint16_t k;
            memcpy(&k, mask + i / 8, 2);
            __m256i b = _mm256_and_si256(_mm256_set1_epi16((short)k), bit);
            __m256i set = _mm256_cmpeq_epi16(b, bit);
            _mm256_storeu_si256((__m256i *)(lanes + i), _mm256_and_si256(set, ones));
        }
    #endif
        for (; i < n; i++)
            FASTACT_STORE_LANE(uint16_t, lanes, i, ((mask[i / 8] >> (i % 8)) & 1) ? one : 0);
    }

    /* The AVX-512 build computes the float32 and float64 passes in one go per vector: a
       compare gives the mask register, which is both the bits to store and the select's
       operand (the blocked side is +0.0 or the product with the slope, as the rules).
       Each returns how many leading elements it did, a multiple of 8 (whole mask bytes):
       the caller does the rest the portable way. */
    #if defined(__AVX512F__)
    /* FASTACT_WHOLE_LOAD (_gate_vectors.pxd) keeps each load whole: folded into a
       zero-masking load, relu_backward_mask took 2x the time at 2^25 on AMD Zen. */
    #define FASTACT_FUSED_MASK_PASSES(T, SUFFIX, VEC, BITS, LANES)                             \
    static inline ptrdiff_t fastact_fused_forward_##SUFFIX(const T *x, T *out, uint8_t *mask, \
                                                           ptrdiff_t n, int leaky, T slope)  \
    {                                                                                     \
        const VEC zero = _mm512_setzero_##SUFFIX(), s = _mm512_set1_##SUFFIX(slope);     \
        ptrdiff_t i = 0;                                                                  \
        for (; i + LANES <= n; i += LANES) {                                              \
            VEC v = _mm512_loadu_##SUFFIX(x + i);                                         \
            BITS keep, negative;                                                          \
            VEC y;                                                                        \
            FASTACT_WHOLE_LOAD(v);                                                        \
            /* A kilobyte ahead: without it the pass lost a third to the streamed relu  \
               at DRAM sizes (the hardware prefetcher alone kept too few lines in flight). */ \
            _mm_prefetch((const char *)(x + i) + 1024, _MM_HINT_T0);                      \
            if (leaky) { /* x > 0 ? x : x * s; the bit is x > 0 */                         \
                keep = _mm512_cmp_##SUFFIX##_mask(v, zero, _CMP_GT_OQ);                  \
                y = _mm512_mask_blend_##SUFFIX(keep, _mm512_mul_##SUFFIX(v, s), v);       \
            } else { /* x < 0 ? +0 : x (-0 and NaN pass); the bit is !(x <= 0) */         \
                keep = _mm512_cmp_##SUFFIX##_mask(v, zero, _CMP_NLE_UQ);                 \
                negative = _mm512_cmp_##SUFFIX##_mask(v, zero, _CMP_LT_OQ);              \
                y = _mm512_mask_mov_##SUFFIX(v, negative, zero);                          \
            }                                                                             \
            _mm512_storeu_##SUFFIX(out + i, y);                                           \
            memcpy(mask + i / 8, &keep, sizeof(keep));                                    \
        }                                                                                 \
        return i;                                                                         \
    }                                                                                     \
    static inline ptrdiff_t fastact_fused_backward_##SUFFIX(const T *g, const uint8_t *mask, \
                                                            T *out, ptrdiff_t n, int leaky, \
                                                            T slope)                      \
    {                                                                                     \
        const VEC s = _mm512_set1_##SUFFIX(slope);                                        \
        ptrdiff_t i = 0;                                                                  \
        for (; i + LANES <= n; i += LANES) {                                              \
            VEC v = _mm512_loadu_##SUFFIX(g + i);                                         \
            BITS keep;                                                                    \
            FASTACT_WHOLE_LOAD(v);                                                        \
            memcpy(&keep, mask + i / 8, sizeof(keep));                                    \
            _mm512_storeu_##SUFFIX(out + i,                                               \
                leaky ? _mm512_mask_blend_##SUFFIX(keep, _mm512_mul_##SUFFIX(v, s), v)   \
                      : _mm512_maskz_mov_##SUFFIX(keep, v));                              \
        }                                                                                 \
        return i;                                                                         \
    }
    FASTACT_FUSED_MASK_PASSES(float, ps, __m512, __mmask16, 16)
    FASTACT_FUSED_MASK_PASSES(double, pd, __m512d, __mmask8, 8)

    /* The bias passes' backward: the gradient as above, each vector also added to its
       columns' float64 sums while in a register (a second sweep over the block, even from
       L1, stalls the stream of g enough to cost a quarter of the pass). Element i of the
       block is in column (column + i) % cols; a vector that wraps a row goes lane by lane.
       Each add is the scalar sweep's own (fastact_sum_run_*), so the sums have its bits. */
    static inline void fastact_add_columns_ps(double *sums, double *carries, ptrdiff_t column,
                                              ptrdiff_t cols, __m512 y)
    {
        (void)carries;
        if (column + 16 <= cols) {
            __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(y));
            __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1)));
            _mm512_storeu_pd(sums + column, _mm512_add_pd(_mm512_loadu_pd(sums + column), lo));
            _mm512_storeu_pd(sums + column + 8, _mm512_add_pd(_mm512_loadu_pd(sums + column + 8), hi));
        } else {
            float lanes[16];
            _mm512_storeu_ps(lanes, y);
            for (int k = 0; k < 16; k++) {
                ptrdiff_t j = column + k >= cols ? column + k - cols : column + k;
                sums[j] += (double)lanes[k];
            }
        }
    }
    static inline void fastact_add_columns_pd(double *sums, double *carries, ptrdiff_t column,
                                              ptrdiff_t cols, __m512d y)
    {
        if (column + 8 <= cols) {
            const __m512d magnitude = _mm512_castsi512_pd(_mm512_set1_epi64(0x7fffffffffffffffLL));
            __m512d s = _mm512_loadu_pd(sums + column), t = _mm512_add_pd(s, y);
            __mmask8 s_larger = _mm512_cmp_pd_mask(_mm512_and_pd(s, magnitude),
                                                   _mm512_and_pd(y, magnitude), _CMP_GE_OQ);
            __m512d error = _mm512_mask_blend_pd(s_larger,
                                                 _mm512_add_pd(_mm512_sub_pd(y, t), s),
                                                 _mm512_add_pd(_mm512_sub_pd(s, t), y));
            _mm512_storeu_pd(carries + column, _mm512_add_pd(_mm512_loadu_pd(carries + column), error));
            _mm512_storeu_pd(sums + column, t);
        } else {
            double lanes[8];
            _mm512_storeu_pd(lanes, y);
            for (int k = 0; k < 8; k++) {
                ptrdiff_t j = column + k >= cols ? column + k - cols : column + k;
                fastact_sum_run_f64(sums + j, carries + j, lanes + k, 1);
            }
        }
    }
    #define FASTACT_FUSED_BIAS_BACKWARD(T, SUFFIX, VEC, BITS, LANES)                          \
    static inline ptrdiff_t fastact_fused_bias_backward_##SUFFIX(                            \
        const T *g, const uint8_t *mask, T *out, double *sums, double *carries,               \
        ptrdiff_t column, ptrdiff_t cols, ptrdiff_t n, int leaky, T slope)                    \
    {                                                                                     \
        const VEC s = _mm512_set1_##SUFFIX(slope);                                        \
        ptrdiff_t i = 0;                                                                  \
        if (cols < LANES)                                                                 \
            return 0;                                                                     \
        for (; i + LANES <= n; i += LANES) {                                              \
            VEC v = _mm512_loadu_##SUFFIX(g + i), y;                                      \
            BITS keep;                                                                    \
            FASTACT_WHOLE_LOAD(v);                                                        \
            memcpy(&keep, mask + i / 8, sizeof(keep));                                    \
            y = leaky ? _mm512_mask_blend_##SUFFIX(keep, _mm512_mul_##SUFFIX(v, s), v)    \
                      : _mm512_maskz_mov_##SUFFIX(keep, v);                               \
            _mm512_storeu_##SUFFIX(out + i, y);                                           \
            fastact_add_columns_##SUFFIX(sums, carries, column, cols, y);                 \
            column += LANES;                                                              \
            if (column >= cols)                                                           \
                column -= cols;                                                           \
        }                                                                                 \
        return i;                                                                         \
    }
    FASTACT_FUSED_BIAS_BACKWARD(float, ps, __m512, __mmask16, 16)
    FASTACT_FUSED_BIAS_BACKWARD(double, pd, __m512d, __mmask8, 8)
    #else
    static inline ptrdiff_t fastact_fused_forward_ps(const float *x, float *out, uint8_t *mask,
                                                     ptrdiff_t n, int leaky, float slope)
    { return 0; }
    static inline ptrdiff_t fastact_fused_forward_pd(const double *x, double *out,
                                                     uint8_t *mask, ptrdiff_t n, int leaky,
                                                     double slope)
    { return 0; }
    static inline ptrdiff_t fastact_fused_backward_ps(const float *g, const uint8_t *mask,
                                                      float *out, ptrdiff_t n, int leaky,
                                                      float slope)
    { return 0; }
    static inline ptrdiff_t fastact_fused_backward_pd(const double *g, const uint8_t *mask,
                                                      double *out, ptrdiff_t n, int leaky,
                                                      double slope)
    { return 0; }
    static inline ptrdiff_t fastact_fused_bias_backward_ps(
        const float *g, const uint8_t *mask, float *out, double *sums, double *carries,
        ptrdiff_t column, ptrdiff_t cols, ptrdiff_t n, int leaky, float slope)
    { return 0; }
    static inline ptrdiff_t fastact_fused_bias_backward_pd(
        const double *g, const uint8_t *mask, double *out, double *sums, double *carries,
        ptrdiff_t column, ptrdiff_t cols, ptrdiff_t n, int leaky, double slope)
    { return 0; }
    #endif

    /* The ReLU backward pass of 16-bit floats is a select of g's bits or +0.0. */
    static inline ptrdiff_t fastact_fused_relu_backward_16(const uint16_t *g,
                                                           const uint8_t *mask, uint16_t *out,
                                                           ptrdiff_t n)
    {
        ptrdiff_t i = 0;
    #if defined(__AVX512BW__)
        for (; i + 32 <= n; i += 32) {
            __mmask32 keep;
            __m512i v = _mm512_loadu_si512((const void *)(g + i));
            FASTACT_WHOLE_LOAD(v);
            memcpy(&keep, mask + i / 8, sizeof(keep));
            _mm512_storeu_si512((void *)(out + i), _mm512_maskz_mov_epi16(keep, v));
        }
    #endif
        return i;
    }

    #endif
    """
    Py_ssize_t fastact_fused_forward_ps(const float* x, float* out, uint8_t* mask, Py_ssize_t n,
                                        int leaky, float slope) nogil
    Py_ssize_t fastact_fused_forward_pd(const double* x, double* out, uint8_t* mask,
                                        Py_ssize_t n, int leaky, double slope) nogil
    Py_ssize_t fastact_fused_backward_ps(const float* g, const uint8_t* mask, float* out,
                                         Py_ssize_t n, int leaky, float slope) nogil
    Py_ssize_t fastact_fused_backward_pd(const double* g, const uint8_t* mask, double* out,
                                         Py_ssize_t n, int leaky, double slope) nogil
    Py_ssize_t fastact_fused_bias_backward_ps(const float* g, const uint8_t* mask, float* out,
                                              double* sums, double* carries, Py_ssize_t column,
                                              Py_ssize_t cols, Py_ssize_t n, int leaky,
                                              float slope) nogil
    Py_ssize_t fastact_fused_bias_backward_pd(const double* g, const uint8_t* mask,
                                              double* out, double* sums, double* carries,
                                              Py_ssize_t column, Py_ssize_t cols, Py_ssize_t n,
                                              int leaky, double slope) nogil
    void fastact_sum_run_f32(double* sums, const float* v, Py_ssize_t n) nogil
    void fastact_sum_run_f64(double* sums, double* carries, const double* v,
                             Py_ssize_t n) nogil
    Py_ssize_t fastact_fused_relu_backward_16(const uint16_t* g, const uint8_t* mask,
                                              uint16_t* out, Py_ssize_t n) nogil
    void fastact_pack_f32(const float* x, uint8_t* mask, Py_ssize_t n, int leaky) nogil
    void fastact_pack_f64(const double* x, uint8_t* mask, Py_ssize_t n, int leaky) nogil
    void fastact_pack_half(const uint16_t* x, uint8_t* mask, Py_ssize_t n, int leaky,
                           short inf) nogil
    void fastact_expand_32(const uint8_t* mask, uint32_t* lanes, Py_ssize_t n,
                           uint32_t one) nogil
    void fastact_expand_64(const uint8_t* mask, uint64_t* lanes, Py_ssize_t n,
                           uint64_t one) nogil
    void fastact_expand_16(const uint8_t* mask, uint16_t* lanes, Py_ssize_t n,
                           uint16_t one) nogil

ctypedef fused mask_float_t:
    float
    double
    float16_t
    bfloat16_t

cdef enum:
    # Elements per block: a multiple of 64 (whole mask words), and a block of each operand
    # in L1 (8 KiB of doubles).
    MASK_BLOCK = 1024


cdef inline void pack(bint leaky, const mask_float_t* x, uint8_t* mask,
                      Py_ssize_t n) noexcept nogil:
    if mask_float_t is float:
        fastact_pack_f32(x, mask, n, leaky)
    elif mask_float_t is double:
        fastact_pack_f64(x, mask, n, leaky)
    elif mask_float_t is float16_t:
        fastact_pack_half(<const uint16_t*>x, mask, n, leaky, 0x7C00)
    else:
        fastact_pack_half(<const uint16_t*>x, mask, n, leaky, 0x7F80)


cdef inline void expand(const uint8_t* mask, mask_float_t* lanes, Py_ssize_t n) noexcept nogil:
    """Lane i is 1.0 where bit i is set, else +0.0: what the backward rules compare."""
    if mask_float_t is float:
        fastact_expand_32(mask, <uint32_t*>lanes, n, 0x3F800000u)
    elif mask_float_t is double:
        fastact_expand_64(mask, <uint64_t*>lanes, n, 0x3FF0000000000000u)
    elif mask_float_t is float16_t:
        fastact_expand_16(mask, <uint16_t*>lanes, n, 0x3C00)
    else:
        fastact_expand_16(mask, <uint16_t*>lanes, n, 0x3F80)


cdef inline Py_ssize_t fused_forward(bint leaky, const mask_float_t* x, mask_float_t* out,
                                     uint8_t* mask, Py_ssize_t n, double slope) noexcept nogil:
    """The leading elements this build does in one pass per vector (the slope is rounded
    to float32 for float32 input, as the rule's own rounding)."""
    if mask_float_t is float:
        return fastact_fused_forward_ps(x, out, mask, n, leaky, <float>slope)
    elif mask_float_t is double:
        return fastact_fused_forward_pd(x, out, mask, n, leaky, slope)
    else:
        return 0


cdef inline Py_ssize_t fused_backward(bint leaky, const mask_float_t* g, const uint8_t* mask,
                                      mask_float_t* out, Py_ssize_t n,
                                      double slope) noexcept nogil:
    if mask_float_t is float:
        return fastact_fused_backward_ps(g, mask, out, n, leaky, <float>slope)
    elif mask_float_t is double:
        return fastact_fused_backward_pd(g, mask, out, n, leaky, slope)
    elif not leaky:
        return fastact_fused_relu_backward_16(<const uint16_t*>g, mask, <uint16_t*>out, n)
    else:
        return 0


cdef inline Py_ssize_t fused_bias_backward(bint leaky, const mask_float_t* g,
                                           const uint8_t* mask, mask_float_t* out,
                                           double* sums, double* carries, Py_ssize_t column,
                                           Py_ssize_t cols, Py_ssize_t n,
                                           double slope) noexcept nogil:
    """``fused_backward`` that also adds the gradient to its columns' sums."""
    if mask_float_t is float:
        return fastact_fused_bias_backward_ps(g, mask, out, sums, carries, column, cols, n,
                                              leaky, <float>slope)
    elif mask_float_t is double:
        return fastact_fused_bias_backward_pd(g, mask, out, sums, carries, column, cols, n,
                                              leaky, slope)
    else:
        return 0


cdef inline Py_ssize_t block_length(const mask_float_t* like, bint streaming) noexcept nogil:
    """Elements per block: MASK_BLOCK, or STREAM_BLOCK_BYTES of them when the block is
    streamed out (a multiple of 64 elements for every type): the mask backward at 2^25
    ran at the speed of ``relu_backward(g, x)`` with 4 KiB blocks, reading a third less."""
    return STREAM_BLOCK_BYTES // sizeof(mask_float_t) if streaming else MASK_BLOCK


cdef inline void forward_block(bint leaky, const mask_float_t* x, mask_float_t* out,
                               uint8_t* mask, Py_ssize_t m, double slope) noexcept nogil:
    """At most ``MASK_BLOCK`` elements from a mask byte: the vector pass where this build
    has one, then the rest with the bits first, as ``out`` may be ``x`` (in place)."""
    cdef Py_ssize_t size = sizeof(mask_float_t)
    cdef Py_ssize_t done = fused_forward(leaky, x, out, mask, m, slope)
    pack(leaky, x + done, mask + done // 8, m - done)
    if leaky:
        run_typed(<leaky_relu_op*>NULL, x + done, size, x + done, size, out + done, size,
                  m - done, slope, 0.0, False)
    else:
        run_typed(<relu_op*>NULL, x + done, size, x + done, size, out + done, size, m - done,
                  0.0, 0.0, False)


cdef inline void backward_block(bint leaky, const mask_float_t* g, const uint8_t* mask,
                                mask_float_t* out, Py_ssize_t m, double slope) noexcept nogil:
    """At most ``MASK_BLOCK`` elements from a mask byte: the vector pass where this build
    has one, then the rest with the bits as 1.0 / +0.0 in x's place, through the table's
    own rule."""
    cdef mask_float_t lanes[MASK_BLOCK]
    cdef Py_ssize_t size = sizeof(mask_float_t)
    cdef Py_ssize_t done = fused_backward(leaky, g, mask, out, m, slope)
    if done == m:
        return
    expand(mask + done // 8, lanes, m - done)
    if leaky:
        run_typed(<leaky_relu_backward_op*>NULL, g + done, size, <const mask_float_t*>lanes,
                  size, out + done, size, m - done, slope, 0.0, False)
    else:
        run_typed(<relu_backward_op*>NULL, g + done, size, <const mask_float_t*>lanes, size,
                  out + done, size, m - done, 0.0, 0.0, False)


# Each pass runs block by block into ``target``: ``out`` itself, or, when ``streaming``
# (``out`` 16-byte aligned and apart from the inputs), a block in L1 that is then written
# to ``out`` with streaming stores. Blocks start on mask bytes (8 elements), which keeps
# them on 16-byte boundaries.

cdef inline void forward_typed(bint leaky, const mask_float_t* x, mask_float_t* out,
                               uint8_t* mask, Py_ssize_t n, double slope,
                               bint streaming) noexcept nogil:
    cdef uint8_t scratch[STREAM_SCRATCH_BYTES]
    cdef mask_float_t* block = <mask_float_t*>stream_block(scratch, x)
    cdef mask_float_t* target
    cdef Py_ssize_t start = 0, m
    while start < n:
        m = min(block_length(x, streaming), n - start)
        target = block if streaming else out + start
        forward_block(leaky, x + start, target, mask + start // 8, m, slope)
        if streaming:
            fastact_stream_copy(out + start, block, m * sizeof(mask_float_t))
        start += m
    if streaming:
        fastact_stream_fence()


cdef inline void backward_typed(bint leaky, const mask_float_t* g, const uint8_t* mask,
                                mask_float_t* out, Py_ssize_t n, double slope,
                                bint streaming) noexcept nogil:
    cdef uint8_t scratch[STREAM_SCRATCH_BYTES]
    cdef mask_float_t* block = <mask_float_t*>stream_block(scratch, g)
    cdef mask_float_t* target
    cdef Py_ssize_t start = 0, m
    while start < n:
        m = min(block_length(g, streaming), n - start)
        target = block if streaming else out + start
        backward_block(leaky, g + start, mask + start // 8, target, m, slope)
        if streaming:
            fastact_stream_copy(out + start, block, m * sizeof(mask_float_t))
        start += m
    if streaming:
        fastact_stream_fence()


# ---------------------------------------------------------------------------------------
# A bias along the last axis before the activation: ``z = x + bias[j]`` for the element in
# column ``j``, rounded once as torch's add (16-bit floats add in float32: exact enough
# that the one rounding is the correctly rounded sum), then the loops above on ``z``.
# Elements are numbered in C order from the start of the array, so the column of element
# ``e`` is ``e % cols``.

cdef inline mask_float_t add_rule(mask_float_t a, mask_float_t b) noexcept nogil:
    if mask_float_t is float16_t or mask_float_t is bfloat16_t:
        return with_bits(a, narrow(widen(a) + widen(b), a))
    else:
        return a + b


cdef inline void add_bias(const mask_float_t* x, const mask_float_t* bias, mask_float_t* z,
                          Py_ssize_t first, Py_ssize_t n, Py_ssize_t cols) noexcept nogil:
    """``z[i] = x[i] + bias[(first + i) % cols]`` for i < n: one vector loop per row run."""
    cdef Py_ssize_t i = 0, j = first % cols, k, run
    while i < n:
        run = min(cols - j, n - i)
        for k in range(run):
            z[i + k] = add_rule(x[i + k], bias[j + k])
        i += run
        j = 0


cdef inline void bias_forward_typed(bint leaky, const mask_float_t* x,
                                    const mask_float_t* bias, mask_float_t* out,
                                    uint8_t* mask, Py_ssize_t first, Py_ssize_t n,
                                    Py_ssize_t cols, double slope,
                                    bint streaming) noexcept nogil:
    """``n`` elements from element ``first`` (a multiple of 8 where ``mask`` is given; NULL:
    no mask). ``x``, ``out`` and ``mask`` point at element ``first``'s."""
    cdef mask_float_t z[MASK_BLOCK]
    cdef uint8_t scratch[STREAM_SCRATCH_BYTES]
    cdef mask_float_t* block = <mask_float_t*>stream_block(scratch, x)
    cdef mask_float_t* target
    cdef Py_ssize_t size = sizeof(mask_float_t)
    cdef Py_ssize_t start = 0, m
    while start < n:
        m = min(block_length(x, streaming), n - start)
        target = block if streaming else out + start
        add_bias(x + start, bias, z, first + start, m, cols)
        if mask != NULL:
            forward_block(leaky, <const mask_float_t*>z, target, mask + start // 8, m, slope)
        elif leaky:
            run_typed(<leaky_relu_op*>NULL, <const mask_float_t*>z, size,
                      <const mask_float_t*>z, size, target, size, m, slope, 0.0, False)
        else:
            run_typed(<relu_op*>NULL, <const mask_float_t*>z, size, <const mask_float_t*>z,
                      size, target, size, m, 0.0, 0.0, False)
        if streaming:
            fastact_stream_copy(out + start, block, m * size)
        start += m
    if streaming:
        fastact_stream_fence()


cdef inline void accumulate_columns(const mask_float_t* v, double* sums, double* carries,
                                    Py_ssize_t first, Py_ssize_t n,
                                    Py_ssize_t cols) noexcept nogil:
    """Add ``v[i]`` to ``sums[(first + i) % cols]``, row after row, in float64: float64
    input compensated (the rounding error of each add goes to ``carries``)."""
    cdef Py_ssize_t i = 0, j = first % cols, k, run
    while i < n:
        run = min(cols - j, n - i)
        if mask_float_t is double:
            fastact_sum_run_f64(sums + j, carries + j, v + i, run)
        elif mask_float_t is float:
            fastact_sum_run_f32(sums + j, v + i, run)
        else:
            for k in range(run):
                sums[j + k] += <double>widen(v[i + k])
        i += run
        j = 0


cdef inline void bias_backward_typed(bint leaky, const mask_float_t* g, const uint8_t* mask,
                                     mask_float_t* out, Py_ssize_t first, Py_ssize_t n,
                                     Py_ssize_t cols, double slope, double* sums,
                                     double* carries, bint streaming) noexcept nogil:
    """The gradient of ``n`` elements from element ``first`` (any), into ``out``, and each
    column's sum of it added to ``sums``. ``g`` and ``out`` point at element ``first``'s,
    ``mask`` at the mask's start. Block by block, so that the sums read the gradient
    from L1, where it was just written."""
    cdef mask_float_t head_lanes[8]
    cdef uint8_t scratch[STREAM_SCRATCH_BYTES]
    cdef mask_float_t* block = <mask_float_t*>stream_block(scratch, g)
    cdef mask_float_t* target
    cdef Py_ssize_t size = sizeof(mask_float_t)
    cdef Py_ssize_t head = min(n, (8 - first % 8) % 8), i, m, done
    # Up to a mask byte boundary one by one, then whole bytes.
    for i in range(head):
        expand(mask + (first + i) // 8, head_lanes, 8)
        head_lanes[0] = head_lanes[(first + i) % 8]
        if leaky:
            run_typed(<leaky_relu_backward_op*>NULL, g + i, size,
                      <const mask_float_t*>head_lanes, size, out + i, size, 1, slope, 0.0, False)
        else:
            run_typed(<relu_backward_op*>NULL, g + i, size, <const mask_float_t*>head_lanes,
                      size, out + i, size, 1, 0.0, 0.0, False)
    accumulate_columns(<const mask_float_t*>out, sums, carries, first, head, cols)
    i = head
    while i < n:
        m = min(block_length(g, streaming), n - i)
        target = block if streaming else out + i
        done = fused_bias_backward(leaky, g + i, mask + (first + i) // 8, target, sums,
                                   carries, (first + i) % cols, cols, m, slope)
        backward_block(leaky, g + i + done, mask + (first + i + done) // 8, target + done,
                       m - done, slope)
        accumulate_columns(<const mask_float_t*>(target + done), sums, carries,
                           first + i + done, m - done, cols)
        if streaming:
            fastact_stream_copy(out + i, block, m * size)
        i += m
    if streaming:
        fastact_stream_fence()


# ---------------------------------------------------------------------------------------
# The run-time dispatch from an element type, behind function pointers: contiguous
# operands; ``n`` elements from the start of a mask byte.

cdef inline void mask_forward(bint leaky, ElementType etype, const char* x, char* out,
                              uint8_t* mask, Py_ssize_t n, double slope,
                              bint streaming) noexcept nogil:
    if etype == FLOAT32:
        forward_typed(leaky, <const float*>x, <float*>out, mask, n, slope, streaming)
    elif etype == FLOAT64:
        forward_typed(leaky, <const double*>x, <double*>out, mask, n, slope, streaming)
    elif etype == FLOAT16:
        forward_typed(leaky, <const float16_t*>x, <float16_t*>out, mask, n, slope,
                      streaming)
    elif etype == BFLOAT16:
        forward_typed(leaky, <const bfloat16_t*>x, <bfloat16_t*>out, mask, n, slope,
                      streaming)


cdef inline void mask_backward(bint leaky, ElementType etype, const char* g,
                               const uint8_t* mask, char* out, Py_ssize_t n, double slope,
                               bint streaming) noexcept nogil:
    if etype == FLOAT32:
        backward_typed(leaky, <const float*>g, mask, <float*>out, n, slope, streaming)
    elif etype == FLOAT64:
        backward_typed(leaky, <const double*>g, mask, <double*>out, n, slope, streaming)
    elif etype == FLOAT16:
        backward_typed(leaky, <const float16_t*>g, mask, <float16_t*>out, n, slope,
                       streaming)
    elif etype == BFLOAT16:
        backward_typed(leaky, <const bfloat16_t*>g, mask, <bfloat16_t*>out, n, slope,
                       streaming)


cdef inline void bias_forward(bint leaky, ElementType etype, const char* x, const char* bias,
                              char* out, uint8_t* mask, Py_ssize_t first, Py_ssize_t n,
                              Py_ssize_t cols, double slope, bint streaming) noexcept nogil:
    if etype == FLOAT32:
        bias_forward_typed(leaky, <const float*>x, <const float*>bias, <float*>out, mask,
                           first, n, cols, slope, streaming)
    elif etype == FLOAT64:
        bias_forward_typed(leaky, <const double*>x, <const double*>bias, <double*>out, mask,
                           first, n, cols, slope, streaming)
    elif etype == FLOAT16:
        bias_forward_typed(leaky, <const float16_t*>x, <const float16_t*>bias,
                           <float16_t*>out, mask, first, n, cols, slope, streaming)
    elif etype == BFLOAT16:
        bias_forward_typed(leaky, <const bfloat16_t*>x, <const bfloat16_t*>bias,
                           <bfloat16_t*>out, mask, first, n, cols, slope, streaming)


cdef inline void bias_backward(bint leaky, ElementType etype, const char* g,
                               const uint8_t* mask, char* out, Py_ssize_t first, Py_ssize_t n,
                               Py_ssize_t cols, double slope, double* sums, double* carries,
                               bint streaming) noexcept nogil:
    if etype == FLOAT32:
        bias_backward_typed(leaky, <const float*>g, mask, <float*>out, first, n, cols, slope,
                            sums, carries, streaming)
    elif etype == FLOAT64:
        bias_backward_typed(leaky, <const double*>g, mask, <double*>out, first, n, cols,
                            slope, sums, carries, streaming)
    elif etype == FLOAT16:
        bias_backward_typed(leaky, <const float16_t*>g, mask, <float16_t*>out, first, n, cols,
                            slope, sums, carries, streaming)
    elif etype == BFLOAT16:
        bias_backward_typed(leaky, <const bfloat16_t*>g, mask, <bfloat16_t*>out, first, n,
                            cols, slope, sums, carries, streaming)


ctypedef void (*mask_forward_loop)(bint leaky, ElementType etype, const char* x, char* out,
                                   uint8_t* mask, Py_ssize_t n, double slope,
                                   bint streaming) noexcept nogil
ctypedef void (*mask_backward_loop)(bint leaky, ElementType etype, const char* g,
                                    const uint8_t* mask, char* out, Py_ssize_t n,
                                    double slope, bint streaming) noexcept nogil

ctypedef void (*bias_forward_loop)(bint leaky, ElementType etype, const char* x,
                                   const char* bias, char* out, uint8_t* mask,
                                   Py_ssize_t first, Py_ssize_t n, Py_ssize_t cols,
                                   double slope, bint streaming) noexcept nogil
ctypedef void (*bias_backward_loop)(bint leaky, ElementType etype, const char* g,
                                    const uint8_t* mask, char* out, Py_ssize_t first,
                                    Py_ssize_t n, Py_ssize_t cols, double slope, double* sums,
                                    double* carries, bint streaming) noexcept nogil

ctypedef struct MaskTable:
    const char* isa
    mask_forward_loop forward
    mask_backward_loop backward
    bias_forward_loop bias_forward
    bias_backward_loop bias_backward


cdef extern from *:
    """
    static const char FASTACT_MASK_TABLE_NAME[] = "fastact._mask_loops.MaskTable";
    """
    const char* FASTACT_MASK_TABLE_NAME


cdef inline object export_mask_table(const char* isa):
    """A capsule holding this module's build of the mask loops; lives as long as the module."""
    cdef MaskTable* table = <MaskTable*>PyMem_RawMalloc(sizeof(MaskTable))
    if table == NULL:
        raise MemoryError()
    table.isa = isa
    table.forward = mask_forward
    table.backward = mask_backward
    table.bias_forward = bias_forward
    table.bias_backward = bias_backward
    return PyCapsule_New(table, FASTACT_MASK_TABLE_NAME, NULL)
