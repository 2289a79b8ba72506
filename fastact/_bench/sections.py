"""The tables, each a section of a run: what it times, on which data, and its rows.

* main and in place: every competitor of every function, dtype and size (``Case``);
* sweep: fastact, numba's loop and np.copyto at every power of two across the caches;
* patterns: random-sign input against the same values sorted and half NaN;
* strided: fastact on views against np.maximum on them and fastact on a contiguous copy;
* threads: fastact inside ``fastact.threads(t)``, the peers through their thread counts;
* overhead: tiny arrays; prelu: (N, C, H, W) with one weight per channel;
* dead: ``dead_units`` on (samples, units) batches against the idioms and a read roofline.

Each section checks its statements on edge values first (``checks.py``) and prints one
dot per case while it runs; ``report.py`` prints the rows.
"""

from __future__ import annotations

import gc
import timeit
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastact
from fastact import _reference

from .checks import (
    SEED,
    Verdict,
    Verdicts,
    as_numpy,
    check_statements,
    count_mismatches,
    edge_operands,
    edge_values,
    exactness,
    ml_dtypes,
    random_operands,
)
from .peers import PEER_PRELU, PEER_STATEMENTS, Peer, ThreadCountRefused
from .statements import (
    DTYPES,
    FUNCTIONS,
    IN_PLACE,
    MAIN,
    NUMPY_IDIOMS,
    SIDE_DTYPE,
    Competitor,
    Function,
    competitors,
    fastact_call,
    main_competitors,
    namespace,
)
from .timing import Settings, Timing, gbps, time_interleaved, time_statements, timing_fields

# ---------------------------------------------------------------------------------------
# The main and in-place tables.


@dataclass
class Case:
    function: Function
    dtype: np.dtype
    n: int
    table: str
    competitors: list[Competitor]
    timings: dict[str, Timing]  # by column

    def competitor(self, column: str) -> Competitor:
        return next(comp for comp in self.competitors if comp.column == column)

    @property
    def rooflines(self) -> list[str]:
        """Roofline columns; the first moves the function's own bytes."""
        return [comp.column for comp in self.competitors if comp.role == "roofline"]

    @property
    def ratio_columns(self) -> list[str]:
        return [comp.column for comp in self.competitors if comp.role == "ratio"]

    def gbps(self, column: str) -> float:
        """Throughput of a column, counting the arrays of n elements it moves."""
        streams = self.competitor(column).streams or self.function.streams()
        return gbps(streams, self.n, self.dtype, self.timings[column].median)

    def percent_of(self, roofline: str) -> float | None:
        """fastact's throughput over a roofline's, each counting its own bytes."""
        if roofline not in self.timings:
            return None
        return 100 * self.gbps("fastact") / self.gbps(roofline)

    def ratio(self, column: str) -> float | None:
        """Competitor time over fastact time: above 1, fastact is faster."""
        if column not in self.timings:
            return None
        return self.timings[column].median / self.timings["fastact"].median

    def fastest_peer(self) -> tuple[str, float] | None:
        """The peer column with the lowest time over fastact's, and that ratio."""
        peers = [c.column for c in self.competitors if c.peer and c.column in self.timings]
        if not peers:
            return None
        column = min(peers, key=lambda col: self.timings[col].median)
        return column, self.timings[column].median / self.timings["fastact"].median


def check_exactness(funcs: list[Function], dtype: np.dtype, peers: list[Peer]) -> Verdicts:
    """Judge every non-roofline competitor of the main and in-place tables."""
    x, g = edge_operands(dtype)
    entries = [
        ((comp.table, func.name, comp.column), func, comp.stmt)
        for func in funcs
        for comp in competitors(func, peers, dtype)
        if comp.role != "roofline"
    ]
    return check_statements(entries, lambda: namespace(x, g, peers))


def runs(comp: Competitor, func: Function, verdicts: Verdicts, table: str | None = None) -> bool:
    """Whether a competitor is timed: rooflines always, others unless their check raised."""
    verdict = verdicts.get((table or comp.table, func.name, comp.column))
    return comp.role == "roofline" or (verdict is not None and not verdict.failed)


