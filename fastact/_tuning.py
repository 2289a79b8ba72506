"""The machine-dependent thresholds: when to stream the output, when to start a thread.

They depend on the caches and the memory of the machine, which a VM reports wrongly (the
whole socket's last-level cache, not the share one core gets), so they are measured:
``python -m fastact tune`` times size sweeps of plain against streamed float32 ``relu``
(contiguous, and from a transposed input) and one against two threads, about 15
seconds in all, and writes the thresholds to a JSON file per machine (the CPU model and a
hash of its feature flags) in the user's cache folder (``$XDG_CACHE_HOME/fastact`` or
``~/.cache/fastact``).

At import, each threshold is the first of:

- ``FASTACT_STREAM_MIN_BYTES`` / ``FASTACT_TRANSPOSED_STREAM_MIN_BYTES`` /
  ``FASTACT_PARALLEL_MIN_BYTES`` in the environment;
- the value this machine's tuned file holds;
- the default: no streaming below 64 MiB of output (safely past the last-level cache of
  most machines, where streaming only loses), none below 2 MiB for an output written from
  a transposed input (the L2 of most cores, or more), and 512 KiB of traffic per extra
  thread.

A missing, unreadable, corrupt or foreign file is ignored: fastact never fails because of
it, and ``show_config()`` says where each value in force came from.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULTS",
    "ENV_VARS",
    "calibrate",
    "load_tuned",
    "machine_key",
    "save_tuned",
    "thresholds_in_force",
    "tune",
    "tuned_path",
]

#: The thresholds in force when nothing was measured.
DEFAULTS = {
    "stream_min_bytes": 64 << 20,
    "transposed_stream_min_bytes": 2 << 20,
    "parallel_min_bytes": 512 << 10,
}

#: The environment variables that override each threshold (bytes, a plain integer).
ENV_VARS = {
    "stream_min_bytes": "FASTACT_STREAM_MIN_BYTES",
    "transposed_stream_min_bytes": "FASTACT_TRANSPOSED_STREAM_MIN_BYTES",
    "parallel_min_bytes": "FASTACT_PARALLEL_MIN_BYTES",
}

# The smallest value of each: a thread always needs some traffic (the driver divides by it).
_MINIMUM = {"stream_min_bytes": 0, "transposed_stream_min_bytes": 0, "parallel_min_bytes": 1}


def _capped(value: int) -> int:
    """A threshold the loops can hold: past the largest size (a Py_ssize_t) any larger
    value means the same, never."""
    return min(value, sys.maxsize)


#: The layout of the tuned file; a file of another format is ignored.
FORMAT = 1


def _cpu_identity() -> tuple[str, str]:
    """The CPU's model name and its feature flags, as the OS reports them."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def machine_key() -> str:
    """A file-name-safe key for this machine: the CPU model and a hash of its flags."""
    model, flags = _cpu_identity()
    digest = hashlib.sha256(f"{model}\n{flags}".encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() else "-" for c in model).strip("-").lower()
    return f"{'-'.join(filter(None, name.split('-')))[:40]}-{digest}"


def cache_dir() -> Path:
    """Where tuned files live: ``$XDG_CACHE_HOME/fastact``, else ``~/.cache/fastact``. A
    relative ``XDG_CACHE_HOME`` is ignored, as the XDG specification says: it would make
    the file depend on the working directory."""
    base = Path(os.environ.get("XDG_CACHE_HOME", "").strip())
    return (base if base.is_absolute() else Path.home() / ".cache") / "fastact"


def tuned_path() -> Path:
    """This machine's tuned file (which may not exist)."""
    return cache_dir() / f"thresholds-{machine_key()}.json"


def load_tuned(path: Path | None = None) -> dict[str, int]:
    """The thresholds a tuned file holds for this machine; {} for anything amiss."""
    path = tuned_path() if path is None else path
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not (
        isinstance(data, dict)
        and data.get("format") == FORMAT
        and data.get("machine") == machine_key()
    ):
        return {}
    found = {}
    for name, minimum in _MINIMUM.items():
        value = data.get(name)
        # bool is an int to Python; null means "not measured here".
        if type(value) is int and value >= minimum:
            found[name] = _capped(value)
    return found


