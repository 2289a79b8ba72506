"""Entry points the Python layer calls, and the driver that runs the compiled loops.

The loops themselves are in ``_loops.pxd``, compiled once per instruction set into the
``_loops_*`` modules; this module picks the best build the CPU supports at import. The
entry points take ndarrays straight from Python, read their data pointers through the
NumPy C API and run a loop with the GIL released, split over threads for large arrays.
An entry point returns ``None`` whenever its input is not something the loops cover
(wrong dtype, layout or byte order, partial overlap of ``out`` with an input, anything
invalid): the Python layer then validates, raises the proper error or computes another
way. It never raises by itself.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint16_t
from numpy cimport ndarray, npy_intp

from libc.math cimport fabs, isfinite

from fastact._stream cimport (
    FASTACT_HAS_STREAMING_STORES,
    FASTACT_INPUT_AHEAD_BYTES,
    STREAM_BLOCK_BYTES,
    STREAM_SCRATCH_BYTES,
    fastact_stream_copy,
    fastact_stream_fence,
    fastact_prefetch_lines,
    stream_block,
)

from fastact._loops cimport (
    FASTACT_LOOP_TABLE_NAME,
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    N_OPS,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    UNSUPPORTED,
    ElementType,
    LoopTable,
    Op,
    is_covered,
    is_float_type,
    magnitude,
)

import importlib
import importlib.util
import os
import sys
import warnings

from fastact import _tuning
from fastact._functions import COMPOSITES, COMPUTE, FUNCTIONS
from fastact._threads import get_num_threads

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

    /* OpenMP when the build found it (setup.py probes the compiler); serial otherwise. */
    #ifdef _OPENMP
    #  include <omp.h>
    #  define FASTACT_OPENMP 1
    #else
    #  define FASTACT_OPENMP 0
    #endif

    /* Which builds of the loops this CPU can run: a CPUID check at import, no ifunc.
       1: AVX2 + F16C; 2: also AVX-512 F, BW, VL and DQ. Each needs the OS to save the
       wider registers on a context switch (XGETBV: XCR0 bits 1-2 for YMM, 5-7 for the
       opmask and ZMM state); CPUID alone says only that the CPU has them. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <cpuid.h>
    static int fastact_cpu_simd_level(void)
    {
        unsigned int a, b, c, d, xcr0_low, xcr0_high;
        if (!__get_cpuid(1, &a, &b, &c, &d))
            return 0;
        int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
        if (!(osxsave && avx && f16c))
            return 0;
        __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
        if ((xcr0_low & 0x06u) != 0x06u || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
            return 0;
        if (!((b >> 5) & 1))  /* AVX2 */
            return 0;
        unsigned int avx512 = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);  /* F DQ BW VL */
        if ((b & avx512) == avx512 && (xcr0_low & 0xe6u) == 0xe6u)
            return 2;
        return 1;
    }
    #else
    static int fastact_cpu_simd_level(void) { return 0; }
    #endif
    """
    const char* FASTACT_COMPILER
    const char* FASTACT_CFLAGS
    const char* FASTACT_CYTHON_VERSION
    const char* FASTACT_NUMPY_VERSION
    const bint FASTACT_OPENMP
    int fastact_cpu_simd_level() noexcept

# ---------------------------------------------------------------------------------------
# Which build of the loops runs, decided once at import.

#: Names a build of the loops to use instead of the best one: avx512, avx2 or baseline.
SIMD_ENV_VAR = "FASTACT_SIMD"

#: The builds of the loops, best first, and the CPUID level each needs.
SIMD_BUILDS = ("avx512", "avx2", "baseline")
cdef dict SIMD_LEVEL = {"avx512": 2, "avx2": 1, "baseline": 0}


def _runnable_builds():
    """The builds this CPU can run that were also built (and so can be imported), best first."""
    cdef int level = fastact_cpu_simd_level()
    return tuple(
        name for name in SIMD_BUILDS
        if SIMD_LEVEL[name] <= level
        and importlib.util.find_spec(f"fastact._loops_{name}") is not None
    )


def _load_loop_table():
    """The capsule holding the loop build to use: the best this CPU runs, or the one asked.

    A build that is asked for but cannot run here (the CPU lacks it, or it was not built
    for this platform) or an unknown name is not an error: fastact warns and uses the best
    runnable build no better than the one asked (the best one, for an unknown name), so a
    setting meant for one machine never stops an import on another.
    """
    runnable = _runnable_builds()
    wanted = os.environ.get(SIMD_ENV_VAR, "").strip().lower()
    candidates = list(runnable)
    if wanted:
        if wanted not in SIMD_BUILDS:
            warnings.warn(
                f"{SIMD_ENV_VAR}={wanted!r} is not a loop build (one of "
                f"{', '.join(SIMD_BUILDS)}); using {runnable[0] if runnable else 'none'}",
                RuntimeWarning, stacklevel=2)
        else:
            candidates = [name for name in runnable if SIMD_LEVEL[name] <= SIMD_LEVEL[wanted]]
            if wanted not in runnable and candidates:
                warnings.warn(
                    f"{SIMD_ENV_VAR}={wanted}: this CPU cannot run that build of the loops "
                    f"(or it was not built here); using {candidates[0]}",
                    RuntimeWarning, stacklevel=2)
    for name in candidates:
        try:
            module = importlib.import_module(f"fastact._loops_{name}")
        except ImportError:  # not built for this platform
            continue
        return module.loop_table
    raise ImportError("fastact: no build of the compiled loops could be imported")


