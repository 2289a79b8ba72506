# cython: language_level=3
"""The gradient gates on float32 and float64, as AVX-512 selects written out.

A gate passes ``g`` where ``x`` lies strictly inside a window and gives ``+0.0`` elsewhere:
``(x <= low) | (x >= high) ? +0 : g``. It is ``hardtanh_backward``'s rule; ``relu_backward``
and ``threshold_backward`` are the gate with ``high`` NaN (``x >= NaN`` is false: no upper
edge). A NaN ``x`` fails both comparisons and passes ``g``, as the rules say.

The compiler vectorises the rule by itself, but it folds "load ``g``, then zero the blocked
lanes" into one zero-masking load, and AMD Zen CPUs run that load at half speed from DRAM
(``relu_backward`` lost to a plain numba loop at 2^23 elements and up). Here the load stays
whole: an empty ``asm`` makes the loaded value opaque to the compiler, and the mask applies
in a register. Only the AVX-512 build has these loops; the other builds (and the tail of a
run, under one vector) take the rule through the generic loop, with the same bits.
"""

from fastact._stream cimport fastact_prefetch_at

cdef extern from *:
    """
    #ifndef FASTACT_GATE_VECTORS_H
    #define FASTACT_GATE_VECTORS_H
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #include <stddef.h>
    #define FASTACT_HAS_GATE_VECTORS 1
    /* The loaded value made opaque to the compiler, so that no later mask folds into its
       load (a zero-masking load runs at half speed from DRAM on AMD Zen). */
    #define FASTACT_WHOLE_LOAD(v) __asm__("" : "+v"(v))
    /* Compiled on its own, not inlined into the dispatch: there, with every op's loop
       around it, GCC spilled each loaded vector to the stack (a store per vector). */
    #define FASTACT_NOINLINE __attribute__((noinline))
    /* Both comparisons unordered-or: "not (x <= low)" and "not (x >= high)", so NaN in x
       or in a bound keeps g, as the rule's `(x <= low) | (x >= high) ? 0 : g` does. With
       no upper edge (high NaN) the second comparison is left out: chained into the first
       (a masked compare) it took 1.5x the time of one compare in L1 on AMD Zen 5. */
    #define FASTACT_GATE_LOOP(T, SUFFIX, VEC, LANES, KEEP)                                 \
        for (; i + LANES <= n; i += LANES) {                                              \
            if (ahead) /* out's lines asked for ahead: _stream.pxd says why */            \
                fastact_prefetch_at(out + i, FASTACT_OUTPUT_AHEAD_BYTES);                 \
            VEC gv = _mm512_loadu_##SUFFIX(g + i), xv = _mm512_loadu_##SUFFIX(x + i);     \
            FASTACT_WHOLE_LOAD(gv);                                                       \
            _mm512_storeu_##SUFFIX(out + i, _mm512_maskz_mov_##SUFFIX(KEEP, gv));         \
        }
    #define FASTACT_GATE(T, SUFFIX, VEC, LANES)                                            \
    static FASTACT_NOINLINE ptrdiff_t fastact_gate_##SUFFIX(const T *g, const T *x,       \
                                                            T *out, ptrdiff_t n, T low,     \
                                                            T high)                         \
    {                                                                                     \
        const VEC lo = _mm512_set1_##SUFFIX(low), hi = _mm512_set1_##SUFFIX(high);        \
        const int ahead = out != g && out != x;                                           \
        ptrdiff_t i = 0;                                                                  \
        if (high != high)                                                                 \
            FASTACT_GATE_LOOP(T, SUFFIX, VEC, LANES,                                      \
                              _mm512_cmp_##SUFFIX##_mask(xv, lo, _CMP_NLE_UQ))           \
        else                                                                              \
            FASTACT_GATE_LOOP(T, SUFFIX, VEC, LANES,                                      \
                              _mm512_cmp_##SUFFIX##_mask(xv, lo, _CMP_NLE_UQ) &          \
                              _mm512_cmp_##SUFFIX##_mask(xv, hi, _CMP_NGE_UQ))           \
        return i;                                                                         \
    }
    FASTACT_GATE(float, ps, __m512, 16)
    FASTACT_GATE(double, pd, __m512d, 8)
    #else
    #define FASTACT_HAS_GATE_VECTORS 0
    static inline ptrdiff_t fastact_gate_ps(const float *g, const float *x, float *out,
                                            ptrdiff_t n, float low, float high) { return 0; }
    static inline ptrdiff_t fastact_gate_pd(const double *g, const double *x, double *out,
                                            ptrdiff_t n, double low, double high) { return 0; }
    #endif
    #endif
    """
    const bint FASTACT_HAS_GATE_VECTORS
    Py_ssize_t fastact_gate_ps(const float* g, const float* x, float* out, Py_ssize_t n,
                               float low, float high) nogil
    Py_ssize_t fastact_gate_pd(const double* g, const double* x, double* out, Py_ssize_t n,
                               double low, double high) nogil

ctypedef fused gate_float_t:
    float
    double


cdef inline Py_ssize_t gate_vectors(const gate_float_t* g, const gate_float_t* x,
                                    gate_float_t* out, Py_ssize_t n, double low,
                                    double high) noexcept nogil:
    """``(x <= low) | (x >= high) ? +0 : g`` over the leading whole vectors of a contiguous
    run; returns how many elements it did (0 without AVX-512). ``low`` and ``high`` are
    already in ``x``'s type (rounded by the caller), so the casts here are exact."""
    if gate_float_t is float:
        return fastact_gate_ps(g, x, out, n, <float>low, <float>high)
    else:
        return fastact_gate_pd(g, x, out, n, low, high)
