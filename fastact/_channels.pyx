"""PReLU's compiled loops: the leaky rule with one slope per channel, and the fused backward.

The arrays are C-contiguous, read as ``(outer, channels, inner)``: channel ``c`` of row
``o`` is ``inner`` contiguous elements. Each run of one channel goes to the very loop
``leaky_relu`` / ``leaky_relu_backward`` use (the build chosen at import), with that
channel's weight as the slope: long runs (NCHW images) contiguously, short ones (an
``(N, C)`` batch) through tiles of rows that stay in L1, one strided run per channel.

The weight gradient is the sum over everything but the channel axis of
``x > 0 ? 0 : x * g``, accumulated in float64 (compensated for float64 input) while the
tile is still in L1, so ``g`` and ``x`` are read from memory once. Rows are summed in
chunks whose size depends on the shape alone, and the chunks are combined in order: the
same bits for any thread count.
"""
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport fabs, isfinite
from libc.stdint cimport uint16_t
from libc.stdlib cimport free, malloc
from numpy cimport ndarray

from fastact import _kernels

from fastact._elementwise cimport bfloat16_t, float16_t, floating_t, widen
from fastact._kernels cimport active_loops, array_element_type, threads_for
from fastact._loops cimport (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    LEAKY_RELU,
    LEAKY_RELU_BACKWARD,
    ElementType,
    Op,
)

cnp.import_array()

cdef enum:
    # A channel run this long or longer is run on its own; shorter ones are tiled.
    LONG_RUN = 64
    # Elements of a tile of short runs: a few KiB, so that it stays in L1 between the
    # strided passes of its channels.
    TILE_ELEMENTS = 2048
    # Elements summed into one partial weight gradient: fixed by the shape, never by the
    # thread count, so the partials and their ordered sum are the same bits for any count.
    CHUNK_ELEMENTS = 1 << 16
    LANES = 8
    # Elements of a long run computed and then summed together: g, x and out of a part
    # (12 KiB for float32) stay in L1 between the two.
    L1_PART = 1024


# ---------------------------------------------------------------------------------------
# The weight-gradient terms, summed in float64: x * g is exact in float64 for every format
# but float64 itself, whose lanes are Neumaier-compensated. Eight independent lanes, so
# the compiler can keep them in vector registers without reordering any sum.

cdef extern from *:
    """
    /* The weight-gradient terms x > 0 ? 0 : x * g of a contiguous run, added into eight
     * float64 lanes (lane j takes elements j, j + 8, ...): independent lanes, so the
     * compiler vectorises the loop without reordering any sum, and the select is a blend.
     * x * g is exact in float64 below float64; float64 lanes carry Neumaier compensation.
     * One body for every element type, through its conversion to double. */
    #define FASTACT_DEFINE_TERM_SUM(NAME, T, TO_DOUBLE, COMPENSATED, TARGET)              \
    static TARGET void NAME(const T *g, const T *x, ptrdiff_t n, double *sum,         \
                            double *comp)                                              \
    {                                                                                  \
        ptrdiff_t i = 0;                                                               \
        for (; i + 8 <= n; i += 8)                                                     \
            for (int j = 0; j < 8; j++) {                                              \
                double xd = TO_DOUBLE(x[i + j]), p = xd * TO_DOUBLE(g[i + j]);         \
                double term = xd > 0 ? 0.0 : p;                                        \
                if (COMPENSATED) {                                                     \
                    double t = sum[j] + term;                                          \
                    comp[j] += fabs(sum[j]) >= fabs(term) ? (sum[j] - t) + term        \
                                                          : (term - t) + sum[j];       \
                    sum[j] = t;                                                        \
                } else {                                                               \
                    sum[j] += term;                                                    \
                }                                                                      \
            }                                                                          \
        for (int j = 0; i < n; i++, j++) {                                             \
            double xd = TO_DOUBLE(x[i]), p = xd * TO_DOUBLE(g[i]);                     \
            double term = xd > 0 ? 0.0 : p, t = sum[j] + term;                         \
            comp[j] += fabs(sum[j]) >= fabs(term) ? (sum[j] - t) + term                \
                                                  : (term - t) + sum[j];               \
            sum[j] = t;                                                                \
        }                                                                              \
    }
    /* The same body compiled for the wider vector units too, picked at run time by the
     * loop build _kernels chose for this CPU (set once at import). Only for the formats
     * whose products are exact in float64, so a fused multiply-add changes nothing. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #define FASTACT_TARGET_AVX2 __attribute__((target("avx2")))
    #define FASTACT_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
    #define FASTACT_DEFINE_TERM_SUM_ISA(NAME, T, TO_DOUBLE)                               \
    FASTACT_DEFINE_TERM_SUM(NAME##_base, T, TO_DOUBLE, 0, )                               \
    FASTACT_DEFINE_TERM_SUM(NAME##_avx2, T, TO_DOUBLE, 0, FASTACT_TARGET_AVX2)            \
    FASTACT_DEFINE_TERM_SUM(NAME##_avx512, T, TO_DOUBLE, 0, FASTACT_TARGET_AVX512)        \
    static void NAME(const T *g, const T *x, ptrdiff_t n, double *sum, double *comp)      \
    {                                                                                     \
        if (fastact_term_sum_level == 2) NAME##_avx512(g, x, n, sum, comp);               \
        else if (fastact_term_sum_level == 1) NAME##_avx2(g, x, n, sum, comp);            \
        else NAME##_base(g, x, n, sum, comp);                                             \
    }
    #else
    #define FASTACT_DEFINE_TERM_SUM_ISA(NAME, T, TO_DOUBLE)                               \
    FASTACT_DEFINE_TERM_SUM(NAME, T, TO_DOUBLE, 0, )
    #endif
    /* 0: baseline, 1: AVX2, 2: AVX-512; written once, at import, before any call. */
    static int fastact_term_sum_level = 0;
    #define FASTACT_AS_DOUBLE(v) ((double)(v))
    #define FASTACT_HALF_AS_DOUBLE(v) ((double)fastact_float16_to_float(v))
    #define FASTACT_BF16_AS_DOUBLE(v) ((double)fastact_bfloat16_to_float(v))
    """
    # Declared per type where the element structs are known (see below).

