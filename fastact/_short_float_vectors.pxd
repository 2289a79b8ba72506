# cython: language_level=3
"""leaky_relu's rule on float16 and bfloat16, one vector of bits at a time.

``out = x > 0 ? g : round16(float32(g) * slope)`` (``g`` is ``x`` in the forward pass):
each vector of 16-bit values is widened, multiplied, rounded back and blended without
leaving the registers, instead of going through float32 buffers in memory. The positive
side needs no conversion at all: the blend picks ``g``'s own bits, so NaN payloads and
-0.0 there are kept, and the comparison reads the bits alone, as ``_elementwise.pxd``'s
``is_positive`` does.

Written once with the compiler's vector extensions (GCC >= 9, Clang), at the widest vector
the build's flags allow: 64 bytes in the AVX-512 build (32 lanes), 32 in the AVX2 build,
16 in the baseline one (SSE2 on x86-64, NEON on aarch64). float16 converts through F16C
where the build has it (exact, ties to even); without it, and for bfloat16, through exact
integer conversions, the scalar ones of ``_elementwise.pxd`` lane by lane: a 32-bit lane
holds two 16-bit values, converted as two float32 vectors (the low halves and the high
halves) and put back where they came from, so no shuffle is needed. In the AVX-512 build
on a CPU with AVX512_BF16, bfloat16 rounds with ``vcvtne2ps2bf16``, except in a vector
with a subnormal product, which the instruction would flush to zero. The results are the
scalar rule's, bit for bit, over every 16-bit input (the tests check all 65,536 under
every build), NaN payloads aside: F16C keeps more of a payload than the scalar float16
rounding, and where both ``g`` and the slope are NaN either may come through. A NaN is
compared by NaN-ness, as elsewhere; it stays quiet and keeps its sign.
"""
from libc.stdint cimport uint16_t

from fastact._elementwise cimport bfloat16_t, short_float_t
from fastact._stream cimport fastact_prefetch_at

