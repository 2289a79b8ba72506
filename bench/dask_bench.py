"""Benchmark fastact on chunked dask arrays against the NumPy idioms on the same arrays.

What it measures
----------------
One float32 array x of n = 2**26 elements (256 MiB) and a gradient g of the same size,
seeded random-sign standard-normal data as in ``run.py``, each split into 32 chunks of
2**21 elements (8 MiB). For relu, leaky_relu and leaky_relu_backward (slope 0.01), three
lazy expressions over those dask arrays (STATEMENTS below):

* ``fastact``: ``fastact.relu(x)`` etc. The main functions hand dask arrays to
  ``fastact.ufunc``, which dask maps over the chunks: one task per chunk, each running
  the compiled loop with the GIL released.
* ``numpy``: the NumPy idiom written with dask (``da.maximum(x, 0)``,
  ``da.where(x > 0, x, s * x)``, ``da.where(x > 0, g, s * g)``). Dask fuses its
  elementwise steps into one task per chunk, so its temporaries are chunk-sized.
* ``roofline``: ``x.map_blocks(np.copy)`` (``da.add(g, x)`` for the backward pass): the
  same bytes moved, and the same tasks scheduled, with no work in between.

Each expression is computed by dask's threaded scheduler with 1 and with 2 worker
threads. Reported: the median time of ``--repeat`` runs (after one warm-up run),
GB/s (the bytes the function reads and writes: 2n or 3n elements, over that time),
numpy time / fastact time, fastact's GB/s as a percentage of the roofline's, and each
implementation's speed-up with N workers over 1 worker: the loops release the GIL, so
the chunks run in parallel threads, up to the machine's memory bandwidth.

How
---
The inputs are built before any timing: ``da.from_array`` of in-memory NumPy arrays,
persisted, so that the timed graphs contain no random generation and no loading.

How a result is consumed: ``.compute()`` would concatenate the 32 chunk results into a
new 256 MiB array, a copy as large as the operation itself, done by one thread after
the parallel part; it would dilute every ratio and the scaling alike. Instead each
expression goes to ``da.store`` with a target that drops every chunk it is given
(``Discard``): each task computes its chunk in full, into the array the operation
allocates, as it always does on dask, and nothing is copied or concatenated.
``--store array`` writes into a preallocated NumPy array instead
(``da.store(result, out, lock=False)``): what keeping an in-memory result costs, one
more read and write of every chunk for every implementation.

Before timing, fastact on the dask arrays is checked against fastact on the whole NumPy
arrays, bit for bit (NaN by NaN-ness), on the timing data and on edge values (NaN,
+-inf, +-0.0, subnormals, extremes; the benchmark's set) in uneven chunks; a mismatch
exits with status 1. Without dask the script prints why and exits with status 0.

Output: a table, and every sample with the machine description in
``bench/results/dask.json``. ``python bench/dask_bench.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fastact
from fastact._bench.checks import count_mismatches, edge_operands, exactness, random_operands
from fastact._bench.cli import count_list, write_problem
from fastact._bench.report import format_time, metadata, write_json
from fastact._bench.timing import Settings, time_interleaved

try:
    import dask
    import dask.array as da
except ImportError as exc:  # an optional extra: pip install ".[dask]"
    dask = da = None
    DASK_MISSING = str(exc)

NEGATIVE_SLOPE = 0.01
DTYPE = np.dtype(np.float32)
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "dask.json"
STORES = {"discard": "a target that drops each chunk", "array": "a NumPy array"}
EDGE_CHUNK = 100  # elements: the 1024 edge values fall into 11 chunks, the last one short

# ---------------------------------------------------------------------------------------
# What is measured. Statements see x and g (dask arrays, or NumPy arrays when checking),
# s (the slope as a Python float), fastact, np and da.


@dataclass(frozen=True)
class Function:
    name: str
    streams: int  # arrays of n elements read or written
    fastact: str
    numpy: str
    roofline: str


COPY = "x.map_blocks(np.copy)"
ADD = "da.add(g, x)"
FUNCTIONS = (
    Function("relu", 2, "fastact.relu(x)", "da.maximum(x, 0)", COPY),
    Function("leaky_relu", 2, "fastact.leaky_relu(x, s)", "da.where(x > 0, x, s * x)", COPY),
    Function(
        "leaky_relu_backward",
        3,
        "fastact.leaky_relu_backward(g, x, s)",
        "da.where(x > 0, g, s * g)",
        ADD,
    ),
)
IMPLEMENTATIONS = ("fastact", "numpy", "roofline")


def evaluate(stmt: str, x: Any, g: Any) -> Any:
    """A statement's result for these operands: lazy for dask arrays."""
    names = {"fastact": fastact, "np": np, "da": da, "s": NEGATIVE_SLOPE}
    return eval(stmt, {**names, "x": x, "g": g})


def as_dask(array: np.ndarray, chunk: int) -> Any:
    """An in-memory dask array of ``array``, its chunks computed before any timing."""
    return da.from_array(array, chunks=chunk).persist(scheduler="threads")


