"""Compiled loops of fastact and the entry points the Python layer calls.

The loops (declared in ``_kernels.pxd``) are one fused-type body each. The entry points
take ndarrays straight from Python, read their data pointers through the NumPy C API and
run the loop with the GIL released. An entry point returns ``None`` whenever its input is
not something the loops cover (wrong dtype, layout or byte order, partial overlap of
``out`` with an input, anything invalid): the Python layer then validates, raises the
proper error or computes through the NumPy reference. It never raises by itself.
"""
cimport numpy as cnp
from numpy cimport ndarray, npy_intp
from libc.string cimport memcpy

from fastact._elementwise cimport (
    leaky_relu_backward_rule,
    leaky_relu_grad_rule,
    leaky_relu_rule,
    relu_backward_rule,
    relu_grad_rule,
    relu_rule,
)

cnp.import_array()

cdef extern from *:
    """
    #if defined(__clang__)
    #  define FASTACT_COMPILER "clang " __clang_version__
    #elif defined(__GNUC__)
    #  define FASTACT_COMPILER "gcc " __VERSION__
    #elif defined(_MSC_VER)
    #  define FASTACT_STR2(v) #v
    #  define FASTACT_STR(v) FASTACT_STR2(v)
    #  define FASTACT_COMPILER "msvc " FASTACT_STR(_MSC_FULL_VER)
    #else
    #  define FASTACT_COMPILER "unknown"
    #endif
    #ifndef FASTACT_CFLAGS
    #  define FASTACT_CFLAGS "unknown"
    #endif
    #ifndef FASTACT_CYTHON_VERSION
    #  define FASTACT_CYTHON_VERSION "unknown"
    #endif
    #ifndef FASTACT_NUMPY_VERSION
    #  define FASTACT_NUMPY_VERSION "unknown"
    #endif
    """
    const char* FASTACT_COMPILER
    const char* FASTACT_CFLAGS
    const char* FASTACT_CYTHON_VERSION
    const char* FASTACT_NUMPY_VERSION


# ---------------------------------------------------------------------------------------
# The loops. Every operand is loaded before the select, so the compiler can turn the
# ternary into a vector compare + blend instead of a branch (random signs would make a
# branch mispredict half the time). The rules themselves, with the reasons for each
# comparison, are written once in _elementwise.pxd and shared with the ufunc loops.

cdef void relu_kernel(const signed_t* x, signed_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef signed_t xi
    for i in range(n):
        xi = x[i]
        out[i] = relu_rule(xi)


cdef void leaky_relu_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                            floating_t negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i]
        out[i] = leaky_relu_rule(xi, negative_slope)


cdef void relu_grad_kernel(const floating_t* x, floating_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i]
        out[i] = relu_grad_rule(xi)


