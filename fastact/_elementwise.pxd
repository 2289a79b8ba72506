# cython: language_level=3
"""The contract for one element, as inline C: every compiled loop is built from these.

The same rules as ``_reference.py`` (PyTorch CPU's). The comparisons alone decide what
happens to -0.0 and NaN, so they are written exactly as the contract states them.
float16 and bfloat16 are computed in float32, rounding once, as torch does.
"""

from libc.stdint cimport (
    INT16_MAX,
    INT16_MIN,
    int8_t,
    int16_t,
    int32_t,
    int64_t,
    uint8_t,
    uint16_t,
    uint32_t,
    uint64_t,
)

# 16-bit floats (float16, bfloat16) are stored as their bits, each in a struct of its own
# so that fused types tell them apart. Comparisons against zero read the bits alone (the
# float order of a sign-magnitude format); products are computed in float32 and rounded
# once, as torch computes them. Selecting the stored bits keeps -0.0 and NaN payloads.

cdef extern from *:
    """
    /* float16 and bfloat16 <-> float32, exact and branch-free.
     *
     * Written with integer operations and selects so that the compiler vectorises loops that
     * call them on any x86-64 or aarch64 baseline (no F16C needed). The rounding is the one
     * torch, NumPy and ml_dtypes use: to nearest, ties to even. NaN becomes a quiet NaN with
     * its sign (torch's canonical NaN); the tests compare NaN by NaN-ness.
     */
    #ifndef FASTACT_HALF_H
    #define FASTACT_HALF_H

    #include <stdint.h>
    #include <string.h>

    static inline float fastact_bits_to_float(uint32_t u)
    {
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    static inline uint32_t fastact_float_to_bits(float f)
    {
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
    }

    static inline float fastact_float16_to_float(uint16_t h)
    {
        uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
        uint32_t magnitude = h & 0x7fffu;
        uint32_t normal = (magnitude << 13) + ((uint32_t)(127 - 15) << 23);
        uint32_t inf_or_nan = (magnitude << 13) | 0x7f800000u;
        /* Subnormal halves through an exact int -> float conversion: no float subnormal is
           ever touched, so a process running with denormals-are-zero gets the same bits. */
        uint32_t subnormal = fastact_float_to_bits((float)(int32_t)magnitude * 0x1p-24f);
        uint32_t bits = magnitude < 0x0400u ? subnormal
                      : magnitude >= 0x7c00u ? inf_or_nan : normal;
        return fastact_bits_to_float(bits | sign);
    }

    static inline uint16_t fastact_float_to_float16(float f)
    {
        uint32_t u = fastact_float_to_bits(f);
        uint32_t sign = (u >> 16) & 0x8000u;
        uint32_t a = u & 0x7fffffffu;
        /* |f| < 2^-14: adding 0.5 makes the FPU round f onto the half-subnormal grid (2^-24
           steps), ties to even; the mantissa of the sum is then the half's bits. */
        uint32_t subnormal = fastact_float_to_bits(fastact_bits_to_float(a) + 0.5f) - 0x3f000000u;
        /* Normal: rebias the exponent and round away the 13 low bits, ties to even. A carry
           out of the mantissa correctly bumps the exponent, up to infinity. */
        uint32_t normal = (a - ((uint32_t)(127 - 15) << 23) + 0x0fffu + ((a >> 13) & 1u)) >> 13;
        uint32_t overflow = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
        uint32_t bits = a < 0x38800000u ? subnormal : a >= 0x477ff000u ? overflow : normal;
        return (uint16_t)(bits | sign);
    }

    static inline float fastact_bfloat16_to_float(uint16_t b)
    {
        return fastact_bits_to_float((uint32_t)b << 16);
    }

    static inline uint16_t fastact_float_to_bfloat16(float f)
    {
        uint32_t u = fastact_float_to_bits(f);
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t quiet_nan = (u >> 16) | 0x0040u;
        return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
    }

    #endif
    """
    float fastact_float16_to_float(uint16_t bits) nogil
    uint16_t fastact_float_to_float16(float f) nogil
    float fastact_bfloat16_to_float(uint16_t bits) nogil
    uint16_t fastact_float_to_bfloat16(float f) nogil

ctypedef struct float16_t:
    uint16_t bits

ctypedef struct bfloat16_t:
    uint16_t bits

ctypedef fused short_float_t:
    float16_t
    bfloat16_t

# Every element type of the loops. Fixed-width integers: C's long and long long are one
# type here when they have one width.
ctypedef fused element_t:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t
    float
    double
    float16_t
    bfloat16_t

# The four float formats: every function takes these (relu takes integers too).
ctypedef fused floating_t:
    float
    double
    float16_t
    bfloat16_t


cdef inline uint16_t infinity_bits(short_float_t x) noexcept nogil:
    return 0x7C00 if short_float_t is float16_t else 0x7F80


cdef inline uint16_t one_bits(short_float_t x) noexcept nogil:
    return 0x3C00 if short_float_t is float16_t else 0x3F80


cdef inline float widen(short_float_t x) noexcept nogil:
    if short_float_t is float16_t:
        return fastact_float16_to_float(x.bits)
    else:
        return fastact_bfloat16_to_float(x.bits)


