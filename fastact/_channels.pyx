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
from libc.string cimport memset
from numpy cimport ndarray

import importlib

import numpy as np

from fastact import _kernels
from fastact._dispatch import _LARGEST

from fastact._channel_loops cimport (
    FASTACT_CHANNEL_TABLE_NAME,
    LANES,
    LONG_RUN,
    ChannelTable,
    add_compensated,
)
from fastact._kernels cimport array_element_type, threads_for
from fastact._elementwise cimport bfloat16_t, float16_t, widen
from fastact._loops cimport FLOAT16, FLOAT32, FLOAT64, ElementType, is_float_type

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    # Declared here with the descriptors as pointers (NumPy's .pxd takes dtype objects).
    bint equivalent_types "PyArray_EquivTypes"(cnp.PyArray_Descr*, cnp.PyArray_Descr*) noexcept
    object new_like "PyArray_NewLikeArray"(ndarray, cnp.NPY_ORDER, cnp.PyArray_Descr*, int)

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
    # And at least this many per channel: each chunk keeps 16 bytes of partial sums per
    # channel, which would otherwise outweigh the data itself where a row holds many
    # channels (a quarter of a float16 chunk's bytes at most, an eighth of a float32's).
    SUMS_DEPTH = 32
    # Short runs: the forward pass's slopes cover rows up to this many elements (in L1).
    SLOPE_SPAN = 1024


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
    const double* slopes  # short runs: the weights spread over slope_rows rows; else NULL
    Py_ssize_t slope_rows


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
    cdef Py_ssize_t grouped
    if g == NULL and L.slopes != NULL:
        # Short runs: slope_rows rows at a time are one row of that many times the
        # channels (the slopes are spread that far), so that each vector loop is long.
        grouped = rows // L.slope_rows
        if grouped:
            CHANNEL_LOOPS.forward(L.etype, x + offset, out + offset, L.weight, L.slopes,
                                  grouped, L.channels * L.slope_rows, L.inner)
        offset += grouped * L.slope_rows * L.channels * L.inner * L.itemsize
        if rows > grouped * L.slope_rows:
            CHANNEL_LOOPS.forward(L.etype, x + offset, out + offset, L.weight, L.slopes, 1,
                                  L.channels * (rows - grouped * L.slope_rows), L.inner)
    elif g == NULL:
        CHANNEL_LOOPS.forward(L.etype, x + offset, out + offset, L.weight, L.slopes, rows,
                              L.channels, L.inner)
    else:
        CHANNEL_LOOPS.backward(L.etype, g + offset, x + offset, out + offset, L.weight,
                               L.slopes, rows, L.channels, L.inner,
                               totals + chunk * L.channels, compensations + chunk * L.channels,
                               lanes)


