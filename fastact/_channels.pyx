"""PReLU's entry points: the per-channel loops of ``_channel_loops`` over threads.

The arrays are C-contiguous, read as ``(outer, channels, inner)``: channel ``c`` of row
``o`` is ``inner`` contiguous elements. The loops (the build ``_kernels`` chose at import)
run a block of rows at a time; the backward pass writes ``grad_input`` and sums the weight
gradient, ``x > 0 ? 0 : x * g`` over everything but the channel axis, in float64 in the
same pass over ``g`` and ``x``. Rows are summed in chunks whose size depends on the shape
alone, and the chunks are combined in order: the same bits for any thread count.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer
from cython.parallel cimport prange, threadid
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc
from numpy cimport ndarray

import importlib

from fastact import _kernels

from fastact._channel_loops cimport (
    FASTACT_CHANNEL_TABLE_NAME,
    LANES,
    LONG_RUN,
    ChannelTable,
    add_compensated,
)
from fastact._kernels cimport array_element_type, threads_for
from fastact._loops cimport ElementType

cnp.import_array()

_CHANNEL_CAPSULE = importlib.import_module(
    f"fastact._loops_{_kernels.BUILD_INFO['simd']}").channel_table
cdef const ChannelTable* CHANNEL_LOOPS = <const ChannelTable*>PyCapsule_GetPointer(
    _CHANNEL_CAPSULE, FASTACT_CHANNEL_TABLE_NAME)

#: The instruction set of the channel loops in use (the same as the other loops').
ISA = CHANNEL_LOOPS.isa.decode()

cdef enum:
    # Elements summed into one partial weight gradient: fixed by the shape, never by the
    # thread count, so the partials and their ordered sum are the same bits for any count.
    CHUNK_ELEMENTS = 1 << 16


# ---------------------------------------------------------------------------------------
# The driver: one chunk of rows at a time.

ctypedef struct Layout:
    ElementType etype
    Py_ssize_t itemsize
    Py_ssize_t outer
    Py_ssize_t channels
    Py_ssize_t inner
    Py_ssize_t rows_per_chunk
    const double* weight  # one per channel
    const double* slopes  # short runs: the weights spread over a row; else NULL


cdef void run_chunks(const Layout* L, const char* g, const char* x, char* out,
                     double* totals, double* compensations, double* lanes,
                     int n_threads) noexcept nogil:
    """The forward pass if ``g`` is NULL, else the backward pass with chunk ``k``'s
    weight-gradient sums in ``totals[k * channels:]`` (and their compensations); each
    thread's scratch lanes are ``lanes[t * lane_count(L):]``."""
    cdef Py_ssize_t n_chunks = (L.outer + L.rows_per_chunk - 1) // L.rows_per_chunk
    cdef Py_ssize_t chunk
    if n_threads == 1:  # no OpenMP region at all (a forked child may not start one)
        for chunk in range(n_chunks):
            run_chunk(L, g, x, out, totals, compensations, lanes, chunk)
    else:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            run_chunk(L, g, x, out, totals, compensations,
                      lanes + threadid() * lane_count(L) if lanes != NULL else NULL, chunk)


cdef inline Py_ssize_t lane_count(const Layout* L) noexcept nogil:
    """The scratch of one thread's backward pass: the lanes of every channel and their
    compensations."""
    return 2 * LANES * L.channels


cdef inline void run_chunk(const Layout* L, const char* g, const char* x, char* out,
                           double* totals, double* compensations, double* lanes,
                           Py_ssize_t chunk) noexcept nogil:
    cdef Py_ssize_t first = chunk * L.rows_per_chunk
    cdef Py_ssize_t rows = min(L.rows_per_chunk, L.outer - first)
    cdef Py_ssize_t offset = first * L.channels * L.inner * L.itemsize
    if g == NULL:
        CHANNEL_LOOPS.forward(L.etype, x + offset, out + offset, L.weight, L.slopes, rows,
                              L.channels, L.inner)
    else:
        CHANNEL_LOOPS.backward(L.etype, g + offset, x + offset, out + offset, L.weight,
                               L.slopes, rows, L.channels, L.inner,
                               totals + chunk * L.channels, compensations + chunk * L.channels,
                               lanes)