class Discard:
    """A ``da.store`` target that drops every chunk: the chunk is computed, then freed."""

    def __setitem__(self, region: Any, chunk: Any) -> None:
        pass


# ---------------------------------------------------------------------------------------
# The exactness check.


def check_dask_matches_numpy(x: np.ndarray, g: np.ndarray, dx: Any, dg: Any) -> dict[str, str]:
    """fastact on the dask arrays dx and dg (it must stay lazy; then computed) versus
    fastact on the NumPy arrays x and g they hold: "yes" per function, or the mismatch."""
    verdicts = {}
    for func in FUNCTIONS:
        lazy = evaluate(func.fastact, dx, dg)
        if not isinstance(lazy, da.Array):
            verdicts[func.name] = f"no (returned {type(lazy).__name__}, not a dask array)"
            continue
        got, want = lazy.compute(scheduler="threads"), evaluate(func.fastact, x, g)
        verdicts[func.name] = exactness(count_mismatches(got, want), x.size)
    return verdicts


def check_exactness(x: np.ndarray, g: np.ndarray, dx: Any, dg: Any) -> dict[str, dict[str, str]]:
    """The check on the timing data, then on edge values in small, uneven chunks."""
    ex, eg = edge_operands(DTYPE)
    operands = {
        f"timing data, {dx.numblocks[0]} chunks": (x, g, dx, dg),
        f"edge values, {-(-ex.size // EDGE_CHUNK)} chunks": (
            ex,
            eg,
            as_dask(ex, EDGE_CHUNK),
            as_dask(eg, EDGE_CHUNK),
        ),
    }
    print("fastact on dask == fastact on the whole NumPy array, bit for bit (NaN by NaN-ness):")
    verdicts = {}
    for data, arrays in operands.items():
        verdicts[data] = check_dask_matches_numpy(*arrays)
        print(f"  {data}: " + ", ".join(f"{f} {v}" for f, v in verdicts[data].items()))
    return verdicts


# ---------------------------------------------------------------------------------------
# Timing.


def store_timer(lazy: Any, target: Any, workers: int) -> timeit.Timer:
    """A timer of one threaded ``da.store`` of ``lazy`` with ``workers`` threads."""
    return timeit.Timer(
        lambda: da.store(lazy, target, lock=False, scheduler="threads", num_workers=workers)
    )


def time_function(
    func: Function, dx: Any, dg: Any, target: Any, workers: int, cfg: Settings
) -> dict[str, Any]:
    """Seconds per run of each implementation after a warm-up run, sampled in interleaved
    rounds (the benchmark's ``time_interleaved``) so that all share the machine's noise."""
    timers = {
        impl: store_timer(evaluate(getattr(func, impl), dx, dg), target, workers)
        for impl in IMPLEMENTATIONS
    }
    timings = time_interleaved(timers, cfg)
    return {impl: timing.samples for impl, timing in timings.items()}


@dataclass
class Row:
    function: str
    workers: int
    bytes: int  # read + written by one call of the function
    samples_s: dict[str, list[float]]  # by implementation

    def median(self, impl: str) -> float:
        return float(np.median(self.samples_s[impl]))

    def gbps(self, impl: str) -> float:
        return self.bytes / self.median(impl) / 1e9


def run_timings(dx: Any, dg: Any, target: Any, workers: list[int], cfg: Settings) -> list[Row]:
    rows = []
    n = dx.size
    for func in FUNCTIONS:
        for count in workers:
            samples = time_function(func, dx, dg, target, count, cfg)
            rows.append(Row(func.name, count, func.streams * n * DTYPE.itemsize, samples))
            print(".", end="", flush=True)
    print()
    return rows


# ---------------------------------------------------------------------------------------
# Reporting.


def speedup(rows: list[Row], row: Row, impl: str) -> float:
    """impl's time with the fewest workers measured over its time in ``row``."""
    first = next(r for r in rows if r.function == row.function)
    return first.median(impl) / row.median(impl)


def summary(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "function": row.function,
            "workers": row.workers,
            "fastact_s": row.median("fastact"),
            "fastact_gbps": row.gbps("fastact"),
            "numpy_s": row.median("numpy"),
            "numpy_gbps": row.gbps("numpy"),
            "numpy_over_fastact": row.median("numpy") / row.median("fastact"),
            "roofline_gbps": row.gbps("roofline"),
            "percent_of_roofline": 100 * row.gbps("fastact") / row.gbps("roofline"),
            "fastact_speedup_over_fewest_workers": speedup(rows, row, "fastact"),
            "numpy_speedup_over_fewest_workers": speedup(rows, row, "numpy"),
            "roofline_speedup_over_fewest_workers": speedup(rows, row, "roofline"),
        }
        for row in rows
    ]


