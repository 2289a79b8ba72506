# cython: language_level=3
"""Non-temporal (streaming) stores, for every module whose loops write past the caches.

A plain store first reads the line it writes into the cache; above the last-level cache's
size that read is wasted traffic (a third of a unary function's). A streaming store writes
the line straight to memory. The loops stay plain C: they compute a block into a buffer
that stays in L1, and the block is streamed out from there; its input is asked for a
little ahead (``fastact_prefetch_lines``), which the tiles of a transposed input use too.
"""

from libc.stdint cimport uint8_t

cdef extern from *:
    """
    #ifndef FASTACT_STREAM_H
    #define FASTACT_STREAM_H

    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>

    /* SSE2 is part of every x86-64 CPU; elsewhere the copy is a plain memcpy and
       FASTACT_HAS_STREAMING_STORES tells the drivers not to bother. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define FASTACT_HAS_STREAMING_STORES 1

    /* dst must be 16-byte aligned; src may be unaligned. Whole 64-byte pieces stream, the
       last nbytes % 64 bytes are copied plainly. */
    static inline void fastact_stream_copy(void *dst, const void *src, size_t nbytes)
    {
        char *d = (char *)dst;
        const char *s = (const char *)src;
        size_t i = 0;
        for (; i + 64 <= nbytes; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(s + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(s + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(s + i + 48));
            _mm_stream_si128((__m128i *)(d + i), a);
            _mm_stream_si128((__m128i *)(d + i + 16), b);
            _mm_stream_si128((__m128i *)(d + i + 32), c);
            _mm_stream_si128((__m128i *)(d + i + 48), e);
        }
        memcpy(d + i, s + i, nbytes - i);
    }

    /* Streaming stores are weakly ordered: fence before another thread may read the result. */
    static inline void fastact_stream_fence(void) { _mm_sfence(); }

    /* Asks for the cache lines of the nbytes at p ahead of their use. A streamed pass
       keeps few lines in flight on its own: float32 relu streamed 15 GB/s from DRAM with
       the hardware prefetchers alone and 21-23 with its input asked for 2 KiB ahead
       (FASTACT_INPUT_AHEAD_BYTES; 4 and 8 KiB ahead: 14; Intel Xeon VM, 128-256 MiB). A
       hint, one per 64 bytes from p: a run that starts inside a line may miss its last
       one. */
    static inline void fastact_prefetch_lines(const void *p, size_t nbytes)
    {
        for (size_t i = 0; i < nbytes; i += 64)
            _mm_prefetch((const char *)p + i, _MM_HINT_T0);
    }

    #else
    #define FASTACT_HAS_STREAMING_STORES 0
    static inline void fastact_stream_copy(void *dst, const void *src, size_t nbytes)
    {
        memcpy(dst, src, nbytes);
    }
    static inline void fastact_stream_fence(void) {}
    static inline void fastact_prefetch_lines(const void *p, size_t nbytes) {}
    #endif

    /* How far ahead of a pass its lines are asked for (fastact_prefetch_at).

       Input, 2 KiB: the passes whose steps are long (the 16-bit conversions) keep few
       loads in flight, and the hardware prefetchers did not keep up from L2: with g and x
       asked for 2 KiB ahead, leaky_relu_backward's bfloat16 pass at 2^18 ran at 90-94% of
       its roofline instead of 71-75% (float16: 100-105% against 84-87%), and
       prelu_backward's first calls from memory took 0.7-0.8x as long; there 1 KiB, and
       4 KiB into L2, did as well (Intel Xeon VM). A streamed pass asks for its input as
       far ahead (see fastact_prefetch_lines).

       Output, 1 KiB: a plain store first reads its line, the stores wait on those reads,
       and the hardware prefetchers follow loads, not stores. With out's lines asked for
       1 KiB ahead (Intel Xeon VM, two processes of each build, against np.copyto and the
       OR of the same bytes in the same process): float32 relu and leaky_relu went from
       0.89-1.04x the copy's speed to 1.03-1.24x at 2^13-2^18 elements, float64 from
       0.87-1.03x to 0.96-1.19x at 2^12-2^17, the float32 and float64 gradient passes
       gained up to a quarter against the OR, and the 16-bit passes stayed within a few
       percent. In a C harness the prefetch took an aligned float32 loop from 91-93 to
       97-100 GB/s in L2 (memcpy: 102-104), a misaligned one from 65 to 93-97; 2 and
       4 KiB ahead did a little worse. Not measured on an AMD CPU. In place there is
       nothing to ask for: the loads bring out's lines. A streamed call's 1 KiB blocks,
       computed into a scratch in L1, ask for lines past it too; left out there (passes
       of 4 KiB and up only), the streamed float32 backward passes took 1.03-1.05x as
       long at 2^24-2^25, the unary ones the same, so they stay (Intel Xeon VM). */
    #define FASTACT_INPUT_AHEAD_BYTES 2048
    #define FASTACT_OUTPUT_AHEAD_BYTES 1024

    /* Asks for the line `ahead` bytes past p. The address is computed as an integer: it
       may lie past the array (in NCHW, in the next channel's run), where a prefetch does
       not fault. */
    static inline __attribute__((always_inline, unused)) void
    fastact_prefetch_at(const void *p, size_t ahead)
    {
    #if defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch((const void *)((uintptr_t)p + ahead));
    #endif
    }

    #endif
    """
    const bint FASTACT_HAS_STREAMING_STORES
    void fastact_stream_copy(void* dst, const void* src, size_t nbytes) nogil
    void fastact_stream_fence() nogil
    void fastact_prefetch_lines(const void* p, size_t nbytes) nogil
    void fastact_prefetch_at(const void* p, size_t ahead) nogil
    const size_t FASTACT_INPUT_AHEAD_BYTES
    const size_t FASTACT_OUTPUT_AHEAD_BYTES

cdef enum:
    # A block computed in L1 and then streamed out: 1 KiB. With 4 KiB blocks the streamed
    # passes took up to 1.2x as long, the gradient gates 1.7x (AMD EPYC Zen 5, 2^23-2^25
    # elements).
    STREAM_BLOCK_BYTES = 1024
    PAGE_BYTES = 4096
    # Room for a block anywhere within a page from the scratch's start (see stream_block).
    STREAM_SCRATCH_BYTES = PAGE_BYTES + STREAM_BLOCK_BYTES


cdef inline uint8_t* stream_block(uint8_t* scratch, const void* src) noexcept nogil:
    """Where in ``scratch`` (``STREAM_SCRATCH_BYTES`` long) the block to be streamed out
    goes: half a page from ``src`` modulo 4 KiB, and so from each block of it (a whole page
    or half of one further). A load from ``src`` at the same page offset as a pending
    store to the block would wait for it (4K aliasing; it halved leaky_relu)."""
    return scratch + (<size_t>src + PAGE_BYTES // 2 - <size_t>scratch) % PAGE_BYTES
