"""Benchmark fastact against the NumPy idioms it replaces, optional peers and a roofline.

What it measures
----------------
The main table: for each dtype (float16, float32, float64), function (relu, leaky_relu,
their derivatives and fused backward passes) and size n (2**10 to 2**24 elements by
default), the median time per call of every *competitor* of that function on seeded,
random-sign standard-normal data:

* ``fastact`` with a preallocated ``out=``: the main number; without ``out=`` (column
  ``alloc``) it shows what allocating the result costs;
* the NumPy idioms a user would otherwise write (``np.maximum(x, 0)``, ``np.clip``,
  ``x * (x > 0)``, ``np.where``, ...: NUMPY_IDIOMS below);
* peers, each only if importable and only on the dtypes it computes in: torch, a numba
  ``@njit`` loop and a numba ``@vectorize`` ufunc, numexpr; all on one thread, and
  fastact too where it has a thread count to set;
* the roofline, a pass that moves the same bytes: ``np.copyto(y, x)`` for a unary
  function (read n, write n); for a backward one (read 2n, write n) a bitwise OR of ``g``
  and ``x`` viewed as unsigned integers, at memory speed for every dtype.

Beside it, smaller tables (sizes in MODES):

* in place: ``f(x, out=x)`` for the functions whose repeated call is idempotent, against
  ``np.maximum(x, 0, out=x)``, ``torch.relu_`` and an in-place pass over the same bytes;
* input patterns: random-sign input against the same values sorted and half NaN;
* strided input: fastact on views (``x[::2]``, a 2-D row slice, a transposed array)
  against ``np.maximum`` on the same view and against fastact on a contiguous copy;
* thread scaling: fastact inside ``fastact.threads(t)``, torch and numexpr on t threads;
* call overhead on 1, 16 and 256 elements.

How
---
Every competitor is a one-line statement (the tables of statements below), run by
``timeit`` in a namespace holding the operands. Before anything is timed, every statement
is evaluated on an array of edge values (NaN, +-inf, +-0.0, subnormals, extremes, random;
laid out as the table's operands are) and its result compared bit for bit (NaN by
NaN-ness only) with ``fastact._reference``. A fastact mismatch aborts the run; any other
mismatch is reported and its numbers are starred; a statement that raises is left out,
with the reason. Timing: each statement is warmed up and calibrated to a loop count that
makes one sample last at least ``--target-ms`` (or one call at large sizes), then all
competitors of a case are sampled in interleaved rounds, so that they share the same
machine noise, and the median sample is reported.

Output: the tables (time, GB/s = bytes read + written per second, % of the roofline's
GB/s, and ratios competitor time / fastact time: above 1 means fastact is faster), and a
JSON file with every sample, every verdict and the machine description; when matplotlib
is installed, PNG plots beside it (``plotting.py``; ``plot.py`` redraws them from a saved
JSON).

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
import time
import timeit
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import fastact
from fastact import _reference
from fastact._functions import FUNCTIONS as TABLE
from fastact._functions import Function as TableFunction

NEGATIVE_SLOPE = 0.01
SEED = 12345
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
MAX_LOOPS = 1_000_000
try:  # bfloat16, ml_dtypes' NumPy type, is measured where that package is installed
    import ml_dtypes
except ImportError:
    ml_dtypes = None
DTYPES = ("float16", "float32", "float64") + (("bfloat16",) if ml_dtypes else ())
# No peer has bfloat16 on NumPy arrays: torch.from_numpy, numba and numexpr know no such type.
NO_BFLOAT16 = "no bfloat16 type for NumPy arrays"
# The strided, thread-scaling and call-overhead tables use one dtype: they compare layouts,
# thread counts and fixed costs, which the dtype hardly changes, and they stay short.
SIDE_DTYPE = np.dtype(np.float32)

# ---------------------------------------------------------------------------------------
# What is measured: the functions and, per function, the statements that compete.
# Statements see x, g (grad_output), y (preallocated output), xi and gi (copies of x and g
# that in-place statements overwrite), xu, gu, yu, xiu, giu (those arrays viewed as
# unsigned integers, for the rooflines), s (the slope as a Python float) and sx (the slope
# as a scalar of x's dtype), plus whatever a peer binds.


# Parameter values the statements use, by name: the table's defaults, a slope of 0.01, and
# a value for the parameters that have no default.
PARAMETER_VALUES: dict[str, float] = {
    **{p.name: p.default for f in TABLE for p in f.parameters if p.default is not None},
    "negative_slope": NEGATIVE_SLOPE,
    "threshold": 0.0,
    "value": 0.0,
}
# A statement names the slope `s`; any other parameter by its own name.
_STATEMENT_NAMES = {"negative_slope": "s"}


@dataclass(frozen=True)
class Function:
    """A function of fastact's table, as the statements call it."""

    spec: TableFunction

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def backward(self) -> bool:
        return self.spec.is_backward

    @property
    def arg_names(self) -> tuple[str, ...]:
        """The positional arguments, as named in a statement's namespace."""
        params = tuple(_STATEMENT_NAMES.get(p.name, p.name) for p in self.spec.parameters)
        return ("g",) * self.backward + ("x",) + params

    @property
    def call_args(self) -> str:
        return ", ".join(self.arg_names)

    def streams(self) -> int:
        """Arrays of n elements read or written by one call."""
        return 3 if self.backward else 2

    def reference(self, ns: dict[str, Any]) -> np.ndarray:
        return getattr(_reference, self.name)(*(ns[name] for name in self.arg_names))


# Every function of the table gets its rows; the peers and idioms below are optional.
FUNCTIONS = {f.name: Function(f) for f in TABLE}

MAIN, IN_PLACE = "main", "in place"  # the two tables every (dtype, function, size) feeds

