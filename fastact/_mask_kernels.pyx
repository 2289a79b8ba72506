# cython: language_level=3
"""Entry points of the mask functions: run the mask loops with the GIL released.

The caller (``fastact._masks``) has validated everything: the arrays are C-contiguous,
aligned, in native byte order and of one float type; ``out`` is ``x`` (or ``g``) itself
or shares no byte with it; the mask has ``(n + 7) // 8`` bytes and shares none with
the others; ``n_threads`` comes from the driver's rule (``_kernels._threads_for``). The
build of the loops is the one ``_kernels`` chose at import, so both run the same ISA.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer
from cython.parallel cimport prange
from libc.math cimport fabs
from libc.string cimport memset
from libc.stdint cimport uint8_t, uintptr_t
from numpy cimport ndarray

from fastact._kernels cimport array_element_type, largest, streams_output, threads_for
from fastact._loops cimport FLOAT64, ElementType, is_float_type
from fastact._mask_loops cimport FASTACT_MASK_TABLE_NAME, MaskTable, fastact_sum_run_f64

import importlib

from fastact import _kernels

cnp.import_array()

_MASK_CAPSULE = importlib.import_module(
    f"fastact._loops_{_kernels.BUILD_INFO['simd']}").mask_table
cdef const MaskTable* MASK_LOOPS = <const MaskTable*>PyCapsule_GetPointer(
    _MASK_CAPSULE, FASTACT_MASK_TABLE_NAME)

#: The instruction set of the mask loops in use (the same as the other loops').
ISA = MASK_LOOPS.isa.decode()

cdef enum:
    # A thread's slice starts on a multiple of 64 elements: whole mask words, so that no
    # mask byte (nor, for aligned arrays, cache line) is written by two threads.
    SLICE_ALIGN_ELEMENTS = 64


cdef inline Py_ssize_t slice_length(Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t per_thread = (n + n_threads - 1) // n_threads
    return (per_thread + SLICE_ALIGN_ELEMENTS - 1) // SLICE_ALIGN_ELEMENTS * SLICE_ALIGN_ELEMENTS


cdef inline bint should_stream(char* out, const char* src, Py_ssize_t nbytes) noexcept:
    """Streaming stores as the other functions' (not in place: there the line was just read
    and a plain store is free), from 16-byte boundaries: every slice and block starts on a
    mask byte (8 elements), so out's alignment is each block's."""
    return streams_output(nbytes) and out != src and <uintptr_t>out % 16 == 0


cdef inline void run_slice(bint backward, bint leaky, ElementType etype, const char* src,
                           char* out, uint8_t* mask, Py_ssize_t n, double slope,
                           bint streaming) noexcept nogil:
    """One slice: the forward pass writes ``mask``, the backward pass reads it."""
    if backward:
        MASK_LOOPS.backward(leaky, etype, src, mask, out, n, slope, streaming)
    else:
        MASK_LOOPS.forward(leaky, etype, src, out, mask, n, slope, streaming)


cdef void run_slices(bint backward, bint leaky, ndarray src, ndarray out, ndarray mask,
                     double slope, int n_threads):
    """Run a pass over all of ``src``, split into whole-mask-word slices over threads."""
    cdef ElementType etype = array_element_type(src)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(src)
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(src)
    cdef const char* src_data = <const char*>cnp.PyArray_DATA(src)
    cdef char* out_data = <char*>cnp.PyArray_DATA(out)
    cdef uint8_t* mask_data = <uint8_t*>cnp.PyArray_DATA(mask)
    cdef Py_ssize_t length = slice_length(n, max(n_threads, 1))
    cdef Py_ssize_t t, start, count
    cdef bint streaming = should_stream(out_data, src_data, n * itemsize)
    if n == 0:
        return
    with nogil:
        if n_threads <= 1:
            run_slice(backward, leaky, etype, src_data, out_data, mask_data, n, slope,
                      streaming)
        else:
            for t in prange(n_threads, num_threads=n_threads, schedule="static"):
                start = t * length
                count = min(length, n - start)
                if count > 0:
                    run_slice(backward, leaky, etype, src_data + start * itemsize,
                              out_data + start * itemsize, mask_data + start // 8, count,
                              slope, streaming)


# ---------------------------------------------------------------------------------------
# The common call, decided here without Python: exact ndarrays the loops take as they are
# (C-contiguous, aligned, native, one float type), ``out`` the input itself or apart from
# it, a ready mask of the right length apart from both, a float slope that needs no
# check. Anything else returns None and ``fastact._masks`` validates, raises or copies.

cdef inline bint is_ready(object a) noexcept:
    if type(a) is not ndarray:
        return False
    cdef ndarray arr = <ndarray>a
    return (cnp.PyArray_NDIM(arr) > 0 and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint apart(ndarray a, ndarray b) noexcept:
    cdef char* a_start = cnp.PyArray_BYTES(a)
    cdef char* b_start = cnp.PyArray_BYTES(b)
    return (a_start >= b_start + cnp.PyArray_NBYTES(b)
            or b_start >= a_start + cnp.PyArray_NBYTES(a))


cdef inline bint same_array_shape(ndarray a, ndarray b) noexcept:
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIMS(a)[d] != cnp.PyArray_DIMS(b)[d]:
            return False
    return True


cdef object ready_output(ndarray like, object out, ndarray other):
    """``out`` if the loops can write it (``like`` itself, or apart from it and from
    ``other``), a new array for None, else None."""
    if out is None:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(like), cnp.PyArray_DIMS(like),
                                 cnp.PyArray_TYPE(like), 0)
    if not is_ready(out):
        return None
    cdef ndarray o = <ndarray>out
    if not (cnp.PyArray_ISWRITEABLE(o) and cnp.PyArray_TYPE(o) == cnp.PyArray_TYPE(like)
            and same_array_shape(o, like)):
        return None
    if cnp.PyArray_BYTES(o) != cnp.PyArray_BYTES(like) and not apart(o, like):
        return None
    if other is not None and not apart(o, other):
        return None
    return o


cdef object ready_mask(object mask, Py_ssize_t n, bint writes):
    """The mask of ``n`` elements as the loops take it (a new one for None), else None."""
    if mask is None:
        return cnp.PyArray_EMPTY(1, [(n + 7) // 8], cnp.NPY_UINT8, 0) if writes else None
    if not (type(mask) is ndarray and cnp.PyArray_TYPE(<ndarray>mask) == cnp.NPY_UINT8
            and cnp.PyArray_NDIM(<ndarray>mask) == 1 and cnp.PyArray_IS_C_CONTIGUOUS(<ndarray>mask)
            and cnp.PyArray_DIMS(<ndarray>mask)[0] == (n + 7) // 8):
        return None
    if writes and not cnp.PyArray_ISWRITEABLE(<ndarray>mask):
        return None
    return mask


cdef inline bint slope_ready(object slope, ElementType etype, double* value):
    """A float slope within the range torch accepts for this type, no check needed."""
    if not isinstance(slope, float):
        return False
    value[0] = <double>slope
    return etype == FLOAT64 or fabs(value[0]) <= FLT_MAX


cdef extern from "float.h":
    const double FLT_MAX


cdef object ready_source(object a, bint leaky, object slope, double* s):
    """``a`` if the loops take it as it is, of a float type, with a slope that needs no
    check (``s`` gets it); else None."""
    if not is_ready(a):
        return None
    cdef ElementType etype = array_element_type(a)
    if not (is_float_type(etype) and (not leaky or slope_ready(slope, etype, s))):
        return None
    return a


def forward_fast(bint leaky, object x, object slope, object out, object mask):
    """``(out, mask)`` of the common call, or None to decline."""
    cdef double s = 0.0
    if ready_source(x, leaky, slope, &s) is None:
        return None
    cdef ndarray xa = <ndarray>x
    cdef Py_ssize_t n = cnp.PyArray_SIZE(xa)
    bits = ready_mask(mask, n, True)
    if bits is None or not apart(<ndarray>bits, xa):
        return None
    result = ready_output(xa, out, <ndarray>bits)
    if result is None:
        return None
    run_slices(False, leaky, xa, <ndarray>result, <ndarray>bits, s,
               threads_for(2 * cnp.PyArray_NBYTES(xa) + (n + 7) // 8))
    return result, bits


cdef object ready_backward(bint leaky, object g, object mask, object slope, object out,
                           double* s):
    """``(g, mask, out)`` of a backward pass's common call as the loops take them (``s``
    gets the slope), or None."""
    if ready_source(g, leaky, slope, s) is None:
        return None
    bits = ready_mask(mask, cnp.PyArray_SIZE(<ndarray>g), False)
    if bits is None:
        return None
    result = ready_output(<ndarray>g, out, <ndarray>bits)
    if result is None:
        return None
    return g, bits, result


def backward_fast(bint leaky, object g, object mask, object slope, object out):
    """The gradient of the common call, or None to decline."""
    cdef double s = 0.0
    operands = ready_backward(leaky, g, mask, slope, out, &s)
    if operands is None:
        return None
    ga, bits, result = operands
    cdef Py_ssize_t traffic = (2 * cnp.PyArray_NBYTES(<ndarray>ga)
                               + cnp.PyArray_NBYTES(<ndarray>bits))
    run_slices(True, leaky, <ndarray>ga, <ndarray>result, <ndarray>bits, s, threads_for(traffic))
    return result


def forward(bint leaky, ndarray x, ndarray out, ndarray mask, double slope, int n_threads):
    """``out = relu(x)`` or ``leaky_relu(x, slope)``, and ``mask`` its packed bits."""
    run_slices(False, leaky, x, out, mask, slope, n_threads)


def backward(bint leaky, ndarray g, ndarray mask, ndarray out, double slope, int n_threads):
    """``out = relu_backward`` or ``leaky_relu_backward`` of ``g`` where ``mask`` says."""
    run_slices(True, leaky, g, out, mask, slope, n_threads)


# ---------------------------------------------------------------------------------------
# A bias along the last axis (``cols`` elements per row) before the activation.

cdef enum:
    # The gradient of the bias is summed per chunk of rows, then the chunks' sums in chunk
    # order: a partition fixed by the shape alone, so that the result has the same bits
    # for any thread count. A chunk has at least this many elements (a thread's start is
    # paid for) and there are at most BIAS_MAX_CHUNKS of them, each at least
    # BIAS_SUMS_DEPTH rows deep (each keeps a row of partial sums, 16 bytes a column,
    # which must stay small next to the array: at most a quarter of a float16 chunk).
    BIAS_CHUNK_ELEMENTS = 65536
    BIAS_MAX_CHUNKS = 64
    BIAS_SUMS_DEPTH = 32


def bias_forward(bint leaky, ndarray x, ndarray bias, ndarray out, object mask, double slope,
                 int n_threads):
    """``out = relu(x + bias)`` (or leaky), and ``mask`` its bits unless None."""
    cdef ElementType etype = array_element_type(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef Py_ssize_t cols = cnp.PyArray_SIZE(bias)
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef const char* x_data = <const char*>cnp.PyArray_DATA(x)
    cdef const char* bias_data = <const char*>cnp.PyArray_DATA(bias)
    cdef char* out_data = <char*>cnp.PyArray_DATA(out)
    cdef uint8_t* mask_data = NULL
    cdef Py_ssize_t length = slice_length(n, max(n_threads, 1))
    cdef Py_ssize_t t, start, count
    cdef bint streaming = should_stream(out_data, x_data, n * itemsize)
    if mask is not None:
        mask_data = <uint8_t*>cnp.PyArray_DATA(<ndarray>mask)
    if n == 0:
        return
    with nogil:
        if n_threads <= 1:
            MASK_LOOPS.bias_forward(leaky, etype, x_data, bias_data, out_data, mask_data, 0, n,
                                    cols, slope, streaming)
        else:
            for t in prange(n_threads, num_threads=n_threads, schedule="static"):
                start = t * length
                count = min(length, n - start)
                if count > 0:
                    MASK_LOOPS.bias_forward(
                        leaky, etype, x_data + start * itemsize, bias_data,
                        out_data + start * itemsize,
                        mask_data + start // 8 if mask_data != NULL else NULL, start, count,
                        cols, slope, streaming)


def bias_forward_fast(bint leaky, bint with_mask, object x, object bias, object slope,
                      object out, object mask):
    """``bias_forward`` of the common call (``forward_fast``'s conditions, and a ready 1-D
    bias of x's type and last-axis length, apart from the outputs): the output, with the
    mask when ``with_mask``; else None to decline."""
    cdef double s = 0.0
    if ready_source(x, leaky, slope, &s) is None or not is_ready(bias):
        return None
    cdef ndarray xa = <ndarray>x
    cdef ndarray b = <ndarray>bias
    if not (cnp.PyArray_NDIM(b) == 1 and cnp.PyArray_TYPE(b) == cnp.PyArray_TYPE(xa)
            and cnp.PyArray_DIMS(b)[0] == cnp.PyArray_DIMS(xa)[cnp.PyArray_NDIM(xa) - 1]):
        return None
    cdef Py_ssize_t n = cnp.PyArray_SIZE(xa)
    bits = None
    if with_mask:
        bits = ready_mask(mask, n, True)
        if bits is None or not (apart(<ndarray>bits, xa) and apart(<ndarray>bits, b)):
            return None
    elif mask is not None:
        return None
    result = ready_output(xa, out, bits)
    if result is None or not apart(<ndarray>result, b):
        return None
    cdef Py_ssize_t traffic = 2 * cnp.PyArray_NBYTES(xa)
    if bits is not None:
        traffic += cnp.PyArray_NBYTES(<ndarray>bits)
    bias_forward(leaky, xa, b, <ndarray>result, bits, s, threads_for(traffic))
    return (result, bits) if with_mask else result


def bias_backward(bint leaky, ndarray g, ndarray mask, ndarray out, Py_ssize_t cols,
                  double slope, int n_threads):
    """``out`` the gradient of ``x + bias``; returns each column's sum of it, float64."""
    cdef ElementType etype = array_element_type(g)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(g)
    cdef Py_ssize_t rows = n // cols if cols > 0 else 0
    cdef Py_ssize_t chunk_rows = max(BIAS_SUMS_DEPTH, BIAS_CHUNK_ELEMENTS // max(cols, 1),
                                     (rows + BIAS_MAX_CHUNKS - 1) // BIAS_MAX_CHUNKS)
    cdef Py_ssize_t n_chunks = (rows + chunk_rows - 1) // chunk_rows
    cdef ndarray partial = cnp.PyArray_EMPTY(1, [2 * max(n_chunks, 1) * cols],
                                             cnp.NPY_DOUBLE, 0)
    cdef ndarray total = cnp.PyArray_ZEROS(1, [cols], cnp.NPY_DOUBLE, 0)
    cdef ndarray total_carries = cnp.PyArray_ZEROS(1, [cols], cnp.NPY_DOUBLE, 0)
    cdef double* sums = <double*>cnp.PyArray_DATA(partial)
    cdef double* carries = sums + max(n_chunks, 1) * cols
    cdef double* result = <double*>cnp.PyArray_DATA(total)
    cdef double* result_carries = <double*>cnp.PyArray_DATA(total_carries)
    cdef const char* g_data = <const char*>cnp.PyArray_DATA(g)
    cdef const uint8_t* mask_data = <const uint8_t*>cnp.PyArray_DATA(mask)
    cdef char* out_data = <char*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t k, j, first, count
    cdef bint streaming = should_stream(out_data, g_data, n * itemsize)
    if n == 0:
        return total
    with nogil:
        for k in prange(n_chunks, num_threads=max(1, min(n_threads, n_chunks)),
                        schedule="static"):
            first = k * chunk_rows * cols
            count = min(chunk_rows * cols, n - first)
            memset(sums + k * cols, 0, cols * sizeof(double))
            memset(carries + k * cols, 0, cols * sizeof(double))
            MASK_LOOPS.bias_backward(leaky, etype, g_data + first * itemsize, mask_data,
                                     out_data + first * itemsize, first, count, cols, slope,
                                     sums + k * cols, carries + k * cols, streaming)
        # The chunks in order, compensated too, with their own carries: per column the
        # arithmetic of a scalar loop over the chunks, vectorised across the columns.
        for k in range(n_chunks):
            fastact_sum_run_f64(result, result_carries, sums + k * cols, cols)
            for j in range(cols):
                result_carries[j] += carries[k * cols + j]
        for j in range(cols):
            result[j] += result_carries[j]
    return total


def bias_backward_fast(bint leaky, object g, object mask, object slope, object out):
    """``bias_backward`` of the common call (``backward_fast``'s conditions, ``g`` not
    0-d): ``(grad, sums, plain)``, ``plain`` when every column's float64 sum is finite
    and within the type's range (nothing left for the caller to mend before it rounds
    them); else None to decline."""
    cdef double s = 0.0
    operands = ready_backward(leaky, g, mask, slope, out, &s)
    if operands is None:
        return None
    ga, bits, result = operands
    cdef Py_ssize_t cols = cnp.PyArray_DIMS(<ndarray>ga)[cnp.PyArray_NDIM(<ndarray>ga) - 1]
    cdef ndarray sums = bias_backward(
        leaky, <ndarray>ga, <ndarray>bits, <ndarray>result, cols, s,
        threads_for(2 * cnp.PyArray_NBYTES(<ndarray>ga) + cnp.PyArray_NBYTES(<ndarray>bits)))
    cdef const double* values = <const double*>cnp.PyArray_DATA(sums)
    cdef double limit = largest(array_element_type(<ndarray>ga), True)
    cdef bint plain = True
    cdef Py_ssize_t j
    for j in range(cnp.PyArray_SIZE(sums)):
        # NaN fails the comparison too.
        plain = plain and fabs(values[j]) <= limit
    return result, sums, plain