def run_cases(
    funcs: list[Function], dtype: np.dtype, peers: list[Peer], cfg: Settings, verdicts: Verdicts
) -> list[Case]:
    """Time every competitor of every function at every size, one dot per function and
    size; the main and in-place competitors of a function share their rounds."""
    cases = []
    for exponent in cfg.exponents_for(dtype):
        n = 2**exponent
        x, g = random_operands(n, dtype)
        ns = namespace(x, g, peers)
        for func in funcs:
            comps = [c for c in competitors(func, peers, dtype) if runs(c, func, verdicts)]
            np.copyto(ns["xi"], x)  # in-place statements start from the same data
            np.copyto(ns["gi"], g)
            timings = time_statements({c.stmt: c.stmt for c in comps}, ns, cfg)
            for table in (MAIN, IN_PLACE):
                chosen = [c for c in comps if c.table == table]
                if chosen:
                    by_column = {c.column: timings[c.stmt] for c in chosen}
                    cases.append(Case(func, dtype, n, table, chosen, by_column))
            print(".", end="", flush=True)
        del x, g, ns
        gc.collect()  # free the largest arrays before the next size allocates its own
    print()
    return cases


# ---------------------------------------------------------------------------------------
# Size sweep: fastact against numba's loop (the closest peer) and np.copyto at every power
# of two, so that a cliff (a threshold firing at the wrong size) shows between the main
# table's sizes. The better of the two is the bar: numba's time over fastact's, and
# fastact's GB/s over np.copyto's (each counting its own bytes).

SWEEP = "sweep"
SWEEP_DTYPES = ("float32", "float64")
SWEEP_COLUMNS = ("fastact", "numba", "copyto")
SWEEP_TARGET = 0.97


def sweep_functions(funcs: list[Function]) -> list[Function]:
    """The functions numba's loop computes."""
    return [f for f in funcs if f.name in PEER_STATEMENTS["numba"]["numba"]]


def sweep_competitors(func: Function, peers: list[Peer]) -> list[Competitor]:
    numba = [peer for peer in peers if peer.name == "numba"]
    return [c for c in main_competitors(func, numba) if c.column in SWEEP_COLUMNS]


def check_sweep(funcs: list[Function], dtype: np.dtype, peers: list[Peer]) -> Verdicts:
    x, g = edge_operands(dtype)
    entries = [
        ((SWEEP, func.name, comp.column), func, comp.stmt)
        for func in funcs
        for comp in sweep_competitors(func, peers)
        if comp.role != "roofline"
    ]
    return check_statements(entries, lambda: namespace(x, g, peers, in_place=False))


def size_sweep(
    funcs: list[Function], dtype: np.dtype, peers: list[Peer], cfg: Settings, verdicts: Verdicts
) -> list[dict[str, Any]]:
    """One row per (function, size): medians, GB/s and the ratios to each bar."""
    rows = []
    numba = [peer for peer in peers if peer.name == "numba" and peer.supports(dtype)]
    for exponent in cfg.sweep_exponents:
        n = 2**exponent
        x, g = random_operands(n, dtype)
        ns = namespace(x, g, numba, in_place=False)
        for func in funcs:
            comps = [c for c in sweep_competitors(func, numba) if runs(c, func, verdicts, SWEEP)]
            timings = time_statements({c.column: c.stmt for c in comps}, ns, cfg)
            medians = {col: timing.median for col, timing in timings.items()}
            case = Case(func, dtype, n, SWEEP, comps, timings)
            bars = {"copyto": case.gbps("fastact") / case.gbps("copyto")}
            if "numba" in medians:
                bars["numba"] = medians["numba"] / medians["fastact"]
            better = min(bars, key=lambda bar: bars[bar])
            exact = {col: verdicts[SWEEP, func.name, col].exact for col in bars if col != "copyto"}
            rows.append(
                {
                    "function": func.name,
                    "dtype": dtype.name,
                    "n": n,
                    **timing_fields(timings),
                    "gbps": {col: case.gbps(col) for col in medians},
                    "exact": exact,
                    "over": bars,
                    "better": better,
                    "of_better": bars[better],
                }
            )
            print(".", end="", flush=True)
        del x, g, ns
        gc.collect()
    print()
    return rows


# ---------------------------------------------------------------------------------------
# Input patterns: does the time depend on the data?


