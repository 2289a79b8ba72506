# cython: language_level=3
"""The dead-unit loop: which columns of a (rows x cols) C-contiguous block have x <= 0 in
every row. Inline, so each loop build compiles it with its own flags (``_loops.pxd`` puts
it in the loop table) and its compares run at that build's vector width."""
from libc.stdint cimport uint8_t, uint16_t

# Flags per pass, of x's own width: 8 KiB of them for float32 (2048 units) stay in L1 while
# the rows stream past. A batch at most this wide is read from start to end, row after row;
# a block of 256 made a (4096, 1024) float32 batch a walk down four column strips at 20
# GB/s, below NumPy's ``np.all(x <= 0, axis=0)`` (AMD EPYC Zen 4).
cdef enum:
    DEAD_UNITS_BLOCK = 2048
    # A wider batch: its column blocks this many rows at a time, so that the rows being
    # read stay a short stretch of memory.
    DEAD_ROWS_CHUNK = 64
    # +inf's bits: a 16-bit float whose magnitude's bits are above these is a NaN.
    FLOAT16_INF_BITS = 0x7C00
    BFLOAT16_INF_BITS = 0x7F80


# The samples as the loops compare them: float32, float64, or a 16-bit float's bits.
ctypedef fused sample_t:
    float
    double
    uint16_t


cdef inline bint nonpositive(sample_t v, uint16_t inf_bits) noexcept nogil:
    """``v <= 0``. For a 16-bit float's bits (``inf_bits``: +inf's): ±0 (0 or 0x8000, so
    ``v - 1`` wraps to 0x7FFF or above) or a negative value, and not a NaN (magnitude above
    infinity's), by integer compares that vectorise where the float compare has no
    instruction."""
    if sample_t is uint16_t:
        return (<uint16_t>(v - 1) >= 0x7FFF) & ((v & 0x7FFF) <= inf_bits)
    else:
        return v <= 0


cdef inline void mark_alive(const sample_t* x, sample_t* alive, Py_ssize_t rows,
                            Py_ssize_t width, Py_ssize_t stride,
                            uint16_t inf_bits) noexcept nogil:
    """Set ``alive[j]`` to 1 where some ``x[i * stride + j]`` is not ``<= 0``."""
    cdef Py_ssize_t i, j
    cdef const sample_t* row
    cdef sample_t x0, x1, x2, x3, aj
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
            alive[j] = aj if (nonpositive(x0, inf_bits) & nonpositive(x1, inf_bits)
                              & nonpositive(x2, inf_bits) & nonpositive(x3, inf_bits)) else 1
    for i in range(rows - rows % 4, rows):
        row = x + i * stride
        for j in range(width):
            x0 = row[j]
            aj = alive[j]
            alive[j] = aj if nonpositive(x0, inf_bits) else 1


cdef inline void dead_flags(const sample_t* x, uint8_t* dead, Py_ssize_t rows,
                            Py_ssize_t cols, uint16_t inf_bits) noexcept nogil:
    # The flags have x's own width, so that a vector compare updates them lane for lane
    # (byte flags would cost a pack of every compare mask).
    cdef sample_t alive[DEAD_UNITS_BLOCK]
    cdef Py_ssize_t j, start, width, per_row, folded, count, half
    cdef Py_ssize_t chunk, chunk_size, chunk_rows
    if 0 < cols <= DEAD_UNITS_BLOCK // 2:
        # Few units (1-D input has one): read `per_row` samples as one wide row, so the
        # inner loop stays long enough to vectorise; the leftover samples go one by one.
        # No more places than samples: the rest would be flags to fold and never set.
        per_row = max(<Py_ssize_t>1, min(DEAD_UNITS_BLOCK // cols, rows))
        width = per_row * cols
        folded = rows // per_row
        for j in range(width):
            alive[j] = 0
        mark_alive(x, alive, folded, width, width, inf_bits)
        mark_alive(x + folded * width, alive, rows - folded * per_row, cols, cols, inf_bits)
        # The flags of each unit's `per_row` places summed into the first of them, half
        # of the places onto the other half at a time, so that every add runs along
        # contiguous flags and vectorises (a unit at a time, a (4, 1024) batch took 2 us
        # more). The sums are counts up to DEAD_UNITS_BLOCK: exact in every sample_t.
        count = per_row
        while count > 1:
            half = count // 2
            for j in range(half * cols):
                alive[j] += alive[(count - half) * cols + j]
            count -= half
        for j in range(cols):
            dead[j] = alive[j] == 0
        return
    # The flags of a block of units live in `dead` between chunks of rows: a batch at most
    # one block wide is one chunk, read from start to end; a wider one goes
    # DEAD_ROWS_CHUNK rows at a time across its blocks.
    chunk_size = rows if cols <= DEAD_UNITS_BLOCK else DEAD_ROWS_CHUNK
    for j in range(cols):
        dead[j] = 1
    chunk = 0
    while chunk < rows:
        chunk_rows = min(chunk_size, rows - chunk)
        start = 0
        while start < cols:
            width = min(<Py_ssize_t>DEAD_UNITS_BLOCK, cols - start)
            for j in range(width):
                alive[j] = dead[start + j] == 0
            mark_alive(x + chunk * cols + start, alive, chunk_rows, width, cols, inf_bits)
            for j in range(width):
                dead[start + j] = alive[j] == 0
            start += width
        chunk += chunk_rows
