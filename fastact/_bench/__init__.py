"""fastact's benchmark: ``fastact.bench()``, ``python -m fastact bench``, ``python bench/run.py``.

What it measures
----------------
The main table: for each dtype (float16, float32, float64, and bfloat16 with ml_dtypes),
function of the table (``fastact._functions``) and size n (2**10 to 2**25 elements by
default), the median time per call of every *competitor* of that function on seeded,
random-sign standard-normal data:

* ``fastact`` with a preallocated ``out=``: the main number; without ``out=`` (column
  ``alloc``) it shows what allocating the result costs;
* the NumPy idioms a user would otherwise write (``np.maximum(x, 0)``, ``np.clip``,
  ``x * (x > 0)``, ``np.where``, ...);
* peers, each only if importable and only on the dtypes it computes in: torch, a numba
  ``@njit`` loop and a numba ``@vectorize`` ufunc, numexpr, onnxruntime (a one-node model
  run with IO binding into the preallocated output) and JAX (``jax.jit``, CPU); all on one
  thread, fastact too; the last column names the fastest of them;
* the roofline, a pass that moves the same bytes: ``np.copyto(y, x)`` for a unary
  function (read n, write n); for a backward one (read 2n, write n) a bitwise OR of ``g``
  and ``x`` viewed as unsigned integers, at memory speed for every dtype.

Beside it, smaller tables: in place; a size sweep (every power of two from 2^16 to 2^26
against numba's loop and np.copyto); input patterns; strided views; thread scaling;
PReLU; call overhead (``sections.py``).

How
---
Before anything is timed, every statement is checked bit for bit on edge values
(``checks.py``); timing is calibrated, interleaved and reported as medians
(``timing.py``); the tables are printed as each section completes, and a JSON file with
every sample, every verdict and the machine description is written, with PNG plots
beside it when matplotlib is installed (``report.py``, ``plots.py``).

Importing ``fastact`` imports none of this: ``fastact.bench`` loads it on first use, and a
peer is imported only when a run asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cli, report


def bench(
    *,
    mode: str = "default",
    dtypes: Sequence[str] | str | None = None,
    functions: Sequence[str] | str | None = None,
    sizes: Sequence[int] | None = None,
    sweep_sizes: Sequence[int] | None = None,
    peers: Sequence[str] | str | None = None,
    sections: Sequence[str] | str | None = None,
    threads: Sequence[int] | None = None,
    repeat: int | None = None,
    target_ms: float | None = None,
    json: str | Path | None = None,
    plots: str | Path | None = None,
    keep_thresholds: bool = False,
) -> dict[str, Any]:
    """Benchmark fastact against NumPy, the installed peers and a memory roofline.

    The same run as ``python -m fastact bench``: it prints every table as it completes
    and returns the report. Every argument is optional and takes what the command line
    option of the same name takes (``None``: that option's default).

    Parameters
    ----------
    mode : {"default", "quick", "full"}
        ``quick`` takes seconds (a smoke test), ``default`` a few minutes on 2 cores,
        ``full`` every size from 2^4 to 2^26 with more samples.
    dtypes, functions, peers, sections : sequence of str, or a comma-separated str
        What to run: by default every dtype, every function of the table, every peer
        that imports (torch, numba, numexpr, onnxruntime, jax) and every section (main,
        sweep, patterns, strided, threads, overhead, prelu, dead). A peer that does not
        import, or fails as it loads, is reported as skipped; ``peers=[]`` runs none. A
        name given twice runs once; an empty list of the others is a usage error.
    sizes, sweep_sizes : sequence of int
        Exponents: the main table's and the size sweep's sizes are ``2**e`` elements.
    threads : sequence of int
        Thread counts of the thread-scaling table (default 1, 2, 4, ... and the cores).
    repeat : int
        Samples per competitor (by default 3 in ``quick`` mode, 7 in ``default``, 15 in
        ``full``; a sample of more than 20 ms takes at most 3, 5 in ``full``). Medians
        are reported.
    target_ms : float
        Minimum duration of one sample.
    json : str or path
        Where to write the report as JSON; by default nothing is written.
    plots : str or path
        Folder for the PNG plots (needs matplotlib), checked before anything is timed;
        by default none are drawn.
    keep_thresholds : bool
        Time with the streaming and thread thresholds in force. By default (except in
        ``quick`` mode) a threshold that neither the environment nor a tuned file for this
        CPU sets is measured first, for this run only, as ``python -m fastact tune`` does.

    Returns
    -------
    dict
        The report written to the JSON file: ``metadata`` (CPU, flags, versions,
        ``fastact.show_config()``, thread settings), ``exactness`` (every statement's
        verdict on the edge values), ``cases`` (the main table), ``in_place``, ``sweep``,
        ``input_patterns``, ``strided``, ``thread_scaling``, ``prelu``, ``call_overhead``,
        ``dead_units`` (those that ran), ``skipped``, ``mode``, ``settings`` (the sizes,
        samples and targets of the run), ``negative_slope`` and ``elapsed_s``.

    Raises
    ------
    SystemExit
        With status 2 and the command line's usage message, before anything is timed, if
        ``mode`` is not one of the three, another argument is not one the command line
        accepts, or ``json`` or ``plots`` cannot be written (a folder cannot be made, or
        no file can be written in it); else if fastact itself disagrees with
        ``fastact._reference`` on the edge values.
    """
    # No JSON by default (None), unlike the command line; --json, when given, is checked
    # before anything is timed. Each value is passed as --option=value: one that starts
    # with "-" (a negative count, a path) is then the option's, for its type to judge.
    parser = cli.build_parser(None, "fastact.bench")
    if mode not in cli.MODES:  # the command line's error: usage, message, SystemExit(2)
        parser.error(f"mode must be one of {', '.join(cli.MODES)}, not {mode!r}")
    argv = [] if mode == "default" else [f"--{mode}"]
    lists = {
        "--dtypes": dtypes,
        "--functions": functions,
        "--sizes": sizes,
        "--sweep-sizes": sweep_sizes,
        "--peers": peers,
        "--sections": sections,
        "--threads": threads,
    }
    for option, values in lists.items():
        if values is not None:
            text = values if isinstance(values, str) else ",".join(map(str, values))
            argv.append(f"{option}={text}")
    if repeat is not None:
        argv.append(f"--repeat={repeat}")
    if target_ms is not None:
        argv.append(f"--target-ms={target_ms}")
    if json is not None:
        argv.append(f"--json={json}")
    if plots is not None:
        argv.append(f"--plots={plots}")
    if keep_thresholds:
        argv.append("--keep-thresholds")
    args = cli.parse_args(parser, argv)
    result = cli.run(args)
    if args.json is not None:
        report.write_json(args.json, result)
    if args.plots is not None:
        report.write_plots(result, args.plots)
    cli.finish(result)
    return result


__all__ = ["bench"]