# By function, by column: what a NumPy user writes instead. Some are not bit-exact (NaN,
# -0.0, inf): the check stars them, which is the point of listing them.
NUMPY_IDIOMS: dict[str, dict[str, str]] = {
    "relu": {
        "np": "np.maximum(x, 0)",
        "np out": "np.maximum(x, 0, out=y)",
        "clip": "np.clip(x, 0, None)",
        "mul": "x * (x > 0)",
        "where": "np.where(x > 0, x, 0)",
    },
    "leaky_relu": {"np": "np.where(x > 0, x, s * x)", "max": "np.maximum(x, s * x)"},
    "relu_grad": {"np": "(x > 0).astype(x.dtype)", "np out": "np.greater(x, 0, out=y)"},
    "leaky_relu_grad": {"np": "np.where(x > 0, 1, s).astype(x.dtype)"},
    "relu_backward": {
        "np": "g * (x > 0)",
        "np out": "np.multiply(g, x > 0, out=y)",
        "where": "np.where(x > 0, g, 0)",
    },
    "leaky_relu_backward": {"np": "np.where(x > 0, g, s * g)"},
    "hardtanh": {
        "np": "np.clip(x, min_val, max_val)",
        "np out": "np.clip(x, min_val, max_val, out=y)",
    },
    "hardtanh_backward": {"np": "np.where((x <= min_val) | (x >= max_val), 0, g)"},
    "relu6": {"np": "np.clip(x, 0, 6)", "np out": "np.clip(x, 0, 6, out=y)"},
    "relu6_backward": {"np": "np.where((x <= 0) | (x >= 6), 0, g)"},
    "threshold": {"np": "np.where(x <= threshold, value, x)"},
    "threshold_backward": {"np": "np.where(x <= threshold, 0, g)"},
}

# By peer, by column, by function.
PEER_STATEMENTS: dict[str, dict[str, dict[str, str]]] = {
    "torch": {
        "torch": {
            "relu": "torch.relu(tx)",
            "leaky_relu": "F.leaky_relu(tx, s)",
            "relu_backward": "torch.ops.aten.threshold_backward(tg, tx, 0)",
            "leaky_relu_backward": "torch.ops.aten.leaky_relu_backward(tg, tx, s, False)",
            "hardtanh": "F.hardtanh(tx, min_val, max_val)",
            "hardtanh_backward": "torch.ops.aten.hardtanh_backward(tg, tx, min_val, max_val)",
            "relu6": "F.relu6(tx)",
            "relu6_backward": "torch.ops.aten.hardtanh_backward(tg, tx, 0.0, 6.0)",
            "threshold": "F.threshold(tx, threshold, value)",
            "threshold_backward": "torch.ops.aten.threshold_backward(tg, tx, threshold)",
        },
    },
    "numba": {
        "numba": {
            "relu": "nb_relu(x, y)",
            "leaky_relu": "nb_leaky_relu(x, sx, y)",
            "relu_backward": "nb_relu_backward(g, x, y)",
            "leaky_relu_backward": "nb_leaky_relu_backward(g, x, sx, y)",
        },
        "nb vec": {
            "relu": "nbv_relu(x, out=y)",
            "leaky_relu": "nbv_leaky_relu(x, sx, out=y)",
            "relu_backward": "nbv_relu_backward(g, x, out=y)",
            "leaky_relu_backward": "nbv_leaky_relu_backward(g, x, sx, out=y)",
        },
    },
    "numexpr": {
        "numexpr": {
            "relu": 'ne.evaluate("where(x < 0, 0, x)", out=y)',
            "leaky_relu": 'ne.evaluate("where(x > 0, x, x * sx)", out=y)',
            "relu_backward": 'ne.evaluate("where(x <= 0, 0, g)", out=y)',
            "leaky_relu_backward": 'ne.evaluate("where(x > 0, g, g * sx)", out=y)',
        },
    },
}

# In place, by function, by column. Repeated calls must leave the data as one call does, or
# the samples would time different data: relu, relu_grad and relu_backward (with x fixed)
# are idempotent; leaky_relu_grad turns x into 1 and s, then into 1s for good (s > 0), all
# normal numbers. leaky_relu and leaky_relu_backward are left out: every call multiplies
# the negatives by s again, so within a few dozen calls they are subnormals (slow on many
# CPUs) and then zeros, and the samples would time that drift, not the function.
IN_PLACE_STATEMENTS: dict[str, dict[str, str]] = {
    "relu": {"fastact": "fastact.relu(xi, out=xi)", "np": "np.maximum(xi, 0, out=xi)"},
    "relu_grad": {"fastact": "fastact.relu_grad(xi, out=xi)", "np": "np.greater(xi, 0, out=xi)"},
    "leaky_relu_grad": {"fastact": "fastact.leaky_relu_grad(xi, s, out=xi)"},
    "relu_backward": {
        "fastact": "fastact.relu_backward(gi, x, out=gi)",
        "np": "np.multiply(gi, x > 0, out=gi)",
    },
}
# By peer (the column), by function.
PEER_IN_PLACE: dict[str, dict[str, str]] = {"torch": {"relu": "torch.relu_(txi)"}}


@dataclass(frozen=True)
class Competitor:
    column: str
    stmt: str
    role: str  # "fastact" (what the table divides by), "ratio" (a column) or "roofline"
    table: str = MAIN
    streams: int | None = None  # arrays of n elements a roofline moves (None: the function's)


# Rooflines. np.add(g, x, out=y) was the backward one until float16 came in: NumPy adds
# float16 through float32 one element at a time, under 1 GB/s, while an OR of the
# unsigned-integer views runs at memory speed for every dtype (and as fast as np.add on
# float32 and float64). In place, an OR with 0 reads and writes every element, as fast
# as np.add(x, 0, out=x) on float32/64 and as a read-only np.sum: np.copyto(x, x) and
# x[...] = x move nothing (NumPy returns early when source and destination are the same
# array: microseconds at any size), and np.positive(x, out=x) reached only a quarter
# (float16) to two thirds (float64) of the OR's GB/s at 2**24 on a 2-core AMD EPYC.
COPY_ROOFLINE = Competitor("copyto", "np.copyto(y, x)", "roofline", streams=2)
OR_ROOFLINE = Competitor("or", "np.bitwise_or(gu, xu, out=yu)", "roofline", streams=3)
IN_PLACE_ROOFLINES = {
    2: Competitor("or", "np.bitwise_or(xiu, 0, out=xiu)", "roofline", IN_PLACE, 2),
    3: Competitor("or", "np.bitwise_or(giu, xu, out=giu)", "roofline", IN_PLACE, 3),
}


def fastact_call(func: Function, out: str | None = "y") -> str:
    call = f"fastact.{func.name}({func.call_args}"
    return f"{call}, out={out})" if out else f"{call})"