cdef extern from *:
    """
    FASTACT_DEFINE_TERM_SUM_ISA(fastact_term_sum_f32, float, FASTACT_AS_DOUBLE)
    FASTACT_DEFINE_TERM_SUM(fastact_term_sum_f64, double, FASTACT_AS_DOUBLE, 1, )
    FASTACT_DEFINE_TERM_SUM_ISA(fastact_term_sum_f16, uint16_t, FASTACT_HALF_AS_DOUBLE)
    FASTACT_DEFINE_TERM_SUM_ISA(fastact_term_sum_bf16, uint16_t, FASTACT_BF16_AS_DOUBLE)
    """
    int fastact_term_sum_level
    void fastact_term_sum_f32(const float* g, const float* x, Py_ssize_t n, double* sum,
                              double* comp) nogil
    void fastact_term_sum_f64(const double* g, const double* x, Py_ssize_t n, double* sum,
                              double* comp) nogil
    # 16-bit floats by their bits.
    void fastact_term_sum_f16(const uint16_t* g, const uint16_t* x, Py_ssize_t n,
                              double* sum, double* comp) nogil
    void fastact_term_sum_bf16(const uint16_t* g, const uint16_t* x, Py_ssize_t n,
                               double* sum, double* comp) nogil


cdef inline double as_double(floating_t v) noexcept nogil:
    if floating_t is float16_t or floating_t is bfloat16_t:
        return widen(v)
    else:
        return v


cdef inline void add_compensated(double* total, double* compensation,
                                 double value) noexcept nogil:
    cdef double t = total[0] + value
    compensation[0] += ((total[0] - t) + value if fabs(total[0]) >= fabs(value)
                        else (value - t) + total[0])
    total[0] = t


cdef inline double term_of(floating_t g, floating_t x) noexcept nogil:
    """``x > 0 ? 0 : x * g`` in float64; both operands loaded before the select."""
    cdef double xd = as_double(x)
    cdef double product = xd * as_double(g)
    # `> 0`, as the rule: NaN and ±0 take the product (a NaN propagates to the sum).
    return 0.0 if xd > 0 else product