cdef inline uint16_t narrow(float f, short_float_t like) noexcept nogil:
    if short_float_t is float16_t:
        return fastact_float_to_float16(f)
    else:
        return fastact_float_to_bfloat16(f)


cdef inline bint is_negative(short_float_t x) noexcept nogil:
    """x < 0: sign set, magnitude in (0, inf]; -0.0 and NaN are not."""
    return <uint16_t>(x.bits - 0x8001) < infinity_bits(x)


cdef inline bint is_positive(short_float_t x) noexcept nogil:
    """x > 0: sign clear, magnitude in (0, inf]."""
    return <uint16_t>(x.bits - 1) < infinity_bits(x)


cdef inline bint is_not_positive(short_float_t x) noexcept nogil:
    """x <= 0: +0.0, or sign set with magnitude in [0, inf]; NaN is not."""
    return x.bits == 0 or <uint16_t>(x.bits - 0x8000) <= infinity_bits(x)


cdef inline short_float_t with_bits(short_float_t like, uint16_t bits) noexcept nogil:
    like.bits = bits
    return like


# Comparisons of 16-bit floats with a bound, as integer compares of their bits: no
# conversion, so a vector holds 16-bit lanes throughout (twice float32's). The bound comes
# as a float32 (exact in it or not). The gate and clamp loops (_loops.pxd) compute the
# bounds' keys once per call; the rules below compare in float32, as the contract states.

cdef inline int16_t order_key(short_float_t x) noexcept nogil:
    """The bits as an integer in the float order: the magnitude, negated where the sign is
    set, so -0.0 and +0.0 are both 0 and neighbouring values have neighbouring keys. A NaN
    gets a key as well: a caller masks NaN with ``is_ordered``."""
    cdef int16_t magnitude = <int16_t>(x.bits & 0x7FFF)
    cdef int16_t sign = (<int16_t>x.bits) >> 15  # 0, or -1 where the sign is set
    return <int16_t>((magnitude ^ sign) - sign)


cdef inline bint is_ordered(short_float_t x) noexcept nogil:
    """Not NaN: the magnitude is at most infinity's."""
    return (x.bits & 0x7FFF) <= infinity_bits(x)


cdef inline int16_t key_at_most(float bound, short_float_t like) noexcept nogil:
    """For every x that is not NaN, ``x <= bound`` iff ``order_key(x) <= key_at_most(bound)``
    (and ``x > bound`` iff ``>``): the key of the largest value at or below ``bound``, the
    nearest one stepped down if it rounded up. A NaN bound: INT16_MIN, so ``<=`` never
    holds (only ``<=`` may use it)."""
    cdef short_float_t nearest = with_bits(like, narrow(bound, like))
    if bound != bound:
        return INT16_MIN
    return order_key(nearest) - 1 if widen(nearest) > bound else order_key(nearest)


cdef inline int16_t key_at_least(float bound, short_float_t like) noexcept nogil:
    """For every x that is not NaN, ``x >= bound`` iff ``order_key(x) >= key_at_least(bound)``
    (and ``x < bound`` iff ``<``): the key of the smallest value at or above ``bound``. A
    NaN bound: INT16_MAX, so ``>=`` never holds (only ``>=`` may use it)."""
    cdef short_float_t nearest = with_bits(like, narrow(bound, like))
    if bound != bound:
        return INT16_MAX
    return order_key(nearest) + 1 if widen(nearest) < bound else order_key(nearest)


# The rules. A slope comes as a double and is rounded to the element type first (float32
# for 16-bit floats), as torch rounds it; in a loop that conversion is hoisted.

cdef inline element_t relu_rule(element_t x) noexcept nogil:
    # `<`, not `<=`: -0.0 stays -0.0 and NaN (false in every comparison) passes.
    if element_t is float16_t or element_t is bfloat16_t:
        return with_bits(x, 0 if is_negative(x) else x.bits)
    else:
        return 0 if x < 0 else x


cdef inline element_t leaky_relu_rule(element_t x, double negative_slope) noexcept nogil:
    # NaN and ±0 take the product: NaN stays NaN, -0.0 * s keeps IEEE's sign rule.
    cdef uint16_t product
    if element_t is float16_t or element_t is bfloat16_t:
        product = narrow(widen(x) * <float>negative_slope, x)
        return with_bits(x, x.bits if is_positive(x) else product)
    else:
        return x if x > 0 else x * <element_t>negative_slope


cdef inline element_t relu_grad_rule(element_t x) noexcept nogil:
    # The derivative at 0 is taken as 0 (torch); NaN fails `<= 0` and gets 1.
    if element_t is float16_t or element_t is bfloat16_t:
        return with_bits(x, 0 if is_not_positive(x) else one_bits(x))
    else:
        return 0 if x <= 0 else 1


cdef inline element_t leaky_relu_grad_rule(element_t x, double negative_slope) noexcept nogil:
    # The derivative at ±0 and at NaN is the slope (torch).
    if element_t is float16_t or element_t is bfloat16_t:
        return with_bits(x, one_bits(x) if is_positive(x) else narrow(<float>negative_slope, x))
    else:
        return 1 if x > 0 else <element_t>negative_slope