def main_competitors(func: Function, peers: Iterable[Peer]) -> list[Competitor]:
    """The main table's columns for ``func``; the first is fastact with ``out=``."""
    found = [
        Competitor("fastact", fastact_call(func), "fastact"),
        Competitor("alloc", fastact_call(func, out=None), "ratio"),
    ]
    idioms = NUMPY_IDIOMS.get(func.name, {})
    found += [Competitor(col, stmt, "ratio") for col, stmt in idioms.items()]
    found += [
        Competitor(col, stmts[func.name], "ratio")
        for peer in peers
        for col, stmts in peer.columns.items()
        if func.name in stmts
    ]
    return [*found, *([OR_ROOFLINE, COPY_ROOFLINE] if func.backward else [COPY_ROOFLINE])]


def in_place_competitors(func: Function, peers: Iterable[Peer]) -> list[Competitor]:
    """The in-place table's columns for ``func`` (none for some): fastact in place first,
    then fastact with ``out=y`` to compare with."""
    stmts = IN_PLACE_STATEMENTS.get(func.name)
    if not stmts:
        return []
    found = [Competitor("fastact", stmts["fastact"], "fastact", IN_PLACE)]
    found.append(Competitor("out=", fastact_call(func), "ratio", IN_PLACE))
    found += [
        Competitor(col, s, "ratio", IN_PLACE) for col, s in stmts.items() if col != "fastact"
    ]
    found += [
        Competitor(peer.name, peer.in_place[func.name], "ratio", IN_PLACE)
        for peer in peers
        if func.name in peer.in_place
    ]
    return [*found, IN_PLACE_ROOFLINES[func.streams()]]


def competitors(func: Function, peers: Iterable[Peer], dtype: np.dtype) -> list[Competitor]:
    """Everything timed for ``func`` at ``dtype``, both tables, peers that compute in it."""
    usable = [peer for peer in peers if peer.supports(dtype)]
    return main_competitors(func, usable) + in_place_competitors(func, usable)


# ---------------------------------------------------------------------------------------
# Peers: optional libraries, each loaded if importable and restricted to one thread.


@dataclass
class Peer:
    name: str
    version: str
    bind: Callable[[dict[str, np.ndarray]], dict[str, Any]]  # the names its statements use
    unsupported: dict[str, str] = field(default_factory=dict)  # dtype name: why it is skipped
    threads: Callable[[int], AbstractContextManager[Any]] | None = None  # a block on n threads
    default_threads: int | None = None  # before this script set one

    @property
    def columns(self) -> dict[str, dict[str, str]]:
        """Main-table statements, by column, then by function."""
        return PEER_STATEMENTS[self.name]

    @property
    def in_place(self) -> dict[str, str]:
        """In-place statements, by function."""
        return PEER_IN_PLACE.get(self.name, {})

    def supports(self, dtype: np.dtype) -> bool:
        return dtype.name not in self.unsupported


def thread_setter(
    get: Callable[[], int], put: Callable[[int], Any]
) -> Callable[[int], AbstractContextManager[None]]:
    """A context manager factory: its block runs on n threads, then the count is restored."""

    @contextmanager
    def threads(count: int) -> Iterator[None]:
        before = get()
        put(count)
        try:
            yield
        finally:
            put(before)

    return threads


