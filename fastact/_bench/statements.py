"""What is measured: the functions and, per function, the statements that compete.

Every competitor is a one-line statement, run by ``timeit`` in a namespace holding the
operands. Statements see x, g (grad_output), y (preallocated output), xi and gi (copies
of x and g that in-place statements overwrite), xu, gu, yu, xiu, giu (those arrays viewed
as unsigned integers, for the rooflines), s (the slope as a Python float) and sx (the
slope as a scalar of x's dtype), the other parameters by name, plus whatever a peer binds
(``peers.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import fastact
from fastact import _reference
from fastact._functions import FUNCTIONS as TABLE
from fastact._functions import Function as TableFunction

from .checks import ml_dtypes

if TYPE_CHECKING:
    from .peers import Peer

NEGATIVE_SLOPE = 0.01
DTYPES = ("float16", "float32", "float64") + (("bfloat16",) if ml_dtypes else ())
# The strided, thread-scaling and call-overhead tables use one dtype: they compare layouts,
# thread counts and fixed costs, which the dtype hardly changes, and they stay short.
SIDE_DTYPE = np.dtype(np.float32)

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


# Every function of the table gets its rows; the peers and idioms are optional.
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


@dataclass(frozen=True)
class Competitor:
    column: str
    stmt: str
    role: str  # "fastact" (what the table divides by), "ratio" (a column) or "roofline"
    table: str = MAIN
    streams: int | None = None  # arrays of n elements a roofline moves (None: the function's)
    peer: str | None = None  # the peer whose statement it is, if any


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


def rooflines(func: Function) -> list[Competitor]:
    """The function's own roofline first, then np.copyto for a backward function."""
    return [OR_ROOFLINE, COPY_ROOFLINE] if func.backward else [COPY_ROOFLINE]


def main_competitors(func: Function, peers: Iterable[Peer]) -> list[Competitor]:
    """The main table's columns for ``func``; the first is fastact with ``out=``."""
    found = [
        Competitor("fastact", fastact_call(func), "fastact"),
        Competitor("alloc", fastact_call(func, out=None), "ratio"),
    ]
    idioms = NUMPY_IDIOMS.get(func.name, {})
    found += [Competitor(col, stmt, "ratio") for col, stmt in idioms.items()]
    found += [
        Competitor(col, stmts[func.name], "ratio", peer=peer.name)
        for peer in peers
        for col, stmts in peer.columns.items()
        if func.name in stmts
    ]
    return [*found, *rooflines(func)]


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
        Competitor(peer.name, peer.in_place[func.name], "ratio", IN_PLACE, peer=peer.name)
        for peer in peers
        if func.name in peer.in_place
    ]
    return [*found, IN_PLACE_ROOFLINES[func.streams()]]


def competitors(func: Function, peers: Iterable[Peer], dtype: np.dtype) -> list[Competitor]:
    """Everything timed for ``func`` at ``dtype``, both tables, peers that compute in it."""
    usable = [peer for peer in peers if peer.supports(dtype)]
    return main_competitors(func, usable) + in_place_competitors(func, usable)


def namespace(
    x: np.ndarray, g: np.ndarray, peers: Iterable[Peer], in_place: bool = True
) -> dict[str, Any]:
    """The globals every statement runs in; y is C-contiguous whatever x's layout. Without
    ``in_place`` there are no xi and gi (a table that times no in-place call saves their
    memory at the largest sizes)."""
    arrays = {"x": x, "g": g, "y": np.empty(x.shape, x.dtype)}
    if in_place:
        arrays.update(xi=x.copy(), gi=g.copy())
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
