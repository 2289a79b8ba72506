# cython: language_level=3
"""What other Cython code can cimport from fastact.

The typed loops, for another Cython project to call inside its own ``nogil`` loops (they
are inline: they compile with the caller's flags). Each reads ``n`` contiguous elements
and writes ``n`` contiguous elements; ``out`` may be the very same pointer as an input (in
place), any other overlap is the caller's business. ``relu_kernel`` takes every integer
type, float and double; the others float and double (and fastact's 16-bit float structs).
"""
from libc.stdint cimport uint8_t

# Every function's contiguous kernel, ``<name>_kernel``, generated from the function table
# (see _ops_dispatch.pxi): operands, ``out``, ``n``, then the parameters as doubles.
from fastact._loops cimport *

# The loop build this process uses (chosen at import by CPU features).
cdef const LoopTable* active_loops() noexcept nogil

# For fastact's own modules: the element type the loops see in an ndarray (UNSUPPORTED for
# any other dtype), how many threads a call moving ``traffic_bytes`` may use and whether
# its stores stream (all need the GIL: they read the thresholds in force). Declared without NumPy's headers, which a user extension need not have.
cdef ElementType array_element_type(object array) noexcept
cdef int threads_for(Py_ssize_t traffic_bytes) except -1
# Whether a call writing ``out_bytes`` (into memory no input occupies) streams its stores.
cdef bint streams_output(Py_ssize_t out_bytes) noexcept
# The largest finite value of an element type (``to_element``), or of the type its loops
# compute in (float32 for the 16-bit types).
cdef double largest(ElementType etype, bint to_element) noexcept nogil

ctypedef fused real_t:
    float
    double

# Dead units. ``x`` holds ``rows`` samples of ``cols`` units, row after row; the kernel
# writes ``cols`` flags to ``dead``: 1 iff ``x[i, j] <= 0`` for every row i, so a NaN keeps
# its unit alive (relu_grad(NaN) is 1) and with no rows every flag is 1.
cdef void dead_units_kernel(const real_t* x, uint8_t* dead, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil
