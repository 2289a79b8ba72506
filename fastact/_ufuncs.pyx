"""fastact's functions as real NumPy ufuncs, over the same element rules and loops.

One ufunc per row of the function table (``_functions.py``), registered here at import:
operands ``[grad_output,] x, <parameters>``, one inner loop per dtype. A loop whose
parameters are constant along the run (step 0), or that has none, calls the very loops the
main functions use (the build chosen at import), at any strides; a parameter that varies
along the run (a slope per channel, broadcast) goes through the element rule one element at
a time. NumPy supplies broadcasting, ``out=``, ``where=``, casting, overlap handling and
``__array_ufunc__`` dispatch to duck arrays (dask, xarray, ...); it also releases the GIL
around every inner loop.
"""
cimport numpy as cnp
from cpython.mem cimport PyMem_Malloc
from numpy cimport npy_intp

import numpy as np

from fastact._functions import FUNCTIONS
from fastact._kernels cimport active_loops
from fastact._loops cimport (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    UNSUPPORTED,
    ElementType,
    Op,
    run_op_per_element,
)

cdef extern from "fenv.h" nogil:
    int FE_ALL_EXCEPT
    int feclearexcept(int excepts)

cnp.import_array()
cnp.import_ufunc()


# What a registered inner loop needs to know: its op, its dtype and its operand counts.
ctypedef struct LoopData:
    Op op
    ElementType etype
    char type_char
    int n_operands  # arrays: 1 (x) or 2 (grad_output, x)
    int n_params  # scalar parameters, passed as arrays


cdef void run_loop(char** args, const npy_intp* dims, const npy_intp* steps,
                   void* data) noexcept nogil:
    """The inner loop of every fastact ufunc: args hold [g,] x, the parameters, out."""
    cdef const LoopData* loop = <const LoopData*>data
    cdef npy_intp n = dims[0]
    cdef int k, first = loop.n_operands, last = loop.n_operands + loop.n_params
    cdef bint constant = True
    cdef double p[2]
    p[0] = p[1] = 0.0
    for k in range(loop.n_params):
        constant = constant and steps[first + k] == 0
    if constant:
        for k in range(loop.n_params):
            # float16 loops take their parameters as float32 (torch computes in float32).
            if loop.type_char == b'd':
                p[k] = (<double*>args[first + k])[0]
            else:
                p[k] = (<float*>args[first + k])[0]
        # A forward op reads x in g's place (its rule ignores g).
        active_loops().run(loop.op, loop.etype, args[0], steps[0],
                           args[first - 1], steps[first - 1], args[last], steps[last], n,
                           p[0], p[1])
    else:
        run_op_per_element(loop.op, args, <Py_ssize_t*>steps, n, loop.type_char)
    # NumPy turns the FPU's exception flags into warnings after each loop. The contract
    # has none: ordered compares with NaN and inf * 0 raise "invalid" by design, as in
    # NumPy's own maximum/minimum loops, which clear the flags the same way.
    feclearexcept(FE_ALL_EXCEPT)


# ---------------------------------------------------------------------------------------
# Registration. NumPy keeps pointers to the loop, data and type tables for the life of the
# process, so they are allocated once here and never freed.

# Loop dtypes, in NumPy's search order. float16 comes first so that float16 input picks
# its own loop (computing in float32 internally) instead of being cast up; integer loops
# only for the functions the table says take integers, as in the main API.
_FLOATS = "efd"
_INTEGERS = "bhilqBHILQ"


cdef ElementType element_type(str char):
    dtype = np.dtype(char)
    if dtype.kind == "f":
        return {2: FLOAT16, 4: FLOAT32, 8: FLOAT64}[dtype.itemsize]
    if dtype.kind == "i":
        return {1: INT8, 2: INT16, 4: INT32, 8: INT64}[dtype.itemsize]
    return {1: UINT8, 2: UINT16, 4: UINT32, 8: UINT64}[dtype.itemsize]


_KEEP_ALIVE = []


def _doc(func):
    operands = ", ".join(func.operands)
    params = "".join(f", {p.name}" for p in ([] if func.fixed else func.parameters))
    broadcast = (
        " It broadcasts, unlike the main function." if func.is_backward else ""
    )
    varying = (
        " Parameters broadcast too: an array of per-channel values works element by element."
        if params else ""
    )
    return (
        f"{func.name}({operands}{params}, /, out=None, *, where=True, ...)\n\n"
        f"Ufunc form of fastact.{func.name}.{broadcast}{varying}"
    )


def _make(int op, func):
    chars = _FLOATS + (_INTEGERS if func.integers else "")
    cdef int n_operands = len(func.operands)
    cdef int n_params = 0 if func.fixed else len(func.parameters)
    cdef int nin = n_operands + n_params
    cdef int ntypes = len(chars)
    cdef int k, j
    cdef cnp.PyUFuncGenericFunction* funcs = <cnp.PyUFuncGenericFunction*>PyMem_Malloc(
        ntypes * sizeof(cnp.PyUFuncGenericFunction))
    cdef void** data = <void**>PyMem_Malloc(ntypes * sizeof(void*))
    cdef LoopData* loops = <LoopData*>PyMem_Malloc(ntypes * sizeof(LoopData))
    cdef char* types = <char*>PyMem_Malloc(ntypes * (nin + 1))
    if funcs == NULL or data == NULL or loops == NULL or types == NULL:
        raise MemoryError()
    for k in range(ntypes):
        c = chars[k]
        loops[k] = LoopData(<Op>op, element_type(c), ord(c), n_operands, n_params)
        # NumPy's C header declares the loop's dims and steps const; its Cython
        # declaration does not, so the pointer is cast to the header's type.
        funcs[k] = <cnp.PyUFuncGenericFunction>run_loop
        data[k] = &loops[k]
        for j in range(nin):
            # Parameters of a float16 loop are float32 (see run_loop).
            types[k * (nin + 1) + j] = np.dtype("f" if j >= n_operands and c == "e" else c).num
        types[k * (nin + 1) + nin] = np.dtype(c).num
    cdef bytes name = func.name.encode()
    cdef bytes doc = _doc(func).encode()
    # NumPy keeps the name and doc pointers: the bytes objects must live as long.
    _KEEP_ALIVE.extend((name, doc))
    return cnp.PyUFunc_FromFuncAndData(
        funcs, data, types, ntypes, nin, 1, cnp.PyUFunc_None, <char*>name, <char*>doc, 0,
    )


#: The ufuncs, by name, in the table's order.
UFUNCS = {func.name: _make(op, func) for op, func in enumerate(FUNCTIONS)}
globals().update(UFUNCS)