#: The builds this machine can run, best first (the tests run every one of them).
RUNNABLE_SIMD = _runnable_builds()
_LOOP_CAPSULE = _load_loop_table()
cdef const LoopTable* LOOPS = <const LoopTable*>PyCapsule_GetPointer(
    _LOOP_CAPSULE, FASTACT_LOOP_TABLE_NAME)


cdef const LoopTable* active_loops() noexcept nogil:
    return LOOPS


# ---------------------------------------------------------------------------------------
# What the loops cover, and how the build came out.

_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
_INTEGER_NAMES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")

#: Per function, the dtypes the loops cover (from the function table). The composites
#: (PReLU's channel loops, RReLU's noise, the masks and the bias layer) cover the float
#: types; rrelu_backward in training is ``grad_output * noise``, NumPy's own product.
KERNEL_DTYPES = {
    func.name: _FLOAT_NAMES + (_INTEGER_NAMES if func.integers else ())
    for func in FUNCTIONS
}
KERNEL_DTYPES.update({composite.name: _FLOAT_NAMES for composite in COMPOSITES})
KERNEL_DTYPES["dead_units"] = KERNEL_DTYPES["dead_fraction"] = (
    "float16", "bfloat16", "float32", "float64")

BUILD_INFO = {
    "compiler": FASTACT_COMPILER.decode(),
    "cflags": FASTACT_CFLAGS.decode(),
    "cython": FASTACT_CYTHON_VERSION.decode(),
    "built_against_numpy": FASTACT_NUMPY_VERSION.decode(),
    "simd": LOOPS.isa.decode(),
    "simd_runnable": RUNNABLE_SIMD,
    "loops_cflags": LOOPS.cflags.decode(),
    "openmp": bool(FASTACT_OPENMP),
    "streaming_stores": bool(FASTACT_HAS_STREAMING_STORES),
}


# bfloat16 is ml_dtypes' user-defined type: its type number is known only once that
# package has registered it, so it is looked up on the first user-defined dtype seen.
cdef int bfloat16_typenum = -1


cdef int find_bfloat16_typenum() noexcept:
    global bfloat16_typenum
    ml_dtypes = sys.modules.get("ml_dtypes")
    if ml_dtypes is None:
        return -1
    try:
        bfloat16_typenum = (<cnp.dtype>cnp.dtype(ml_dtypes.bfloat16)).type_num
    except Exception:
        return -1
    return bfloat16_typenum


cdef ElementType array_element_type(object array) noexcept:
    return element_type(<ndarray>array)


cdef ElementType element_type(ndarray a) noexcept:
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef npy_intp itemsize = cnp.PyArray_ITEMSIZE(a)
    if typenum == cnp.NPY_FLOAT:
        return FLOAT32
    if typenum == cnp.NPY_DOUBLE:
        return FLOAT64
    if typenum == cnp.NPY_FLOAT16:
        return FLOAT16
    # By width, not type number: C long and long long are distinct NumPy types of one size.
    if cnp.PyTypeNum_ISINTEGER(typenum) and cnp.PyTypeNum_ISSIGNED(typenum):
        if itemsize == 1:
            return INT8
        if itemsize == 2:
            return INT16
        if itemsize == 4:
            return INT32
        if itemsize == 8:
            return INT64
    if cnp.PyTypeNum_ISUNSIGNED(typenum):
        if itemsize == 1:
            return UINT8
        if itemsize == 2:
            return UINT16
        if itemsize == 4:
            return UINT32
        if itemsize == 8:
            return UINT64
    if cnp.PyTypeNum_ISUSERDEF(typenum) and (typenum == bfloat16_typenum
                                       or (bfloat16_typenum < 0
                                           and typenum == find_bfloat16_typenum())):
        return BFLOAT16
    return UNSUPPORTED


# ---------------------------------------------------------------------------------------
# Threads. Opt-in (fastact.set_num_threads / fastact.threads); a call splits its elements
# into one contiguous slice per thread, each slice at least parallel_min_bytes of traffic
# (bytes read + written), so that small arrays never pay the fork/join of a team.

