"""How long a statement takes: calibrated samples, interleaved rounds, medians.

Each statement is warmed up and calibrated to a loop count that makes one sample last at
least ``Settings.target`` (or one call at large sizes); then all competitors of a case
are sampled in interleaved rounds, shuffled each round, so that they share the machine's
noise and none always runs first or after the same one. The median sample is what the
tables report.
"""

from __future__ import annotations

import math
import random
import statistics
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_LOOPS = 1_000_000


@dataclass(frozen=True)
class Settings:
    repeat: int  # samples per competitor
    large_repeat: int  # samples when a calibrated sample takes longer than `large_sample`
    target: float  # minimum seconds per sample
    large_sample: float
    exponents: tuple[int, ...] = ()  # main and in-place tables: sizes are 2**exponent
    max_exponent: dict[str, int] = field(default_factory=dict)  # by dtype: a cap on those
    pattern_exponent: int = 18
    strided_exponents: tuple[int, ...] = ()
    thread_exponents: tuple[int, ...] = ()
    overhead_sizes: tuple[int, ...] = (1, 16, 256)
    sweep_exponents: tuple[int, ...] = ()
    dead_exponents: tuple[int, ...] = ()  # dead units: (2**e // 1024, 1024) batches

    def exponents_for(self, dtype: np.dtype) -> tuple[int, ...]:
        cap = self.max_exponent.get(dtype.name)
        return tuple(e for e in self.exponents if cap is None or e <= cap)


MODES = {
    "quick": Settings(
        repeat=3,
        large_repeat=3,
        target=0.0005,
        large_sample=0.02,
        exponents=(4, 12),
        pattern_exponent=12,
        strided_exponents=(10,),
        thread_exponents=(12,),
        sweep_exponents=(12, 13),
        dead_exponents=(12,),
    ),
    # Sizes 2^10 to 2^25 (128 MiB per float32 array: past any last-level cache); float16
    # and bfloat16 stop at 2**22 because NumPy computes in them one element at a time,
    # below 1 GB/s, and each idiom would take seconds there. The strided sizes include
    # 2^20, a 1024 x 1024 transpose; the size sweep covers every power of two from 2^16
    # (in L2) to 2^26 (DRAM), where a threshold that fires at the wrong size shows.
    "default": Settings(
        repeat=7,
        large_repeat=3,
        target=0.002,
        large_sample=0.02,
        exponents=(10, 14, 18, 22, 25),
        max_exponent={"float16": 22, "bfloat16": 22},
        pattern_exponent=18,
        strided_exponents=(14, 20, 22),
        thread_exponents=(14, 18, 20, 22, 24),
        sweep_exponents=tuple(range(16, 27)),
        dead_exponents=(18, 22),
    ),
    "full": Settings(
        repeat=15,
        large_repeat=5,
        target=0.002,
        large_sample=0.05,
        exponents=tuple(range(4, 27)),
        pattern_exponent=18,
        strided_exponents=(10, 14, 18, 20, 22, 24, 26),
        thread_exponents=(12, 14, 16, 18, 20, 22, 24, 26),
        sweep_exponents=tuple(range(12, 27)),
        dead_exponents=(14, 18, 22, 24),
    ),
}


# The JSON fields of a timed column (Timing.record).
TIMING_FIELDS = ("median_s", "calls_per_sample", "samples_s")


@dataclass
class Timing:
    number: int  # calls per sample
    samples: list[float] = field(default_factory=list)  # seconds per call

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def record(self) -> dict[str, Any]:
        """The JSON fields of one timed column: its median, its calls per sample and its
        samples (the report prints only medians; these show what they came from)."""
        values = (self.median, self.number, self.samples)
        return dict(zip(TIMING_FIELDS, values, strict=True))


