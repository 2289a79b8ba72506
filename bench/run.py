"""Benchmark fastact against the NumPy idioms it replaces, optional peers and a roofline.

What it measures
----------------
For each dtype (float32, float64), function (relu, leaky_relu, their derivatives and
fused backward passes) and size n (2**4 up to 2**26 elements), the median time per call
of every *competitor* of that function on seeded, random-sign standard-normal data:

* ``fastact`` with a preallocated ``out=``: the main number (and ``fastact.relu(x)``
  without ``out=``, column ``alloc``, to show what allocating the result costs);
* the NumPy idioms a user would otherwise write (columns ``np`` and ``np out``);
* peers, each only if importable: torch (one thread), a numba ``@njit`` loop and
  numexpr (one thread);
* the roofline: ``np.copyto(y, x)`` moves the same bytes as a unary function (read n,
  write n); ``np.add(g, x, out=y)`` the same as a backward function (read 2n, write n).

How
---
Every competitor is a one-line statement (NUMPY_IDIOMS, PEER_STATEMENTS and
``competitors()`` below), run by ``timeit`` in a
namespace holding the operands. Before anything is timed, every statement is evaluated
on an array of edge values (NaN, +-inf, +-0.0, subnormals, extremes, random) and its
result compared bit for bit (NaN by NaN-ness only) with ``fastact._reference``. A
fastact mismatch aborts the run; any other mismatch is reported and its numbers are
starred. Timing: each statement is warmed up and calibrated to a loop count that makes
one sample last at least ``--target-ms`` (or one call at huge sizes), then all
competitors of a case are sampled in interleaved rounds, so that they share the same
machine noise, and the median sample is reported.

Output: one table per dtype (fastact time, GB/s = bytes read + written per second,
% of the roofline's GB/s, and ratios competitor time / fastact time: above 1 means
fastact is faster), a sorted-versus-random input check, a call-overhead table and a
JSON file with every sample and the machine description; when matplotlib is installed,
PNG plots of throughput and speed-up versus size beside it (``plotting.py``; ``plot.py``
redraws them from a saved JSON).

Run ``python bench/run.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import fastact
from fastact import _reference

NEGATIVE_SLOPE = 0.01
SEED = 12345
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
MAX_LOOPS = 1_000_000

# ---------------------------------------------------------------------------------------
# What is measured: the functions and, per function, the statements that compete.
# Statements see x, g (grad_output), y (preallocated output), s (the slope as a Python
# float) and sx (the slope as a scalar of x's dtype), plus whatever a peer binds.


@dataclass(frozen=True)
class Function:
    name: str
    backward: bool  # takes (grad_output, x) rather than x
    slope: bool  # takes negative_slope

    @property
    def arg_names(self) -> tuple[str, ...]:
        """The positional arguments, as named in a statement's namespace."""
        return ("g",) * self.backward + ("x",) + ("s",) * self.slope

    @property
    def call_args(self) -> str:
        return ", ".join(self.arg_names)

    def streams(self) -> int:
        """Arrays of n elements read or written by one call."""
        return 3 if self.backward else 2

    def reference(self, ns: dict[str, Any]) -> np.ndarray:
        return getattr(_reference, self.name)(*(ns[name] for name in self.arg_names))


FUNCTIONS = {
    f.name: f
    for f in (
        Function("relu", backward=False, slope=False),
        Function("leaky_relu", backward=False, slope=True),
        Function("relu_grad", backward=False, slope=False),
        Function("leaky_relu_grad", backward=False, slope=True),
        Function("relu_backward", backward=True, slope=False),
        Function("leaky_relu_backward", backward=True, slope=True),
    )
}