cdef inline void sum_terms(const floating_t* g, const floating_t* x, Py_ssize_t step,
                           Py_ssize_t n, double* total,
                           double* compensation) noexcept nogil:
    """Add the ``n`` terms ``x > 0 ? 0 : x * g`` (element step ``step``) to the total."""
    cdef double lane_sum[LANES]
    cdef double lane_comp[LANES]
    cdef double term, t
    cdef Py_ssize_t i, j, block, blocked = n - n % LANES
    for j in range(LANES):
        lane_sum[j] = 0.0
        lane_comp[j] = 0.0
    for block in range(n // LANES):
        i = block * LANES
        for j in range(LANES):
            term = term_of(g[(i + j) * step], x[(i + j) * step])
            if floating_t is double:
                t = lane_sum[j] + term
                lane_comp[j] += ((lane_sum[j] - t) + term if fabs(lane_sum[j]) >= fabs(term)
                                 else (term - t) + lane_sum[j])
                lane_sum[j] = t
            else:
                lane_sum[j] += term
    for i in range(blocked, n):
        add_compensated(&lane_sum[0], &lane_comp[0], term_of(g[i * step], x[i * step]))
    for j in range(LANES):
        add_compensated(total, compensation, lane_sum[j])
        compensation[0] += lane_comp[j]


# The weight-gradient sums use the vector width of the loop build in use (set once here).
fastact_term_sum_level = {"avx512": 2, "avx2": 1}.get(_kernels.BUILD_INFO["simd"], 0)


cdef inline void sum_contiguous_terms(ElementType etype, const char* g, const char* x,
                                      Py_ssize_t n, double* total,
                                      double* compensation) noexcept nogil:
    """The terms of a contiguous run, in eight lanes, folded into the total."""
    cdef double lane_sum[8]
    cdef double lane_comp[8]
    cdef int j
    for j in range(8):
        lane_sum[j] = 0.0
        lane_comp[j] = 0.0
    if etype == FLOAT32:
        fastact_term_sum_f32(<const float*>g, <const float*>x, n, lane_sum, lane_comp)
    elif etype == FLOAT64:
        fastact_term_sum_f64(<const double*>g, <const double*>x, n, lane_sum, lane_comp)
    elif etype == FLOAT16:
        fastact_term_sum_f16(<const uint16_t*>g, <const uint16_t*>x, n, lane_sum, lane_comp)
    elif etype == BFLOAT16:
        fastact_term_sum_bf16(<const uint16_t*>g, <const uint16_t*>x, n, lane_sum, lane_comp)
    for j in range(8):
        add_compensated(total, compensation, lane_sum[j])
        compensation[0] += lane_comp[j]


cdef inline void sum_terms_of(ElementType etype, const char* g, const char* x,
                              Py_ssize_t step, Py_ssize_t n, double* total,
                              double* compensation) noexcept nogil:
    if etype == FLOAT32:
        sum_terms(<const float*>g, <const float*>x, step, n, total, compensation)
    elif etype == FLOAT64:
        sum_terms(<const double*>g, <const double*>x, step, n, total, compensation)
    elif etype == FLOAT16:
        sum_terms(<const float16_t*>g, <const float16_t*>x, step, n, total, compensation)
    elif etype == BFLOAT16:
        sum_terms(<const bfloat16_t*>g, <const bfloat16_t*>x, step, n, total, compensation)


# ---------------------------------------------------------------------------------------
# The driver: one chunk of rows at a time.

ctypedef struct Layout:
    ElementType etype
    Py_ssize_t itemsize
    Py_ssize_t outer
    Py_ssize_t channels
    Py_ssize_t inner
    Py_ssize_t rows_per_chunk


cdef void run_rows(Op op, const Layout* L, const char* g, const char* x, char* out,
                   const double* weight, Py_ssize_t first_row, Py_ssize_t n_rows,
                   double* total, double* compensation) noexcept nogil:
    """Rows [first_row, first_row + n_rows): ``op`` per channel run and, if ``total`` is
    not NULL, the weight-gradient terms of each channel added to ``total[c]``."""
    cdef Py_ssize_t row_bytes = L.channels * L.inner * L.itemsize
    cdef Py_ssize_t run_bytes = L.inner * L.itemsize
    cdef Py_ssize_t o, c, k, tile_rows, start, offset, rows
    cdef const char* src_g
    cdef Py_ssize_t part, length
    if L.inner >= LONG_RUN:
        for o in range(first_row, first_row + n_rows):
            for c in range(L.channels):
                # In parts that stay in L1, so that the sum reads what the loop just read.
                for part in range((L.inner + L1_PART - 1) // L1_PART):
                    length = min(<Py_ssize_t>L1_PART, L.inner - part * L1_PART)
                    offset = o * row_bytes + c * run_bytes + part * L1_PART * L.itemsize
                    src_g = (g if g != NULL else x) + offset
                    active_loops().run(op, L.etype, src_g, L.itemsize, x + offset,
                                       L.itemsize, out + offset, L.itemsize, length,
                                       weight[c], 0.0)
                    if total != NULL:
                        sum_contiguous_terms(L.etype, src_g, x + offset, length, &total[c],
                                             &compensation[c])
        return
    # Short runs: a tile of rows, then one strided pass per (channel, inner position).
    tile_rows = max(<Py_ssize_t>1, TILE_ELEMENTS // max(L.channels * L.inner, 1))
    start = first_row
    while start < first_row + n_rows:
        rows = min(tile_rows, first_row + n_rows - start)
        for c in range(L.channels):
            for k in range(L.inner):
                offset = start * row_bytes + (c * L.inner + k) * L.itemsize
                src_g = (g if g != NULL else x) + offset
                active_loops().run(op, L.etype, src_g, row_bytes, x + offset, row_bytes,
                                   out + offset, row_bytes, rows, weight[c], 0.0)
                if total != NULL:
                    sum_terms_of(L.etype, src_g, x + offset, row_bytes // L.itemsize, rows,
                                 &total[c], &compensation[c])
        start += rows


cdef void run_chunks(Op op, const Layout* L, const char* g, const char* x, char* out,
                     const double* weight, double* totals, double* compensations,
                     int n_threads) noexcept nogil:
    cdef Py_ssize_t n_chunks = (L.outer + L.rows_per_chunk - 1) // L.rows_per_chunk
    cdef Py_ssize_t chunk
    if n_threads == 1:  # no OpenMP region at all (a forked child may not start one)
        for chunk in range(n_chunks):
            run_chunk(op, L, g, x, out, weight, totals, compensations, chunk)
    else:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            run_chunk(op, L, g, x, out, weight, totals, compensations, chunk)


cdef inline void run_chunk(Op op, const Layout* L, const char* g, const char* x, char* out,
                           const double* weight, double* totals, double* compensations,
                           Py_ssize_t chunk) noexcept nogil:
    cdef Py_ssize_t first = chunk * L.rows_per_chunk
    run_rows(op, L, g, x, out, weight, first, min(L.rows_per_chunk, L.outer - first),
             NULL if totals == NULL else totals + chunk * L.channels,
             NULL if totals == NULL else compensations + chunk * L.channels)


cdef Layout layout_of(ndarray x, Py_ssize_t channels):
    cdef Layout L
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef int ndim = cnp.PyArray_NDIM(x)
    L.etype = array_element_type(x)
    L.itemsize = cnp.PyArray_ITEMSIZE(x)
    L.channels = channels
    L.outer = cnp.PyArray_DIMS(x)[0] if ndim >= 2 else 1
    L.inner = n // max(L.outer * channels, 1) if n else 0
    L.rows_per_chunk = max(<Py_ssize_t>1, CHUNK_ELEMENTS // max(channels * L.inner, 1))
    return L


# ---------------------------------------------------------------------------------------
# Entry points. The Python layer has validated everything: x (and g) C-contiguous, aligned,
# native, of a float type the loops cover; out of the same shape and type, not overlapping
# an input unless it is that input; weight a contiguous float64 array of ``channels``
# values, each exactly a value of x's type.

def prelu(ndarray x, ndarray weight, ndarray out):
    cdef Layout L = layout_of(x, cnp.PyArray_SIZE(weight))
    cdef const char* xp = <const char*>cnp.PyArray_DATA(x)
    cdef char* op = <char*>cnp.PyArray_DATA(out)
    cdef const double* w = <const double*>cnp.PyArray_DATA(weight)
    cdef int n_threads = threads_for(2 * cnp.PyArray_NBYTES(x))
    if cnp.PyArray_SIZE(x) == 0:
        return out
    with nogil:
        run_chunks(LEAKY_RELU, &L, NULL, xp, op, w, NULL, NULL, n_threads)
    return out


def prelu_backward(ndarray grad_output, ndarray x, ndarray weight, ndarray grad_input):
    """Writes grad_input; returns the weight gradient per channel as float64 (rounded to
    the weight's type by the caller)."""
    cdef Layout L = layout_of(x, cnp.PyArray_SIZE(weight))
    cdef Py_ssize_t n_chunks = max((L.outer + L.rows_per_chunk - 1) // L.rows_per_chunk, 1)
    cdef Py_ssize_t c, chunk
    cdef double* totals = <double*>malloc(2 * n_chunks * L.channels * sizeof(double))
    cdef double* compensations
    cdef double total, compensation
    cdef int n_threads = threads_for(3 * cnp.PyArray_NBYTES(x))
    if totals == NULL:
        raise MemoryError()
    compensations = totals + n_chunks * L.channels
    try:
        for c in range(2 * n_chunks * L.channels):
            totals[c] = 0.0
        if cnp.PyArray_SIZE(x) > 0:
            with nogil:
                run_chunks(LEAKY_RELU_BACKWARD, &L, <const char*>cnp.PyArray_DATA(grad_output),
                           <const char*>cnp.PyArray_DATA(x),
                           <char*>cnp.PyArray_DATA(grad_input),
                           <const double*>cnp.PyArray_DATA(weight), totals, compensations,
                           n_threads)
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
        free(totals)