cdef inline element_t relu_backward_rule(element_t g, element_t x) noexcept nogil:
    # A select, not g * (x > 0): a NaN or inf gradient where x <= 0 gives +0.0.
    if element_t is float16_t or element_t is bfloat16_t:
        return with_bits(g, 0 if is_not_positive(x) else g.bits)
    else:
        return 0 if x <= 0 else g


cdef inline element_t leaky_relu_backward_rule(element_t g, element_t x,
                                               double negative_slope) noexcept nogil:
    # A multiply where x <= 0: a NaN gradient stays NaN everywhere.
    cdef uint16_t product
    if element_t is float16_t or element_t is bfloat16_t:
        product = narrow(widen(g) * <float>negative_slope, g)
        return with_bits(g, g.bits if is_positive(x) else product)
    else:
        return g if x > 0 else g * <element_t>negative_slope


# The parameters, rounded as torch rounds them before the rules see them (the generated
# dispatch applies the table's rounding; the rules then use the values exactly).

cdef inline double to_compute_type(double value, element_t like) noexcept nogil:
    """float32 for every format but float64 (torch's opmath type)."""
    if element_t is double:
        return value
    else:
        return <float>value


cdef inline double to_element_type(double value, element_t like) noexcept nogil:
    """The element type itself; 16-bit floats round through float32 (c10's conversion)."""
    if element_t is float16_t or element_t is bfloat16_t:
        return widen(with_bits(like, narrow(<float>value, like)))
    elif element_t is double:
        return value
    else:
        return <float>value


# In the rules below, conditions combine with `|`, not `or`: Cython's `or` short-circuits
# into branches, which keep the compiler from vectorising the loop. Parameters are cast to
# the element type (float32 for 16-bit floats) before comparing, where they are exact.

cdef inline element_t hardtanh_rule(element_t x, double min_val,
                                    double max_val) noexcept nogil:
    # torch's clamp, max(x, min_val) then min(_, max_val): x passes where it lies inside
    # or is NaN, and a NaN bound gives NaN everywhere (max_val's if both are NaN). `<` and
    # `>`, so ±0 stays as it is at a bound of 0 (relu6(-0.0) = -0.0). The NaN bounds are
    # tested apart from x: the test does not depend on the element, so the compiler makes
    # two loops of it (unswitching) and the usual one is two compares and two selects (or'ed
    # into each compare, the test cost a mask instruction per vector: 0.67x np.copyto in L1).
    cdef float low_f, high_f, r_f
    cdef element_t low, high, r
    if element_t is float16_t or element_t is bfloat16_t:
        # In float32, where the bounds (already rounded to x's type) are exact, and back:
        # the result is x or a bound, so the narrowing is exact (NaN stays NaN).
        low_f, high_f = <float>min_val, <float>max_val
        if (low_f != low_f) | (high_f != high_f):
            r_f = high_f if high_f != high_f else low_f
        else:
            r_f = widen(x)
            r_f = low_f if r_f < low_f else r_f
            r_f = high_f if r_f > high_f else r_f
        return with_bits(x, narrow(r_f, x))
    else:
        low, high = <element_t>min_val, <element_t>max_val
        if element_t is float or element_t is double:
            # (Only a float bound can be NaN: in the integer instantiations the test would
            # compare a value with itself, which compilers warn about.)
            if (low != low) | (high != high):
                return high if high != high else low
        r = low if x < low else x
        return high if r > high else r


cdef inline element_t hardtanh_backward_rule(element_t g, element_t x, double min_val,
                                             double max_val) noexcept nogil:
    # 0 at exactly min_val and max_val (torch); NaN x passes g (torch's scalar rule: its
    # vector loop gives 0 there, pytorch issue #195075). A select: NaN g outside gives 0.
    cdef float xf
    if element_t is float16_t or element_t is bfloat16_t:
        xf = widen(x)
        return with_bits(g, 0 if (xf <= <float>min_val) | (xf >= <float>max_val) else g.bits)
    else:
        return 0 if (x <= <element_t>min_val) | (x >= <element_t>max_val) else g


cdef inline element_t threshold_rule(element_t x, double threshold,
                                     double value) noexcept nogil:
    # `<=`: x equal to the threshold is replaced; NaN fails the comparison and passes.
    cdef float xf
    if element_t is float16_t or element_t is bfloat16_t:
        # In float32 and back, exact: the result is x or value (already rounded to x's type).
        xf = widen(x)
        return with_bits(x, narrow(<float>value if xf <= <float>threshold else xf, x))
    else:
        return <element_t>value if x <= <element_t>threshold else x


cdef inline element_t threshold_backward_rule(element_t g, element_t x,
                                              double threshold) noexcept nogil:
    # A select, as relu_backward (which is threshold_backward at 0): NaN x passes g.
    if element_t is float16_t or element_t is bfloat16_t:
        return with_bits(g, 0 if widen(x) <= <float>threshold else g.bits)
    else:
        return 0 if x <= <element_t>threshold else g