cdef Layout layout_of(ndarray x, const double* weight, Py_ssize_t channels):
    cdef Layout L
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef int ndim = cnp.PyArray_NDIM(x)
    L.etype = array_element_type(x)
    L.itemsize = cnp.PyArray_ITEMSIZE(x)
    L.channels = channels
    L.outer = cnp.PyArray_DIMS(x)[0] if ndim >= 2 else 1
    L.inner = n // max(L.outer * channels, 1) if n else 0
    L.rows_per_chunk = max(<Py_ssize_t>1, CHUNK_ELEMENTS // max(channels * L.inner, 1),
                           (SUMS_DEPTH + L.inner - 1) // max(L.inner, 1))
    L.weight = weight
    L.slopes = NULL
    L.slope_rows = 1
    return L


cdef double* spread_slopes(Layout* L) except? NULL:
    """Short runs: the weights spread over ``slope_rows`` rows, about SLOPE_SPAN elements
    (the caller frees them); NULL if the runs are long."""
    cdef Py_ssize_t c, k, r, row_length = L.channels * L.inner
    cdef double* slopes
    if L.inner >= LONG_RUN or row_length == 0:
        return NULL
    # No more rows than there are (a small array would otherwise fill SLOPE_SPAN slopes).
    L.slope_rows = max(<Py_ssize_t>1, min(SLOPE_SPAN // row_length, L.outer))
    if L.slope_rows == 1 and L.inner == 1:  # one row of one slope per channel: the weight
        L.slopes = L.weight
        return NULL
    slopes = <double*>malloc(L.slope_rows * row_length * sizeof(double))
    if slopes == NULL:
        raise MemoryError()
    with nogil:  # a row may hold millions of channels
        for r in range(L.slope_rows):
            for c in range(L.channels):
                for k in range(L.inner):
                    slopes[r * row_length + c * L.inner + k] = L.weight[c]
    L.slopes = slopes
    return slopes


# ---------------------------------------------------------------------------------------
# The passes. x (and g) C-contiguous, aligned, native, of a float type the loops cover;
# out of the same shape and type, not overlapping an input unless it is that input;
# ``weight`` one float64 per channel, each exactly a value of x's type.

cdef object forward_pass(ndarray x, const double* weight, Py_ssize_t channels, ndarray out):
    cdef Layout L = layout_of(x, weight, channels)
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


cdef int backward_pass(ndarray g, ndarray x, const double* weight, Py_ssize_t channels,
                       ndarray grad_input, double* result) except -1:
    """Writes grad_input, and the weight gradient per channel as float64 to ``result``."""
    cdef Layout L = layout_of(x, weight, channels)
    cdef Py_ssize_t n_chunks = max((L.outer + L.rows_per_chunk - 1) // L.rows_per_chunk, 1)
    cdef Py_ssize_t c, chunk
    cdef double* totals = <double*>malloc(2 * n_chunks * L.channels * sizeof(double))
    cdef double* compensations
    cdef double* slopes = NULL
    cdef double* lanes = NULL
    cdef double total, compensation
    cdef int n_threads = threads_for(3 * cnp.PyArray_NBYTES(x))
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    if totals == NULL:
        raise MemoryError()
    compensations = totals + n_chunks * L.channels
    try:
        if L.inner >= LONG_RUN:
            lanes = <double*>malloc(n_threads * lane_count(&L) * sizeof(double))
            if lanes == NULL:
                raise MemoryError()
        if n > 0:
            slopes = spread_slopes(&L)
        # Everything below is per element or per channel, and a row may hold millions of
        # channels: none of it holds the GIL.
        with nogil:
            memset(totals, 0, 2 * n_chunks * L.channels * sizeof(double))
            if n > 0:
                run_chunks(&L, <const char*>cnp.PyArray_DATA(g),
                           <const char*>cnp.PyArray_DATA(x),
                           <char*>cnp.PyArray_DATA(grad_input), totals, compensations,
                           lanes, n_threads)
            for c in range(L.channels):
                total = compensation = 0.0
                for chunk in range(n_chunks):
                    add_compensated(&total, &compensation, totals[chunk * L.channels + c])
                    compensation += compensations[chunk * L.channels + c]
                # An infinite total has a NaN compensation (inf - inf): it stands alone.
                result[c] = total + compensation if isfinite(total) else total
        return 0
    finally:
        free(lanes)
        free(slopes)
        free(totals)


# ---------------------------------------------------------------------------------------
# Entry points for the Python layer, which has validated everything (see the passes).

def prelu(ndarray x, ndarray weight, ndarray out):
    return forward_pass(x, <const double*>cnp.PyArray_DATA(weight), cnp.PyArray_SIZE(weight),
                        out)


def prelu_backward(ndarray grad_output, ndarray x, ndarray weight, ndarray grad_input):
    """Writes grad_input; returns the weight gradient per channel as float64 (rounded to
    the weight's type by the caller)."""
    result = cnp.PyArray_ZEROS(1, cnp.PyArray_DIMS(weight), cnp.NPY_DOUBLE, 0)
    backward_pass(grad_output, x, <const double*>cnp.PyArray_DATA(weight),
                  cnp.PyArray_SIZE(weight), grad_input, <double*>cnp.PyArray_DATA(result))
    return result


# ---------------------------------------------------------------------------------------
# The common call, checked here rather than in Python, whose checks cost more than the
# pass itself up to about 2^18 elements: exact ndarrays, C-contiguous, aligned, native, of
# one float type; x at least 1-D (2-D backward); a contiguous 1-D weight of one value per
# channel (forward: also one value, as an array, a NumPy scalar or a Python float); an
# ``out`` apart from x or x itself. Anything else declines (None) to the general path.

cdef bint is_ready(object a) noexcept:
    if type(a) is not ndarray:
        return False
    cdef ndarray arr = <ndarray>a
    return (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr) and is_float_type(array_element_type(arr)))


cdef bint is_like(ndarray a, ndarray like) noexcept:
    """Same shape and type."""
    return (cnp.PyArray_NDIM(a) == cnp.PyArray_NDIM(like)
            and cnp.PyArray_CompareLists(cnp.PyArray_DIMS(a), cnp.PyArray_DIMS(like),
                                         cnp.PyArray_NDIM(a))
            and equivalent_types(cnp.PyArray_DESCR(a), cnp.PyArray_DESCR(like)))


cdef bint weight_ready(object weight, ndarray x) noexcept:
    if not (cnp.PyArray_NDIM(x) >= 2 and is_ready(weight)):
        return False
    cdef ndarray w = <ndarray>weight
    return (cnp.PyArray_NDIM(w) == 1 and cnp.PyArray_DIMS(w)[0] == cnp.PyArray_DIMS(x)[1]
            and equivalent_types(cnp.PyArray_DESCR(w), cnp.PyArray_DESCR(x)))


cdef void widen_into(ndarray w, double* values) noexcept:
    """The weight's values as float64 (exact), without the GIL (one per channel, and a
    row may hold millions of channels)."""
    cdef Py_ssize_t c, count = cnp.PyArray_SIZE(w)
    cdef ElementType etype = array_element_type(w)
    cdef const void* data = cnp.PyArray_DATA(w)
    with nogil:
        for c in range(count):
            if etype == FLOAT32:
                values[c] = (<const float*>data)[c]
            elif etype == FLOAT64:
                values[c] = (<const double*>data)[c]
            elif etype == FLOAT16:
                values[c] = widen((<const float16_t*>data)[c])
            else:
                values[c] = widen((<const bfloat16_t*>data)[c])


cdef double* widened_weight(ndarray w) except NULL:
    """The weight as float64 (exact), in memory the caller frees."""
    cdef double* weight = <double*>malloc(max(cnp.PyArray_SIZE(w), 1) * sizeof(double))
    if weight == NULL:
        raise MemoryError()
    widen_into(w, weight)
    return weight


cdef int read_forward_weight(object weight, ndarray x, Py_ssize_t channels,
                             double* values) except -1:
    """One float64 slope per channel into ``values`` from the forward pass's common
    weights: an array of x's type (0-d, or 1-D of one or ``channels`` values), a NumPy
    scalar of that type, or a Python float (rounded as the general path rounds it; a
    finite value that would overflow declines, for the general path to refuse). 0 to
    decline."""
    cdef ElementType etype = array_element_type(x)
    cdef double value
    cdef float rounded
    cdef Py_ssize_t c, count
    if type(weight) is float and (etype == FLOAT32 or etype == FLOAT64):
        value = <double>weight
        if etype == FLOAT32:
            rounded = <float>value
            if isfinite(value) and not isfinite(rounded):
                return 0
            value = rounded
        for c in range(channels):
            values[c] = value
        return 1
    if type(weight) is float:
        # A 16-bit type: rounded through float32 (as torch rounds a number into a 16-bit
        # tensor), then by NumPy's cast (ml_dtypes' for bfloat16), as the general path
        # rounds it. A finite value beyond the type's largest declines before the casts
        # (which would warn), for the general path to refuse or round it.
        if isfinite(weight) and abs(weight) > _LARGEST[x.dtype.name]:
            return 0
        weight = np.asarray(weight, np.float32).astype(x.dtype)
    if isinstance(weight, np.generic):
        weight = np.asarray(weight)
    if not is_ready(weight):
        return 0
    cdef ndarray w = <ndarray>weight
    count = cnp.PyArray_SIZE(w)
    if not (equivalent_types(cnp.PyArray_DESCR(w), cnp.PyArray_DESCR(x))
            and (cnp.PyArray_NDIM(w) == 0
                 or (cnp.PyArray_NDIM(w) == 1 and (count == 1 or count == channels)))):
        return 0
    widen_into(w, values)
    with nogil:
        for c in range(count, channels):
            values[c] = values[0]
    return 1


cdef bint output_ready(object out, ndarray x) noexcept:
    """``out`` is x itself, or an array like x that shares no memory with it."""
    if not is_ready(out):
        return False
    cdef ndarray o = <ndarray>out
    if o is x:
        return cnp.PyArray_ISWRITEABLE(o)
    cdef char* start = <char*>cnp.PyArray_DATA(o)
    cdef char* x_start = <char*>cnp.PyArray_DATA(x)
    return (is_like(o, x) and cnp.PyArray_ISWRITEABLE(o)
            and (start >= x_start + cnp.PyArray_NBYTES(x)
                 or x_start >= start + cnp.PyArray_NBYTES(o)))


def prelu_fast(object x, object weight, object out):
    """The common call's result, or None to decline."""
    if not (is_ready(x) and cnp.PyArray_NDIM(<ndarray>x) >= 1):
        return None
    cdef ndarray xa = <ndarray>x
    cdef Py_ssize_t channels = cnp.PyArray_DIMS(xa)[1] if cnp.PyArray_NDIM(xa) >= 2 else 1
    if out is not None and not output_ready(out, xa):
        return None
    cdef double* weight64 = <double*>malloc(max(channels, 1) * sizeof(double))
    if weight64 == NULL:
        raise MemoryError()
    try:
        if not read_forward_weight(weight, xa, channels, weight64):
            return None
        if out is None:
            out = new_like(xa, cnp.NPY_CORDER, NULL, 0)
        return forward_pass(xa, weight64, channels, <ndarray>out)
    finally:
        free(weight64)


def prelu_backward_fast(object grad_output, object x, object weight, object out):
    """``(grad_input, grad_weight)`` of the common call, grad_weight still float64 for a
    16-bit type (the caller rounds it as NumPy does); or None to decline. An ``out`` must
    be clear of both inputs: the loops read ``g`` again after writing ``grad_input``."""
    if not (is_ready(x) and is_ready(grad_output) and weight_ready(weight, <ndarray>x)
            and is_like(<ndarray>grad_output, <ndarray>x)):
        return None
    cdef ndarray xa = <ndarray>x
    cdef ndarray wa = <ndarray>weight
    cdef ElementType etype = array_element_type(xa)
    cdef Py_ssize_t c, channels = cnp.PyArray_SIZE(wa)
    if out is None:
        grad_input = new_like(xa, cnp.NPY_CORDER, NULL, 0)
    elif (output_ready(out, xa) and out is not x and output_ready(out, <ndarray>grad_output)
            and out is not grad_output):
        grad_input = out
    else:
        return None
    cdef ndarray sums = cnp.PyArray_EMPTY(1, cnp.PyArray_DIMS(wa), cnp.NPY_DOUBLE, 0)
    cdef double* weight64 = widened_weight(wa)
    try:
        backward_pass(<ndarray>grad_output, xa, weight64, channels, <ndarray>grad_input,
                      <double*>cnp.PyArray_DATA(sums))
    finally:
        free(weight64)
    if etype != FLOAT32:
        return grad_input, sums
    # Rounded once, as NumPy's cast: a sum beyond float32 becomes infinite, silently.
    grad_weight = cnp.PyArray_EMPTY(1, cnp.PyArray_DIMS(wa), cnp.NPY_FLOAT, 0)
    for c in range(channels):
        (<float*>cnp.PyArray_DATA(grad_weight))[c] = <float>(<double*>cnp.PyArray_DATA(sums))[c]
    return grad_input, grad_weight
