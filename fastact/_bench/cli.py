"""The command line of the benchmark and ``fastact.bench()``: options, sections, the run."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict, dataclass, replace
from itertools import takewhile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import fastact
from fastact import _kernels, _tuning

from . import report as rp
from . import sections as sc
from .checks import Verdicts, require_fastact_exact
from .peers import PEER_LOADERS, Peer, load_peers
from .statements import DTYPES, FUNCTIONS, MAIN, NEGATIVE_SLOPE, Function
from .timing import MODES, Clock, Settings

SECTIONS = ("main", "sweep", "patterns", "strided", "threads", "overhead", "prelu", "dead")
DESCRIPTION = (
    "Benchmark fastact against the NumPy idioms it replaces, optional peers (torch, numba, "
    "numexpr, onnxruntime, JAX) and a memory roofline."
)
# `python -m fastact bench` writes here, in the working directory, unless --json says where.
PACKAGE_JSON = Path("fastact-bench") / "latest.json"

N = TypeVar("N", int, float)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def choices_list(allowed: Iterable[str], empty_ok: bool = False) -> Callable[[str], list[str]]:
    """A comma-separated list of choices, each once (in the order given); an empty one only
    where it means something (no peers), else it would run empty tables."""
    allowed = tuple(allowed)

    def parse(text: str) -> list[str]:
        items = list(dict.fromkeys(comma_list(text)))
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {allowed}")
        if not items and not empty_ok:
            raise argparse.ArgumentTypeError(f"name at least one of {allowed}")
        return items

    return parse


def in_range(values: list[N], low: float, high: float, what: str) -> list[N]:
    """The values, if there is one at least and each is in [low, high] (NaN is not).

    A ``high`` of ``math.inf`` leaves them unbounded above.
    """
    if not values or not all(low <= v <= high for v in values):
        bounds = f"at least {low}" if high == math.inf else f"between {low} and {high}"
        raise argparse.ArgumentTypeError(f"{what} must be {bounds}")
    return values


def int_list(text: str, low: int, high: int, what: str) -> list[int]:
    """Comma-separated integers, each in [low, high], in the order given."""
    try:
        values = [int(item) for item in comma_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    return in_range(values, low, high, what)


def number(convert: Callable[[str], N], low: float, high: float, what: str) -> Callable[[str], N]:
    """An argparse type: one number, as ``convert`` reads it, in [low, high]."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError as exc:
            kind = "an integer" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from exc
        return in_range([value], low, high, what)[0]

    return parse


def exponent_list(text: str) -> tuple[int, ...]:
    return tuple(int_list(text, 0, 28, "exponents"))


def count_list(text: str) -> list[int]:
    """Thread or worker counts, sorted, without repeats."""
    return sorted(set(int_list(text, 1, 4096, "counts")))


def write_problem(path: Path) -> str | None:
    """Why the report could not be written to ``path``, or None if it could.

    Tried rather than guessed from permission bits: root passes every permission check,
    yet cannot make a folder in /proc or a file on a read-only file system. The folders
    made for the try, and its file, are removed: ``report.write_json`` makes them again.
    """
    # Looking may fail too (a folder that cannot be searched, a name too long), before any
    # folder is made.
    try:
        if path.is_dir():
            return "it is a folder"
        # The folders to make, innermost first, up to the nearest one there (at worst "."
        # or "/"): a regular file in its place is the error that fails for root too.
        chain = [path.parent, *path.parent.parents]
        made = list(takewhile(lambda folder: not folder.exists(), chain))
        if not chain[len(made)].is_dir():
            return f"{chain[len(made)]} is not a folder"
    except OSError as exc:
        return f"it cannot be looked up ({exc.strerror or exc})"
    step = f"the folder {path.parent} cannot be made"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # opened to append: truncated only when the report is written
            step = "the file cannot be opened"
            with path.open("a"):
                pass
        else:
            step = f"no file can be made in {path.parent}"
            with tempfile.TemporaryFile(dir=path.parent):
                pass
    except OSError as exc:
        return f"{step} ({exc.strerror or exc})"
    finally:
        for folder in made:
            with suppress(OSError):
                folder.rmdir()
    return None


def build_parser(default_json: Path | None, prog: str | None) -> argparse.ArgumentParser:
    """The options; with ``default_json`` None, no JSON is written unless --json says where."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="under a minute: smoke test")
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
        "--sweep-sizes",
        type=exponent_list,
        help="comma-separated exponents of the size sweep (default 16..26; --quick 12,13; "
        "--full 12..26)",
    )
    parser.add_argument(
        "--peers",
        type=choices_list(PEER_LOADERS, empty_ok=True),
        default=list(PEER_LOADERS),
        help="comma-separated, from: " + ", ".join(PEER_LOADERS) + " ('' for none)",
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
    # Zero or fewer samples leave no median to report; a sample's target below a
    # microsecond is one call per sample whatever its value (timing.calibrate), and above a
    # minute even --quick would take hours.
    parser.add_argument(
        "--repeat",
        type=number(int, 1, math.inf, "samples"),
        help="samples per competitor",
    )
    parser.add_argument(
        "--target-ms",
        type=number(float, 0.001, 60_000, "milliseconds"),
        help="minimum duration of one sample",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=default_json,
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
    parser.add_argument(
        "--keep-thresholds",
        action="store_true",
        help="time with the thresholds in force, defaults included (by default a threshold "
        "neither set in the environment nor tuned for this CPU is measured first)",
    )
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, and a usage error for a JSON destination that cannot be written.

    The JSON is written once every table has run: checked only then, a bad path would
    cost the whole run, and its results.
    """
    args = parser.parse_args(argv)
    if args.json is not None:
        problem = write_problem(args.json)
        if problem is not None:
            parser.error(f"argument --json: cannot write {args.json}: {problem}")
    if args.plots is not None:
        # Any name in the folder will do: the check makes the folder and a temporary file.
        problem = write_problem(args.plots / "plot.png")
        if problem is not None:
            parser.error(f"argument --plots: cannot write into {args.plots}: {problem}")
    return args


def settings_from(args: argparse.Namespace) -> tuple[str, Settings]:
    mode = "quick" if args.quick else "full" if args.full else "default"
    cfg = MODES[mode]
    if args.sizes:  # as asked, for every dtype
        cfg = replace(cfg, exponents=args.sizes, max_exponent={})
    if args.sweep_sizes:
        cfg = replace(cfg, sweep_exponents=args.sweep_sizes)
    # `is not None`: 0 is a value (that the options reject), not "unset".
    if args.repeat is not None:
        cfg = replace(cfg, repeat=args.repeat, large_repeat=min(cfg.large_repeat, args.repeat))
    if args.target_ms is not None:
        cfg = replace(cfg, target=args.target_ms / 1e3)
    return mode, cfg


#: show_config()'s source of a threshold that the bench measured for its own run.
MEASURED_SOURCE = "measured by this bench run (not saved)"


def measure_default_thresholds() -> None:
    """Measure the thresholds still at their defaults, for this run only.

    A default is a guess that holds on most machines; the tables are to show this one, so a
    threshold that neither the environment nor a tuned file for this CPU sets is measured
    first, as ``python -m fastact tune`` does (about 15 seconds). Nothing is saved; the header
    shows each value in force and where it came from.
    """
    if _kernels is None:  # the reference path alone (FASTACT_DISABLE_COMPILED=1)
        return
    defaults = [name for name, (_, source) in _kernels.thresholds().items() if source == "default"]
    if not defaults:
        return
    print("Thresholds at their defaults: measuring this machine's (not saved) ...", flush=True)
    result = _tuning.calibrate()
    measured = {name: result[name] for name in defaults if result[name] is not None}
    _kernels._set_thresholds(**measured, source=MEASURED_SOURCE)