TABLE = (
    ("function", 20, "function", "{}"),
    ("workers", 7, "workers", "{}"),
    ("fastact", 9, "fastact_s", None),
    ("GB/s", 6, "fastact_gbps", "{:.1f}"),
    ("numpy", 9, "numpy_s", None),
    ("GB/s", 6, "numpy_gbps", "{:.1f}"),
    ("np/fa", 6, "numpy_over_fastact", "{:.2f}"),
    ("%roof", 6, "percent_of_roofline", "{:.0f}%"),
    ("fa xW", 6, "fastact_speedup_over_fewest_workers", "{:.2f}"),
    ("np xW", 6, "numpy_speedup_over_fewest_workers", "{:.2f}"),
    ("roof xW", 7, "roofline_speedup_over_fewest_workers", "{:.2f}"),
)  # heading, width, summary key, format (None: a time)


def table_line(cells: list[str]) -> str:
    widths = [width for _, width, _, _ in TABLE]
    padded = [cell.rjust(width) for cell, width in zip(cells, widths, strict=True)]
    return " ".join([cells[0].ljust(widths[0]), *padded[1:]])


def print_table(lines: list[dict[str, Any]], fewest: int) -> None:
    print(
        "\nfastact, numpy: median time per call; GB/s: the function's bytes read + written\n"
        "per second; np/fa: numpy time / fastact time (>1: fastact is faster); %roof:\n"
        "fastact's GB/s over the roofline's; fa xW, np xW, roof xW: speed-up over the same\n"
        f"with {fewest} worker(s); when the roofline does not scale either, the cores or the\n"
        "memory bandwidth are the limit, not the GIL"
    )
    print(table_line([heading for heading, _, _, _ in TABLE]))
    for line in lines:
        print(
            table_line(
                [
                    format_time(line[key]) if fmt is None else fmt.format(line[key])
                    for _, _, key, fmt in TABLE
                ]
            )
        )


# ---------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exponent", type=int, default=26, help="n = 2**E elements (default 26)")
    parser.add_argument("--chunks", type=int, default=32, help="chunks per array (default 32)")
    parser.add_argument(
        "--workers", type=count_list, default=[1, 2], help="comma-separated (default 1,2)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed runs after a warm-up (default 5)"
    )
    parser.add_argument(
        "--store",
        choices=("discard", "array"),
        default="discard",
        help="drop each result chunk (default), or write it into a preallocated NumPy array",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="results file (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if not 10 <= args.exponent <= 28 or not 1 <= args.chunks <= 2**args.exponent:
        parser.error("need 10 <= --exponent <= 28 and 1 <= --chunks <= 2**exponent")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    problem = write_problem(args.json)  # before the run, which a bad path would waste
    if problem is not None:
        parser.error(f"argument --json: cannot write {args.json}: {problem}")
    return args


def print_header(meta: dict[str, Any], args: argparse.Namespace, dx: Any) -> None:
    chunk = dx.chunks[0][0]
    print(
        f"\n{DTYPE.name}, n = 2^{args.exponent} ({dx.nbytes / 2**20:g} MiB per array) in "
        f"{dx.numblocks[0]} chunks of {chunk} ({chunk * DTYPE.itemsize / 2**20:g} MiB); "
        f"threaded scheduler,\nworkers {', '.join(map(str, args.workers))}; "
        f"da.store into {STORES[args.store]}; median of {args.repeat} runs"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if da is None:
        print(f"dask benchmark skipped: {DASK_MISSING} (pip install '.[dask]')")
        return 0
    n = 2**args.exponent
    meta = {**metadata({}), "dask": dask.__version__}
    print(f"fastact {fastact.__version__}, dask {dask.__version__}, numpy {np.__version__}")
    print(f"{meta['cpu']}, {meta['cores']} cores, {meta['platform']}")

    x, g = random_operands(n, DTYPE)
    dx, dg = (as_dask(array, -(-n // args.chunks)) for array in (x, g))
    verdicts = check_exactness(x, g, dx, dg)
    if any(v != "yes" for table in verdicts.values() for v in table.values()):
        print("error: fastact on dask differs from fastact on NumPy", file=sys.stderr)
        return 1
    del x, g  # dx and dg hold copies

    print_header(meta, args, dx)
    target = Discard() if args.store == "discard" else np.zeros(n, DTYPE)
    # One call per sample (each lasts milliseconds at least); the first call warms up.
    cfg = Settings(
        exponents=(),
        repeat=args.repeat,
        large_repeat=args.repeat,
        target=0.0,
        large_sample=float("inf"),
    )
    rows = run_timings(dx, dg, target, args.workers, cfg)
    lines = summary(rows)
    print_table(lines, args.workers[0])
    write_json(
        args.json,
        {
            "metadata": meta,
            "settings": {
                **vars(args),
                "json": str(args.json),
                "n": n,
                "chunk_sizes": dx.chunks[0],
            },
            "dtype": DTYPE.name,
            "negative_slope": NEGATIVE_SLOPE,
            "statements": {func.name: asdict(func) for func in FUNCTIONS},
            "exactness": verdicts,
            "samples_s": [asdict(row) for row in rows],
            "summary": lines,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