def save_tuned(result: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``result`` (from :func:`calibrate`) as this machine's tuned file.

    Written to a temporary file and renamed, so a reader never sees half a file.
    Raises ``OSError`` when the folder cannot be written.
    """
    path = tuned_path() if path is None else path
    model, _ = _cpu_identity()
    record = {"format": FORMAT, "machine": machine_key(), "cpu": model, **result}
    record["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _from_env(name: str) -> int | None:
    var = ENV_VARS[name]
    text = os.environ.get(var, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < _MINIMUM[name]:
        warnings.warn(
            f"fastact: ignoring {var}={text!r}: not an integer number of bytes "
            f">= {_MINIMUM[name]}",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return _capped(value)


def thresholds_in_force() -> dict[str, tuple[int, str]]:
    """Each threshold and where it comes from: ``env: VAR``, ``tuned: PATH`` or ``default``."""
    path = tuned_path()
    tuned = load_tuned(path)
    chosen = {}
    for name, default in DEFAULTS.items():
        value = _from_env(name)
        if value is not None:
            chosen[name] = (value, f"env: {ENV_VARS[name]}")
        elif name in tuned:
            chosen[name] = (tuned[name], f"tuned: {path}")
        else:
            chosen[name] = (default, "default")
    return chosen


# ---------------------------------------------------------------------------------------
# The calibration.

# Output sizes of the streaming sweep, in KiB: from inside the L2 of most cores to
# past the largest a VM core is likely to get (the crossover was 16 MiB on a 32 MiB-L3
# AMD EPYC, 32-64 MiB on an Intel Xeon VM).
STREAM_SWEEP_KIB = tuple(1024 << k for k in range(8))  # 1 to 128 MiB
# The same from a transposed input, whose plain stores lose far earlier (from 1 MiB on the
# Intel Xeon VM): from well inside an L2 to past most.
TRANSPOSED_SWEEP_KIB = tuple(256 << k for k in range(6))  # 256 KiB to 8 MiB
# The transposed sweep's out rows: a multiple of the cache line, so that every size is
# timed with line-aligned rows.
TRANSPOSED_ROW_ELEMENTS = 1024
STREAM_ROUNDS = 3
# Untimed calls before each sample of the streaming sweep. After streamed calls, plain ones
# reach their steady state only on the third or fourth call: the last-level cache takes
# that many passes to hold the arrays again (float32 relu, 16 MiB out, on an Intel Xeon
# VM: 16, 14, 22, 23, 26 GB/s). With one such call plain stores were timed 25% slower
# than they run, and streaming "won" from 2 MiB where it loses up to 16 MiB.
STREAM_WARMUP_CALLS = 4
# Traffic (bytes read + written) of the thread sweep, in KiB.
THREAD_SWEEP_KIB = (64, 128, 256, 512, 1024, 2048, 4096)
# A streamed (or threaded) call must be this much faster to count as a win: the two are
# timed within a few percent of each other wherever it does not matter.
WIN_MARGIN = 0.05


def _sample_times(
    calls: list[Callable[[], object]], repeat: int, batch: int = 1, warmup: int = 1
) -> list[list[float]]:
    """Seconds per call of each, ``repeat`` samples, timed in turns so that drift hits all
    alike.

    Each sample first makes ``warmup`` untimed calls: a streamed call leaves the output
    out of the cache and a plain one leaves it in, so each kind is timed in its own steady
    state, as repeated calls of one kind run, not in the state the other left behind.
    """
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for call, times in zip(calls, samples, strict=True):
            for _ in range(warmup):
                call()
            start = time.perf_counter()
            for _ in range(batch):
                call()
            times.append((time.perf_counter() - start) / batch)
    return samples


def _median_times(calls: list[Callable[[], object]], repeat: int, batch: int = 1) -> list[float]:
    return [statistics.median(t) for t in _sample_times(calls, repeat, batch)]


def _first_winning(rows: list[tuple[int, float, float]]) -> int | None:
    """The smallest size at which the second timing wins (by WIN_MARGIN) with no larger
    size where it loses by as much: a tie above it is noise, not a crossover."""
    winning = None
    for size, before, after in reversed(rows):
        if after > before * (1 + WIN_MARGIN):
            break
        if after < before * (1 - WIN_MARGIN):
            winning = size
    return winning


def _streaming_sweep(
    name: str,
    sizes_kib: tuple[int, ...],
    operands: Callable[[int], tuple[Any, Any]],
    repeat: int,
    log: Callable[[str], object],
) -> list[tuple[int, float, float]]:
    """(out bytes, plain seconds, streamed seconds) of float32 ``relu(x, out=out)`` at each
    size, on one thread, with threshold ``name`` at 0 for the streamed call and past every
    size for the plain one. ``operands(n)`` gives x and out of n elements."""
    from . import _kernels, relu, threads

    never = 2 * (max(sizes_kib) << 10)
    # In rounds over the whole sweep, pooled: a neighbour's burst on a shared machine then
    # skews one round of each size rather than every sample of one size.
    pooled: dict[int, list[list[float]]] = {kib: [[], []] for kib in sizes_kib}
    with threads(1):
        for _ in range(STREAM_ROUNDS):
            for kib in sizes_kib:
                x, out = operands((kib << 10) // 4)

                def plain(x=x, out=out):
                    _kernels._set_thresholds(**{name: never})
                    relu(x, out=out)

                def streamed(x=x, out=out):
                    _kernels._set_thresholds(**{name: 0})
                    relu(x, out=out)

                batch = max(1, (32 << 20) // (kib << 10))
                samples = _sample_times([plain, streamed], repeat, batch, STREAM_WARMUP_CALLS)
                for times, t in zip(pooled[kib], samples, strict=True):
                    times.extend(t)
    rows = []
    for kib, (plain_times, streamed_times) in pooled.items():
        t_plain, t_streamed = statistics.median(plain_times), statistics.median(streamed_times)
        rows.append((kib << 10, t_plain, t_streamed))
        moved = 2 * (kib << 10)
        log(
            f"{name} {kib / 1024:g} MiB out: plain {moved / t_plain / 1e9:6.1f} GB/s, "
            f"streamed {moved / t_streamed / 1e9:6.1f} GB/s"
        )
    return rows


def _streaming_sweeps(
    repeat: int, log: Callable[[str], object]
) -> tuple[list[tuple[int, float, float]], list[tuple[int, float, float]]]:
    """Both streaming sweeps' rows (see ``_streaming_sweep``): contiguous, then transposed."""
    import numpy as np

    x_all = np.linspace(-1.0, 1.0, max(STREAM_SWEEP_KIB) << 8, dtype=np.float32)
    out_all = np.empty_like(x_all)
    out_all.fill(0)  # fault the pages in now, not in the first timing

    def contiguous(n: int) -> tuple[Any, Any]:
        return x_all[:n], out_all[:n]

    def transposed(n: int) -> tuple[Any, Any]:
        # x (rows, 1024) read as the transpose of a C-ordered (1024, rows) array.
        rows = n // TRANSPOSED_ROW_ELEMENTS
        x = x_all[:n].reshape(TRANSPOSED_ROW_ELEMENTS, rows).T
        return x, out_all[:n].reshape(rows, TRANSPOSED_ROW_ELEMENTS)

    return (
        _streaming_sweep("stream_min_bytes", STREAM_SWEEP_KIB, contiguous, repeat, log),
        _streaming_sweep(
            "transposed_stream_min_bytes", TRANSPOSED_SWEEP_KIB, transposed, repeat, log
        ),
    )


def calibrate(repeat: int = 9, log: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Measure the thresholds on this machine (about 15 seconds); nothing is saved.

    Streaming: float32 ``relu`` out of place, plain against streamed stores, from 1 to 128
    MiB of output; the threshold is the smallest size where streaming wins and loses at no
    larger size measured (twice the largest size if it never wins). The same from a
    transposed input into a C-ordered output, from 256 KiB to 8 MiB (the contiguous
    threshold if it never wins below it: past the caches a tile's lines are no better
    off). Threads: ``relu`` over 64 KiB to 4 MiB of traffic on one thread and on two; the
    per-thread threshold is half the traffic from which two threads win (null, keeping the
    default, without OpenMP or a second core).
    """
    import numpy as np

    from . import _kernels, relu, threads

    log = log or (lambda line: None)
    before = _kernels.thresholds()  # values and their sources, restored as they were
    try:
        stream_rows, transposed_rows = _streaming_sweeps(repeat, log)
        largest = max(STREAM_SWEEP_KIB) << 10
        stream_min = _first_winning(stream_rows)
        if stream_min is None:
            stream_min = 2 * largest
        transposed_min = _first_winning(transposed_rows)
        if transposed_min is None or transposed_min > stream_min:
            transposed_min = stream_min

        thread_rows = []
        parallel_min = None
        cores = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        )
        if _kernels.BUILD_INFO["openmp"] and (cores or 1) >= 2:
            _kernels._set_thresholds(
                stream_min_bytes=2 * largest,
                transposed_stream_min_bytes=2 * largest,
                parallel_min_bytes=1,
            )
            for kib in THREAD_SWEEP_KIB:
                n = (kib << 10) // 8  # float32 in and out: 8 bytes of traffic per element
                x = np.linspace(-1.0, 1.0, n, dtype=np.float32)
                out = np.empty_like(x)

                def one(x=x, out=out):
                    with threads(1):
                        relu(x, out=out)

                def two(x=x, out=out):
                    with threads(2):
                        relu(x, out=out)

                # Short calls: each sample runs several, so the clock's resolution and one
                # scheduling hiccup matter less.
                batch = max(1, (8 << 20) // (kib << 10))
                t_one, t_two = _median_times([one, two], repeat, batch)
                thread_rows.append((kib << 10, t_one, t_two))
                log(
                    f"threads {kib:4d} KiB moved: 1 thread {t_one * 1e6:8.1f} us, "
                    f"2 threads {t_two * 1e6:8.1f} us"
                )
            break_even = _first_winning(thread_rows)
            if break_even is not None:
                parallel_min = max(1, break_even // 2)
    finally:
        for name, (value, source) in before.items():
            _kernels._set_thresholds(**{name: value}, source=source)

    return {
        "stream_min_bytes": stream_min,
        "transposed_stream_min_bytes": transposed_min,
        "parallel_min_bytes": parallel_min,
        "simd": _kernels.BUILD_INFO["simd"],
        "python": sys.version.split()[0],
        "measured": {
            "stream": [{"out_bytes": s, "plain_s": a, "streamed_s": b} for s, a, b in stream_rows],
            "transposed_stream": [
                {"out_bytes": s, "plain_s": a, "streamed_s": b} for s, a, b in transposed_rows
            ],
            "threads": [
                {"traffic_bytes": s, "one_thread_s": a, "two_threads_s": b}
                for s, a, b in thread_rows
            ],
        },
    }


def tune(save: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Measure the thresholds, put them in force in this process and (if asked) save them.

    Environment variables still win in later processes; in this one the measured values
    replace whatever was in force. Returns the measurement, with ``path`` (the file
    written, or None) and, where saving failed, ``error``.
    """
    from . import _kernels

    def log(line: str) -> None:
        if verbose:
            print(line, flush=True)

    result = calibrate(log=log)
    measured = {k: result[k] for k in DEFAULTS if result[k] is not None}
    _kernels._set_thresholds(**measured, source="tuned: this process")
    result["path"] = None
    if save:
        try:
            result["path"] = str(save_tuned(result))
        except OSError as error:
            result["error"] = f"could not write {tuned_path()}: {error}"
    if verbose:
        for name in DEFAULTS:
            value = result[name]
            shown = "no crossover measured (default kept)" if value is None else f"{value} bytes"
            print(f"{name}: {shown}")
        print(f"saved to {result['path']}" if result["path"] else result.get("error", "not saved"))
    return result