def one_thread() -> AbstractContextManager[Any]:
    """fastact on one thread, like the peers (whatever FASTACT_NUM_THREADS says)."""
    return fastact.threads(1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every section asked for, printed as it completes; the report of them all."""
    clock = Clock()
    mode, cfg = settings_from(args)
    dtypes = [np.dtype(name) for name in args.dtypes]
    funcs = [FUNCTIONS[name] for name in args.functions]
    peers, peer_versions = load_peers(args.peers)
    if not (args.keep_thresholds or args.quick):
        measure_default_thresholds()
    meta = rp.metadata(peer_versions, peers)
    rp.print_header(meta, mode, cfg, dtypes)
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
        if "sweep" in sections:
            with clock.section("sweep"):
                run_sweep(report, funcs, dtypes, peers, cfg)
        if "patterns" in sections:
            with clock.section("patterns"):
                report["input_patterns"] = [
                    row for dt in dtypes for row in sc.input_patterns(funcs, dt, cfg)
                ]
                rp.print_patterns(report["input_patterns"])
        if "strided" in sections:
            with clock.section("strided"):
                run_strided(report, cfg)
        if "threads" in sections:
            with clock.section("threads"):
                run_threads(report, funcs, peers, cfg, args.threads)
        for section, table in checked_tables(funcs, dtypes, peers, cfg).items():
            if section in sections:
                with clock.section(section):
                    run_checked(report, table)
    report["elapsed_s"] = {**clock.sections, "total_before_plots": clock.total()}
    return report


@dataclass(frozen=True)
class CheckedTable:
    """A table of its own statements, checked before it is timed."""

    keys: tuple[str, str]  # its verdicts' key in the exactness record, its rows' key
    what: str  # what the check ran on, for the message if fastact is not exact there
    check: Callable[[], Verdicts]
    rows: Callable[[Verdicts], list[dict[str, Any]]]
    printer: Callable[[list[dict[str, Any]]], None]


def checked_tables(
    funcs: list[Function], dtypes: list[np.dtype], peers: list[Peer], cfg: Settings
) -> dict[str, CheckedTable]:
    """By section, in the order they run."""
    overhead = [f for f in funcs if f.name in sc.OVERHEAD_FUNCTIONS]
    return {
        "prelu": CheckedTable(
            ("prelu", "prelu"),
            "the prelu operands",
            lambda: sc.check_prelu(peers, dtypes),
            lambda verdicts: sc.prelu_table(cfg, peers, verdicts, dtypes),
            rp.print_prelu,
        ),
        "overhead": CheckedTable(
            ("overhead", "call_overhead"),
            "the call-overhead operands",
            lambda: sc.check_overhead(overhead, peers),
            lambda verdicts: sc.call_overhead(overhead, peers, cfg, verdicts),
            rp.print_overhead,
        ),
        "dead": CheckedTable(
            ("dead", "dead_units"),
            "the dead-unit batches",
            lambda: sc.check_dead(peers, dtypes),
            lambda verdicts: sc.dead_table(cfg, peers, verdicts, dtypes),
            rp.print_dead,
        ),
    }


def run_checked(report: dict[str, Any], table: CheckedTable) -> None:
    """Exit unless fastact's statements are exact, then record the verdicts and the rows
    and print them."""
    verdicts = table.check()
    require_fastact_exact(verdicts, table.what)
    report["exactness"][table.keys[0]] = rp.verdict_records(verdicts)
    report[table.keys[1]] = table.rows(verdicts)
    table.printer(report[table.keys[1]])


def run_main(
    report: dict[str, Any],
    funcs: list[Function],
    dtypes: list[np.dtype],
    peers: list[Peer],
    cfg: Settings,
) -> None:
    """The main and in-place tables of every dtype, after the legend and the check."""
    verdicts = {dt.name: sc.check_exactness(funcs, dt, peers) for dt in dtypes}
    for dt in dtypes:
        require_fastact_exact(verdicts[dt.name], dt.name)
    rp.print_legend(funcs, peers, dtypes, verdicts)
    report["skipped"] += [
        {"what": " / ".join(key), "dtype": dt, "reason": v.exact}
        for dt, table in verdicts.items()
        for key, v in table.items()
        if v.failed
    ]
    report["exactness"].update({dt: rp.verdict_records(table) for dt, table in verdicts.items()})
    report["cases"], report["in_place"] = [], []
    for dt in dtypes:
        print(f"\ntiming {dt.name} ", end="", flush=True)
        cases = sc.run_cases(funcs, dt, peers, cfg, verdicts[dt.name])
        rp.print_main(dt, cases, verdicts[dt.name])
        rp.print_in_place(dt, cases, verdicts[dt.name])
        for case in cases:
            key = "cases" if case.table == MAIN else "in_place"
            report[key].append(rp.case_record(case, verdicts[dt.name]))


def run_sweep(
    report: dict[str, Any],
    funcs: list[Function],
    dtypes: list[np.dtype],
    peers: list[Peer],
    cfg: Settings,
) -> None:
    chosen = sc.sweep_functions(funcs)
    report["sweep"] = []
    for dt in (dt for dt in dtypes if dt.name in sc.SWEEP_DTYPES):
        verdicts = sc.check_sweep(chosen, dt, peers)
        require_fastact_exact(verdicts, f"the sweep's {dt.name} operands")
        report["exactness"][f"sweep {dt.name}"] = rp.verdict_records(verdicts)
        print(f"\ntiming sweep {dt.name} ", end="", flush=True)
        report["sweep"] += sc.size_sweep(chosen, dt, peers, cfg, verdicts)
    rp.print_sweep(report["sweep"])


def run_strided(report: dict[str, Any], cfg: Settings) -> None:
    verdicts = sc.check_strided()
    require_fastact_exact(verdicts, "strided operands")
    report["exactness"]["strided"] = rp.verdict_records(verdicts)
    print(f"\ntiming strided {sc.SIDE_DTYPE.name} ", end="", flush=True)
    report["strided"] = sc.strided(cfg, verdicts)
    rp.print_strided(report["strided"])


def run_threads(
    report: dict[str, Any],
    funcs: list[Function],
    peers: list[Peer],
    cfg: Settings,
    counts: list[int] | None,
) -> None:
    chosen = [f for f in funcs if f.name in sc.THREAD_STATEMENTS["fastact"]]
    verdicts = sc.check_threads(chosen, peers)
    require_fastact_exact(verdicts, "the thread-scaling operands")
    report["exactness"]["threads"] = rp.verdict_records(verdicts)
    counts = counts or sc.thread_counts(os.cpu_count() or 1)
    counts = sorted({1, *counts})
    print(f"\ntiming threads {counts} ", end="", flush=True)
    report["thread_scaling"] = sc.thread_scaling(chosen, peers, counts, cfg, verdicts)
    rp.print_threads(report["thread_scaling"])


def main(
    argv: Sequence[str] | None = None, default_json: Path = PACKAGE_JSON, prog: str | None = None
) -> int:
    """Run the benchmark as the command line asks; write the JSON and the plots."""
    args = parse_args(build_parser(default_json, prog), argv)
    report = run(args)
    rp.write_json(args.json, report)
    if not args.no_plots:
        rp.write_plots(report, args.plots or args.json.parent)
    finish(report)
    return 0


def finish(report: dict[str, Any]) -> None:
    spent = ", ".join(
        f"{name} {seconds:.0f} s"
        for name, seconds in report["elapsed_s"].items()
        if name != "total_before_plots"
    )
    total = report["elapsed_s"]["total_before_plots"]
    print(f"Done in {total:.0f} s ({spent}) on {report['metadata']['cpu']}")