NUMPY_IDIOMS: dict[str, dict[str, str]] = {
    "relu": {"np": "np.maximum(x, 0)", "np out": "np.maximum(x, 0, out=y)"},
    "leaky_relu": {"np": "np.where(x > 0, x, s * x)"},
    "relu_grad": {"np": "(x > 0).astype(x.dtype)"},
    "leaky_relu_grad": {"np": "np.where(x > 0, 1, s).astype(x.dtype)"},
    "relu_backward": {"np": "g * (x > 0)", "np out": "np.multiply(g, x > 0, out=y)"},
    "leaky_relu_backward": {"np": "np.where(x > 0, g, s * g)"},
}

COPY_ROOFLINE = "np.copyto(y, x)"
ADD_ROOFLINE = "np.add(g, x, out=y)"

PEER_STATEMENTS: dict[str, dict[str, str]] = {
    "torch": {
        "relu": "torch.relu(tx)",
        "leaky_relu": "F.leaky_relu(tx, s)",
        "relu_backward": "torch.ops.aten.threshold_backward(tg, tx, 0)",
        "leaky_relu_backward": "torch.ops.aten.leaky_relu_backward(tg, tx, s, False)",
    },
    "numba": {
        "relu": "nb_relu(x, y)",
        "leaky_relu": "nb_leaky_relu(x, sx, y)",
        "relu_backward": "nb_relu_backward(g, x, y)",
        "leaky_relu_backward": "nb_leaky_relu_backward(g, x, sx, y)",
    },
    "numexpr": {
        "relu": 'ne.evaluate("where(x < 0, 0, x)", out=y)',
        "leaky_relu": 'ne.evaluate("where(x > 0, x, x * sx)", out=y)',
        "relu_backward": 'ne.evaluate("where(x <= 0, 0, g)", out=y)',
        "leaky_relu_backward": 'ne.evaluate("where(x > 0, g, g * sx)", out=y)',
    },
}

# Table columns holding ratios, in order; a function without such a competitor shows "-".
RATIO_COLUMNS = ("alloc", "np", "np out", *PEER_STATEMENTS)


@dataclass(frozen=True)
class Competitor:
    column: str
    stmt: str
    role: str  # "fastact", "ratio" (a table column) or "roofline"


def competitors(func: Function, peers: Iterable[Peer]) -> list[Competitor]:
    """Everything timed for ``func``; the first entry is fastact with ``out=``."""
    found = [Competitor("fastact", f"fastact.{func.name}({func.call_args}, out=y)", "fastact")]
    if func.name == "relu":
        found.append(Competitor("alloc", "fastact.relu(x)", "ratio"))
    found += [Competitor(col, stmt, "ratio") for col, stmt in NUMPY_IDIOMS[func.name].items()]
    found += [
        Competitor(peer.name, peer.statements[func.name], "ratio")
        for peer in peers
        if func.name in peer.statements
    ]
    found.append(Competitor("copyto", COPY_ROOFLINE, "roofline"))
    if func.backward:
        found.append(Competitor("add", ADD_ROOFLINE, "roofline"))
    return found


def roofline_column(func: Function) -> str:
    return "add" if func.backward else "copyto"


# ---------------------------------------------------------------------------------------
# Peers: optional libraries, each loaded if importable and restricted to one thread.


@dataclass
class Peer:
    name: str
    version: str
    statements: dict[str, str]
    bind: Callable[[np.ndarray, np.ndarray], dict[str, Any]]  # names the statements use


def load_torch() -> Peer:
    import torch

    torch.set_num_threads(1)

    def bind(x: np.ndarray, g: np.ndarray) -> dict[str, Any]:
        return {
            "torch": torch,
            "F": torch.nn.functional,
            "tx": torch.from_numpy(x),
            "tg": torch.from_numpy(g),
        }

    return Peer("torch", torch.__version__, PEER_STATEMENTS["torch"], bind)