cdef void leaky_relu_grad_kernel(const floating_t* x, floating_t* out, Py_ssize_t n,
                                 floating_t negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t xi
    for i in range(n):
        xi = x[i]
        out[i] = leaky_relu_grad_rule(xi, negative_slope)


cdef void relu_backward_kernel(const floating_t* grad_output, const floating_t* x,
                               floating_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t gi, xi
    for i in range(n):
        gi = grad_output[i]
        xi = x[i]
        out[i] = relu_backward_rule(gi, xi)


cdef void leaky_relu_backward_kernel(const floating_t* grad_output, const floating_t* x,
                                     floating_t* out, Py_ssize_t n,
                                     floating_t negative_slope) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating_t gi, xi
    for i in range(n):
        gi = grad_output[i]
        xi = x[i]
        out[i] = leaky_relu_backward_rule(gi, xi, negative_slope)


# ---------------------------------------------------------------------------------------
# Dispatch from (operation, element type) to a loop.

cdef enum Op:
    RELU
    LEAKY_RELU
    RELU_GRAD
    LEAKY_RELU_GRAD
    RELU_BACKWARD
    LEAKY_RELU_BACKWARD

# The element types the loops cover; the one place that maps NumPy dtypes onto them.
cdef enum ElementType:
    UNSUPPORTED
    FLOAT32
    FLOAT64
    INT8
    INT16
    INT32
    INT64
    UNSIGNED  # any width: relu is the identity on it

KERNEL_DTYPES = {
    "relu": ("float32", "float64", "int8", "int16", "int32", "int64",
             "uint8", "uint16", "uint32", "uint64"),
    "leaky_relu": ("float32", "float64"),
    "relu_grad": ("float32", "float64"),
    "leaky_relu_grad": ("float32", "float64"),
    "relu_backward": ("float32", "float64"),
    "leaky_relu_backward": ("float32", "float64"),
    "dead_units": ("float32", "float64"),
    "dead_fraction": ("float32", "float64"),
}

BUILD_INFO = {
    "compiler": FASTACT_COMPILER.decode(),
    "cflags": FASTACT_CFLAGS.decode(),
    "cython": FASTACT_CYTHON_VERSION.decode(),
    "built_against_numpy": FASTACT_NUMPY_VERSION.decode(),
}


cdef ElementType element_type(ndarray a) noexcept:
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef npy_intp itemsize = cnp.PyArray_ITEMSIZE(a)
    if typenum == cnp.NPY_FLOAT:
        return FLOAT32
    if typenum == cnp.NPY_DOUBLE:
        return FLOAT64
    # By width, not type number: C long and long long are distinct NumPy types of one size.
    if cnp.PyTypeNum_ISSIGNED(typenum) and cnp.PyTypeNum_ISINTEGER(typenum):
        if itemsize == 1:
            return INT8
        if itemsize == 2:
            return INT16
        if itemsize == 4:
            return INT32
        if itemsize == 8:
            return INT64
    if cnp.PyTypeNum_ISUNSIGNED(typenum):
        return UNSIGNED
    return UNSUPPORTED


cdef inline void run_float_unary(Op op, const floating_t* x, floating_t* out, Py_ssize_t n,
                                 floating_t negative_slope) noexcept nogil:
    if op == RELU:
        relu_kernel(x, out, n)
    elif op == LEAKY_RELU:
        leaky_relu_kernel(x, out, n, negative_slope)
    elif op == RELU_GRAD:
        relu_grad_kernel(x, out, n)
    else:
        leaky_relu_grad_kernel(x, out, n, negative_slope)


cdef inline void run_float_binary(Op op, const floating_t* grad_output, const floating_t* x,
                                  floating_t* out, Py_ssize_t n,
                                  floating_t negative_slope) noexcept nogil:
    if op == RELU_BACKWARD:
        relu_backward_kernel(grad_output, x, out, n)
    else:
        leaky_relu_backward_kernel(grad_output, x, out, n, negative_slope)


cdef void run_unary(Op op, ElementType etype, const void* x, void* out, Py_ssize_t n,
                    npy_intp itemsize, double negative_slope) noexcept nogil:
    # The slope is rounded to the element type first, as torch does.
    if etype == FLOAT32:
        run_float_unary(op, <const float*>x, <float*>out, n, <float>negative_slope)
    elif etype == FLOAT64:
        run_float_unary(op, <const double*>x, <double*>out, n, negative_slope)
    elif etype == INT8:
        relu_kernel(<const int8_t*>x, <int8_t*>out, n)
    elif etype == INT16:
        relu_kernel(<const int16_t*>x, <int16_t*>out, n)
    elif etype == INT32:
        relu_kernel(<const int32_t*>x, <int32_t*>out, n)
    elif etype == INT64:
        relu_kernel(<const int64_t*>x, <int64_t*>out, n)
    elif etype == UNSIGNED and x != out:
        memcpy(out, x, n * itemsize)


cdef void run_binary(Op op, ElementType etype, const void* grad_output, const void* x,
                     void* out, Py_ssize_t n, double negative_slope) noexcept nogil:
    if etype == FLOAT32:
        run_float_binary(op, <const float*>grad_output, <const float*>x, <float*>out, n,
                         <float>negative_slope)
    else:
        run_float_binary(op, <const double*>grad_output, <const double*>x, <double*>out, n,
                         negative_slope)


# ---------------------------------------------------------------------------------------
# Layout checks: what the flat loops can take without a copy.

cdef inline bint is_kernel_array(object a) noexcept:
    """An exact ndarray of at least one dimension, contiguous, aligned, native order."""
    if type(a) is not ndarray:
        return False
    cdef ndarray arr = <ndarray>a
    return (cnp.PyArray_NDIM(arr) > 0
            and (cnp.PyArray_ISCARRAY_RO(arr) or cnp.PyArray_ISFARRAY_RO(arr))
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint same_geometry(ndarray a, ndarray b) noexcept:
    """Same element type, shape and element order in memory (both C or both Fortran)."""
    cdef int ndim = cnp.PyArray_NDIM(a)
    cdef int d
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b) or cnp.PyArray_NDIM(b) != ndim:
        return False
    for d in range(ndim):
        if cnp.PyArray_DIMS(a)[d] != cnp.PyArray_DIMS(b)[d]:
            return False
    return ((cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_IS_C_CONTIGUOUS(b))
            or (cnp.PyArray_IS_F_CONTIGUOUS(a) and cnp.PyArray_IS_F_CONTIGUOUS(b)))


cdef inline bint overlaps_partially(ndarray a, ndarray b) noexcept:
    """The buffers share bytes without being the very same elements.

    Exactly equal buffers are safe: each loop reads element i before writing element i.
    """
    cdef char* a_start = cnp.PyArray_BYTES(a)
    cdef char* b_start = cnp.PyArray_BYTES(b)
    cdef npy_intp nbytes = cnp.PyArray_SIZE(a) * cnp.PyArray_ITEMSIZE(a)
    if a_start == b_start:
        return False
    return a_start < b_start + nbytes and b_start < a_start + nbytes


cdef object output_for(ndarray x, object out):
    """The array to write into, or None when the loops cannot write into ``out``."""
    if out is None:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x),
                                 cnp.PyArray_TYPE(x),
                                 not cnp.PyArray_IS_C_CONTIGUOUS(x))
    if not is_kernel_array(out):
        return None
    cdef ndarray o = <ndarray>out
    if not (cnp.PyArray_ISWRITEABLE(o) and same_geometry(x, o)) or overlaps_partially(x, o):
        return None
    return o