def load_torch() -> Peer:
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(1)

    def bind(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        tensors = {f"t{name}": torch.from_numpy(arr) for name, arr in arrays.items()}
        return {"torch": torch, "F": torch.nn.functional, **tensors}

    threads = thread_setter(torch.get_num_threads, torch.set_num_threads)
    return Peer(
        "torch",
        torch.__version__,
        bind,
        {"bfloat16": NO_BFLOAT16},
        threads=threads,
        default_threads=default,
    )


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

    # The same rules as element functions that numba compiles into NumPy ufuncs (NumPy
    # runs the loop), now, for the float32 and float64 signatures.
    unary = ["float32(float32)", "float64(float64)"]
    binary = ["float32(float32, float32)", "float64(float64, float64)"]

    @numba.vectorize(unary)
    def nbv_relu(v):
        return 0 if v < 0 else v

    @numba.vectorize(binary)
    def nbv_leaky_relu(v, s):
        return v if v > 0 else v * s

    @numba.vectorize(binary)
    def nbv_relu_backward(g, v):
        return 0 if v <= 0 else g

    @numba.vectorize(["float32(float32, float32, float32)", "float64(float64, float64, float64)"])
    def nbv_leaky_relu_backward(g, v, s):
        return g if v > 0 else g * s

    kernels = {
        "nb_relu": nb_relu,
        "nb_leaky_relu": nb_leaky_relu,
        "nb_relu_backward": nb_relu_backward,
        "nb_leaky_relu_backward": nb_leaky_relu_backward,
        "nbv_relu": nbv_relu,
        "nbv_leaky_relu": nbv_leaky_relu,
        "nbv_relu_backward": nbv_relu_backward,
        "nbv_leaky_relu_backward": nbv_leaky_relu_backward,
    }
    why = (
        "numba has no float16 arithmetic on the CPU (@njit raises NotImplementedError; "
        "the @vectorize ufuncs would compute in float32 and convert)"
    )
    # The loops compile on first call, per dtype: the edge-value check does that first.
    unsupported = {"float16": why, "bfloat16": NO_BFLOAT16}
    return Peer("numba", numba.__version__, lambda arrays: kernels, unsupported)


def load_numexpr() -> Peer:
    import numexpr

    default = numexpr.set_num_threads(1)  # returns the previous count
    why = "numexpr has no float16 type (it would compute in float32 and convert)"
    return Peer(
        "numexpr",
        numexpr.__version__,
        lambda arrays: {"ne": numexpr},
        {"float16": why, "bfloat16": NO_BFLOAT16},
        thread_setter(numexpr.get_num_threads, numexpr.set_num_threads),
        default,
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
    """The globals every statement runs in; y is C-contiguous whatever x's layout."""
    arrays = {"x": x, "g": g, "y": np.empty(x.shape, x.dtype), "xi": x.copy(), "gi": g.copy()}
    unsigned = np.dtype(f"u{x.dtype.itemsize}")
    ns: dict[str, Any] = {
        "np": np,
        "fastact": fastact,
        **{_STATEMENT_NAMES.get(k, k): v for k, v in PARAMETER_VALUES.items()},
        "sx": x.dtype.type(NEGATIVE_SLOPE),
        **arrays,
        **{f"{name}u": arr.view(unsigned) for name, arr in arrays.items()},
    }
    for peer in peers:
        if peer.supports(x.dtype):
            ns.update(peer.bind(arrays))
    return ns


# ---------------------------------------------------------------------------------------
# Data and the exactness check.


def draw(rng: np.random.Generator, n: int, dtype: np.dtype) -> np.ndarray:
    """Standard-normal values of ``dtype``; float16 ones drawn in float32 (NumPy draws
    no float16) and rounded."""
    if dtype.itemsize >= 4:
        return rng.standard_normal(n, dtype=dtype)
    return rng.standard_normal(n, dtype=np.float32).astype(dtype)


def random_operands(n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([SEED, n])
    return draw(rng, n, dtype), draw(rng, n, dtype)


def edge_values(dtype: np.dtype) -> np.ndarray:
    info = ml_dtypes.finfo(dtype) if dtype.name == "bfloat16" else np.finfo(dtype)
    nan = np.array(np.nan, dtype)
    sub = info.smallest_subnormal
    special = [nan, np.inf, 0.0, sub, 3 * sub, info.smallest_normal / 2]
    special += [info.smallest_normal, info.eps, 0.5, 1.0, 2.0, info.max]
    random = draw(np.random.default_rng(SEED), 8, dtype)
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
    stmt: str
    exact: str  # "yes", "no (why)", or "error (why)": a statement that raised, not timed
    allocates: bool  # returns a new array rather than writing into y, xi or gi

    @property
    def failed(self) -> bool:
        return self.exact.startswith("error")


Key = tuple[str, str, str]  # (table, function name, column)
Verdicts = dict[Key, Verdict]


def judge(func: Function, stmt: str, make_ns: Callable[[], dict[str, Any]]) -> Verdict:
    """Run ``stmt`` once in a fresh namespace (in-place statements overwrite theirs) and
    compare its result with the reference on the namespace's x and g."""
    ns = make_ns()
    want = func.reference(ns)
    try:
        with np.errstate(all="ignore"):
            got = as_numpy(eval(stmt, ns))
    except Exception as exc:  # a peer that cannot take this dtype or layout: reported
        return Verdict(stmt, f"error ({type(exc).__name__}: {exc})", allocates=False)
    outputs = (ns["y"], ns["xi"], ns["gi"])
    return Verdict(
        stmt,
        exactness(count_mismatches(got, want), want.size),
        allocates=not any(np.may_share_memory(got, out) for out in outputs),
    )


def check_statements(
    entries: Iterable[tuple[Key, Function, str]], make_ns: Callable[[], dict[str, Any]]
) -> Verdicts:
    return {key: judge(func, stmt, make_ns) for key, func, stmt in entries}


def check_exactness(funcs: Iterable[Function], dtype: np.dtype, peers: list[Peer]) -> Verdicts:
    """Judge every non-roofline competitor of the main and in-place tables."""
    x, g = edge_operands(dtype)
    entries = [
        ((comp.table, func.name, comp.column), func, comp.stmt)
        for func in funcs
        for comp in competitors(func, peers, dtype)
        if comp.role != "roofline"
    ]
    return check_statements(entries, lambda: namespace(x, g, peers))


def require_fastact_exact(verdicts: Verdicts, what: str) -> None:
    """Exit with status 1 if any statement calling fastact disagrees with the reference."""
    bad = {
        key: v.exact
        for key, v in verdicts.items()
        if v.stmt.startswith("fastact.") and v.exact != "yes"
    }
    if bad:
        details = "; ".join(f"{' / '.join(key)}: {v}" for key, v in bad.items())
        raise SystemExit(f"error: fastact disagrees with fastact._reference on {what}: {details}")


def runs(comp: Competitor, func: Function, verdicts: Verdicts) -> bool:
    """Whether a competitor is timed: rooflines always, others unless their check raised."""
    verdict = verdicts.get((comp.table, func.name, comp.column))
    return comp.role == "roofline" or (verdict is not None and not verdict.failed)


# ---------------------------------------------------------------------------------------
# Timing.


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
    ),
    # About 1 minute on 2 cores with every peer. Largest size 2**24 (64 MiB per float32
    # array: past any last-level cache); float16 stops at 2**22 because NumPy computes in
    # float16 one element at a time, below 1 GB/s, and each idiom would take seconds there.
    "default": Settings(
        repeat=7,
        large_repeat=3,
        target=0.002,
        large_sample=0.02,
        exponents=(10, 14, 18, 22, 24),
        max_exponent={"float16": 22, "bfloat16": 22},
        pattern_exponent=18,
        strided_exponents=(14, 22),
        thread_exponents=(14, 18, 20, 22, 24),
    ),
    "full": Settings(
        repeat=15,
        large_repeat=5,
        target=0.002,
        large_sample=0.05,
        exponents=tuple(range(4, 27)),
        pattern_exponent=18,
        strided_exponents=(10, 14, 18, 22, 24, 26),
        thread_exponents=(12, 14, 16, 18, 20, 22, 24, 26),
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


def time_interleaved(timers: dict[Any, timeit.Timer], cfg: Settings) -> dict[Any, Timing]:
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


def time_statements(stmts: dict[Any, str], ns: dict[str, Any], cfg: Settings) -> dict[Any, Timing]:
    with np.errstate(all="ignore"):
        return time_interleaved(
            {key: timeit.Timer(stmt, globals=ns) for key, stmt in stmts.items()}, cfg
        )


def gbps(streams: int, n: int, dtype: np.dtype, seconds: float) -> float:
    """Throughput of a call that reads or writes ``streams`` arrays of n elements."""
    return streams * n * dtype.itemsize / seconds / 1e9


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
                "median_s": medians,
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
    """x as the transpose of a C-contiguous 2-D array: Fortran order, written into a C-order y."""
    rows, columns = grid(x.size)
    return np.ascontiguousarray(x.reshape(rows, columns).T).T


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "x2[::2]": every_other,
    "x2[:, :c]": row_slice,
    "x2.T": transposed,
}
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
STRIDED_TARGET = 0.5  # strided over contiguous throughput the kernels aim at, at least


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


# ---------------------------------------------------------------------------------------
# PReLU on (N, C, H, W) float32 with one weight per channel: the forward against the
# copy roofline of its bytes, torch and the NumPy idiom; the backward (input gradient and
# the weight-gradient reduction) against the roofline of its three streams and torch's
# autograd backward, which runs the elementwise kernel and then a separate reduction.

PRELU_SHAPES = {18: (16, 64, 16, 16), 22: (16, 64, 64, 64)}
PRELU_FORWARD = {
    "fastact": "fastact.prelu(x, w, out=y)",
    "np": "np.where(x > 0, x, w4 * x)",
    "torch": "F.prelu(tx, tw)",
    "copyto": "np.copyto(y, x)",
}
PRELU_BACKWARD = {
    "fastact": "fastact.prelu_backward(g, x, w)",
    "np": "(np.where(x > 0, g, w4 * g), np.where(x > 0, 0, x * g).sum(axis=(0, 2, 3)))",
    "torch": "torch.autograd.grad(ty, (txr, twr), tg, retain_graph=True)",
    "or": "np.bitwise_or(gu, xu, out=yu)",
}


def prelu_namespace(shape: tuple[int, ...], peers: list[Peer]) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    w = np.full(shape[1], 0.25, np.float32)
    ns: dict[str, Any] = {"np": np, "fastact": fastact, "x": x, "g": g, "w": w}
    ns.update(w4=w[:, None, None], y=np.empty_like(x), xu=x.view(np.uint32))
    ns.update(gu=g.view(np.uint32), yu=ns["y"].view(np.uint32))
    if any(peer.name == "torch" for peer in peers):
        import torch

        txr = torch.from_numpy(x).requires_grad_(True)
        twr = torch.from_numpy(w.copy()).requires_grad_(True)
        ns.update(torch=torch, F=torch.nn.functional, tx=torch.from_numpy(x))
        ns.update(tw=torch.from_numpy(w), tg=torch.from_numpy(g), txr=txr, twr=twr)
        ns["ty"] = torch.nn.functional.prelu(txr, twr)
    return ns


def prelu_table(cfg: Settings, peers: list[Peer]) -> list[dict[str, Any]]:
    rows = []
    for exponent, shape in PRELU_SHAPES.items():
        ns = prelu_namespace(shape, peers)
        for direction, stmts, streams, roofline in (
            ("forward", PRELU_FORWARD, 2, "copyto"),
            ("backward", PRELU_BACKWARD, 3, "or"),
        ):
            usable = {k: v for k, v in stmts.items() if k != "torch" or "torch" in ns}
            medians = {k: t.median for k, t in time_statements(usable, ns, cfg).items()}
            n = 2**exponent
            rows.append(
                {
                    "direction": direction,
                    "shape": list(shape),
                    "n": n,
                    "median_s": medians,
                    "gbps": gbps(streams, n, np.dtype(np.float32), medians["fastact"]),
                    "of_roofline": medians[roofline] / medians["fastact"],
                    "ratios": {k: v / medians["fastact"] for k, v in medians.items()},
                }
            )
        del ns
        gc.collect()
    return rows


def print_prelu(rows: list[dict[str, Any]]) -> None:
    print("\nprelu, float32 (N, C, H, W), one weight per channel: fastact time, GB/s of its")
    print("streams, %roof (np.copyto forward, an OR of g and x backward), and other/fastact")
    for row in rows:
        others = "  ".join(
            f"{k} {v:.2f}" for k, v in row["ratios"].items() if k not in ("fastact",)
        )
        print(
            f"  {row['direction']:<8} {tuple(row['shape'])!s:<18} "
            f"{format_time(row['median_s']['fastact']):>9} {row['gbps']:6.1f} GB/s "
            f"{100 * row['of_roofline']:4.0f}%roof  {others}"
        )


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
                    with controls[impl](count):
                        timings[impl] = time_statements({impl: stmt}, ns, cfg)[impl]
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
# Reporting.


def format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(ratio: float | None, exact: str = "yes") -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" + ("" if exact == "yes" else "*")


def format_percent(percent: float | None) -> str:
    return "-" if percent is None else f"{percent:.0f}%"


def format_size(n: int) -> str:
    return f"2^{n.bit_length() - 1}"


def table_line(cells: list[str], widths: Iterable[int], left: int = 1) -> str:
    """The first ``left`` cells left-aligned, the others right-aligned, each in its width."""
    parts = [
        cell.ljust(width) if i < left else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return " ".join(parts).rstrip()


CASE_WIDTHS = (20, 9, 6, 6)  # then one per roofline percentage and per ratio
RATIO_WIDTH = 8
ROOFLINE_LABELS = {"copyto": "%copy"}  # the first roofline of a case is "%roof"


def case_cells(case: Case, verdicts: Verdicts) -> tuple[list[str], dict[str, str]]:
    """The fixed cells of a row (size, time, GB/s, roofline percentages) and its ratios."""
    func = case.function
    cells = [
        f"  {format_size(case.n)}",
        format_time(case.timings["fastact"].median),
        f"{case.gbps('fastact'):.1f}",
        *(format_percent(case.percent_of(roof)) for roof in case.rooflines),
    ]
    ratios = {
        col: format_ratio(case.ratio(col), verdicts[case.table, func.name, col].exact)
        for col in case.ratio_columns
    }
    return cells, ratios


def print_cases(title: list[str], cases: list[Case], verdicts: Verdicts) -> None:
    """One block per function, each with its own columns (a size without one shows "-")."""
    print()
    print("\n".join(title))
    for func in FUNCTIONS.values():
        group = sorted((c for c in cases if c.function is func), key=lambda c: c.n)
        if not group:
            continue
        roofs = ["%roof", *(ROOFLINE_LABELS.get(r, f"%{r}") for r in group[0].rooflines[1:])]
        columns = list(dict.fromkeys(col for case in group for col in case.ratio_columns))
        widths = [*CASE_WIDTHS, *(6 for _ in roofs[1:]), *(RATIO_WIDTH for _ in columns)]
        print(table_line([func.name, "fastact", "GB/s", *roofs, *columns], widths))
        for case in group:
            cells, ratios = case_cells(case, verdicts)
            print(table_line([*cells, *(ratios.get(col, "-") for col in columns)], widths))


def allocating_columns(cases: list[Case], verdicts: Verdicts) -> list[str]:
    """Ratio columns whose competitor returns a new array, in table order."""
    columns = dict.fromkeys(col for case in cases for col in case.ratio_columns)
    return [
        col
        for col in columns
        if any(
            verdicts[case.table, case.function.name, col].allocates
            for case in cases
            if col in case.timings
        )
    ]


def print_main(dtype: np.dtype, cases: list[Case], verdicts: Verdicts) -> None:
    main = [case for case in cases if case.table == MAIN]
    allocating = ", ".join(allocating_columns(main, verdicts))
    print_cases(
        [
            f"{dtype.name}: fastact = time per call with out=y; GB/s = its bytes read + written",
            "per second; %roof = of the roofline's GB/s (np.copyto for unary functions, an OR",
            "of g and x as unsigned integers for backward ones); %copy = of np.copyto's.",
            "Other columns: competitor time / fastact time, >1 means fastact is faster;",
            "* = competitor not bit-exact (see the legend above).",
            f"{allocating}: allocate their result, so their ratios include the allocation.",
        ],
        main,
        verdicts,
    )


def print_in_place(dtype: np.dtype, cases: list[Case], verdicts: Verdicts) -> None:
    in_place = [case for case in cases if case.table == IN_PLACE]
    if not in_place:
        return
    print_cases(
        [
            f"{dtype.name}, in place: fastact = time per call of f(x, out=x) (relu_backward:",
            "(g, x, out=g)); %roof = of an in-place OR with 0 (g |= x) of the same bytes;",
            "out= = fastact with out=y, then the peers in place: their time / fastact's in",
            "place. Repeated calls run on the function's own result (no negatives left, for",
            "relu): the loops do not branch, so that times the same work.",
        ],
        in_place,
        verdicts,
    )


def legend_entry(judged: dict[str, Verdict], in_place: bool) -> tuple[str, str]:
    """(where the result goes, exactness) of one competitor, from its verdict per dtype."""
    if not judged:
        return "in place" if in_place else "into y", "roofline"
    first = next(iter(judged.values()))
    exact = {verdict.exact for verdict in judged.values()}
    if len(exact) > 1:
        exact = {", ".join(f"{dt}: {verdict.exact}" for dt, verdict in judged.items())}
    writes_x = in_place and "out=y" not in first.stmt
    return ("new" if first.allocates else "in place" if writes_x else "into y"), exact.pop()


def print_legend(
    funcs: list[Function], peers: list[Peer], dtypes: list[np.dtype], verdicts: dict[str, Verdicts]
) -> None:
    """What each column runs, whether it allocates, and whether it matched the reference."""
    print("\nCompetitors: column, statement, result, bit-exact vs fastact._reference on edge")
    print("values (NaN, +-inf, +-0.0, subnormals, extremes, random; every x with every g)")
    for func in funcs:
        listed = {(c.table, c.column): c for dt in dtypes for c in competitors(func, peers, dt)}
        for table in (MAIN, IN_PLACE):
            comps = [comp for (tab, _), comp in listed.items() if tab == table]
            if comps:
                print(f"  {func.name}{'' if table == MAIN else ', in place'}")
            for comp in comps:
                key = (table, func.name, comp.column)
                judged = {dt: found[key] for dt, found in verdicts.items() if key in found}
                result, exact = legend_entry(judged, table == IN_PLACE)
                print(f"    {comp.column:<8} {comp.stmt:<53} {result:<8} {exact}")
    for dtype in dtypes:
        for peer in peers:
            if not peer.supports(dtype):
                print(f"  {peer.name} skipped on {dtype.name}: {peer.unsupported[dtype.name]}")


def print_patterns(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    others = [name for name in INPUT_PATTERNS if name != "random"]
    print(f"\nInput patterns, fastact with out=, n={format_size(rows[0]['n'])}: time on each")
    print("pattern / time on random-sign input (about 1: no branch on the sign or on NaN)")
    widths = (22, 8, 10, *(9 for _ in others))
    print(table_line(["  function", "dtype", "random", *others], widths, left=2))
    for row in rows:
        ratios = [f"{row['over_random'][name]:.2f}" for name in others]
        cells = [f"  {row['function']}", row["dtype"], format_time(row["median_s"]["random"])]
        print(table_line([*cells, *ratios], widths, left=2))


def print_strided(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(f"\nStrided input, relu, {SIDE_DTYPE.name}: GB/s of the logical bytes (2 n itemsize);")
    print("/contig = fastact's GB/s on the view over its GB/s on a contiguous copy, with the")
    print(f"result written the same way (target >= {STRIDED_TARGET:.2f}; '!' below it); np out")
    print("and np = np.maximum on the same view: its time / fastact's (out=y and new array).")
    widths = (11, 6, 12, 9, 8, 8, 9, 8, 8)
    head = [
        "  layout",
        "n",
        "shape",
        "out= GB/s",
        "/contig",
        "np out",
        "new GB/s",
        "/contig",
        "np",
    ]
    print(table_line(head, widths))
    for row in rows:
        comps = row["competitors"]

        def ratio(col: str, base: str, comps: dict[str, Any] = comps) -> str:
            return format_ratio(
                comps[col]["median_s"] / comps[base]["median_s"], comps[col]["exact"]
            )

        def versus(value: float) -> str:
            return f"{value:.2f}" + ("!" if value < STRIDED_TARGET else "")

        cells = [
            f"  {row['layout']}",
            format_size(row["n"]),
            "x".join(map(str, row["shape"])),
            f"{comps['fastact']['gbps']:.1f}",
            versus(row["out_over_contiguous"]),
            ratio("np out", "fastact"),
            f"{comps['alloc']['gbps']:.1f}",
            versus(row["alloc_over_contiguous"]),
            ratio("np", "alloc"),
        ]
        print(table_line(cells, widths))


def print_threads(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    impls = list(dict.fromkeys(row["implementation"] for row in rows))
    peers = [impl for impl in impls if impl != "fastact"]
    print(f"\nThread scaling, {SIDE_DTYPE.name}, each writing into a preallocated output: GB/s;")
    print("x1 = speed-up over the same implementation on 1 thread; vs fa = its time /")
    print("fastact's on as many threads (>1: fastact is faster; * = not bit-exact).")
    head = ["function", "n", "threads", "fastact", "x1"]
    for peer in peers:
        head += [peer, "x1", "vs fa"]
    widths = (15, 5, 7, 8, 6, *(w for _ in peers for w in (8, 6, 6)))
    print(table_line(head, widths))
    by_key = {(r["function"], r["n"], r["threads"], r["implementation"]): r for r in rows}
    cases = dict.fromkeys((r["function"], r["n"], r["threads"]) for r in rows)
    previous = None
    for function, n, count in cases:
        if previous is not None and (function, n) != previous:
            print()
        previous = (function, n)
        cells = [function, format_size(n), str(count)]
        for impl in impls:
            row = by_key.get((function, n, count, impl))
            if row is None:
                cells += ["-", "-"] + (["-"] if impl != "fastact" else [])
                continue
            cells += [f"{row['gbps']:.1f}", format_ratio(row["speedup_vs_fewest_threads"]) + "x"]
            if impl != "fastact":
                cells.append(format_ratio(row["time_over_fastact"], row["exact"]))
        print(table_line(cells, widths))


def print_overhead(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    sizes = list(dict.fromkeys(row["n"] for row in rows))
    print(f"\nCall overhead, {SIDE_DTYPE.name}: median ns per call, and its time / fastact's")
    print("writing the result the same way (new array: fastact without out=); * = not bit-exact")
    widths = (21, 8, 44, *(13 for _ in sizes))
    head = ["  function", "column", "statement", *(f"n={n}" for n in sizes)]
    print(table_line(head, widths, left=3))
    by_key = {(r["function"], r["column"], r["n"]): r for r in rows}
    lines = dict.fromkeys((r["function"], r["column"], r["stmt"]) for r in rows)
    previous = None
    for function, column, stmt in lines:
        cells = [f"  {function}" if function != previous else "", column, stmt]
        previous = function
        for n in sizes:
            row = by_key.get((function, column, n))
            if row is None:
                cells.append("-")
                continue
            ours = column in ("fastact", "alloc")
            ratio = "" if ours else format_ratio(row["time_over_fastact"], row["exact"])
            cells.append(f"{row['ns']:.0f} {ratio:>6}")
        print(table_line(cells, widths, left=3))


# ---------------------------------------------------------------------------------------
# Machine description and JSON.


def cpuinfo_field(names: tuple[str, ...]) -> str | None:
    """The first value of any of these /proc/cpuinfo keys (Linux), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in names:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo_field(("model name", "Model")) or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The CPU's feature flags ("flags" on x86, "Features" on Arm); empty where unknown."""
    return (cpuinfo_field(("flags", "Features")) or "").split()


# The flags worth a look in the header: the vector extensions loops can use.
SIMD_FLAGS = ("sse2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_fp16", "asimd", "sve")
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMBA_NUM_THREADS",
)


def thread_settings(peers: Iterable[Peer]) -> dict[str, Any]:
    """Thread counts before this script set any, and the variables that choose them."""
    env = {
        k: v for k, v in sorted(os.environ.items()) if k in THREAD_ENV or k.startswith("FASTACT_")
    }
    return {
        "fastact": fastact.get_num_threads(),
        **{peer.name: peer.default_threads for peer in peers if peer.threads},
        "env": env,
        "as_run": "1 thread each, except in the thread-scaling table",
    }


def package_versions() -> dict[str, str]:
    found = {"numpy": np.__version__, "fastact": fastact.__version__}
    try:
        import matplotlib
    except ImportError:
        return found
    return {**found, "matplotlib": matplotlib.__version__}


def metadata(peer_versions: dict[str, str], peers: Iterable[Peer] = ()) -> dict[str, Any]:
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        affinity = None
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "fastact": fastact.show_config(print_out=False),
        "packages": package_versions(),
        "peers": peer_versions,
        "threads": thread_settings(peers),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
    }


def competitor_record(case: Case, comp: Competitor, verdict: Verdict | None) -> dict[str, Any]:
    timing = case.timings[comp.column]
    return {
        "stmt": comp.stmt,
        "exact": verdict.exact if verdict else "roofline",
        "allocates": verdict.allocates if verdict else False,
        "calls_per_sample": timing.number,
        "samples_s": timing.samples,
        "median_s": timing.median,
        "gbps": case.gbps(comp.column),
        "time_over_fastact": case.ratio(comp.column),
    }


def case_record(case: Case, verdicts: Verdicts) -> dict[str, Any]:
    func = case.function
    roofline = case.rooflines[0]
    return {
        "dtype": case.dtype.name,
        "function": func.name,
        "n": case.n,
        "bytes_per_call": func.streams() * case.n * case.dtype.itemsize,
        "fastact_gbps": case.gbps("fastact"),
        "roofline": roofline,
        "percent_of_roofline": case.percent_of(roofline),
        "percent_of_copyto": case.percent_of("copyto"),
        "competitors": {
            comp.column: competitor_record(
                case, comp, verdicts.get((case.table, func.name, comp.column))
            )
            for comp in case.competitors
        },
    }


def verdict_records(verdicts: Verdicts) -> dict[str, dict[str, Any]]:
    return {" / ".join(key): asdict(verdict) for key, verdict in verdicts.items()}


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


def int_list(text: str, low: int, high: int, what: str) -> list[int]:
    """Comma-separated integers, each in [low, high], in the order given."""
    try:
        values = [int(item) for item in comma_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not values or not all(low <= v <= high for v in values):
        raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}")
    return values


def exponent_list(text: str) -> tuple[int, ...]:
    return tuple(int_list(text, 0, 28, "exponents"))


def count_list(text: str) -> list[int]:
    """Thread or worker counts, sorted, without repeats."""
    return sorted(set(int_list(text, 1, 4096, "counts")))


SECTIONS = ("main", "patterns", "strided", "threads", "overhead", "prelu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    mode.add_argument("--full", action="store_true", help="every size 2^4..2^26, more samples")
    parser.add_argument(
        "--dtypes", type=choices_list(DTYPES), default=list(DTYPES), help="comma-separated"
    )
    parser.add_argument(
        "--functions",
        type=choices_list(FUNCTIONS),
        default=list(FUNCTIONS),
        help="comma-separated, from: " + ", ".join(FUNCTIONS),
    )
    parser.add_argument(
        "--sizes",
        type=exponent_list,
        help="comma-separated exponents of the main table: sizes are 2**e elements",
    )
    parser.add_argument(
        "--peers",
        type=choices_list(PEER_LOADERS),
        default=list(PEER_LOADERS),
        help="comma-separated, from: torch, numba, numexpr ('' for none)",
    )
    parser.add_argument(
        "--sections",
        type=choices_list(SECTIONS),
        default=list(SECTIONS),
        help="comma-separated tables to run, from: " + ", ".join(SECTIONS),
    )
    parser.add_argument(
        "--threads",
        type=count_list,
        help="thread counts of the thread-scaling table (default 1, 2, 4, ... and the cores)",
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
    if args.sizes:  # as asked, for every dtype
        cfg = replace(cfg, exponents=args.sizes, max_exponent={})
    if args.repeat:
        cfg = replace(cfg, repeat=args.repeat, large_repeat=min(cfg.large_repeat, args.repeat))
    if args.target_ms:
        cfg = replace(cfg, target=args.target_ms / 1e3)
    return mode, cfg


BUILD_KEYS = ("simd", "openmp", "streaming_stores", "num_threads")


def print_header(meta: dict[str, Any], mode: str, cfg: Settings, dtypes: list[np.dtype]) -> None:
    peers = ", ".join(f"{name} {version}" for name, version in meta["peers"].items())
    config = meta["fastact"]
    simd = " ".join(flag for flag in SIMD_FLAGS if flag in meta["cpu_flags"])
    # Keys that newer builds add to show_config(): which loops run, threads.
    build = "".join(f"; {key} {config[key]}" for key in BUILD_KEYS if key in config)
    print(
        f"fastact {fastact.__version__} (compiled: {config['compiled']}; "
        f"{config['compiler']} {config['cflags']}{build}), numpy {np.__version__}, "
        f"python {meta['python']}"
    )
    print(f"{meta['cpu']}, {meta['cores']} cores, {meta['platform']}; SIMD: {simd or 'unknown'}")
    print(f"peers: {peers or 'none'} (one thread each, fastact too)")
    sizes = "; ".join(
        f"{dt.name} 2^{{{','.join(map(str, cfg.exponents_for(dt)))}}}" for dt in dtypes
    )
    print(
        f"mode {mode}: sizes {sizes}; {cfg.repeat} samples of >= {cfg.target * 1e3:g} ms "
        f"({cfg.large_repeat} when a sample exceeds {cfg.large_sample * 1e3:g} ms)"
    )


def one_thread() -> AbstractContextManager[Any]:
    """fastact on one thread, like the peers (whatever FASTACT_NUM_THREADS says)."""
    return fastact.threads(1)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = Clock()
    mode, cfg = settings_from(args)
    dtypes = [np.dtype(name) for name in args.dtypes]
    funcs = [FUNCTIONS[name] for name in args.functions]
    peers, peer_versions = load_peers(args.peers)
    meta = metadata(peer_versions, peers)
    print_header(meta, mode, cfg, dtypes)
    sections = set(args.sections)
    report: dict[str, Any] = {
        "metadata": meta,
        "mode": mode,
        "settings": asdict(cfg),
        "negative_slope": NEGATIVE_SLOPE,
        "exactness": {},  # by dtype (main and in-place tables), or by table
        "skipped": [
            {"what": peer.name, "dtype": dt.name, "reason": peer.unsupported[dt.name]}
            for dt in dtypes
            for peer in peers
            if not peer.supports(dt)
        ],
    }
    with one_thread():
        if "main" in sections:
            with clock.section("main"):
                run_main(report, funcs, dtypes, peers, cfg)
        if "patterns" in sections:
            with clock.section("patterns"):
                report["input_patterns"] = [
                    row for dt in dtypes for row in input_patterns(funcs, dt, cfg)
                ]
                print_patterns(report["input_patterns"])
        if "strided" in sections:
            with clock.section("strided"):
                run_strided(report, cfg)
        if "threads" in sections:
            with clock.section("threads"):
                run_threads(report, funcs, peers, cfg, args.threads)
        if "prelu" in sections:
            with clock.section("prelu"):
                report["prelu"] = prelu_table(cfg, peers)
                print_prelu(report["prelu"])
        if "overhead" in sections:
            with clock.section("overhead"):
                chosen = [f for f in funcs if f.name in OVERHEAD_FUNCTIONS]
                verdicts = check_overhead(chosen, peers)
                require_fastact_exact(verdicts, "the call-overhead operands")
                report["call_overhead"] = call_overhead(chosen, peers, cfg, verdicts)
                report["exactness"]["overhead"] = verdict_records(verdicts)
                print_overhead(report["call_overhead"])
    report["elapsed_s"] = {**clock.sections, "total_before_plots": clock.total()}
    write_json(args.json, report)
    if not args.no_plots:
        write_plots(report, args.plots or args.json.parent)
    spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in clock.sections.items())
    print(f"Done in {clock.total():.0f} s ({spent})")
    return 0


def run_main(
    report: dict[str, Any],
    funcs: list[Function],
    dtypes: list[np.dtype],
    peers: list[Peer],
    cfg: Settings,
) -> None:
    """The main and in-place tables of every dtype, after the legend and the check."""
    verdicts = {dt.name: check_exactness(funcs, dt, peers) for dt in dtypes}
    for dt in dtypes:
        require_fastact_exact(verdicts[dt.name], dt.name)
    print_legend(funcs, peers, dtypes, verdicts)
    report["skipped"] += [
        {"what": " / ".join(key), "dtype": dt, "reason": v.exact}
        for dt, table in verdicts.items()
        for key, v in table.items()
        if v.failed
    ]
    report["exactness"].update({dt: verdict_records(table) for dt, table in verdicts.items()})
    report["cases"], report["in_place"] = [], []
    for dt in dtypes:
        print(f"\ntiming {dt.name} ", end="", flush=True)
        cases = run_cases(funcs, dt, peers, cfg, verdicts[dt.name])
        print_main(dt, cases, verdicts[dt.name])
        print_in_place(dt, cases, verdicts[dt.name])
        for case in cases:
            key = "cases" if case.table == MAIN else "in_place"
            report[key].append(case_record(case, verdicts[dt.name]))


def run_strided(report: dict[str, Any], cfg: Settings) -> None:
    verdicts = check_strided()
    require_fastact_exact(verdicts, "strided operands")
    report["exactness"]["strided"] = verdict_records(verdicts)
    print(f"\ntiming strided {SIDE_DTYPE.name} ", end="", flush=True)
    report["strided"] = strided(cfg, verdicts)
    print_strided(report["strided"])


def run_threads(
    report: dict[str, Any],
    funcs: list[Function],
    peers: list[Peer],
    cfg: Settings,
    counts: list[int] | None,
) -> None:
    chosen = [f for f in funcs if f.name in THREAD_STATEMENTS["fastact"]]
    verdicts = check_threads(chosen, peers)
    require_fastact_exact(verdicts, "the thread-scaling operands")
    report["exactness"]["threads"] = verdict_records(verdicts)
    counts = counts or thread_counts(os.cpu_count() or 1)
    counts = sorted({1, *counts})
    print(f"\ntiming threads {counts} ", end="", flush=True)
    report["thread_scaling"] = thread_scaling(chosen, peers, counts, cfg, verdicts)
    print_threads(report["thread_scaling"])


if __name__ == "__main__":
    sys.exit(main())