def load_numba() -> Peer:
    import numba

    @numba.njit
    def nb_relu(x, out):
        for i in range(x.size):
            out[i] = 0 if x[i] < 0 else x[i]
        return out

    @numba.njit
    def nb_leaky_relu(x, s, out):
        for i in range(x.size):
            out[i] = x[i] if x[i] > 0 else x[i] * s
        return out

    @numba.njit
    def nb_relu_backward(g, x, out):
        for i in range(x.size):
            out[i] = 0 if x[i] <= 0 else g[i]
        return out

    @numba.njit
    def nb_leaky_relu_backward(g, x, s, out):
        for i in range(x.size):
            out[i] = g[i] if x[i] > 0 else g[i] * s
        return out

    kernels = {
        "nb_relu": nb_relu,
        "nb_leaky_relu": nb_leaky_relu,
        "nb_relu_backward": nb_relu_backward,
        "nb_leaky_relu_backward": nb_leaky_relu_backward,
    }
    # Compiled on first call, per dtype: the edge-value check does that before any timing.
    return Peer("numba", numba.__version__, PEER_STATEMENTS["numba"], lambda x, g: kernels)


def load_numexpr() -> Peer:
    import numexpr

    numexpr.set_num_threads(1)
    return Peer(
        "numexpr", numexpr.__version__, PEER_STATEMENTS["numexpr"], lambda x, g: {"ne": numexpr}
    )


PEER_LOADERS: dict[str, Callable[[], Peer]] = {
    "torch": load_torch,
    "numba": load_numba,
    "numexpr": load_numexpr,
}


def load_peers(names: Iterable[str]) -> tuple[list[Peer], dict[str, str]]:
    """The peers that import, and a version (or why not) for every name asked for."""
    peers, versions = [], {}
    for name in names:
        try:
            peer = PEER_LOADERS[name]()
        except ImportError as exc:
            versions[name] = f"skipped ({exc})"
            continue
        peers.append(peer)
        versions[name] = peer.version
    return peers, versions


def namespace(x: np.ndarray, g: np.ndarray, peers: Iterable[Peer]) -> dict[str, Any]:
    """The globals every statement runs in."""
    ns: dict[str, Any] = {
        "np": np,
        "fastact": fastact,
        "x": x,
        "g": g,
        "y": np.empty_like(x),
        "s": NEGATIVE_SLOPE,
        "sx": x.dtype.type(NEGATIVE_SLOPE),
    }
    for peer in peers:
        ns.update(peer.bind(x, g))
    return ns


# ---------------------------------------------------------------------------------------
# Data and the exactness check.