cdef Layout layout_of(ndarray x, ndarray weight):
    cdef Layout L
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef Py_ssize_t channels = cnp.PyArray_SIZE(weight)
    cdef int ndim = cnp.PyArray_NDIM(x)
    L.etype = array_element_type(x)
    L.itemsize = cnp.PyArray_ITEMSIZE(x)
    L.channels = channels
    L.outer = cnp.PyArray_DIMS(x)[0] if ndim >= 2 else 1
    L.inner = n // max(L.outer * channels, 1) if n else 0
    L.rows_per_chunk = max(<Py_ssize_t>1, CHUNK_ELEMENTS // max(channels * L.inner, 1))
    L.weight = <const double*>cnp.PyArray_DATA(weight)
    L.slopes = NULL
    return L


cdef double* spread_slopes(Layout* L) except? NULL:
    """Short runs: the weights spread over a row (the caller frees them); NULL if the runs
    are long."""
    cdef Py_ssize_t c, k
    cdef double* slopes
    if L.inner >= LONG_RUN or L.channels * L.inner == 0:
        return NULL
    slopes = <double*>malloc(L.channels * L.inner * sizeof(double))
    if slopes == NULL:
        raise MemoryError()
    for c in range(L.channels):
        for k in range(L.inner):
            slopes[c * L.inner + k] = L.weight[c]
    L.slopes = slopes
    return slopes


# ---------------------------------------------------------------------------------------
# Entry points. The Python layer has validated everything: x (and g) C-contiguous, aligned,
# native, of a float type the loops cover; out of the same shape and type, not overlapping
# an input unless it is that input; weight a contiguous float64 array of ``channels``
# values, each exactly a value of x's type.

def prelu(ndarray x, ndarray weight, ndarray out):
    cdef Layout L = layout_of(x, weight)
    cdef int n_threads = threads_for(2 * cnp.PyArray_NBYTES(x))
    cdef double* slopes
    if cnp.PyArray_SIZE(x) == 0:
        return out
    slopes = spread_slopes(&L)
    try:
        with nogil:
            run_chunks(&L, NULL, <const char*>cnp.PyArray_DATA(x),
                       <char*>cnp.PyArray_DATA(out), NULL, NULL, NULL, n_threads)
    finally:
        free(slopes)
    return out


def prelu_backward(ndarray grad_output, ndarray x, ndarray weight, ndarray grad_input):
    """Writes grad_input; returns the weight gradient per channel as float64 (rounded to
    the weight's type by the caller)."""
    cdef Layout L = layout_of(x, weight)
    cdef Py_ssize_t n_chunks = max((L.outer + L.rows_per_chunk - 1) // L.rows_per_chunk, 1)
    cdef Py_ssize_t c, chunk
    cdef double* totals = <double*>malloc(2 * n_chunks * L.channels * sizeof(double))
    cdef double* compensations
    cdef double* slopes = NULL
    cdef double* lanes = NULL
    cdef double total, compensation
    cdef int n_threads = threads_for(3 * cnp.PyArray_NBYTES(x))
    if totals == NULL:
        raise MemoryError()
    compensations = totals + n_chunks * L.channels
    try:
        if L.inner >= LONG_RUN:
            lanes = <double*>malloc(n_threads * lane_count(&L) * sizeof(double))
            if lanes == NULL:
                raise MemoryError()
        for c in range(2 * n_chunks * L.channels):
            totals[c] = 0.0
        if cnp.PyArray_SIZE(x) > 0:
            slopes = spread_slopes(&L)
            with nogil:
                run_chunks(&L, <const char*>cnp.PyArray_DATA(grad_output),
                           <const char*>cnp.PyArray_DATA(x),
                           <char*>cnp.PyArray_DATA(grad_input), totals, compensations,
                           lanes, n_threads)
        result = cnp.PyArray_ZEROS(1, cnp.PyArray_DIMS(weight), cnp.NPY_DOUBLE, 0)
        for c in range(L.channels):
            total = compensation = 0.0
            for chunk in range(n_chunks):
                add_compensated(&total, &compensation, totals[chunk * L.channels + c])
                compensation += compensations[chunk * L.channels + c]
            # An infinite total has a NaN compensation (inf - inf): it stands alone.
            (<double*>cnp.PyArray_DATA(result))[c] = (total + compensation if isfinite(total)
                                                      else total)
        return result
    finally:
        free(lanes)
        free(slopes)
        free(totals)