cdef object unary(Op op, object x, object out, double negative_slope):
    if not is_kernel_array(x):
        return None
    cdef ndarray xa = <ndarray>x
    cdef ElementType etype = element_type(xa)
    if etype == UNSUPPORTED or (op != RELU and etype != FLOAT32 and etype != FLOAT64):
        return None
    result = output_for(xa, out)
    if result is None:
        return None
    cdef ndarray oa = <ndarray>result
    cdef const void* src = cnp.PyArray_DATA(xa)
    cdef void* dst = cnp.PyArray_DATA(oa)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(xa)
    cdef npy_intp itemsize = cnp.PyArray_ITEMSIZE(xa)
    with nogil:
        run_unary(op, etype, src, dst, n, itemsize, negative_slope)
    return oa


cdef object binary(Op op, object grad_output, object x, object out, double negative_slope):
    if not (is_kernel_array(x) and is_kernel_array(grad_output)):
        return None
    cdef ndarray xa = <ndarray>x
    cdef ndarray ga = <ndarray>grad_output
    cdef ElementType etype = element_type(xa)
    if (etype != FLOAT32 and etype != FLOAT64) or not same_geometry(xa, ga):
        return None
    result = output_for(xa, out)
    if result is None:
        return None
    cdef ndarray oa = <ndarray>result
    if overlaps_partially(ga, oa):
        return None
    cdef const void* g_data = cnp.PyArray_DATA(ga)
    cdef const void* x_data = cnp.PyArray_DATA(xa)
    cdef void* dst = cnp.PyArray_DATA(oa)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(xa)
    with nogil:
        run_binary(op, etype, g_data, x_data, dst, n, negative_slope)
    return oa


# ---------------------------------------------------------------------------------------
# Entry points. The slope must already be a Python float (the Python layer converts and
# validates anything else), so the common call pays no conversion.

def relu(x, out):
    return unary(RELU, x, out, 0.0)


def leaky_relu(x, negative_slope, out):
    if type(negative_slope) is not float:
        return None
    return unary(LEAKY_RELU, x, out, <double>negative_slope)


def relu_grad(x, out):
    return unary(RELU_GRAD, x, out, 0.0)


def leaky_relu_grad(x, negative_slope, out):
    if type(negative_slope) is not float:
        return None
    return unary(LEAKY_RELU_GRAD, x, out, <double>negative_slope)


def relu_backward(grad_output, x, out):
    return binary(RELU_BACKWARD, grad_output, x, out, 0.0)


def leaky_relu_backward(grad_output, x, negative_slope, out):
    if type(negative_slope) is not float:
        return None
    return binary(LEAKY_RELU_BACKWARD, grad_output, x, out, <double>negative_slope)


# ---------------------------------------------------------------------------------------
# Dead units: which columns of a (rows x cols) C-contiguous block have x <= 0 in every row.

# Flags per pass: a block of them stays in L1 (1-2 KiB) while the rows stream past.
cdef enum:
    DEAD_UNITS_BLOCK = 256


