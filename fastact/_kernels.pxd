# cython: language_level=3
"""The typed elementwise loops, declared for other Cython code to cimport.

Each kernel reads ``n`` contiguous elements and writes ``n`` contiguous elements.
``out`` may be the very same pointer as an input (in place); any other overlap is the
caller's business. All are ``noexcept nogil``: they never touch Python objects.
"""
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t

# The compiled float dtypes. float16 goes through the reference path (NumPy has no
# native half type in C), and so does every non-contiguous or byte-swapped layout.
ctypedef fused floating_t:
    float
    double

# relu is also defined for signed integers (unsigned relu is the identity).
ctypedef fused signed_t:
    int8_t
    int16_t
    int32_t
    int64_t
    float
    double

cdef void relu_kernel(const signed_t* x, signed_t* out, Py_ssize_t n) noexcept nogil
cdef void leaky_relu_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                            floating_t negative_slope) noexcept nogil
cdef void relu_grad_kernel(const floating_t* x, floating_t* out, Py_ssize_t n) noexcept nogil
cdef void leaky_relu_grad_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                                 floating_t negative_slope) noexcept nogil
cdef void relu_backward_kernel(const floating_t* grad_output, const floating_t* x,
                               floating_t* out, Py_ssize_t n) noexcept nogil
cdef void leaky_relu_backward_kernel(const floating_t* grad_output, const floating_t* x,
                                     floating_t* out, Py_ssize_t n,
                                     floating_t negative_slope) noexcept nogil

# Dead units. ``x`` holds ``rows`` samples of ``cols`` units, row after row; the kernel
# writes ``cols`` flags to ``dead``: 1 iff ``x[i, j] <= 0`` for every row i, so a NaN keeps
# its unit alive (relu_grad(NaN) is 1) and with no rows every flag is 1.
from libc.stdint cimport uint8_t

cdef void dead_units_kernel(const floating_t* x, uint8_t* dead, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil
