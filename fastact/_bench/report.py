"""The report: the printed tables, the machine description, the JSON file and the plots.

Ratios are competitor time / fastact time (above 1, fastact is faster); GB/s counts the
bytes read + written per second; ``*`` marks a competitor that is not bit-exact on the
edge values, ``!`` a cell below its target.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import fastact

from .checks import Verdict, Verdicts
from .peers import Peer
from .sections import (
    INPUT_PATTERNS,
    SWEEP_TARGET,
    Case,
)
from .statements import FUNCTIONS, IN_PLACE, MAIN, SIDE_DTYPE, Competitor, Function, competitors
from .timing import Settings


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


def versus(value: float, target: float) -> str:
    """A ratio, with '!' when it is below its target."""
    return f"{value:.2f}" + ("!" if value < target else "")


def table_line(cells: list[str], widths: Iterable[int], left: int = 1) -> str:
    """The first ``left`` cells left-aligned, the others right-aligned, each in its width."""
    parts = [
        cell.ljust(width) if i < left else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return " ".join(parts).rstrip()


# ---------------------------------------------------------------------------------------
# The main and in-place tables.

CASE_WIDTHS = (20, 9, 6, 6)  # then one per roofline percentage and per ratio
RATIO_WIDTH = 8
PEER_WIDTH = 14
ROOFLINE_LABELS = {"copyto": "%copy"}  # the first roofline of a case is "%roof"


def fastest_peer_cell(case: Case, verdicts: Verdicts) -> str:
    found = case.fastest_peer()
    if found is None:
        return "-"
    column, ratio = found
    return (
        f"{format_ratio(ratio, verdicts[case.table, case.function.name, column].exact)} {column}"
    )


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
    """One block per function, each with its own columns (a size without one shows "-");
    the last, where peers ran, is the fastest peer's ratio and column."""
    print()
    print("\n".join(title))
    for func in FUNCTIONS.values():
        group = sorted((c for c in cases if c.function is func), key=lambda c: c.n)
        if not group:
            continue
        roofs = ["%roof", *(ROOFLINE_LABELS.get(r, f"%{r}") for r in group[0].rooflines[1:])]
        columns = list(dict.fromkeys(col for case in group for col in case.ratio_columns))
        with_peers = any(case.fastest_peer() for case in group)
        widths = [*CASE_WIDTHS, *(6 for _ in roofs[1:]), *(RATIO_WIDTH for _ in columns)]
        widths += [PEER_WIDTH] * with_peers
        head = [func.name, "fastact", "GB/s", *roofs, *columns, *["fastest peer"] * with_peers]
        print(table_line(head, widths))
        for case in group:
            cells, ratios = case_cells(case, verdicts)
            cells += [ratios.get(col, "-") for col in columns]
            cells += [fastest_peer_cell(case, verdicts)] * with_peers
            print(table_line(cells, widths))


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
            "* = competitor not bit-exact (see the legend above); fastest peer = the lowest",
            "of the peers' columns, and which.",
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
        listed: dict[tuple[str, str], Competitor] = {
            (c.table, c.column): c for dt in dtypes for c in competitors(func, peers, dt)
        }
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


# ---------------------------------------------------------------------------------------
# The other tables.


def print_sweep(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print("\nSize sweep, one thread, out=y: fastact's GB/s; numba = numba's loop time /")
    print("fastact's; copy = fastact's GB/s / np.copyto's (each counting its own bytes);")
    print(f"best = the lower of the two, the bar (target >= {SWEEP_TARGET:.2f}; '!' below it);")
    print("* = not bit-exact.")
    widths = (22, 8, 6, 8, 8, 8, 8)
    print(table_line(["  function", "dtype", "n", "GB/s", "numba", "copy", "best"], widths, 2))
    for row in rows:
        cells = [f"  {row['function']}", row["dtype"], format_size(row["n"])]
        cells.append(f"{row['gbps']['fastact']:.1f}")
        cells += [
            format_ratio(row["over"].get(col), row["exact"].get(col, "yes"))
            for col in ("numba", "copyto")
        ]
        cells.append(versus(row["of_better"], SWEEP_TARGET))
        print(table_line(cells, widths, 2))


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
    print("result written the same way (target: x2[::2] and x2[:, :c] >= 0.5, x2.T >= 0.4;")
    print("'!' below it); np out and np = np.maximum on the same view: its time / fastact's")
    print("(out=y and new array).")
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

        cells = [
            f"  {row['layout']}",
            format_size(row["n"]),
            "x".join(map(str, row["shape"])),
            f"{comps['fastact']['gbps']:.1f}",
            versus(row["out_over_contiguous"], row["target"]),
            ratio("np out", "fastact"),
            f"{comps['alloc']['gbps']:.1f}",
            versus(row["alloc_over_contiguous"], row["target"]),
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


def print_roofline_rows(
    header: str, rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str]
) -> None:
    """Rows of one fastact call each against a roofline: its label, time, GB/s, the
    roofline's share, and every other column's time over fastact's."""
    print(header)
    for row in rows:
        others = "  ".join(
            f"{k} {format_ratio(v, row['exact'].get(k, 'yes'))}"
            for k, v in row["ratios"].items()
            if k != "fastact"
        )
        print(
            f"  {label(row)} {format_time(row['median_s']['fastact']):>9} "
            f"{row['gbps']:6.1f} GB/s {100 * row['of_roofline']:4.0f}%roof  {others}"
        )


def print_prelu(rows: list[dict[str, Any]]) -> None:
    print_roofline_rows(
        "\nprelu, one weight per channel (axis 1): fastact time, GB/s of its\n"
        "streams, %roof (np.copyto forward, an OR of g and x backward), and other/fastact\n"
        "(* = not bit-exact: forward result, backward input gradient)",
        rows,
        lambda row: (
            f"{row['direction']:<8} {row.get('dtype', 'float32'):<8} {tuple(row['shape'])!s:<18}"
        ),
    )


def print_dead(rows: list[dict[str, Any]]) -> None:
    print_roofline_rows(
        "\ndead_units(x), x of shape (samples, units), reduced over the samples: fastact\n"
        "time, GB/s of the batch it reads, %roof (an OR of the same bits along the same\n"
        "axis, np.bitwise_or.reduce), and other/fastact (* = mask differs from the reference)",
        rows,
        lambda row: f"{row['dtype']:<8} {tuple(row['shape'])!s:<14}",
    )


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
SIMD_FLAGS = (
    "sse2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_bf16",
    "avx512_fp16",
    "asimd",
    "sve",
)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMBA_NUM_THREADS",
    "XLA_FLAGS",
)