cdef enum:
    # Slices start on 64-byte boundaries so that no cache line is written by two threads.
    SLICE_ALIGN_BYTES = 64

# GNU OpenMP cannot start a team in a process forked after any team ran in the parent:
# the child would wait forever for threads that were not copied. The team may be another
# library's (torch and others share the process's libgomp), so fastact cannot know it ran.
# What it can see is that a team's threads outlive it: so just before a fork the parent
# notes whether it has any thread besides the forking one, and if it has (or cannot
# tell) the child runs every call on one thread. Both flags change with the GIL held.
cdef bint parent_had_threads = True
cdef bint team_unusable = False


def _before_fork():
    global parent_had_threads
    try:
        parent_had_threads = len(os.listdir("/proc/self/task")) > 1
    except OSError:  # no /proc: assume the worst
        parent_had_threads = True


def _after_fork_in_child():
    global team_unusable
    team_unusable = team_unusable or parent_had_threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


cdef int threads_for(Py_ssize_t traffic_bytes) except -1:
    """How many threads to use for a call moving ``traffic_bytes``; needs the GIL."""
    if not FASTACT_OPENMP or traffic_bytes < 2 * parallel_min_bytes or team_unusable:
        return 1
    # fastact's own count, not OpenMP's: OMP_NUM_THREADS or a torch.set_num_threads(1) in
    # the same process (torch shares the libgomp) must not silently undo an explicit
    # fastact.threads(n); the default of 1 already keeps fastact out of others' way.
    cdef Py_ssize_t wanted = get_num_threads()
    wanted = min(wanted, traffic_bytes // parallel_min_bytes)
    return <int>max(wanted, 1)


def _threads_for(Py_ssize_t traffic_bytes):
    """The thread count this driver would use for a call moving ``traffic_bytes`` (for
    fastact's other compiled entry points: the mask functions)."""
    return threads_for(traffic_bytes)


# ---------------------------------------------------------------------------------------
# Streaming stores. Above stream_min_bytes of output the result cannot stay in the caches
# anyway, so it is written with non-temporal stores: it goes to memory without first
# being read into the cache (plain stores read every line they write). Each slice is
# computed into a small buffer that stays in L1 and streamed out from there, so the loops
# stay plain C. Not in place: there the line was just read, and a plain store is free.

# ---------------------------------------------------------------------------------------
# The two thresholds, set at import from fastact._tuning (environment, this machine's
# tuned file, else a default) and by _set_thresholds. Streaming loses up to 2x while input
# and output fit the last-level cache and wins 1.2-1.6x beyond it, and where that is
# depends on the machine (16 MiB of output on a 32 MiB-L3 AMD EPYC VM, 32-64 MiB on an
# Intel Xeon VM), as does the traffic from which a second thread pays for its start: so
# both are measured (python -m fastact tune), never read from the OS, which inside a VM
# reports the whole socket's cache. They are read and written only with the GIL held
# (each call reads them once, before releasing it), so no lock is needed.
# A transposed output (written through L1 tiles, a few lines per row at a time, scattered
# over the whole array) has its own streaming threshold, far lower: its plain stores read
# and write back each line on their own, and streaming won from 1 MiB of output on the
# Intel VM, where contiguous outputs stream from 32 MiB.
cdef Py_ssize_t stream_min_bytes
cdef Py_ssize_t transposed_stream_min_bytes
cdef Py_ssize_t parallel_min_bytes
cdef dict THRESHOLD_SOURCES = {}


def _set_thresholds(stream_min_bytes=None, parallel_min_bytes=None,
                    transposed_stream_min_bytes=None, source="set"):
    """Put thresholds in force for this process (for tuning and tests): bytes, or None to
    keep one; ``source`` is what ``show_config()`` reports for it."""
    if stream_min_bytes is not None:
        if stream_min_bytes < 0:
            raise ValueError("stream_min_bytes must be >= 0")
        set_stream_min_bytes(stream_min_bytes)
        THRESHOLD_SOURCES["stream_min_bytes"] = source
    if transposed_stream_min_bytes is not None:
        if transposed_stream_min_bytes < 0:
            raise ValueError("transposed_stream_min_bytes must be >= 0")
        set_transposed_stream_min_bytes(transposed_stream_min_bytes)
        THRESHOLD_SOURCES["transposed_stream_min_bytes"] = source
    if parallel_min_bytes is not None:
        if parallel_min_bytes < 1:
            raise ValueError("parallel_min_bytes must be >= 1")
        set_parallel_min_bytes(parallel_min_bytes)
        THRESHOLD_SOURCES["parallel_min_bytes"] = source


cdef void set_stream_min_bytes(Py_ssize_t value) noexcept:
    global stream_min_bytes
    stream_min_bytes = value


cdef void set_transposed_stream_min_bytes(Py_ssize_t value) noexcept:
    global transposed_stream_min_bytes
    transposed_stream_min_bytes = value


cdef void set_parallel_min_bytes(Py_ssize_t value) noexcept:
    global parallel_min_bytes
    parallel_min_bytes = value


cdef bint streams_output(Py_ssize_t out_bytes) noexcept:
    return FASTACT_HAS_STREAMING_STORES and out_bytes >= stream_min_bytes


def _thresholds():
    """The thresholds in force, as keyword arguments of _set_thresholds."""
    return {"stream_min_bytes": stream_min_bytes, "parallel_min_bytes": parallel_min_bytes,
            "transposed_stream_min_bytes": transposed_stream_min_bytes}


def thresholds():
    """Each threshold in force and where it came from (default, tuned file, env, set)."""
    return {name: (value, THRESHOLD_SOURCES[name]) for name, value in _thresholds().items()}


def _load_thresholds():
    for name, (value, source) in _tuning.thresholds_in_force().items():
        _set_thresholds(**{name: value}, source=source)


_load_thresholds()


ctypedef struct Params:
    # A function's scalar parameters, unused ones 0.0.
    double p0
    double p1


cdef inline void run_slice(Op op, ElementType etype, const char* g, const char* x, char* out,
                           Py_ssize_t n, Py_ssize_t itemsize, Params p) noexcept nogil:
    # A forward op reads x in g's place (its rule ignores g).
    LOOPS.run(op, etype, x if g == NULL else g, itemsize, x, itemsize, out, itemsize, n,
              p.p0, p.p1)


cdef void run_slice_streaming(Op op, ElementType etype, const char* g, const char* x,
                              char* out, Py_ssize_t n, Py_ssize_t itemsize,
                              Params p) noexcept nogil:
    cdef uint8_t scratch[STREAM_SCRATCH_BYTES]
    cdef Py_ssize_t per_block = STREAM_BLOCK_BYTES // itemsize
    # The leading elements up to a 64-byte boundary of out go the plain way.
    cdef Py_ssize_t head = min(n, <Py_ssize_t>((-<size_t>out) % SLICE_ALIGN_BYTES) // itemsize)
    cdef Py_ssize_t i = head, offset
    cdef uint8_t* block = stream_block(scratch, x + head * itemsize)
    run_slice(op, etype, g, x, out, head, itemsize, p)
    while i + per_block <= n:
        offset = i * itemsize
        fastact_prefetch_lines(x + offset + FASTACT_INPUT_AHEAD_BYTES, STREAM_BLOCK_BYTES)
        if g != NULL:
            fastact_prefetch_lines(g + offset + FASTACT_INPUT_AHEAD_BYTES, STREAM_BLOCK_BYTES)
        run_slice(op, etype, g + offset if g != NULL else NULL, x + offset, <char*>block,
                  per_block, itemsize, p)
        fastact_stream_copy(out + offset, block, STREAM_BLOCK_BYTES)
        i += per_block
    offset = i * itemsize
    run_slice(op, etype, g + offset if g != NULL else NULL, x + offset, out + offset, n - i,
              itemsize, p)


cdef void run(Op op, ElementType etype, const char* g, const char* x, char* out, Py_ssize_t n,
              Py_ssize_t itemsize, Params p, int n_threads,
              bint streaming) noexcept nogil:
    """Run the loop over all ``n`` elements: ``g`` is NULL for a unary op."""
    cdef Py_ssize_t align = SLICE_ALIGN_BYTES // itemsize
    cdef Py_ssize_t slice_len = ((n + n_threads - 1) // n_threads + align - 1) // align * align
    cdef Py_ssize_t t, start, count, offset
    if n_threads == 1:
        if streaming:
            run_slice_streaming(op, etype, g, x, out, n, itemsize, p)
            fastact_stream_fence()
        else:
            run_slice(op, etype, g, x, out, n, itemsize, p)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule="static"):
        start = t * slice_len
        count = min(slice_len, n - start)
        if count > 0:
            offset = start * itemsize
            if streaming:
                run_slice_streaming(op, etype, g + offset if g != NULL else NULL, x + offset,
                                    out + offset, count, itemsize, p)
                fastact_stream_fence()
            else:
                run_slice(op, etype, g + offset if g != NULL else NULL, x + offset,
                          out + offset, count, itemsize, p)


cdef object run_with_gil_released(Op op, ElementType etype, ndarray g, ndarray x, ndarray out,
                                  Params p):
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    # Two statements, not a conditional expression: Cython types that expression's
    # temporary without const and the C compiler warns about the discarded qualifier.
    cdef const char* g_data = NULL
    if g is not None:
        g_data = <const char*>cnp.PyArray_DATA(g)
    cdef const char* x_data = <const char*>cnp.PyArray_DATA(x)
    cdef char* out_data = <char*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t out_bytes = n * itemsize
    cdef int n_threads = threads_for(out_bytes * (2 if g is None else 3))
    cdef bint streaming = (streams_output(out_bytes) and out_data != x_data
                           and out_data != g_data)
    with nogil:
        run(op, etype, g_data, x_data, out_data, n, itemsize, p, n_threads,
            streaming)
    return out


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


# ---------------------------------------------------------------------------------------
# A strided out that shares memory with an input as another view (or writes an element
# twice): NumPy's iterator walks the arrays in memory order and hands the loops one inner
# run after another, through a temporary where out partially overlaps an input. One
# thread. Every other strided layout goes through the tiles below.

cdef inline bint is_iterable_array(object a) noexcept:
    """An exact ndarray of at least one dimension, aligned, native byte order."""
    if type(a) is not ndarray:
        return False
    cdef ndarray arr = <ndarray>a
    return (cnp.PyArray_NDIM(arr) > 0 and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint same_shape(ndarray a, ndarray b) noexcept:
    cdef int d
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b) or cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIMS(a)[d] != cnp.PyArray_DIMS(b)[d]:
            return False
    return True


cdef object run_iterated(Op op, ElementType etype, object g, ndarray x, object out,
                         Params p):
    if out is not None and not (is_iterable_array(out) and same_shape(x, <ndarray>out)
                                and cnp.PyArray_ISWRITEABLE(<ndarray>out)):
        return None
    cdef cnp.PyArrayObject* operands[3]
    cdef cnp.PyArray_Descr* dtypes[3]
    cdef cnp.npy_uint32 flags[3]
    cdef int k, n_operands = 0
    # Equal elements of an input and the output are fine (a loop reads element i before
    # writing it): only a partial overlap makes NumPy copy.
    cdef cnp.npy_uint32 elementwise = cnp.NPY_ITER_OVERLAP_ASSUME_ELEMENTWISE
    for operand in ((g, x) if g is not None else (x,)):
        operands[n_operands] = <cnp.PyArrayObject*>operand
        flags[n_operands] = cnp.NPY_ITER_READONLY | elementwise
        n_operands += 1
    operands[n_operands] = NULL if out is None else <cnp.PyArrayObject*>out
    flags[n_operands] = (cnp.NPY_ITER_WRITEONLY | cnp.NPY_ITER_NO_BROADCAST | elementwise
                         | (cnp.NPY_ITER_ALLOCATE if out is None else 0))
    n_operands += 1
    for k in range(n_operands):
        dtypes[k] = cnp.PyArray_DESCR(x)
    cdef cnp.NpyIter* it = cnp.NpyIter_MultiNew(
        n_operands, operands,
        cnp.NPY_ITER_EXTERNAL_LOOP | cnp.NPY_ITER_ZEROSIZE_OK | cnp.NPY_ITER_COPY_IF_OVERLAP,
        cnp.NPY_KEEPORDER, cnp.NPY_NO_CASTING, flags, dtypes)
    cdef cnp.NpyIter_IterNextFunc iternext
    cdef char** data
    cdef npy_intp* strides
    cdef npy_intp* size
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef int x_index = 1 if g is not None else 0
    try:
        # Where an overlap made NumPy write through a temporary, that is the operand here.
        result = out
        if out is None:
            result = <object>cnp.NpyIter_GetOperandArray(it)[n_operands - 1]
        if cnp.NpyIter_GetIterSize(it) > 0:
            iternext = cnp.NpyIter_GetIterNext(it, NULL)
            data = cnp.NpyIter_GetDataPtrArray(it)
            strides = cnp.NpyIter_GetInnerStrideArray(it)
            size = cnp.NpyIter_GetInnerLoopSizePtr(it)
            with nogil:
                while True:
                    # data[0] is g, or x itself for a forward op (its rule ignores g).
                    LOOPS.run(op, etype, data[0], strides[0], data[x_index],
                              strides[x_index], data[x_index + 1], strides[x_index + 1],
                              size[0], p.p0, p.p1)
                    if not iternext(it):
                        break
    finally:
        # Also copies a temporary back into out, where an overlap made one.
        cnp.NpyIter_Deallocate(it)
    return result


# ---------------------------------------------------------------------------------------
# Strided layouts in L1 tiles (views such as x[::2], transposes, Fortran order against C
# order, broadcast inputs, a strided out). The array's axes are reordered by out's
# strides and merged where every operand allows; out's fastest axis becomes the columns
# of a 2-D block, and the rows are the axis along which a strided input lies contiguous
# (a transposed input), so that the loops' tiles copy it along whole cache lines; the
# other axes are walked one block after another. The rows of all blocks are split over
# threads as a contiguous call's elements are (the columns, when there are too few rows).
# NumPy's iterator keeps the calls whose out shares memory with an input as anything but
# the very same view (it copies where the overlap needs it), and those whose out would
# write an element twice.

cdef extern from "numpy/arrayobject.h":
    object PyArray_NewLikeArray(ndarray prototype, cnp.NPY_ORDER order,
                                cnp.PyArray_Descr* descr, int subok)

cdef enum:
    MAX_DIMS = 64  # NumPy 2's NPY_MAXDIMS
    N_OPERANDS = 3  # g, x, out
    # Below this many rows per thread the threads split the columns instead.
    MIN_ROWS_PER_THREAD = 4


ctypedef struct Blocks:
    char* data[N_OPERANDS]
    Py_ssize_t steps[N_OPERANDS][2]  # bytes, (row, column)
    Py_ssize_t rows
    Py_ssize_t cols
    int n_outer
    Py_ssize_t outer_shape[MAX_DIMS]  # slowest first
    Py_ssize_t outer_strides[N_OPERANDS][MAX_DIMS]


cdef bint overlaps_as_another_view(ndarray a, ndarray b) noexcept:
    """Whether ``a`` and ``b`` may share bytes without being the very same view."""
    cdef int d, ndim = cnp.PyArray_NDIM(a)
    cdef npy_intp* dims = cnp.PyArray_DIMS(a)
    cdef npy_intp* a_strides = cnp.PyArray_STRIDES(a)
    cdef npy_intp* b_strides = cnp.PyArray_STRIDES(b)
    cdef bint same_view = cnp.PyArray_BYTES(a) == cnp.PyArray_BYTES(b)
    cdef char* a_low = cnp.PyArray_BYTES(a)
    cdef char* a_high = a_low + cnp.PyArray_ITEMSIZE(a)
    cdef char* b_low = cnp.PyArray_BYTES(b)
    cdef char* b_high = b_low + cnp.PyArray_ITEMSIZE(b)
    for d in range(ndim):
        if dims[d] > 1:
            same_view = same_view and a_strides[d] == b_strides[d]
            a_low += min(a_strides[d] * (dims[d] - 1), 0)
            a_high += max(a_strides[d] * (dims[d] - 1), 0)
            b_low += min(b_strides[d] * (dims[d] - 1), 0)
            b_high += max(b_strides[d] * (dims[d] - 1), 0)
    return not same_view and a_low < b_high and b_low < a_high


cdef bint writes_an_element_twice(ndarray out) noexcept:
    cdef int d
    for d in range(cnp.PyArray_NDIM(out)):
        if cnp.PyArray_DIMS(out)[d] > 1 and cnp.PyArray_STRIDES(out)[d] == 0:
            return True
    return False


cdef void plan_blocks(Blocks* b, ndarray g, ndarray x, ndarray out,
                      Py_ssize_t itemsize) noexcept:
    """Fill ``b`` from the operands (of one shape, not empty; ``g`` is ``x`` for a forward
    op)."""
    cdef int ndim = cnp.PyArray_NDIM(out)
    cdef npy_intp* dims = cnp.PyArray_DIMS(out)
    cdef npy_intp* out_strides = cnp.PyArray_STRIDES(out)
    cdef npy_intp* operand_strides[N_OPERANDS]
    operand_strides[0] = cnp.PyArray_STRIDES(g)
    operand_strides[1] = cnp.PyArray_STRIDES(x)
    operand_strides[2] = out_strides
    cdef int axes[MAX_DIMS]
    cdef Py_ssize_t shape[MAX_DIMS]
    cdef Py_ssize_t strides[N_OPERANDS][MAX_DIMS]
    cdef int n = 0, d, k, j, best, score, best_score
    # The axes longer than 1, slowest in out first (a stable insertion sort: few axes).
    for d in range(ndim):
        if dims[d] > 1:
            k = n
            while k > 0 and magnitude(out_strides[axes[k - 1]]) < magnitude(out_strides[d]):
                axes[k] = axes[k - 1]
                k -= 1
            axes[k] = d
            n += 1
    # Merge an axis into the one before where every operand steps over both as one.
    cdef int m = 0
    for k in range(n):
        d = axes[k]
        if m > 0 and continues_as_one_run(operand_strides, strides, m - 1, d, dims[d]):
            shape[m - 1] *= dims[d]
            for j in range(N_OPERANDS):
                strides[j][m - 1] = operand_strides[j][d]
            continue
        shape[m] = dims[d]
        for j in range(N_OPERANDS):
            strides[j][m] = operand_strides[j][d]
        m += 1
    if m == 0:  # a single element
        shape[0] = 1
        for j in range(N_OPERANDS):
            strides[j][0] = itemsize
        m = 1
    # Columns: out's fastest axis. Rows: where most inputs that are strided along the
    # columns lie contiguous, else out's next fastest axis.
    cdef int rows_axis = -1
    best_score = -1
    for k in range(m - 2, -1, -1):
        score = 0
        for j in range(2):
            if (strides[j][m - 1] != itemsize and magnitude(strides[j][k]) == itemsize):
                score += 1
        if score > best_score:
            best, best_score = k, score
    b.cols = shape[m - 1]
    b.data[0] = cnp.PyArray_BYTES(g)
    b.data[1] = cnp.PyArray_BYTES(x)
    b.data[2] = cnp.PyArray_BYTES(out)
    for j in range(N_OPERANDS):
        b.steps[j][1] = strides[j][m - 1]
        b.steps[j][0] = 0
    b.rows = 1
    if best_score >= 0:
        rows_axis = best
        b.rows = shape[rows_axis]
        for j in range(N_OPERANDS):
            b.steps[j][0] = strides[j][rows_axis]
    b.n_outer = 0
    for k in range(m - 1):
        if k != rows_axis:
            b.outer_shape[b.n_outer] = shape[k]
            for j in range(N_OPERANDS):
                b.outer_strides[j][b.n_outer] = strides[j][k]
            b.n_outer += 1


cdef inline bint continues_as_one_run(npy_intp** operand_strides,
                                      Py_ssize_t (*strides)[MAX_DIMS], int slow, int d,
                                      Py_ssize_t length) noexcept:
    """Whether every operand steps over axis ``d`` (``length`` long) and then over the
    (merged) axis ``slow`` as over one axis."""
    cdef int j
    for j in range(N_OPERANDS):
        if strides[j][slow] != operand_strides[j][d] * length:
            return False
    return True


cdef void run_block_rows(const Blocks* b, Op op, ElementType etype, Py_ssize_t itemsize,
                         Py_ssize_t first, Py_ssize_t last, Py_ssize_t col_first,
                         Py_ssize_t col_last, Params p, bint streaming) noexcept nogil:
    """Rows ``first`` to ``last`` (counted over every block) and the columns between
    ``col_first`` and ``col_last``."""
    cdef Py_ssize_t block, row, n_rows, index, i
    cdef Py_ssize_t offset[N_OPERANDS]
    cdef const char* at[N_OPERANDS]
    cdef int k, j
    while first < last and col_first < col_last:
        block = first // b.rows
        row = first % b.rows
        n_rows = min(b.rows - row, last - first)
        for j in range(N_OPERANDS):
            offset[j] = row * b.steps[j][0] + col_first * b.steps[j][1]
        index = block
        for k in range(b.n_outer - 1, -1, -1):
            i = index % b.outer_shape[k]
            index = index // b.outer_shape[k]
            for j in range(N_OPERANDS):
                offset[j] += i * b.outer_strides[j][k]
        for j in range(N_OPERANDS):
            at[j] = b.data[j] + offset[j]
        LOOPS.run_tiles(op, etype, itemsize, at[0], b.steps[0], at[1], b.steps[1],
                        <char*>at[2], b.steps[2], n_rows, col_last - col_first, p.p0, p.p1,
                        streaming)
        first += n_rows


cdef void run_blocks(const Blocks* b, Op op, ElementType etype, Py_ssize_t itemsize,
                     Py_ssize_t n_blocks, int n_threads, Params p,
                     bint streaming) noexcept nogil:
    cdef Py_ssize_t total = n_blocks * b.rows
    cdef Py_ssize_t align = max(<Py_ssize_t>1, SLICE_ALIGN_BYTES // itemsize)
    cdef Py_ssize_t per_thread
    cdef int t
    if n_threads == 1:
        run_block_rows(b, op, etype, itemsize, 0, total, 0, b.cols, p, streaming)
    elif total >= MIN_ROWS_PER_THREAD * n_threads:
        per_thread = (total + n_threads - 1) // n_threads
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            run_block_rows(b, op, etype, itemsize, t * per_thread,
                           min(total, (t + 1) * per_thread), 0, b.cols, p, streaming)
    else:
        per_thread = ((b.cols + n_threads - 1) // n_threads + align - 1) // align * align
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            run_block_rows(b, op, etype, itemsize, 0, total, t * per_thread,
                           min(b.cols, (t + 1) * per_thread), p, streaming)


cdef object run_strided(Op op, ElementType etype, ndarray g, ndarray x, object out, Params p):
    if out is not None and not (is_iterable_array(out) and same_shape(x, <ndarray>out)
                                and cnp.PyArray_ISWRITEABLE(<ndarray>out)):
        return None
    if out is not None and (writes_an_element_twice(<ndarray>out)
                            or overlaps_as_another_view(x, <ndarray>out)
                            or (g is not None and overlaps_as_another_view(g, <ndarray>out))):
        return run_iterated(op, etype, g, x, out, p)
    cdef ndarray result = (<ndarray>PyArray_NewLikeArray(x, cnp.NPY_KEEPORDER, NULL, 0)
                           if out is None else <ndarray>out)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(x)
    if size == 0:
        return result
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef Blocks blocks
    # A forward op reads x in g's place (its rule ignores g).
    plan_blocks(&blocks, x if g is None else g, x, result, itemsize)
    cdef int n_threads = threads_for(size * itemsize * (2 if g is None else 3))
    # Streaming matters here only to transposed tiles (see run_op_tiles).
    cdef bint streaming = (FASTACT_HAS_STREAMING_STORES
                           and size * itemsize >= transposed_stream_min_bytes)
    with nogil:
        run_blocks(&blocks, op, etype, itemsize, size // (blocks.rows * blocks.cols),
                   n_threads, p, streaming)
    return result


cdef object run_op_on(Op op, object grad_output, object x, object out, Params p):
    """Run ``op`` (``grad_output`` None for a forward op), or None to decline."""
    if not is_iterable_array(x):
        return None
    cdef ndarray xa = <ndarray>x
    cdef ndarray ga = None
    cdef ElementType etype = element_type(xa)
    if not is_covered(op, etype) or not params_ok(op, etype, p):
        return None
    if grad_output is not None:
        if not (is_iterable_array(grad_output) and same_shape(xa, <ndarray>grad_output)):
            return None
        ga = <ndarray>grad_output
    if is_kernel_array(xa) and (ga is None or (is_kernel_array(ga) and same_geometry(xa, ga))):
        result = output_for(xa, out)
        if result is not None and (ga is None or not overlaps_partially(ga, <ndarray>result)):
            return run_with_gil_released(op, etype, ga, xa, <ndarray>result, p)
    return run_strided(op, etype, ga, xa, out, p)


# ---------------------------------------------------------------------------------------
# Parameters: the checks the Python layer makes (and raises for), made here on the fast
# path so that a call with a parameter torch refuses declines instead of computing. Filled
# once at import from the function table.

cdef int N_PARAMS[N_OPS]
cdef bint IN_ELEMENT_RANGE[N_OPS][2]  # else in the compute type's
cdef bint ORDERED[N_OPS]

for _k, _func in enumerate(FUNCTIONS):
    N_PARAMS[_k] = 0 if _func.fixed else len(_func.parameters)
    for _j, _param in enumerate(_func.parameters):
        IN_ELEMENT_RANGE[_k][_j] = _param.range_type != COMPUTE
    ORDERED[_k] = _func.ordered

cdef extern from "float.h":
    const double FLT_MAX
    const double DBL_MAX


cdef double largest(ElementType etype, bint to_element) noexcept nogil:
    """The largest finite value of ``etype`` (``to_element``) or of the type its loops
    compute in (float32 for the 16-bit types)."""
    if etype == FLOAT64:
        return DBL_MAX
    if to_element and etype == FLOAT16:
        return 65504.0
    if to_element and etype == BFLOAT16:
        return 3.3895313892515355e38
    return FLT_MAX


cdef inline bint params_ok(Op op, ElementType etype, Params p) noexcept nogil:
    cdef int k, index = <int>op
    cdef double value
    for k in range(N_PARAMS[index]):
        value = p.p0 if k == 0 else p.p1
        # As torch: a finite value beyond the type's range is refused; inf and NaN are not.
        if isfinite(value) and fabs(value) > largest(etype, IN_ELEMENT_RANGE[index][k]):
            return False
    return not (ORDERED[index] and p.p0 > p.p1)


# ---------------------------------------------------------------------------------------
# Entry points, one per arity: the op is the function's index in the table. Parameters
# must already be Python floats (the Python layer converts and validates anything else),
# so the common call pays no conversion; a function without parameters passes 0.0.

def unary(int op, x, out, p0, p1):
    if not 0 <= op < N_OPS or type(p0) is not float or type(p1) is not float:
        return None
    return run_op_on(<Op>op, None, x, out, Params(p0, p1))


def binary(int op, grad_output, x, out, p0, p1):
    if not 0 <= op < N_OPS or type(p0) is not float or type(p1) is not float:
        return None
    if not is_iterable_array(grad_output):  # None included: it would mean a forward op
        return None
    return run_op_on(<Op>op, grad_output, x, out, Params(p0, p1))


# ---------------------------------------------------------------------------------------
# Dead units: which columns of a (rows x cols) C-contiguous block have x <= 0 in every row.

cdef void dead_units_kernel(const real_t* x, uint8_t* dead, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    LOOPS.dead_units(FLOAT32 if real_t is float else FLOAT64, x, dead, rows, cols)


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
    if ndim == 0 or not is_float_type(etype) or not cnp.PyArray_ISNOTSWAPPED(xa):
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
        LOOPS.dead_units(etype, src, dst, rows, cols)
    return dead