cdef extern from *:
    """
    #ifndef FASTACT_SHORT_FLOAT_VECTORS_H
    #define FASTACT_SHORT_FLOAT_VECTORS_H
    #include <stdint.h>

    #if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)
    #define FASTACT_HAS_SHORT_VECTORS 1

    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__F16C__) || defined(__SSE2__)
    #include <immintrin.h>
    #endif

    #if defined(__AVX512F__) && defined(__AVX512BW__)
    #  define FASTACT_SHORT_VECTOR_BYTES 64
    #elif defined(__AVX2__)
    #  define FASTACT_SHORT_VECTOR_BYTES 32
    #else
    #  define FASTACT_SHORT_VECTOR_BYTES 16
    #endif
    #define FASTACT_SHORT_LANES (FASTACT_SHORT_VECTOR_BYTES / 2)

    typedef uint16_t fastact_u16v __attribute__((vector_size(FASTACT_SHORT_VECTOR_BYTES)));
    typedef uint32_t fastact_u32v __attribute__((vector_size(FASTACT_SHORT_VECTOR_BYTES)));
    typedef int32_t fastact_i32v __attribute__((vector_size(FASTACT_SHORT_VECTOR_BYTES)));
    typedef float fastact_f32v __attribute__((vector_size(FASTACT_SHORT_VECTOR_BYTES)));

    /* mask lanes are all ones or all zeros (a vector comparison's result) */
    static inline fastact_u32v fastact_select_u32(fastact_i32v mask, fastact_u32v a,
                                                  fastact_u32v b)
    {
        return ((fastact_u32v)mask & a) | (~(fastact_u32v)mask & b);
    }

    /* fastact_float_to_bfloat16 lane by lane, the result in each lane's upper half, for
       a product of a widened bfloat16 and a slope from fastact_canonical_slope: its NaN
       (the operand's, quieted, or the default NaN of inf * 0) has 16 zero low bits, so the
       rounding increment cannot carry into it and the scalar rule's NaN test is not needed.
       The hardware already returns it quiet. */
    static inline fastact_u32v fastact_round_product_to_bfloat16(fastact_f32v f)
    {
        fastact_u32v u = (fastact_u32v)f;
        return u + 0x7fffu + ((u >> 16) & 1u);
    }

    /* A NaN slope with its low 16 bits cleared and quieted: the same NaN as the scalar
       rule's bfloat16 result, and no low bits for the rounding to carry. */
    static inline float fastact_canonical_slope(float slope)
    {
        uint32_t u;
        memcpy(&u, &slope, 4);
        if (slope != slope)
            u = (u & 0xffff0000u) | 0x00400000u;
        memcpy(&slope, &u, 4);
        return slope;
    }

    /* fastact_float16_to_float lane by lane, from a half's magnitude (bits 0..14 of each
       lane, the rest zero) and sign (bit 31). Subnormal halves through an int -> float
       conversion, as there: no float subnormal is touched. */
    static inline fastact_f32v fastact_widen_float16_lanes(fastact_u32v magnitude,
                                                           fastact_u32v sign)
    {
        fastact_i32v m = (fastact_i32v)magnitude;
        /* Rebias the exponent; inf and NaN once more, up to float32's all-ones one. */
        fastact_u32v rebias = (fastact_u32v){0} + ((uint32_t)(127 - 15) << 23);
        fastact_u32v normal = (magnitude << 13) + rebias + ((fastact_u32v)(m > 0x7bff) & rebias);
        fastact_u32v subnormal = (fastact_u32v)(__builtin_convertvector(m, fastact_f32v)
                                                * 0x1p-24f);
        /* "m > 0x03ff" rather than "m < 0x0400": SSE2 compares for "greater" only, and
           the other way round took a second instruction to negate it. */
        return (fastact_f32v)(fastact_select_u32(m > 0x03ff, normal, subnormal) | sign);
    }

    /* fastact_float_to_float16 of |f| lane by lane, in each lane's lower half; the sign
       is the caller's to place. Only the builds without F16C use it (the baseline one). */
    static inline fastact_u32v fastact_narrow_float16_magnitude(fastact_f32v f)
    {
        fastact_u32v a = (fastact_u32v)f & 0x7fffffffu;
        fastact_i32v ai = (fastact_i32v)a;
        fastact_u32v subnormal = (fastact_u32v)((fastact_f32v)a + 0.5f) - 0x3f000000u;
        fastact_u32v nan_bit = (fastact_u32v)(ai > 0x7f800000) & 0x0200u;
    #if FASTACT_SHORT_VECTOR_BYTES == 16 && defined(__SSE2__)
        /* Clamped to 65536 first, from which the normal rounding below gives infinity
           (0x7c00), as it does from 65520 up: one minps instead of a compare and a
           select. minps returns its second operand where the first is NaN, so a NaN
           gives infinity there and its bit 9 makes it the quiet NaN 0x7e00. Bit for bit
           the select below over every half and slope tried; 1.1x the baseline build's
           float16 leaky_relu (SSE2, Intel Xeon VM, 2^14-2^18 halves). */
        fastact_u32v c = (fastact_u32v)_mm_min_ps((__m128)a, _mm_set1_ps(65536.0f));
        return fastact_select_u32(
            ai > 0x387fffff,
            ((c - ((uint32_t)(127 - 15) << 23) + 0x0fffu + ((c >> 13) & 1u)) >> 13) | nan_bit,
            subnormal);
    #else
        fastact_u32v normal =
            (a - ((uint32_t)(127 - 15) << 23) + 0x0fffu + ((a >> 13) & 1u)) >> 13;
        return fastact_select_u32(ai > 0x387fffff,
                                  fastact_select_u32(ai > 0x477fefff, nan_bit | 0x7c00u, normal),
                                  subnormal);
    #endif
    }

    static inline fastact_u16v fastact_scale_bfloat16(fastact_u16v g, float slope)
    {
        fastact_u32v w = (fastact_u32v)g;
        fastact_f32v low = (fastact_f32v)(w << 16) * slope;
        fastact_f32v high = (fastact_f32v)(w & 0xffff0000u) * slope;
        return (fastact_u16v)((fastact_round_product_to_bfloat16(low) >> 16)
                              | (fastact_round_product_to_bfloat16(high) & 0xffff0000u));
    }

    /* g's lanes times the slope, read from g: F16C widens each half of the vector
       straight from memory (a load and a conversion, where a half in a register takes an
       extract first) */
    static inline fastact_u16v fastact_scale_float16(const uint16_t *g, float slope)
    {
    #if defined(__F16C__) && FASTACT_SHORT_VECTOR_BYTES == 64
        __m512 s = _mm512_set1_ps(slope);
        __m512 low = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g)), s);
        __m512 high = _mm512_mul_ps(
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 16))), s);
        return (fastact_u16v)_mm512_inserti64x4(
            _mm512_castsi256_si512(_mm512_cvtps_ph(low, _MM_FROUND_TO_NEAREST_INT)),
            _mm512_cvtps_ph(high, _MM_FROUND_TO_NEAREST_INT), 1);
    #elif defined(__F16C__) && FASTACT_SHORT_VECTOR_BYTES == 32
        __m256 s = _mm256_set1_ps(slope);
        __m256 low = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)), s);
        __m256 high = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 8))), s);
        return (fastact_u16v)_mm256_set_m128i(_mm256_cvtps_ph(high, _MM_FROUND_TO_NEAREST_INT),
                                              _mm256_cvtps_ph(low, _MM_FROUND_TO_NEAREST_INT));
    #else
        fastact_u32v w;
        memcpy(&w, g, sizeof w);
        fastact_f32v low = fastact_widen_float16_lanes(w & 0x7fffu, (w << 16) & 0x80000000u);
        fastact_f32v high = fastact_widen_float16_lanes((w >> 16) & 0x7fffu, w & 0x80000000u);
        fastact_u32v low_product = (fastact_u32v)(low * slope);
        fastact_u32v high_product = (fastact_u32v)(high * slope);
        return (fastact_u16v)(
            fastact_narrow_float16_magnitude((fastact_f32v)low_product)
            | ((low_product >> 16) & 0x8000u)
            | (fastact_narrow_float16_magnitude((fastact_f32v)high_product) << 16)
            | (high_product & 0x80000000u));
    #endif
    }

    /* x > 0 ? g : scaled, lane by lane. x > 0: sign clear, magnitude in (0, inf], as
       is_positive in _elementwise.pxd, i.e. (x - 1) < infinity as unsigned. AVX-512
       blends on the comparison's mask register as it is, AVX2 with one blend
       instruction, where the and/andnot/or of the generic form took two or three: with
       it float16's backward pass ran 1.2x as fast in a C harness (AVX-512, Intel Xeon VM,
       2^12-2^18 halves; loading g's halves from memory alone changed nothing). */
    static inline fastact_u16v fastact_blend_positive(fastact_u16v x, fastact_u16v g,
                                                      fastact_u16v scaled, uint16_t infinity)
    {
    #if FASTACT_SHORT_VECTOR_BYTES == 64
        __mmask32 positive = _mm512_cmple_epu16_mask(
            (__m512i)(x - 1), _mm512_set1_epi16((short)(infinity - 1)));
        return (fastact_u16v)_mm512_mask_blend_epi16(positive, (__m512i)scaled, (__m512i)g);
    #else
        fastact_u16v positive = (fastact_u16v)((fastact_u16v)(x - 1) < infinity);
    #if FASTACT_SHORT_VECTOR_BYTES == 32
        return (fastact_u16v)_mm256_blendv_epi8((__m256i)scaled, (__m256i)g, (__m256i)positive);
    #else
        return (positive & g) | (~positive & scaled);
    #endif
    #endif
    }

    /* leaky_relu's rule on 32 bfloat16 through AVX512_BF16's vcvtne2ps2bf16, on the CPUs
       that have it (checked at each call, fastact_leaky_bfloat16_vectors): it rounds to
       nearest even as the integer code does, NaN included (quieted, its upper half kept:
       the integer code's result for the canonical slope's NaN), but flushes subnormal
       products to zero. The rounding would give a subnormal or zero there, so only a zero
       result where g is not zero can be wrong: such a vector, which real data hardly has,
       goes through the integer code instead, and the bits are the same over every input.
       (A zero slope's products are exact zeros.) Checking the result this way takes two
       instructions where classing both product vectors took four: with the blend on the
       mask register, 1.13-1.18x forward and 1.2-1.27x backward in a C harness (Intel
       Xeon VM, 2^12-2^18 elements). */
    #if FASTACT_SHORT_VECTOR_BYTES == 64 && defined(__GNUC__) && !defined(__clang__) \
        && __GNUC__ >= 10
    #define FASTACT_HAS_BF16_INSTRUCTIONS 1
    #include <immintrin.h>
    __attribute__((target("avx512bf16"))) static inline fastact_u16v
    fastact_leaky_bfloat16_instruction_lanes(fastact_u16v g, fastact_u16v x, float slope)
    {
        /* The even elements in the low halves' place, the odd ones in the high halves'
           (as the integer code widens them); the instruction packs the two vectors one
           after the other, and a permutation puts each element back in its place. */
        const __m512i order = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
            23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i magnitude = _mm512_set1_epi16(0x7fff);
        fastact_u32v w = (fastact_u32v)g;
        fastact_f32v even = (fastact_f32v)(w << 16) * slope;
        fastact_f32v odd = (fastact_f32v)(w & 0xffff0000u) * slope;
        __m512i packed = (__m512i)_mm512_cvtne2ps_pbh((__m512)odd, (__m512)even);
        fastact_u16v r = fastact_blend_positive(
            x, g, (fastact_u16v)_mm512_permutexvar_epi16(order, packed), 0x7f80u);
        __mmask32 zero = _mm512_testn_epi16_mask((__m512i)r, magnitude);
        if (zero && slope != 0.0f && _mm512_mask_test_epi16_mask(zero, (__m512i)g, magnitude))
            r = fastact_blend_positive(x, g, fastact_scale_bfloat16(g, slope), 0x7f80u);
        return r;
    }
    #else
    #define FASTACT_HAS_BF16_INSTRUCTIONS 0
    #endif

    /* The rule on the lanes read from g and on x's; format: 0 float16, 1 bfloat16, 2
       bfloat16 through its conversion instruction */
    static inline fastact_u16v fastact_leaky_lanes(const uint16_t *g_bits, fastact_u16v x,
                                                   float slope, int format)
    {
        fastact_u16v g;
        memcpy(&g, g_bits, sizeof g);
    #if FASTACT_HAS_BF16_INSTRUCTIONS
        if (format == 2)
            return fastact_leaky_bfloat16_instruction_lanes(g, x, slope);
    #endif
        if (format)
            return fastact_blend_positive(x, g, fastact_scale_bfloat16(g, slope), 0x7f80u);
        return fastact_blend_positive(x, g, fastact_scale_float16(g_bits, slope), 0x7c00u);
    }

    static inline __attribute__((always_inline)) void
    fastact_leaky_short_floats_loop(const uint16_t *g, const uint16_t *x,
                                                       uint16_t *out, ptrdiff_t n,
                                                       float slope, int format)
    {
        fastact_u16v xv, r;
        ptrdiff_t i = 0;
        for (; i + FASTACT_SHORT_LANES <= n; i += FASTACT_SHORT_LANES) {
            /* Lines asked for ahead (see FASTACT_INPUT_AHEAD_BYTES): the inputs where
               there are two, out where it is another array. The forward passes' loads
               gained nothing from it. */
            if (g != x) {
                fastact_prefetch_at(g + i, FASTACT_INPUT_AHEAD_BYTES);
                fastact_prefetch_at(x + i, FASTACT_INPUT_AHEAD_BYTES);
            }
            if (out != x && out != g)
                fastact_prefetch_at(out + i, FASTACT_OUTPUT_AHEAD_BYTES);
            memcpy(&xv, x + i, sizeof xv);
            r = fastact_leaky_lanes(g + i, xv, slope, format);
            memcpy(out + i, &r, sizeof r);
        }
        /* The tail through the same vector code, from and to a zero-padded vector. */
        if (i < n) {
            uint16_t tail_g[FASTACT_SHORT_LANES] = {0}, tail_x[FASTACT_SHORT_LANES] = {0};
            memcpy(tail_g, g + i, (size_t)(n - i) * 2);
            memcpy(tail_x, x + i, (size_t)(n - i) * 2);
            memcpy(&xv, tail_x, sizeof xv);
            r = fastact_leaky_lanes(tail_g, xv, slope, format);
            memcpy(tail_g, &r, sizeof r);
            memcpy(out + i, tail_g, (size_t)(n - i) * 2);
        }
    }

    /* float16's forward pass (g is x) where F16C is in the build's flags (AVX2 and
       AVX-512), a float32 vector at a time: each is widened straight from memory, and the
       rule's result narrowed straight to memory, as the larger or smaller of x and its
       product. For a slope s < 1, x > 0 gives x * s < x and x < 0 gives x * s > x, so
       the rule's result is the larger of the two; for s > 1 the smaller; for s = 1
       either. vmaxps and vminps return their second operand, the product here, where
       both are zeros or either is NaN: the rule's result for x = ±0 and for a NaN x (its
       product, quieted), as "not x > 0" asks. A positive half comes back unchanged from
       the round trip (exact for every finite or infinite half, subnormals included). Two
       slopes break it and go through the 16-bit blend: NaN (every product NaN, a
       positive x's too) and ±0 (+inf * 0 is NaN where the rule keeps +inf); so do the
       last few halves. One instruction, where the AVX2 build blended each 16 halves on a
       16-bit comparison: its float16 leaky_relu went from 0.57 / 0.52 / 0.47 of
       np.copyto to 0.77 / 0.74 / 0.62 at 2^14 / 2^16 / 2^18 halves (Intel Xeon VM,
       three alternating processes of each build); in the AVX-512 build, where a masked
       multiply on a float32 comparison stood in its place, 1.0-1.05x. */
    #if defined(__F16C__) && FASTACT_SHORT_VECTOR_BYTES >= 32
    #define FASTACT_HAS_FLOAT16_FORWARD_LANES 1
    #if FASTACT_SHORT_VECTOR_BYTES == 64
    #define FASTACT_WIDENED_HALVES 16
    typedef __m512 fastact_widened_halves;
    #define fastact_widen_halves(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
    #define fastact_narrow_halves(p, f) \
        _mm256_storeu_si256((__m256i *)(p), _mm512_cvtps_ph((f), _MM_FROUND_TO_NEAREST_INT))
    #define fastact_widened_max _mm512_max_ps
    #define fastact_widened_min _mm512_min_ps
    #else
    #define FASTACT_WIDENED_HALVES 8
    typedef __m256 fastact_widened_halves;
    #define fastact_widen_halves(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    #define fastact_narrow_halves(p, f) \
        _mm_storeu_si128((__m128i *)(p), _mm256_cvtps_ph((f), _MM_FROUND_TO_NEAREST_INT))
    #define fastact_widened_max _mm256_max_ps
    #define fastact_widened_min _mm256_min_ps
    #endif

    /* smaller: a constant at both calls, so each gets its own loop */
    static inline __attribute__((always_inline)) ptrdiff_t
    fastact_leaky_float16_extremum(const uint16_t *x, uint16_t *out, ptrdiff_t n,
                                   float slope, int smaller)
    {
        ptrdiff_t i = 0;
        for (; i + FASTACT_WIDENED_HALVES <= n; i += FASTACT_WIDENED_HALVES) {
            if (out != x)
                fastact_prefetch_at(out + i, FASTACT_OUTPUT_AHEAD_BYTES);
            fastact_widened_halves f = fastact_widen_halves(x + i);
            /* the product second: returned where both are zeros or either is NaN */
            fastact_narrow_halves(out + i, smaller ? fastact_widened_min(f, f * slope)
                                                   : fastact_widened_max(f, f * slope));
        }
        return i;
    }

    #else
    #define FASTACT_HAS_FLOAT16_FORWARD_LANES 0
    #endif

    /* bfloat16's forward pass through vcvtne2ps2bf16 (g is x), as float16's above: the
       larger or smaller of x and its product, for the same slopes. Widened by zero
       extension, 16 elements into each float32 vector in order, so that the instruction's
       two halves come out where they belong, with no permutation and no 16-bit blend;
       a vector whose result the instruction may have flushed (a zero where x is not
       zero: a positive subnormal x, or a product the rounding takes below the normal
       range) through the integer code, as in fastact_leaky_bfloat16_instruction_lanes.
       Against that function's 32-lane blend, bfloat16 leaky_relu went from 0.68-0.71 /
       0.66-0.67 of np.copyto to 0.72-0.76 / 0.71 at 2^14 / 2^16 elements (0.63-0.65 at
       2^18 both ways), and prelu's (8, 64, 32, 32) forward from 0.64 to 0.72-0.75 (Intel
       Xeon VM, three alternating processes of each build). */
    #if FASTACT_HAS_BF16_INSTRUCTIONS
    __attribute__((target("avx512bf16"))) static inline ptrdiff_t
    fastact_leaky_bfloat16_extremum(const uint16_t *x, uint16_t *out, ptrdiff_t n,
                                    float slope, int smaller)
    {
        const __m512i magnitude = _mm512_set1_epi16(0x7fff);
        fastact_u16v xv, r;
        ptrdiff_t i = 0;
        for (; i + FASTACT_SHORT_LANES <= n; i += FASTACT_SHORT_LANES) {
            if (out != x)
                fastact_prefetch_at(out + i, FASTACT_OUTPUT_AHEAD_BYTES);
            __m512 low = (__m512)_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i))), 16);
            __m512 high = (__m512)_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i + 16))), 16);
            /* the product second, as in fastact_leaky_float16_extremum */
            low = smaller ? _mm512_min_ps(low, low * slope) : _mm512_max_ps(low, low * slope);
            high = smaller ? _mm512_min_ps(high, high * slope)
                           : _mm512_max_ps(high, high * slope);
            r = (fastact_u16v)_mm512_cvtne2ps_pbh(high, low);
            __mmask32 zero = _mm512_testn_epi16_mask((__m512i)r, magnitude);
            if (zero) {
                memcpy(&xv, x + i, sizeof xv);
                if (_mm512_mask_test_epi16_mask(zero, (__m512i)xv, magnitude))
                    r = fastact_blend_positive(xv, xv, fastact_scale_bfloat16(xv, slope),
                                               0x7f80u);
            }
            memcpy(out + i, &r, sizeof r);
        }
        return i;
    }
    #endif

    /* The forward pass's vectors where a build has a loop of its own for them (float16
       with F16C, bfloat16 through its instruction), for the slopes it takes; the number
       of elements done. */
    static inline __attribute__((always_inline)) ptrdiff_t
    fastact_leaky_forward_by_extremum(const uint16_t *x, uint16_t *out, ptrdiff_t n,
                                      float slope, int format)
    {
        if (slope != slope || slope == 0.0f)
            return 0;
    #if FASTACT_HAS_FLOAT16_FORWARD_LANES
        if (format == 0)
            return slope > 1.0f ? fastact_leaky_float16_extremum(x, out, n, slope, 1)
                                : fastact_leaky_float16_extremum(x, out, n, slope, 0);
    #endif
    #if FASTACT_HAS_BF16_INSTRUCTIONS
        if (format == 2)
            return slope > 1.0f ? fastact_leaky_bfloat16_extremum(x, out, n, slope, 1)
                                : fastact_leaky_bfloat16_extremum(x, out, n, slope, 0);
    #endif
        return 0;
    }

    static inline __attribute__((always_inline)) void
    fastact_leaky_short_floats(const uint16_t *g, const uint16_t *x, uint16_t *out,
                               ptrdiff_t n, float slope, int format)
    {
        slope = fastact_canonical_slope(slope);
        if (g == x) {
            /* The forward pass with one load per vector: two loads of the same addresses
               cost a third more time at L2 sizes. */
            ptrdiff_t done = fastact_leaky_forward_by_extremum(x, out, n, slope, format);
            fastact_leaky_short_floats_loop(x + done, x + done, out + done, n - done, slope,
                                            format);
        } else {
            fastact_leaky_short_floats_loop(g, x, out, n, slope, format);
        }
    }

    /* One function per format, never inlined into the (large) dispatching function: there
       the vector constants and the slope were spilled to the stack and reloaded in the
       loop, which ran at half the speed (bfloat16, AVX-512). */
    __attribute__((noinline, unused)) static void
    fastact_leaky_float16_vectors(const uint16_t *g, const uint16_t *x, uint16_t *out,
                                  ptrdiff_t n, float slope)
    {
        fastact_leaky_short_floats(g, x, out, n, slope, 0);
    }

    #if FASTACT_HAS_BF16_INSTRUCTIONS
    __attribute__((noinline, unused, target("avx512bf16"))) static void
    fastact_leaky_bfloat16_instructions(const uint16_t *g, const uint16_t *x, uint16_t *out,
                                        ptrdiff_t n, float slope)
    {
        fastact_leaky_short_floats(g, x, out, n, slope, 2);
    }
    #endif

    __attribute__((noinline, unused)) static void
    fastact_leaky_bfloat16_vectors(const uint16_t *g, const uint16_t *x, uint16_t *out,
                                   ptrdiff_t n, float slope)
    {
    #if FASTACT_HAS_BF16_INSTRUCTIONS
        /* A load and a test: libgcc's constructor has read CPUID when the module loaded. */
        if (__builtin_cpu_supports("avx512bf16")) {
            fastact_leaky_bfloat16_instructions(g, x, out, n, slope);
            return;
        }
    #endif
        fastact_leaky_short_floats(g, x, out, n, slope, 1);
    }

    #else
    #define FASTACT_HAS_SHORT_VECTORS 0
    static inline void fastact_leaky_float16_vectors(const uint16_t *g, const uint16_t *x,
                                                     uint16_t *out, ptrdiff_t n,
                                                     float slope) {}
    static inline void fastact_leaky_bfloat16_vectors(const uint16_t *g, const uint16_t *x,
                                                      uint16_t *out, ptrdiff_t n,
                                                      float slope) {}
    #endif
    #endif
    """
    const bint FASTACT_HAS_SHORT_VECTORS
    void fastact_leaky_float16_vectors(const uint16_t* g, const uint16_t* x, uint16_t* out,
                                       Py_ssize_t n, float slope) nogil
    void fastact_leaky_bfloat16_vectors(const uint16_t* g, const uint16_t* x, uint16_t* out,
                                        Py_ssize_t n, float slope) nogil


cdef inline void leaky_short_floats(const short_float_t* g, const short_float_t* x,
                                    short_float_t* out, Py_ssize_t n,
                                    float negative_slope) noexcept nogil:
    """``x > 0 ? g : g * negative_slope`` over contiguous 16-bit floats (``g`` is ``x``
    in the forward pass). Only where ``FASTACT_HAS_SHORT_VECTORS``."""
    if short_float_t is bfloat16_t:
        fastact_leaky_bfloat16_vectors(<const uint16_t*>g, <const uint16_t*>x, <uint16_t*>out,
                                       n, negative_slope)
    else:
        fastact_leaky_float16_vectors(<const uint16_t*>g, <const uint16_t*>x, <uint16_t*>out,
                                      n, negative_slope)