def random_operands(n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([SEED, n])
    return rng.standard_normal(n, dtype=dtype), rng.standard_normal(n, dtype=dtype)


def edge_values(dtype: np.dtype) -> np.ndarray:
    info = np.finfo(dtype)
    nan = np.array(np.nan, dtype)
    sub = info.smallest_subnormal
    special = [nan, np.inf, 0.0, sub, 3 * sub, info.smallest_normal / 2]
    special += [info.smallest_normal, info.eps, 0.5, 1.0, 2.0, info.max]
    random = np.random.default_rng(SEED).standard_normal(8, dtype=dtype)
    values = np.array(special, dtype)
    return np.concatenate([values, -values, random])


def edge_operands(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every edge value of x paired with every edge value of g."""
    values = edge_values(dtype)
    return np.repeat(values, values.size), np.tile(values, values.size)


def as_numpy(result: Any) -> np.ndarray:
    """A statement's result (an ndarray, or a torch tensor) as an ndarray, not copied."""
    return result.numpy() if hasattr(result, "numpy") else np.asarray(result)


def count_mismatches(got: np.ndarray, want: np.ndarray) -> int | str:
    """Elements whose bits differ (NaN: whose NaN-ness differs), or why none compare."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"returns {got.dtype} {got.shape}"
    uint = np.dtype(f"u{want.itemsize}")
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    bits_differ = (got.view(uint) != want.view(uint)) & ~nan_want
    return int(np.count_nonzero((nan_got != nan_want) | bits_differ))


def exactness(mismatches: int | str, total: int) -> str:
    if mismatches == 0:
        return "yes"
    if isinstance(mismatches, str):
        return f"no ({mismatches})"
    return f"no ({mismatches} of {total} mismatch)"


@dataclass(frozen=True)
class Verdict:
    exact: str  # "yes", or "no (why)"
    allocates: bool  # returns a new array rather than writing into y


Verdicts = dict[tuple[str, str], Verdict]  # by (function name, column)


def check_exactness(funcs: Iterable[Function], dtype: np.dtype, peers: list[Peer]) -> Verdicts:
    """Run every non-roofline competitor once on the edge values and judge its result."""
    x, g = edge_operands(dtype)
    ns = namespace(x, g, peers)
    verdicts = {}
    for func in funcs:
        want = func.reference(ns)
        stmts = [(c.column, c.stmt) for c in competitors(func, peers) if c.role != "roofline"]
        # fastact without out= is checked too, though only relu times it.
        stmts.append(("fastact new", f"fastact.{func.name}({func.call_args})"))
        for column, stmt in stmts:
            with np.errstate(all="ignore"):
                got = as_numpy(eval(stmt, ns))
            verdicts[func.name, column] = Verdict(
                exactness(count_mismatches(got, want), x.size),
                allocates=not np.may_share_memory(got, ns["y"]),
            )
    return verdicts


def require_fastact_exact(verdicts: Verdicts, dtype: np.dtype) -> None:
    bad = {k: v.exact for k, v in verdicts.items() if k[1].startswith("fastact")}
    bad = {k: v for k, v in bad.items() if v != "yes"}
    if bad:
        details = "; ".join(f"{f} ({col}): {v}" for (f, col), v in bad.items())
        raise SystemExit(f"error: fastact disagrees with fastact._reference on {dtype}: {details}")


# ---------------------------------------------------------------------------------------
# Timing.


@dataclass(frozen=True)
class Settings:
    exponents: tuple[int, ...]  # sizes are 2**exponent elements
    repeat: int  # samples per competitor
    large_repeat: int  # samples when a calibrated sample takes longer than `large_sample`
    target: float  # minimum seconds per sample
    large_sample: float
    sorted_exponent: int
    overhead_sizes: tuple[int, ...] = (1, 16, 256)


MODES = {
    "quick": Settings(
        (4, 12), repeat=3, large_repeat=3, target=0.0005, large_sample=0.02, sorted_exponent=12
    ),
    "default": Settings(
        (4, 10, 14, 18, 22, 26),
        repeat=7,
        large_repeat=3,
        target=0.002,
        large_sample=0.03,
        sorted_exponent=18,
    ),
    "full": Settings(
        tuple(range(4, 27)),
        repeat=15,
        large_repeat=5,
        target=0.002,
        large_sample=0.05,
        sorted_exponent=18,
    ),
}


@dataclass
class Timing:
    number: int  # calls per sample
    samples: list[float] = field(default_factory=list)  # seconds per call

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def calibrate(timer: timeit.Timer, target: float) -> tuple[int, float]:
    """Calls per sample so that a sample lasts at least ``target``; the first call warms up."""
    number, elapsed = 1, timer.timeit(1)
    while elapsed < target and number < MAX_LOOPS:
        estimate = math.ceil(1.2 * number * target / max(elapsed, 1e-9))
        number = min(MAX_LOOPS, max(2 * number, estimate))
        elapsed = timer.timeit(number)
    return number, elapsed


def time_interleaved(timers: dict[str, timeit.Timer], cfg: Settings) -> dict[str, Timing]:
    """Samples of every timer, taken in round-robin order rotated each round so that all
    share the machine's noise and none always runs first."""
    timings, longest = {}, 0.0
    for key, timer in timers.items():
        number, elapsed = calibrate(timer, cfg.target)
        timings[key] = Timing(number)
        longest = max(longest, elapsed)
    rounds = cfg.repeat if longest < cfg.large_sample else min(cfg.repeat, cfg.large_repeat)
    keys = list(timers)
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            timing = timings[key]
            timing.samples.append(timers[key].timeit(timing.number) / timing.number)
    return timings


def time_statements(stmts: dict[str, str], ns: dict[str, Any], cfg: Settings) -> dict[str, Timing]:
    with np.errstate(all="ignore"):
        return time_interleaved(
            {key: timeit.Timer(stmt, globals=ns) for key, stmt in stmts.items()}, cfg
        )


# ---------------------------------------------------------------------------------------
# The three measurements.


@dataclass
class Case:
    function: Function
    dtype: np.dtype
    n: int
    stmts: dict[str, str]  # by column
    timings: dict[str, Timing]  # by column

    def gbps(self, column: str, streams: int | None = None) -> float:
        """Throughput of a column, counting ``streams`` arrays of n elements moved."""
        streams = self.function.streams() if streams is None else streams
        return streams * self.n * self.dtype.itemsize / self.timings[column].median / 1e9

    def percent_of(self, roofline: str) -> float | None:
        """fastact's throughput over a roofline's, each counting its own bytes."""
        if roofline not in self.timings:
            return None
        streams = 2 if roofline == "copyto" else 3
        return 100 * self.gbps("fastact") / self.gbps(roofline, streams)

    def ratio(self, column: str) -> float | None:
        """Competitor time over fastact time: above 1, fastact is faster."""
        if column not in self.timings:
            return None
        return self.timings[column].median / self.timings["fastact"].median


def run_cases(
    funcs: list[Function], dtype: np.dtype, peers: list[Peer], cfg: Settings
) -> list[Case]:
    """Time every competitor of every function at every size, one dot per case."""
    cases = []
    for exponent in cfg.exponents:
        n = 2**exponent
        x, g = random_operands(n, dtype)
        ns = namespace(x, g, peers)
        for func in funcs:
            stmts = {c.column: c.stmt for c in competitors(func, peers)}
            cases.append(Case(func, dtype, n, stmts, time_statements(stmts, ns, cfg)))
            print(".", end="", flush=True)
        del x, g, ns
        gc.collect()  # free the largest arrays before the next size allocates its own
    print()
    return cases


SORTED_FUNCTIONS = ("relu", "leaky_relu", "relu_backward")


def sorted_vs_random(
    funcs: list[Function], dtype: np.dtype, cfg: Settings
) -> list[dict[str, Any]]:
    """fastact on random-sign input versus the same values sorted (a branch predictor's
    best case): a ratio near 1 means the loops do not branch on the sign."""
    n = 2**cfg.sorted_exponent
    x, g = random_operands(n, dtype)
    spaces = {"random": namespace(x, g, []), "sorted": namespace(np.sort(x), g, [])}
    rows = []
    for func in (f for f in funcs if f.name in SORTED_FUNCTIONS):
        stmt = f"fastact.{func.name}({func.call_args}, out=y)"
        timers = {order: timeit.Timer(stmt, globals=ns) for order, ns in spaces.items()}
        timings = time_interleaved(timers, cfg)
        random_s, sorted_s = timings["random"].median, timings["sorted"].median
        rows.append(
            {
                "function": func.name,
                "dtype": dtype.name,
                "n": n,
                "stmt": stmt,
                "random_s": random_s,
                "sorted_s": sorted_s,
                "random_over_sorted": random_s / sorted_s,
            }
        )
    return rows


OVERHEAD_PAIRS = (
    ("fastact.relu(x)", "np.maximum(x, 0)"),
    ("fastact.relu(x, out=y)", "np.maximum(x, 0, out=y)"),
)


def call_overhead(cfg: Settings) -> list[dict[str, Any]]:
    """Median nanoseconds per call on tiny float32 arrays: fastact versus np.maximum."""
    rows = []
    for n in cfg.overhead_sizes:
        x, g = random_operands(n, np.dtype(np.float32))
        stmts = {stmt: stmt for pair in OVERHEAD_PAIRS for stmt in pair}
        timings = time_statements(stmts, namespace(x, g, []), cfg)
        for fa_stmt, np_stmt in OVERHEAD_PAIRS:
            fa_ns, np_ns = 1e9 * timings[fa_stmt].median, 1e9 * timings[np_stmt].median
            rows.append(
                {
                    "n": n,
                    "fastact": fa_stmt,
                    "numpy": np_stmt,
                    "fastact_ns": fa_ns,
                    "numpy_ns": np_ns,
                    "numpy_over_fastact": np_ns / fa_ns,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------
# Reporting.


def format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(ratio: float | None, exact: str) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" + ("" if exact == "yes" else "*")


def format_percent(percent: float | None) -> str:
    return "-" if percent is None else f"{percent:.0f}%"


TABLE_HEAD = ("function", "n", "fastact", "GB/s", "%roof", "%copy")
TABLE_WIDTHS = (20, 5, 9, 6, 6, 6)
RATIO_WIDTH = 8


def table_line(cells: list[str]) -> str:
    widths = TABLE_WIDTHS + (RATIO_WIDTH,) * (len(cells) - len(TABLE_WIDTHS))
    parts = [cells[0].ljust(widths[0])]
    parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return " ".join(parts).rstrip()


def case_row(case: Case, verdicts: Verdicts, columns: list[str]) -> list[str]:
    func = case.function
    copy_percent = case.percent_of("copyto") if func.backward else None
    ratios = [
        format_ratio(case.ratio(col), verdicts[func.name, col].exact)
        if (func.name, col) in verdicts
        else "-"
        for col in columns
    ]
    return [
        func.name,
        f"2^{case.n.bit_length() - 1}",
        format_time(case.timings["fastact"].median),
        f"{case.gbps('fastact'):.1f}",
        format_percent(case.percent_of(roofline_column(func))),
        format_percent(copy_percent),
        *ratios,
    ]


def print_cases(dtype: np.dtype, cases: list[Case], verdicts: Verdicts) -> None:
    columns = [col for col in RATIO_COLUMNS if any(col in case.timings for case in cases)]
    allocating = {col for (_, col), verdict in verdicts.items() if verdict.allocates}
    print(f"\n{dtype.name}: fastact = time per call with out=y; GB/s = its bytes read + written")
    print("per second; %roof = of the roofline's GB/s (np.copyto for unary functions,")
    print("np.add(g, x, out=y) for backward ones); %copy = of np.copyto's (backward only).")
    print("Other columns: competitor time / fastact time, >1 means fastact is faster;")
    print("* = competitor not bit-exact (see the legend above).")
    if allocating:
        names = ", ".join(col for col in columns if col in allocating)
        print(f"{names}: allocate their result, so their ratios include the allocation.")
    print(table_line([*TABLE_HEAD, *columns]))
    order = list(FUNCTIONS)
    previous = None
    for case in sorted(cases, key=lambda c: (order.index(c.function.name), c.n)):
        if previous is not None and case.function is not previous:
            print()
        print(table_line(case_row(case, verdicts, columns)))
        previous = case.function


def legend_entry(judged: dict[str, Verdict]) -> tuple[str, str]:
    """(where the result goes, exactness) of one competitor, from its verdict per dtype."""
    if not judged:
        return "into y", "roofline"
    first = next(iter(judged.values()))
    exact = {verdict.exact for verdict in judged.values()}
    if len(exact) > 1:
        exact = {", ".join(f"{dt}: {verdict.exact}" for dt, verdict in judged.items())}
    return ("new" if first.allocates else "into y"), exact.pop()


def print_legend(funcs: list[Function], peers: list[Peer], verdicts: dict[str, Verdicts]) -> None:
    """What each column runs, whether it allocates, and whether it matched the reference."""
    print("\nCompetitors: column, statement, result, bit-exact vs fastact._reference on edge")
    print("values (NaN, +-inf, +-0.0, subnormals, extremes, random; every x with every g)")
    for func in funcs:
        print(f"  {func.name}")
        for comp in competitors(func, peers):
            key = (func.name, comp.column)
            judged = {dt: table[key] for dt, table in verdicts.items() if key in table}
            result, exact = legend_entry(judged)
            print(f"    {comp.column:<8} {comp.stmt:<53} {result:<7} {exact}")


def print_sorted(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(f"\nSorted vs random input, fastact with out=, n=2^{rows[0]['n'].bit_length() - 1}:")
    print("random time / sorted time (about 1: no branch on the sign)")
    for row in rows:
        print(f"  {row['function']:<20} {row['dtype']:<8} {row['random_over_sorted']:.2f}")


def print_overhead(rows: list[dict[str, Any]]) -> None:
    print("\nCall overhead, float32, median ns per call (ratio = numpy / fastact):")
    print(f"  {'n':>4}  {'fastact':<24} {'ns':>6}  {'numpy':<26} {'ns':>6}  ratio")
    for r in rows:
        print(
            f"  {r['n']:>4}  {r['fastact']:<24} {r['fastact_ns']:>6.0f}  "
            f"{r['numpy']:<26} {r['numpy_ns']:>6.0f}  {r['numpy_over_fastact']:.2f}"
        )


# ---------------------------------------------------------------------------------------
# Machine description and JSON.


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def metadata(peer_versions: dict[str, str]) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "fastact": fastact.show_config(print_out=False),
        "peers": peer_versions,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
    }


def competitor_record(case: Case, column: str, verdict: Verdict | None) -> dict[str, Any]:
    timing = case.timings[column]
    return {
        "stmt": case.stmts[column],
        "exact": verdict.exact if verdict else "roofline",
        "allocates": verdict.allocates if verdict else False,
        "calls_per_sample": timing.number,
        "samples_s": timing.samples,
        "median_s": timing.median,
        "time_over_fastact": case.ratio(column),
    }


def case_record(case: Case, verdicts: Verdicts) -> dict[str, Any]:
    func = case.function
    return {
        "dtype": case.dtype.name,
        "function": func.name,
        "n": case.n,
        "bytes_per_call": func.streams() * case.n * case.dtype.itemsize,
        "fastact_gbps": case.gbps("fastact"),
        "roofline": roofline_column(func),
        "percent_of_roofline": case.percent_of(roofline_column(func)),
        "percent_of_copyto": case.percent_of("copyto"),
        "competitors": {
            col: competitor_record(case, col, verdicts.get((func.name, col)))
            for col in case.timings
        },
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nWrote {path}")


def write_plots(report: dict[str, Any], directory: Path) -> None:
    """The PNGs of plotting.py, or a one-line note when matplotlib is missing."""
    try:
        import plotting
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
        print('No plots: matplotlib is not installed (pip install matplotlib, or ".[bench]")')
        return
    for path in plotting.write_plots(report, directory):
        print(f"Wrote {path}")


# ---------------------------------------------------------------------------------------
# Command line.


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def choices_list(allowed: Iterable[str]) -> Callable[[str], list[str]]:
    allowed = tuple(allowed)

    def parse(text: str) -> list[str]:
        items = comma_list(text)
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {allowed}")
        return items

    return parse


def exponent_list(text: str) -> tuple[int, ...]:
    try:
        exponents = tuple(int(item) for item in comma_list(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not exponents or not all(0 <= e <= 28 for e in exponents):
        raise argparse.ArgumentTypeError("exponents must be between 0 and 28")
    return exponents


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    mode.add_argument("--full", action="store_true", help="every size 2^4..2^26, more samples")
    parser.add_argument(
        "--dtypes",
        type=choices_list(["float32", "float64"]),
        default=["float32", "float64"],
        help="comma-separated",
    )
    parser.add_argument(
        "--functions",
        type=choices_list(FUNCTIONS),
        default=list(FUNCTIONS),
        help="comma-separated, from: " + ", ".join(FUNCTIONS),
    )
    parser.add_argument(
        "--sizes", type=exponent_list, help="comma-separated exponents: sizes are 2**e elements"
    )
    parser.add_argument(
        "--peers",
        type=choices_list(PEER_LOADERS),
        default=list(PEER_LOADERS),
        help="comma-separated, from: torch, numba, numexpr ('' for none)",
    )
    parser.add_argument("--repeat", type=int, help="samples per competitor")
    parser.add_argument("--target-ms", type=float, help="minimum duration of one sample")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help="where to write the results (default: %(default)s)",
    )
    plots = parser.add_mutually_exclusive_group()
    plots.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="folder for the PNG plots, if matplotlib is installed (default: the JSON's)",
    )
    plots.add_argument("--no-plots", action="store_true", help="write no plots")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> tuple[str, Settings]:
    mode = "quick" if args.quick else "full" if args.full else "default"
    cfg = MODES[mode]
    if args.sizes:
        cfg = replace(cfg, exponents=args.sizes)
    if args.repeat:
        cfg = replace(cfg, repeat=args.repeat, large_repeat=min(cfg.large_repeat, args.repeat))
    if args.target_ms:
        cfg = replace(cfg, target=args.target_ms / 1e3)
    return mode, cfg


def print_header(meta: dict[str, Any], mode: str, cfg: Settings) -> None:
    peers = ", ".join(f"{name} {version}" for name, version in meta["peers"].items())
    print(
        f"fastact {fastact.__version__} (compiled: {meta['fastact']['compiled']}), "
        f"numpy {np.__version__}, python {meta['python']}"
    )
    print(f"{meta['cpu']}, {meta['cores']} cores, {meta['platform']}")
    print(f"peers: {peers or 'none'} (one thread each)")
    print(
        f"mode {mode}: sizes 2^{{{','.join(map(str, cfg.exponents))}}}, "
        f"{cfg.repeat} samples of >= {cfg.target * 1e3:g} ms "
        f"({cfg.large_repeat} when a sample exceeds {cfg.large_sample * 1e3:g} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode, cfg = settings_from(args)
    dtypes = [np.dtype(name) for name in args.dtypes]
    funcs = [FUNCTIONS[name] for name in args.functions]
    peers, peer_versions = load_peers(args.peers)
    meta = metadata(peer_versions)
    print_header(meta, mode, cfg)

    verdicts = {dt.name: check_exactness(funcs, dt, peers) for dt in dtypes}
    for dt in dtypes:
        require_fastact_exact(verdicts[dt.name], dt)
    print_legend(funcs, peers, verdicts)

    records, sorted_rows = [], []
    for dt in dtypes:
        print(f"\ntiming {dt.name} ", end="", flush=True)
        cases = run_cases(funcs, dt, peers, cfg)
        print_cases(dt, cases, verdicts[dt.name])
        records += [case_record(case, verdicts[dt.name]) for case in cases]
        sorted_rows += sorted_vs_random(funcs, dt, cfg)
    print_sorted(sorted_rows)
    overhead_rows = call_overhead(cfg)
    print_overhead(overhead_rows)

    report = {
        "metadata": meta,
        "mode": mode,
        "settings": asdict(cfg),
        "negative_slope": NEGATIVE_SLOPE,
        "exactness": {
            dt: {f"{func} / {col}": asdict(v) for (func, col), v in table.items()}
            for dt, table in verdicts.items()
        },
        "cases": records,
        "sorted_vs_random": sorted_rows,
        "call_overhead": overhead_rows,
    }
    write_json(args.json, report)
    if not args.no_plots:
        write_plots(report, args.plots or args.json.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