cdef inline void mark_alive(const floating_t* x, floating_t* alive, Py_ssize_t rows,
                            Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
    """Set ``alive[j]`` to 1 where some ``x[i * stride + j]`` is not ``<= 0``."""
    cdef Py_ssize_t i, j
    cdef const floating_t* row
    cdef floating_t x0, x1, x2, x3, aj
    # Four rows per sweep: one load and store of each flag for four compares.
    for i in range(0, rows - 3, 4):
        row = x + i * stride
        for j in range(width):
            x0 = row[j]
            x1 = row[j + stride]
            x2 = row[j + 2 * stride]
            x3 = row[j + 3 * stride]
            aj = alive[j]
            # `<=`, not `> 0`: dead means relu_grad is 0, and relu_grad(NaN) is 1.
            # A select, not an early exit: the loop never branches on the data.
            alive[j] = aj if (x0 <= 0) & (x1 <= 0) & (x2 <= 0) & (x3 <= 0) else 1
    for i in range(rows - rows % 4, rows):
        row = x + i * stride
        for j in range(width):
            x0 = row[j]
            aj = alive[j]
            alive[j] = aj if x0 <= 0 else 1


cdef void dead_units_kernel(const floating_t* x, uint8_t* dead, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    # The flags have x's own width, so that a vector compare updates them lane for lane
    # (byte flags would cost a pack of every compare mask).
    cdef floating_t alive[DEAD_UNITS_BLOCK]
    cdef Py_ssize_t j, t, start, width, per_row, folded
    cdef bint any_alive
    if 0 < cols <= DEAD_UNITS_BLOCK // 2:
        # Few units (1-D input has one): read `per_row` samples as one wide row, so the
        # inner loop stays long enough to vectorise; the leftover samples go one by one.
        per_row = DEAD_UNITS_BLOCK // cols
        width = per_row * cols
        folded = rows // per_row
        for j in range(width):
            alive[j] = 0
        mark_alive(x, alive, folded, width, width)
        mark_alive(x + folded * width, alive, rows - folded * per_row, cols, cols)
        for j in range(cols):
            any_alive = False
            for t in range(per_row):
                any_alive = any_alive | (alive[t * cols + j] != 0)
            dead[j] = not any_alive
        return
    start = 0
    while start < cols:
        width = min(<Py_ssize_t>DEAD_UNITS_BLOCK, cols - start)
        for j in range(width):
            alive[j] = 0
        mark_alive(x + start, alive, rows, width, cols)
        for j in range(width):
            dead[start + j] = alive[j] == 0
        start += width


cdef object reduced_bool(ndarray x, int skip, bint fortran):
    """A new bool array of ``x``'s shape without dimension ``skip``."""
    cdef int ndim = cnp.PyArray_NDIM(x)
    cdef npy_intp* dims = cnp.PyArray_DIMS(x)
    # Dropping the first or the last dimension leaves the others contiguous in the array.
    cdef npy_intp* kept = dims + 1 if skip == 0 else dims
    return cnp.PyArray_EMPTY(ndim - 1, kept, cnp.NPY_BOOL, fortran)


def dead_units(x, axis):
    if type(x) is not ndarray or type(axis) is not int:
        return None
    cdef ndarray xa = <ndarray>x
    cdef int ndim = cnp.PyArray_NDIM(xa)
    cdef ElementType etype = element_type(xa)
    if ndim == 0 or (etype != FLOAT32 and etype != FLOAT64) or not cnp.PyArray_ISNOTSWAPPED(xa):
        return None
    # Checked on the Python int first: a huge axis must decline, not overflow.
    if not -ndim <= axis < ndim:
        return None
    cdef Py_ssize_t ax = axis + ndim if axis < 0 else axis
    # The reduced axis must be the slowest-varying one in memory, so that the array reads
    # as (samples, units) row after row: the leading axis of a C-contiguous array or the
    # trailing axis of a Fortran-contiguous one.
    cdef bint fortran
    if ax == 0 and cnp.PyArray_ISCARRAY_RO(xa):
        fortran = False
    elif ax == ndim - 1 and cnp.PyArray_ISFARRAY_RO(xa):
        fortran = True
    else:
        return None
    cdef ndarray dead = <ndarray>reduced_bool(xa, <int>ax, fortran)
    cdef Py_ssize_t rows = cnp.PyArray_DIMS(xa)[ax]
    cdef Py_ssize_t cols = cnp.PyArray_SIZE(dead)
    cdef const void* src = cnp.PyArray_DATA(xa)
    cdef uint8_t* dst = <uint8_t*>cnp.PyArray_DATA(dead)
    with nogil:
        if etype == FLOAT32:
            dead_units_kernel(<const float*>src, dst, rows, cols)
        else:
            dead_units_kernel(<const double*>src, dst, rows, cols)
    return dead
