"""How many threads the compiled loops may use: a process default and a scoped override.

The default is 1, so that fastact composes with dask, joblib and torch workers (which bring
their own parallelism) without oversubscribing the cores; ``FASTACT_NUM_THREADS`` sets it
at startup and :func:`set_num_threads` later. ``with threads(n):`` overrides it for the code
in the block, in the current thread (or asyncio task) only: a context variable, so that
other threads keep their own setting. Only calls that move enough bytes (read + written,
per thread: 512 KiB by default, measured per machine by ``python -m fastact tune``) use
more than one thread; nothing is started until such a call runs.
"""

from __future__ import annotations

import operator
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import SupportsIndex

import numpy as np

__all__ = ["NUM_THREADS_ENV_VAR", "get_num_threads", "set_num_threads", "threads"]

#: The environment variable that sets the default thread count at import.
NUM_THREADS_ENV_VAR = "FASTACT_NUM_THREADS"

# More threads than this is a typo, not a machine.
_MAX_THREADS = 4096


def _check_count(n: object, func: str) -> int:
    # Anything with __index__ is a count (SupportsIndex, as the stubs say: a NumPy integer
    # too); a float is not. bool is an int to Python, but threads(True) is a slip.
    message = f"fastact.{func}: the thread count must be an int, not {type(n).__name__}"
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, SupportsIndex):
        raise TypeError(message)
    try:
        count = operator.index(n)
    except TypeError:  # has __index__ but refuses: a 0-d float array
        raise TypeError(message) from None
    if not 1 <= count <= _MAX_THREADS:
        raise ValueError(
            f"fastact.{func}: the thread count must be between 1 and {_MAX_THREADS}, got {count}"
        )
    return count


def _count_from_env() -> int:
    text = os.environ.get(NUM_THREADS_ENV_VAR, "").strip()
    if not text:
        return 1
    try:
        return _check_count(int(text), "set_num_threads")
    except (TypeError, ValueError):
        warnings.warn(
            f"fastact: ignoring {NUM_THREADS_ENV_VAR}={text!r}: not an integer between 1 "
            f"and {_MAX_THREADS}; using 1 thread",
            RuntimeWarning,
            stacklevel=2,
        )
        return 1


_lock = threading.Lock()
_default = _count_from_env()
_scoped: ContextVar[int | None] = ContextVar("fastact_num_threads", default=None)


def get_num_threads() -> int:
    """The number of threads the compiled loops may use here and now.

    Returns
    -------
    int
        The count set by the innermost active ``with fastact.threads(n):`` block of the
        calling thread, else the process default (:func:`set_num_threads`,
        ``FASTACT_NUM_THREADS``, else 1). A call uses fewer threads when its arrays are
        small (each thread needs ``show_config()["parallel_min_bytes_per_thread"]`` of
        traffic, bytes read + written: 512 KiB unless tuned), when fastact was built
        without OpenMP, and in a process forked after fastact had started threads (GNU
        OpenMP cannot start threads there). ``OMP_NUM_THREADS`` and threadpoolctl's
        limits do not change it: the count is fastact's own, so that torch or another
        OpenMP user in the process cannot undo it.
    """
    scoped = _scoped.get()
    return _default if scoped is None else scoped


def set_num_threads(n: SupportsIndex) -> None:
    """Set the process-wide default number of threads for the compiled loops.

    Parameters
    ----------
    n : int
        From 1 (the default: no threads are started) up. Blocks of
        :func:`threads` take precedence over it while they are active.

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n`` is below 1 or absurdly large (over 4096).
    """
    global _default
    count = _check_count(n, "set_num_threads")
    with _lock:
        _default = count


@contextmanager
def threads(n: SupportsIndex) -> Iterator[None]:
    """Use ``n`` threads for fastact calls in this block (this thread or task only).

    Parameters
    ----------
    n : int
        From 1 up; see :func:`set_num_threads`.

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n`` is below 1 or absurdly large (over 4096).

    Notes
    -----
    The count lives in a context variable, so the block has ``decimal.localcontext``'s
    scope: a generator suspended at a ``yield`` inside the block leaves the count set
    for its caller until it resumes and leaves the block, and closing such a generator
    from another thread cannot restore it (Python raises ``ValueError``: the block was
    entered in another context). Keep ``yield`` out of the block, or finish the
    generator in the thread that started it.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> x = np.linspace(-1, 1, 2**22, dtype=np.float32)
    >>> with fastact.threads(2):
    ...     y = fastact.relu(x)
    """
    token = _scoped.set(_check_count(n, "threads"))
    try:
        yield
    finally:
        _scoped.reset(token)
