"""The data every table times, and the check that runs before any timing.

Every statement is first evaluated on an array of edge values (NaN, +-inf, +-0.0,
subnormals, extremes, random; laid out as the table's operands are) and its result
compared bit for bit (NaN by NaN-ness only) with ``fastact._reference``. A fastact mismatch
aborts the run; any other mismatch is reported and its numbers are starred; a statement
that raises is left out, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .statements import Function

SEED = 12345
try:  # bfloat16, ml_dtypes' NumPy type, is measured where that package is installed
    import ml_dtypes
except ImportError:
    ml_dtypes = None


def draw(rng: np.random.Generator, n: int, dtype: np.dtype) -> np.ndarray:
    """Standard-normal values of ``dtype``; 16-bit ones drawn in float32 (NumPy draws
    neither) and rounded."""
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
    """A statement's result (an ndarray, a torch tensor, a JAX array) as an ndarray; a
    torch bfloat16 tensor, which ``.numpy()`` refuses, through its bits."""
    if str(getattr(result, "dtype", "")) == "torch.bfloat16":
        import torch  # loaded already: the result is its tensor

        return result.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
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
    outputs = [ns[name] for name in ("y", "xi", "gi") if name in ns]
    return Verdict(
        stmt,
        exactness(count_mismatches(got, want), want.size),
        allocates=not any(np.may_share_memory(got, out) for out in outputs),
    )


def check_statements(
    entries: Iterable[tuple[Key, Function, str]], make_ns: Callable[[], dict[str, Any]]
) -> Verdicts:
    return {key: judge(func, stmt, make_ns) for key, func, stmt in entries}


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
