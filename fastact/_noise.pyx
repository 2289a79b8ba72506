"""RReLU's training draws: a slope per non-positive element, from NumPy's bit generators.

The draws come from the caller's ``numpy.random.Generator`` through NumPy's C API
(``bitgen_t.next_double``), with the generator's lock held, element by element in C order:
the same seed gives the same bits, whatever the thread settings. Only elements with
``x <= 0`` draw (NaN does not), as in torch, so the stream consumed depends on the data.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer
from numpy cimport ndarray
from numpy.random cimport bitgen_t

from fastact._elementwise cimport (
    bfloat16_t,
    float16_t,
    floating_t,
    narrow,
    widen,
    with_bits,
)
from fastact._kernels cimport array_element_type
from fastact._loops cimport BFLOAT16, FLOAT16, FLOAT32, FLOAT64, ElementType

cnp.import_array()


cdef inline void draw_typed(const floating_t* x, floating_t* y, floating_t* noise,
                            Py_ssize_t n, double lower, double upper,
                            bitgen_t* bitgen) noexcept nogil:
    # torch's rule: r uniform in [lower, upper], drawn in float64 and rounded to the
    # compute type (float32 below float64); y = x * r rounded once; noise = r in x's type.
    cdef Py_ssize_t i
    cdef double r
    cdef float r32, xf
    cdef floating_t xi
    for i in range(n):
        xi = x[i]
        if floating_t is float16_t or floating_t is bfloat16_t:
            xf = widen(xi)
            if xf <= 0:
                r32 = <float>(lower + (upper - lower) * bitgen.next_double(bitgen.state))
                y[i] = with_bits(xi, narrow(xf * r32, xi))
                noise[i] = with_bits(xi, narrow(r32, xi))
            else:
                y[i] = xi
                noise[i] = with_bits(xi, narrow(1.0, xi))
        else:
            if xi <= 0:
                r = lower + (upper - lower) * bitgen.next_double(bitgen.state)
                y[i] = xi * <floating_t>r
                noise[i] = <floating_t>r
            else:
                y[i] = xi
                noise[i] = 1


def rrelu_train(ndarray x, ndarray y, ndarray noise, double lower, double upper,
                bit_generator):
    """Fill ``y`` and ``noise`` (C-contiguous, native, x's type) from ``x``'s draws."""
    cdef ElementType etype = array_element_type(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void* xp = cnp.PyArray_DATA(x)
    cdef void* yp = cnp.PyArray_DATA(y)
    cdef void* np_ = cnp.PyArray_DATA(noise)
    capsule = bit_generator.capsule
    cdef bitgen_t* bitgen = <bitgen_t*>PyCapsule_GetPointer(capsule, "BitGenerator")
    with bit_generator.lock:
        with nogil:
            if etype == FLOAT32:
                draw_typed(<const float*>xp, <float*>yp, <float*>np_, n, lower, upper, bitgen)
            elif etype == FLOAT64:
                draw_typed(<const double*>xp, <double*>yp, <double*>np_, n, lower, upper,
                           bitgen)
            elif etype == FLOAT16:
                draw_typed(<const float16_t*>xp, <float16_t*>yp, <float16_t*>np_, n, lower,
                           upper, bitgen)
            elif etype == BFLOAT16:
                draw_typed(<const bfloat16_t*>xp, <bfloat16_t*>yp, <bfloat16_t*>np_, n,
                           lower, upper, bitgen)
    return y, noise