def thread_settings(peers: Iterable[Peer]) -> dict[str, Any]:
    """Thread counts before the benchmark set any, and the variables that choose them."""
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
    """The versions of what the run used besides the peers: the bfloat16 type, the builder
    of the onnxruntime models and the plots, where installed (read from their metadata,
    so that none is imported for it)."""
    from importlib import metadata as dist

    found = {"numpy": np.__version__, "fastact": fastact.__version__}
    for name in ("ml_dtypes", "onnx", "matplotlib"):
        try:
            found[name] = dist.version(name)
        except dist.PackageNotFoundError:
            pass
    return found


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


BUILD_KEYS = (
    "simd",
    "openmp",
    "streaming_stores",
    "stream_min_bytes",
    "stream_min_bytes_source",
    "transposed_stream_min_bytes",
    "transposed_stream_min_bytes_source",
    "parallel_min_bytes_per_thread",
    "parallel_min_bytes_source",
    "num_threads",
)


def print_header(meta: dict[str, Any], mode: str, cfg: Settings, dtypes: list[np.dtype]) -> None:
    peers = ", ".join(f"{name} {version}" for name, version in meta["peers"].items())
    config = meta["fastact"]
    simd = " ".join(flag for flag in SIMD_FLAGS if flag in meta["cpu_flags"])
    # Keys that newer builds add to show_config(): which loops run, thresholds, threads.
    # None where there is no compiled extension (the reference path): left out.
    build = "".join(f"; {key} {config[key]}" for key in BUILD_KEYS if config.get(key) is not None)
    compiler = f"; {config['compiler']} {config['cflags']}" if config.get("compiler") else ""
    print(
        f"fastact {fastact.__version__} (compiled: {config['compiled']}{compiler}{build}), "
        f"numpy {np.__version__}, python {meta['python']}"
    )
    print(
        f"CPU: {meta['cpu']}, {meta['cores']} cores, {meta['platform']}; SIMD: {simd or 'unknown'}"
    )
    print(f"peers: {peers or 'none'} (one thread each, fastact too)")
    sizes = "; ".join(
        f"{dt.name} 2^{{{','.join(map(str, cfg.exponents_for(dt)))}}}" for dt in dtypes
    )
    print(
        f"mode {mode}: sizes {sizes}; {cfg.repeat} samples of >= {cfg.target * 1e3:g} ms "
        f"({cfg.large_repeat} when a sample exceeds {cfg.large_sample * 1e3:g} ms)"
    )


def competitor_record(case: Case, comp: Competitor, verdict: Verdict | None) -> dict[str, Any]:
    timing = case.timings[comp.column]
    return {
        "stmt": comp.stmt,
        "exact": verdict.exact if verdict else "roofline",
        "allocates": verdict.allocates if verdict else False,
        "peer": comp.peer,
        **timing.record(),
        "gbps": case.gbps(comp.column),
        "time_over_fastact": case.ratio(comp.column),
    }


def case_record(case: Case, verdicts: Verdicts) -> dict[str, Any]:
    func = case.function
    roofline = case.rooflines[0]
    fastest = case.fastest_peer()
    return {
        "dtype": case.dtype.name,
        "function": func.name,
        "n": case.n,
        "bytes_per_call": func.streams() * case.n * case.dtype.itemsize,
        "fastact_gbps": case.gbps("fastact"),
        "roofline": roofline,
        "percent_of_roofline": case.percent_of(roofline),
        "percent_of_copyto": case.percent_of("copyto"),
        "fastest_peer": (
            {"column": fastest[0], "time_over_fastact": fastest[1]} if fastest else None
        ),
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
    """The PNGs of ``plots.py``, or a one-line note when matplotlib is missing."""
    try:
        from . import plots
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
        print(
            'No plots: matplotlib is not installed (pip install matplotlib, or "fastact[bench]")'
        )
        return
    for path in plots.write_plots(report, directory):
        print(f"Wrote {path}")