def sorted_pattern(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.sort(x)


def half_nan(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x with a random half of its elements NaN: unpredictable for a branch on NaN."""
    return np.where(rng.random(x.size) < 0.5, np.array(np.nan, x.dtype), x)


INPUT_PATTERNS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "random": lambda x, rng: x,
    "sorted": sorted_pattern,  # a branch predictor's best case
    "half NaN": half_nan,
}
PATTERN_FUNCTIONS = ("relu", "leaky_relu", "relu_backward")


def input_patterns(funcs: list[Function], dtype: np.dtype, cfg: Settings) -> list[dict[str, Any]]:
    """fastact with ``out=`` on each pattern of x (g stays random): a time per pattern near
    the random-sign one means the loops do not branch on the sign or on NaN."""
    n = 2**cfg.pattern_exponent
    x, g = random_operands(n, dtype)
    rng = np.random.default_rng([SEED, n, 1])
    spaces = {name: namespace(make(x, rng), g, []) for name, make in INPUT_PATTERNS.items()}
    rows = []
    for func in (f for f in funcs if f.name in PATTERN_FUNCTIONS):
        stmt = fastact_call(func)
        timers = {name: timeit.Timer(stmt, globals=ns) for name, ns in spaces.items()}
        with np.errstate(all="ignore"):
            timings = time_interleaved(timers, cfg)
        medians = {name: timing.median for name, timing in timings.items()}
        rows.append(
            {
                "function": func.name,
                "dtype": dtype.name,
                "n": n,
                "stmt": stmt,
                **timing_fields(timings),
                "over_random": {name: s / medians["random"] for name, s in medians.items()},
            }
        )
    return rows


# ---------------------------------------------------------------------------------------
# Strided input: fastact on views, against np.maximum on the same views and fastact on a
# contiguous copy. Throughput counts the logical bytes (2 n itemsize), not the spans.


def grid(n: int) -> tuple[int, int]:
    """(rows, columns) of a near-square 2-D array of n = 2**k elements."""
    columns = 2 ** (n.bit_length() // 2)
    return n // columns, columns


def every_other(x: np.ndarray) -> np.ndarray:
    """x as x2[::2] of an array x2 twice as long: stride 2 elements."""
    base = np.empty(2 * x.size, x.dtype)
    base[::2] = x
    return base[::2]


def row_slice(x: np.ndarray) -> np.ndarray:
    """x as the left half of each row of a 2-D array twice as wide: contiguous rows, gaps."""
    rows, columns = grid(x.size)
    base = np.empty((rows, 2 * columns), x.dtype)
    base[:, :columns] = x.reshape(rows, columns)
    return base[:, :columns]


def transposed(x: np.ndarray) -> np.ndarray:
    """x as the transpose of a C-contiguous 2-D array: Fortran order, written into a C-order y
    (at 2^20 elements, a 1024 x 1024 transpose)."""
    rows, columns = grid(x.size)
    return np.ascontiguousarray(x.reshape(rows, columns).T).T


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "x2[::2]": every_other,
    "x2[:, :c]": row_slice,
    "x2.T": transposed,
}
# By layout: strided over contiguous throughput the kernels aim at, at least.
STRIDED_TARGETS = {"x2[::2]": 0.5, "x2[:, :c]": 0.5, "x2.T": 0.4}
STRIDED_FUNCTION = FUNCTIONS["relu"]
# By column; x is the view, xc a contiguous copy of it, y a C-contiguous output.
STRIDED_STATEMENTS = {
    "fastact": "fastact.relu(x, out=y)",
    "alloc": "fastact.relu(x)",
    "np out": "np.maximum(x, 0, out=y)",
    "np": "np.maximum(x, 0)",
    "contig": "fastact.relu(xc, out=y)",
    "contig new": "fastact.relu(xc)",
}


def strided_namespace(x: np.ndarray, layout: str) -> dict[str, Any]:
    view = LAYOUTS[layout](x)
    return {**namespace(view, view, []), "xc": np.ascontiguousarray(view)}


def check_strided() -> Verdicts:
    """Every strided statement on the edge values, laid out as each layout lays them out."""
    x, _ = edge_operands(SIDE_DTYPE)
    verdicts = {}
    for layout in LAYOUTS:
        entries = [
            ((f"strided {layout}", STRIDED_FUNCTION.name, col), STRIDED_FUNCTION, stmt)
            for col, stmt in STRIDED_STATEMENTS.items()
        ]
        verdicts |= check_statements(entries, lambda layout=layout: strided_namespace(x, layout))
    return verdicts


def strided(cfg: Settings, verdicts: Verdicts) -> list[dict[str, Any]]:
    """One row per (layout, size): every statement's median and GB/s, and fastact's
    strided throughput over its contiguous throughput, with and without ``out=``."""
    rows = []
    for exponent in cfg.strided_exponents:
        n = 2**exponent
        x, _ = random_operands(n, SIDE_DTYPE)
        for layout in LAYOUTS:
            ns = strided_namespace(x, layout)
            timings = time_statements(STRIDED_STATEMENTS, ns, cfg)
            medians = {col: timing.median for col, timing in timings.items()}
            key = f"strided {layout}"
            rows.append(
                {
                    "function": STRIDED_FUNCTION.name,
                    "dtype": SIDE_DTYPE.name,
                    "n": n,
                    "layout": layout,
                    "shape": list(ns["x"].shape),
                    "strides": list(ns["x"].strides),
                    "competitors": {
                        col: {
                            "stmt": stmt,
                            "exact": verdicts[key, STRIDED_FUNCTION.name, col].exact,
                            "median_s": medians[col],
                            "gbps": gbps(2, n, SIDE_DTYPE, medians[col]),
                        }
                        for col, stmt in STRIDED_STATEMENTS.items()
                    },
                    "target": STRIDED_TARGETS[layout],
                    "out_over_contiguous": medians["contig"] / medians["fastact"],
                    "alloc_over_contiguous": medians["contig new"] / medians["alloc"],
                }
            )
            print(".", end="", flush=True)
            del ns
        gc.collect()
    print()
    return rows


# ---------------------------------------------------------------------------------------
# Thread scaling: each implementation writing into a preallocated output (so that no
# thread count times page faults), on 1, 2, 4, ... threads; fastact inside
# fastact.threads(t), the peers through their own thread counts.

# By implementation, by function.
THREAD_STATEMENTS: dict[str, dict[str, str]] = {
    "fastact": {
        "relu": "fastact.relu(x, out=y)",
        "leaky_relu": "fastact.leaky_relu(x, s, out=y)",
        "relu_backward": "fastact.relu_backward(g, x, out=y)",
    },
    "torch": {
        "relu": "torch.clamp_min(tx, 0, out=ty)",  # what torch.relu runs; relu.out is slower
        "leaky_relu": "torch.ops.aten.leaky_relu.out(tx, s, out=ty)",
        "relu_backward": "torch.ops.aten.threshold_backward.grad_input(tg, tx, 0, grad_input=ty)",
    },
    "numexpr": {
        name: PEER_STATEMENTS["numexpr"]["numexpr"][name]
        for name in ("relu", "leaky_relu", "relu_backward")
    },
}


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... up to the core count, and the core count itself."""
    counts = [2**k for k in range(cores.bit_length()) if 2**k <= cores]
    return counts if counts[-1] == cores else [*counts, cores]


def thread_controls(peers: list[Peer]) -> dict[str, Callable[[int], AbstractContextManager[Any]]]:
    """By implementation: a context manager factory running its block on n threads."""
    controls = {"fastact": fastact.threads}
    controls |= {peer.name: peer.threads for peer in peers if peer.threads}
    return {impl: control for impl, control in controls.items() if impl in THREAD_STATEMENTS}


def check_threads(funcs: list[Function], peers: list[Peer]) -> Verdicts:
    x, g = edge_operands(SIDE_DTYPE)
    entries = [
        (("threads", func.name, impl), func, THREAD_STATEMENTS[impl][func.name])
        for impl in thread_controls(peers)
        for func in funcs
        if func.name in THREAD_STATEMENTS[impl]
    ]
    return check_statements(entries, lambda: namespace(x, g, peers))


def thread_scaling(
    funcs: list[Function], peers: list[Peer], counts: list[int], cfg: Settings, verdicts: Verdicts
) -> list[dict[str, Any]]:
    """One row per (size, function, thread count, implementation). Unlike the other tables,
    the implementations are not interleaved: each one's samples run back to back, with its
    thread count set once for all of them. Interleaved, each library's idle workers (an
    OpenMP pool spins for a while after every parallel region) would compete for the cores
    with the next library's, and every multi-threaded number would time that contention."""
    controls = thread_controls(peers)
    rows = []
    for exponent in cfg.thread_exponents:
        n = 2**exponent
        x, g = random_operands(n, SIDE_DTYPE)
        ns = namespace(x, g, peers)
        for func in funcs:
            stmts = {
                impl: THREAD_STATEMENTS[impl][func.name]
                for impl in controls
                if not verdicts[("threads", func.name, impl)].failed
            }
            for count in counts:
                timings = {}
                for impl, stmt in stmts.items():
                    try:
                        with controls[impl](count):
                            timings[impl] = time_statements({impl: stmt}, ns, cfg)[impl]
                    except ThreadCountRefused:  # no row: it would time another count
                        continue
                rows += [
                    {
                        "function": func.name,
                        "dtype": SIDE_DTYPE.name,
                        "n": n,
                        "threads": count,
                        "implementation": impl,
                        "stmt": stmt,
                        "exact": verdicts[("threads", func.name, impl)].exact,
                        "median_s": timings[impl].median,
                        "gbps": gbps(func.streams(), n, SIDE_DTYPE, timings[impl].median),
                    }
                    for impl, stmt in stmts.items()
                    if impl in timings
                ]
            print(".", end="", flush=True)
        del x, g, ns
        gc.collect()
    print()
    add_thread_ratios(rows)
    return rows


def add_thread_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's speed-up over the same implementation on the fewest threads, and its
    time over fastact's on as many threads."""
    fewest = min(row["threads"] for row in rows) if rows else 1
    by_key = {(r["function"], r["n"], r["threads"], r["implementation"]): r for r in rows}
    for row in rows:
        key = (row["function"], row["n"])
        base = by_key.get((*key, fewest, row["implementation"]))
        ours = by_key.get((*key, row["threads"], "fastact"))
        row["speedup_vs_fewest_threads"] = base["median_s"] / row["median_s"] if base else None
        row["time_over_fastact"] = row["median_s"] / ours["median_s"] if ours else None


# ---------------------------------------------------------------------------------------
# Call overhead on tiny arrays.

OVERHEAD_FUNCTIONS = ("relu", "leaky_relu", "relu_backward")


def overhead_competitors(func: Function, peers: list[Peer]) -> list[Competitor]:
    """fastact with and without ``out=``, the NumPy idioms and torch."""
    keep = {"fastact", "alloc", *NUMPY_IDIOMS.get(func.name, {}), "torch"}
    return [c for c in main_competitors(func, peers) if c.column in keep]


def check_overhead(funcs: list[Function], peers: list[Peer]) -> Verdicts:
    x, g = edge_operands(SIDE_DTYPE)
    entries = [
        (("overhead", func.name, comp.column), func, comp.stmt)
        for func in funcs
        for comp in overhead_competitors(func, peers)
    ]
    return check_statements(entries, lambda: namespace(x, g, peers))


def call_overhead(
    funcs: list[Function], peers: list[Peer], cfg: Settings, verdicts: Verdicts
) -> list[dict[str, Any]]:
    """Median nanoseconds per call on tiny arrays, and each competitor's time over fastact's
    writing its result the same way (a new array: fastact without ``out=``)."""
    rows = []
    for n in cfg.overhead_sizes:
        x, g = random_operands(n, SIDE_DTYPE)
        ns = namespace(x, g, peers)
        for func in funcs:
            comps = [
                c
                for c in overhead_competitors(func, peers)
                if not verdicts["overhead", func.name, c.column].failed
            ]
            timings = time_statements({c.column: c.stmt for c in comps}, ns, cfg)
            for comp in comps:
                verdict = verdicts["overhead", func.name, comp.column]
                base = "alloc" if verdict.allocates else "fastact"
                rows.append(
                    {
                        "n": n,
                        "function": func.name,
                        "column": comp.column,
                        "stmt": comp.stmt,
                        "exact": verdict.exact,
                        "allocates": verdict.allocates,
                        "ns": 1e9 * timings[comp.column].median,
                        "compared_with": base,
                        "time_over_fastact": timings[comp.column].median / timings[base].median,
                    }
                )
    return rows


# ---------------------------------------------------------------------------------------
# PReLU with one weight per channel: (N, C, H, W) in every float type, and an (N, C) batch
# (runs of one element) in float32. The forward against the copy roofline of its bytes, the
# NumPy idiom and the peers; the backward (input gradient and the weight-gradient
# reduction) against the roofline of its three streams, the NumPy idiom and torch's
# autograd backward, which runs the elementwise kernel and then a separate reduction. The
# check compares the forward results and the backward's input gradient with the reference
# bit for bit, per type; the weight gradient is a sum whose rounding depends on its order,
# so no two implementations need agree on its last bits.

# (dtype, shape) by row, 2^18 and 2^22 elements each.
PRELU_CASES = [
    ("float32", (16, 64, 16, 16)),
    ("float32", (16, 64, 64, 64)),
    ("float32", (4096, 64)),
    ("float32", (65536, 64)),
    ("float64", (16, 64, 16, 16)),
    ("float64", (16, 64, 64, 64)),
    ("float16", (16, 64, 16, 16)),
    ("float16", (16, 64, 64, 64)),
    ("float16", (4096, 64)),
    ("bfloat16", (16, 64, 16, 16)),
    ("bfloat16", (16, 64, 64, 64)),
    ("bfloat16", (4096, 64)),
]
# The edge values laid out as (N, C, H, W), with a weight per channel that hits the rules'
# edges: 0, a negative slope, above 1, and NaN.
PRELU_EDGE_SHAPE = (-1, 4, 4, 8)
PRELU_EDGE_WEIGHTS = (0.0, -0.5, 1.5, np.nan)
# ``wb``: the weights broadcast along axis 1; ``axes``: every axis but the channel axis.
PRELU_STATEMENTS = {
    "forward": {
        "fastact": "fastact.prelu(x, w, out=y)",
        "np": "np.where(x > 0, x, wb * x)",
        "copyto": "np.copyto(y, x)",
    },
    "backward": {
        "fastact": "fastact.prelu_backward(g, x, w, out=y)",
        "alloc": "fastact.prelu_backward(g, x, w)",
        "np": "(np.where(x > 0, g, wb * g), np.where(x > 0, 0, x * g).sum(axis=axes))",
        "or": "np.bitwise_or(gu, xu, out=yu)",
    },
}
PRELU_ROOFLINES = {"forward": ("copyto", 2), "backward": ("or", 3)}


def prelu_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def prelu_key(direction: str, col: str, dtype: np.dtype) -> tuple[str, ...]:
    """A verdict's key; float32's without the type (the table's first type)."""
    key = ("prelu", direction, col)
    return key if dtype == np.float32 else (*key, dtype.name)


def prelu_peers(peers: list[Peer], dtype: np.dtype) -> list[Peer]:
    return [peer for peer in peers if peer.supports(dtype)]


def prelu_statements(direction: str, peers: list[Peer]) -> dict[str, str]:
    """By column (a peer's column is its name): fastact, the idiom, peers, the roofline."""
    base = PRELU_STATEMENTS[direction]
    found = {col: stmt for col, stmt in base.items() if col != PRELU_ROOFLINES[direction][0]}
    found |= {
        peer.name: PEER_PRELU[peer.name][direction]
        for peer in peers
        if direction in PEER_PRELU.get(peer.name, {})
    }
    roofline = PRELU_ROOFLINES[direction][0]
    return {**found, roofline: base[roofline]}


def prelu_namespace(
    x: np.ndarray, g: np.ndarray, w: np.ndarray, peers: list[Peer]
) -> dict[str, Any]:
    y = np.empty_like(x)
    unsigned = np.dtype(f"u{x.dtype.itemsize}")
    ns: dict[str, Any] = {"np": np, "fastact": fastact, "x": x, "g": g, "w": w, "y": y}
    ns.update(wb=w.reshape(w.shape + (1,) * (x.ndim - 2)))
    ns.update(axes=tuple(axis for axis in range(x.ndim) if axis != 1))
    ns.update(xu=x.view(unsigned), gu=g.view(unsigned), yu=y.view(unsigned))
    for peer in peers:
        if peer.bind_prelu is not None:
            ns.update(peer.bind_prelu({"x": x, "g": g, "w": w, "y": y}))
    return ns


def prelu_verdict(direction: str, stmt: str, ns: dict[str, Any]) -> Verdict:
    """Like ``checks.judge``, on the forward result or the backward's input gradient."""
    with np.errstate(all="ignore"):  # edge values: the weight gradient's sums overflow
        want = _reference.prelu(ns["x"], ns["w"])
        if direction == "backward":
            want = _reference.prelu_backward(ns["g"], ns["x"], ns["w"])[0]
    try:
        with np.errstate(all="ignore"):
            got = eval(stmt, ns)
    except Exception as exc:
        return Verdict(stmt, f"error ({type(exc).__name__}: {exc})", allocates=False)
    got = got[0] if direction == "backward" else got
    got = as_numpy(got)
    allocates = not np.may_share_memory(got, ns["y"])
    return Verdict(stmt, exactness(count_mismatches(got, want), want.size), allocates)


def prelu_cases(dtypes: list[np.dtype]) -> list[tuple[str, tuple[int, ...]]]:
    """The table's rows of the chosen types (bfloat16 only with ml_dtypes)."""
    chosen = {dtype.name for dtype in dtypes}
    return [(name, shape) for name, shape in PRELU_CASES if name in DTYPES and name in chosen]


def check_prelu(peers: list[Peer], dtypes: list[np.dtype]) -> Verdicts:
    verdicts = {}
    for name in dict.fromkeys(name for name, _ in prelu_cases(dtypes)):
        dtype = prelu_dtype(name)
        chosen = prelu_peers(peers, dtype)
        # Repeated to a whole number of (4, 4, 8) blocks.
        x, g = (
            np.resize(v, -(-v.size // 128) * 128).reshape(PRELU_EDGE_SHAPE)
            for v in edge_operands(dtype)
        )
        w = np.array(PRELU_EDGE_WEIGHTS, np.float32).astype(dtype)
        for direction in PRELU_STATEMENTS:
            for col, stmt in prelu_statements(direction, chosen).items():
                if col != PRELU_ROOFLINES[direction][0]:
                    # A fresh namespace each: torch's autograd graph is built on its x.
                    try:
                        ns = prelu_namespace(x.copy(), g.copy(), w.copy(), chosen)
                    except Exception as exc:  # a peer that cannot take this type
                        error = f"error ({type(exc).__name__}: {exc})"
                        verdicts[prelu_key(direction, col, dtype)] = Verdict(stmt, error, False)
                        continue
                    verdicts[prelu_key(direction, col, dtype)] = prelu_verdict(direction, stmt, ns)
    return verdicts


def prelu_table(
    cfg: Settings, peers: list[Peer], verdicts: Verdicts, dtypes: list[np.dtype]
) -> list[dict[str, Any]]:
    rows = []
    for name, shape in prelu_cases(dtypes):
        dtype = prelu_dtype(name)
        # Peers whose statements all failed the check are not even bound.
        chosen = [
            peer
            for peer in prelu_peers(peers, dtype)
            if any(
                key in verdicts and not verdicts[key].failed
                for key in (prelu_key(d, peer.name, dtype) for d in PRELU_STATEMENTS)
            )
        ]
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        g = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        ns = prelu_namespace(x, g, np.full(shape[1], 0.25, dtype), chosen)
        n = x.size
        for direction, (roofline, streams) in PRELU_ROOFLINES.items():
            stmts = {
                col: stmt
                for col, stmt in prelu_statements(direction, chosen).items()
                if col == roofline or not verdicts[prelu_key(direction, col, dtype)].failed
            }
            # The idioms compute for up to 120 ms (16-bit types) beside calls of 1 ms.
            with np.errstate(over="ignore"):  # the idiom's float16 sums overflow
                timings = time_statements(stmts, ns, cfg, rewarm=True)
            medians = {k: t.median for k, t in timings.items()}
            rows.append(
                {
                    "direction": direction,
                    "dtype": dtype.name,
                    "shape": list(shape),
                    "n": n,
                    **timing_fields(timings),
                    "exact": {
                        col: verdicts[prelu_key(direction, col, dtype)].exact
                        for col in medians
                        if col != roofline
                    },
                    "gbps": gbps(streams, n, dtype, medians["fastact"]),
                    "of_roofline": medians[roofline] / medians["fastact"],
                    "ratios": {k: v / medians["fastact"] for k, v in medians.items()},
                }
            )
        del ns
        gc.collect()
    return rows


# ---------------------------------------------------------------------------------------
# Dead units: a batch of pre-activations, (samples, 1024 units), reduced along the samples
# to one bool per unit, in every float type. Against the NumPy idiom, torch's, and the
# roofline of a read-only pass: NumPy's cheapest reduction of the same bytes along the same
# axis, an OR of their bits as unsigned integers. The check compares each mask with the
# reference's on edge values (NaN is alive, ±0 dead), some units dead and some not.

DEAD_UNITS = 1024
DEAD_STATEMENTS = {
    "fastact": "fastact.dead_units(x)",
    "np": "np.all(x <= 0, axis=0)",
}
DEAD_PEER_STATEMENTS = {"torch": "(tx <= 0).all(0)"}
DEAD_ROOFLINE = ("or", "np.bitwise_or.reduce(xu, axis=0)")


def dead_peers(peers: list[Peer], dtype: np.dtype) -> list[Peer]:
    return [peer for peer in peers if peer.name in DEAD_PEER_STATEMENTS and peer.supports(dtype)]


def dead_statements(peers: list[Peer]) -> dict[str, str]:
    """By column: fastact, the idiom, the peers (by name), then the roofline."""
    found = dict(DEAD_STATEMENTS) | {peer.name: DEAD_PEER_STATEMENTS[peer.name] for peer in peers}
    return {**found, DEAD_ROOFLINE[0]: DEAD_ROOFLINE[1]}


def dead_namespace(x: np.ndarray, peers: list[Peer]) -> dict[str, Any]:
    ns: dict[str, Any] = {"np": np, "fastact": fastact, "x": x}
    ns["xu"] = x.view(np.dtype(f"u{x.dtype.itemsize}"))
    for peer in peers:
        ns.update(peer.bind({"x": x}))
    return ns


def dead_edge_batch(dtype: np.dtype) -> np.ndarray:
    """The edge values down every unit in a rotated order, then the same units with the
    positive values made 0: those are dead unless they hold a NaN."""
    values = edge_values(dtype)
    mixed = np.stack([np.roll(values, k) for k in range(values.size)], axis=1)
    with np.errstate(invalid="ignore"):
        clipped = np.where(mixed > 0, np.zeros((), dtype), mixed)
    return np.ascontiguousarray(np.concatenate([mixed, clipped], axis=1))


def dead_verdict(stmt: str, ns: dict[str, Any]) -> Verdict:
    """The statement's mask against the reference's, element for element."""
    want = _reference.dead_units(ns["x"], 0)
    try:
        got = eval(stmt, ns)
    except Exception as exc:  # a peer that cannot take this type
        return Verdict(stmt, f"error ({type(exc).__name__}: {exc})", allocates=False)
    return Verdict(stmt, exactness(count_mismatches(as_numpy(got), want), want.size), True)


def check_dead(peers: list[Peer], dtypes: list[np.dtype]) -> Verdicts:
    verdicts = {}
    for dtype in dtypes:
        chosen = dead_peers(peers, dtype)
        ns = dead_namespace(dead_edge_batch(dtype), chosen)
        for col, stmt in dead_statements(chosen).items():
            if col != DEAD_ROOFLINE[0]:
                verdicts["dead_units", col, dtype.name] = dead_verdict(stmt, ns)
    return verdicts


def dead_table(
    cfg: Settings, peers: list[Peer], verdicts: Verdicts, dtypes: list[np.dtype]
) -> list[dict[str, Any]]:
    """One row per (dtype, size): every statement's median, fastact's GB/s of the batch it
    reads, its share of the roofline's and the others' time over fastact's."""
    rows = []
    for dtype in dtypes:
        chosen = dead_peers(peers, dtype)
        stmts = {
            col: stmt
            for col, stmt in dead_statements(chosen).items()
            if col == DEAD_ROOFLINE[0] or not verdicts["dead_units", col, dtype.name].failed
        }
        for exponent in cfg.dead_exponents:
            n = 2**exponent
            x, _ = random_operands(n, dtype)
            x = x.reshape(-1, min(n, DEAD_UNITS))
            # A fifth of the units dead: their samples all made <= 0.
            x[:, : x.shape[1] // 5] = -abs(x[:, : x.shape[1] // 5])
            ns = dead_namespace(x, chosen)
            timings = time_statements(stmts, ns, cfg)
            medians = {k: t.median for k, t in timings.items()}
            rows.append(
                {
                    "dtype": dtype.name,
                    "shape": list(x.shape),
                    "n": n,
                    **timing_fields(timings),
                    "exact": {
                        col: verdicts["dead_units", col, dtype.name].exact
                        for col in medians
                        if col != DEAD_ROOFLINE[0]
                    },
                    "gbps": gbps(1, n, dtype, medians["fastact"]),
                    "of_roofline": medians[DEAD_ROOFLINE[0]] / medians["fastact"],
                    "ratios": {k: v / medians["fastact"] for k, v in medians.items()},
                }
            )
            print(".", end="", flush=True)
            del ns
        gc.collect()
    print()
    return rows