def calibrate(timer: timeit.Timer, target: float) -> tuple[int, float]:
    """Calls per sample so that a sample lasts at least ``target``, after one call that
    warms up. That call is not a measurement: the first call into a fresh output faults
    its pages in, and calibrated on it a 16 MiB call was sampled one cold call at a time
    (float32 ``relu`` at 2^22: 0.8 ms per call against 0.44 ms once warm). The first
    estimate is the faster of two calls: after a pause the Intel Xeon VM ran its first
    memory-bound passes up to 1.5x slow (see ``time_interleaved``), and one slow call
    made a sample of one call where two were meant (float32 ``prelu`` at (65536, 64):
    samples from 1.26 to 2.47 ms, against 1.16 ms in a warm loop)."""
    timer.timeit(1)
    number, elapsed = 1, min(timer.timeit(1), timer.timeit(1))
    while elapsed < target and number < MAX_LOOPS:
        estimate = math.ceil(1.2 * number * target / max(elapsed, 1e-9))
        number = min(MAX_LOOPS, max(2 * number, estimate))
        elapsed = timer.timeit(number)
    return number, elapsed


def time_interleaved(
    timers: dict[Any, timeit.Timer], cfg: Settings, rewarm: bool = False
) -> dict[Any, Timing]:
    """Samples of every timer, one of each per round so that all share the machine's
    noise, in an order shuffled each round (seeded: the same for every run). A rotated
    order kept each timer's predecessor, and with it the cache it left: at 2^22 float32
    the in-place relu always followed a call that evicted its array from the L3, and
    torch's always one that left it there.

    ``rewarm``: an untimed sample before each sample, for tables where a statement that
    computes for tens of milliseconds without touching much memory (a 16-bit NumPy
    idiom) sits beside memory-bound ones of a few calls per sample. After 50 ms without
    memory traffic the Intel Xeon VM ran the next two 24 MiB passes 1.3-1.5x slower,
    ``np.copyto`` and an OR as much as fastact: a sample of three calls timed that ramp,
    one of four diluted it more, and the ratio between them measured the sample sizes.
    One untimed call was not enough (bfloat16 ``prelu_backward`` at 2^22: 78-81% of the
    OR, against 94% timed warm in a loop)."""
    timings, longest = {}, 0.0
    for key, timer in timers.items():
        number, elapsed = calibrate(timer, cfg.target)
        timings[key] = Timing(number)
        longest = max(longest, elapsed)
    rounds = cfg.repeat if longest < cfg.large_sample else min(cfg.repeat, cfg.large_repeat)
    keys = list(timers)
    order = random.Random(len(keys))
    for _ in range(rounds):
        order.shuffle(keys)
        for key in keys:
            timing = timings[key]
            if rewarm:
                timers[key].timeit(timing.number)
            timing.samples.append(timers[key].timeit(timing.number) / timing.number)
    return timings


def timing_fields(timings: dict[Any, Timing]) -> dict[str, dict[Any, Any]]:
    """A row's timing columns for the JSON, field by field: ``Timing.record`` of each
    column, turned around (``{"median_s": {column: ...}, ...}``)."""
    records = {key: t.record() for key, t in timings.items()}
    return {field: {key: r[field] for key, r in records.items()} for field in TIMING_FIELDS}


def time_statements(
    stmts: dict[Any, str], ns: dict[str, Any], cfg: Settings, rewarm: bool = False
) -> dict[Any, Timing]:
    with np.errstate(all="ignore"):
        return time_interleaved(
            {key: timeit.Timer(stmt, globals=ns) for key, stmt in stmts.items()}, cfg, rewarm
        )


def gbps(streams: int, n: int, dtype: np.dtype, seconds: float) -> float:
    """Throughput of a call that reads or writes ``streams`` arrays of n elements."""
    return streams * n * dtype.itemsize / seconds / 1e9


@dataclass
class Clock:
    """Seconds spent per section, for the report: what to trim when a run is too long."""

    start: float = field(default_factory=time.perf_counter)
    sections: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        yield
        self.sections[name] = round(time.perf_counter() - begin, 2)

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)
