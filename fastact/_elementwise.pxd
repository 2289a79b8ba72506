# cython: language_level=3
"""The contract for one element, as inline C: every compiled loop is built from these.

The same rules as ``_reference.py`` (PyTorch CPU's). The comparisons alone decide what
happens to -0.0 and NaN, so they are written exactly as the contract states them.
float16 is stored as ``npy_half`` and computed in float32, rounding once, as torch does.
"""

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t

cdef extern from "numpy/halffloat.h":
    ctypedef unsigned short npy_half
    float npy_half_to_float(npy_half h) nogil
    npy_half npy_float_to_half(float f) nogil

# Fixed-width integers: C's long and long long are one type here when they have one width.
ctypedef fused element_t:
    int8_t
    int16_t
    int32_t
    int64_t
    float
    double


cdef inline element_t relu_rule(element_t x) noexcept nogil:
    # `<`, not `<=`: -0.0 stays -0.0 and NaN (false in every comparison) passes.
    return 0 if x < 0 else x


cdef inline element_t leaky_relu_rule(element_t x, element_t negative_slope) noexcept nogil:
    # NaN and ±0 take the product: NaN stays NaN, -0.0 * s keeps IEEE's sign rule.
    return x if x > 0 else x * negative_slope


cdef inline element_t relu_grad_rule(element_t x) noexcept nogil:
    # The derivative at 0 is taken as 0 (torch); NaN fails `<= 0` and gets 1.
    return 0 if x <= 0 else 1


cdef inline element_t leaky_relu_grad_rule(element_t x, element_t negative_slope) noexcept nogil:
    # The derivative at ±0 and at NaN is the slope (torch).
    return 1 if x > 0 else negative_slope


cdef inline element_t relu_backward_rule(element_t g, element_t x) noexcept nogil:
    # A select, not g * (x > 0): a NaN or inf gradient where x <= 0 gives +0.0.
    return 0 if x <= 0 else g


cdef inline element_t leaky_relu_backward_rule(element_t g, element_t x,
                                               element_t negative_slope) noexcept nogil:
    # A multiply where x <= 0: a NaN gradient stays NaN everywhere.
    return g if x > 0 else g * negative_slope


# float16: compare in float32 and select the stored bits, or multiply in float32 and round
# once. Selecting the original bits keeps -0.0 and NaN payloads exactly as stored.

cdef inline npy_half half_relu(npy_half x) noexcept nogil:
    return 0 if npy_half_to_float(x) < 0 else x


cdef inline npy_half half_leaky_relu(npy_half x, float negative_slope) noexcept nogil:
    cdef float xf = npy_half_to_float(x)
    return x if xf > 0 else npy_float_to_half(xf * negative_slope)


cdef inline npy_half half_relu_grad(npy_half x) noexcept nogil:
    return 0 if npy_half_to_float(x) <= 0 else 0x3C00  # 0x3C00 is float16 1.0


cdef inline npy_half half_leaky_relu_grad(npy_half x, float negative_slope) noexcept nogil:
    return 0x3C00 if npy_half_to_float(x) > 0 else npy_float_to_half(negative_slope)


cdef inline npy_half half_relu_backward(npy_half g, npy_half x) noexcept nogil:
    return 0 if npy_half_to_float(x) <= 0 else g


cdef inline npy_half half_leaky_relu_backward(npy_half g, npy_half x,
                                              float negative_slope) noexcept nogil:
    if npy_half_to_float(x) > 0:
        return g
    return npy_float_to_half(npy_half_to_float(g) * negative_slope)
