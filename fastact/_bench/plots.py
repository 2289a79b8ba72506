"""Plots of a benchmark report, drawn after a run (``report.write_plots``) and by
``bench/plot.py`` from a saved JSON file.

Two figures per dtype of the main table, one panel per function, size n on a log2 x-axis:

* ``throughput_<dtype>.png``: GB/s of every competitor, each counting the bytes the
  function itself reads and writes (``bytes_per_call`` in the report: 2n or 3n elements),
  so that every line measures the same work; the function's roofline (``np.copyto`` for
  unary functions, an OR of the unsigned-integer views of g and x for backward ones; in
  older reports ``np.add``) is the dashed grey line.
* ``speedup_<dtype>.png``: competitor time / fastact time (fastact with ``out=``) on a
  log y-axis; above the line at 1x, fastact is faster.

And, when the report has a thread-scaling table, ``threads.png``: one column of panels per
function, GB/s (top) and speed-up over the same implementation on 1 thread (bottom)
versus n, one colour per implementation and one marker per thread count.

Times are the medians stored in the report. Open markers show a competitor that is not
bit-exact on the edge values (for that function). The figures are drawn with matplotlib's
object API (no pyplot, hence no display and no global state) and saved as 256-colour PNGs
of about 100 kB; importing this module needs matplotlib.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator
from PIL import Image  # a dependency of matplotlib

DPI = 110
PANEL_INCHES = (5.0, 3.0)  # width, height of one function's panel
PANEL_COLUMNS = 2  # relu | leaky_relu side by side, in the function table's order
MAX_SIZE_TICKS = 8

ROOFLINE = "roofline"
ROOFLINE_COLOR = "0.35"
# Label and colour of each column of the main table; an unknown column gets its own name.
SERIES_STYLE = {
    "fastact": ("fastact, out=", "tab:red"),
    "alloc": ("fastact, new array", "tab:orange"),
    "np": ("NumPy idiom", "tab:blue"),
    "np out": ("NumPy idiom, out=", "tab:cyan"),
    "torch": ("torch", "tab:purple"),
    "numba": ("numba", "tab:green"),
    "numexpr": ("numexpr", "tab:brown"),
    "clip": ("np.clip", "tab:olive"),
    "mul": ("x * (x > 0)", "tab:pink"),
    "where": ("np.where(x > 0, x, 0); g for backward", "goldenrod"),
    "max": ("np.maximum(x, s * x)", "teal"),
    "nb vec": ("numba @vectorize", "darkgreen"),
    "ort": ("onnxruntime, IO binding", "tab:gray"),
    "jax": ("JAX jit", "black"),
    ROOFLINE: (
        "roofline: np.copyto(y, x); g | x as unsigned integers for backward",
        ROOFLINE_COLOR,
    ),
}
# Columns left out of the speed-up figure: fastact itself, and fastact allocating its result.
NOT_A_PEER = ("fastact", "alloc")

Case = dict[str, Any]  # one entry of the report's "cases"


def roofline_of(case: Case) -> str:
    """The column of the roofline that moves the function's bytes."""
    # Reports written before run.py recorded it: np.add was timed only for backward functions.
    return case.get("roofline", "add" if "add" in case["competitors"] else "copyto")


def competitor_columns(cases: list[Case]) -> list[str]:
    """Columns timed for a function, except rooflines, in the report's order."""
    columns: dict[str, None] = {}
    for case in cases:
        for column, record in case["competitors"].items():
            if record["exact"] != "roofline":
                columns[column] = None
    return list(columns)


def is_exact(column: str, cases: list[Case]) -> bool:
    records = [case["competitors"][column] for case in cases if column in case["competitors"]]
    return all(record["exact"] == "yes" for record in records)


def gbps(case: Case, column: str) -> float:
    """The column's throughput, counting the function's bytes read and written."""
    return case["bytes_per_call"] / case["competitors"][column]["median_s"] / 1e9


def time_over_fastact(case: Case, column: str) -> float:
    return case["competitors"][column]["median_s"] / case["competitors"]["fastact"]["median_s"]


def series(
    cases: list[Case], column: str, value: Callable[[Case, str], float]
) -> tuple[list[int], list[float]]:
    """Sizes and ``value`` at each size of a column, sorted by size."""
    timed = sorted((case for case in cases if column in case["competitors"]), key=lambda c: c["n"])
    return [case["n"] for case in timed], [value(case, column) for case in timed]


def cases_by_function(report: dict[str, Any], dtype: str) -> dict[str, list[Case]]:
    """The report's cases of one dtype, grouped by function in the order they were run."""
    grouped: dict[str, list[Case]] = {}
    for case in report.get("cases", []):
        if case["dtype"] == dtype:
            grouped.setdefault(case["function"], []).append(case)
    return grouped


def report_dtypes(report: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(case["dtype"] for case in report.get("cases", [])))


# ---------------------------------------------------------------------------------------
# Figures.


def panel_grid(count: int, title: str, report: dict[str, Any]) -> tuple[Figure, list[Any]]:
    """A figure with one panel per function (shared axes) and a title naming the run."""
    cols = min(PANEL_COLUMNS, count)
    rows = math.ceil(count / cols)
    fig = Figure(
        # As wide as two panels even for one function: the titles need the room.
        figsize=(PANEL_INCHES[0] * PANEL_COLUMNS, PANEL_INCHES[1] * rows + 0.8),
        dpi=DPI,
        layout="constrained",
    )
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    for ax in axes[max(0, count - cols) : count]:  # the lowest panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("n (elements per array, log scale)", fontsize=9)
    meta = report["metadata"]
    fig.suptitle(
        f"{title}\nfastact {meta['fastact']['version']}, NumPy {meta['numpy']}, "
        f"{meta['cpu']} ({meta['cores']} cores), {report['mode']} run "
        f"{meta['timestamp'][:10]}; medians",
        fontsize=10,
    )
    return fig, list(axes[:count])


def size_axis(ax: Any, sizes: Iterable[int]) -> None:
    """Log2 x-axis with ticks at the measured sizes (thinned to a readable number)."""
    sizes = sorted(set(sizes))
    step = math.ceil(len(sizes) / MAX_SIZE_TICKS)
    ticks = sizes[::step]
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"$2^{{{n.bit_length() - 1}}}$" for n in ticks])
    ax.xaxis.set_minor_locator(NullLocator())


def panel_title(ax: Any, function: str, cases: list[Case]) -> None:
    idiom = cases[0]["competitors"].get("np")
    subtitle = f"\nNumPy idiom: {idiom['stmt']}" if idiom else ""
    ax.set_title(f"{function}{subtitle}", fontsize=9)


def line(ax: Any, cases: list[Case], column: str, value: Callable[[Case, str], float]) -> None:
    """One competitor's ``value`` versus n; open markers when it is not bit-exact."""
    color = SERIES_STYLE.get(column, (column, None))[1]
    main = column == "fastact"
    ax.plot(
        *series(cases, column, value),
        marker="o",
        markersize=4.5 if main else 3.5,
        markerfacecolor=None if is_exact(column, cases) else "white",
        linewidth=2.2 if main else 1.2,
        color=color,
        label=column,
        zorder=3 if main else 2,
    )


def shared_legend(fig: Figure, axes: list[Any]) -> None:
    """One legend below the panels, for every series drawn in any of them."""
    handles = {}
    for ax in axes:
        for handle, column in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(column, handle)
    labels = [SERIES_STYLE.get(column, (column, None))[0] for column in handles]
    legend = fig.legend(
        list(handles.values()),
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 4),
        fontsize=8,
        title="open markers: not bit-exact on edge values (NaN, \u00b10.0, \u00b1inf, ...)",
        title_fontsize=8,
        frameon=False,
    )
    for handle in legend.legend_handles:
        handle.set_markerfacecolor(handle.get_color())


def function_panels(
    report: dict[str, Any],
    dtype: str,
    title: str,
    ylabel: str,
    draw: Callable[[Any, list[Case]], None],
) -> Figure:
    """One panel per function of ``dtype``, each filled by ``draw(ax, cases)``."""
    grouped = cases_by_function(report, dtype)
    fig, axes = panel_grid(len(grouped), title, report)
    for ax, (function, cases) in zip(axes, grouped.items(), strict=True):
        draw(ax, cases)
        size_axis(ax, (case["n"] for case in cases))
        ax.grid(alpha=0.3)
        panel_title(ax, function, cases)
    shared_legend(fig, axes)
    fig.supylabel(ylabel, fontsize=9)
    return fig


def draw_throughput(ax: Any, cases: list[Case]) -> None:
    for column in competitor_columns(cases):
        line(ax, cases, column, gbps)
    xs, ys = series(cases, roofline_of(cases[0]), gbps)
    ax.plot(xs, ys, linestyle="--", color=ROOFLINE_COLOR, linewidth=1.4, label=ROOFLINE)


def draw_speedup(ax: Any, cases: list[Case]) -> None:
    """Ratios on a log y-axis labelled 0.5x, 1x, 2x, 5x, ..., with the line at 1x."""
    for column in competitor_columns(cases):
        if column not in NOT_A_PEER:
            line(ax, cases, column, time_over_fastact)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}\u00d7"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="black", linewidth=0.9, zorder=1)


def throughput_figure(report: dict[str, Any], dtype: str) -> Figure:
    """GB/s versus n, every competitor and the roofline, one panel per function."""
    fig = function_panels(
        report,
        dtype,
        f"Throughput, {dtype}, one thread",
        "GB/s (the function's bytes read + written per second)",
        draw_throughput,
    )
    # Once every panel is drawn: the shared y-axis then spans all of them.
    fig.axes[0].set_ylim(bottom=0)
    return fig


def speedup_figure(report: dict[str, Any], dtype: str) -> Figure:
    """Competitor time / fastact time versus n, one panel per function."""
    return function_panels(
        report,
        dtype,
        f"Speed-up of fastact (out=) over each competitor, {dtype}: above 1\u00d7, fastact wins",
        "competitor time / fastact time (log scale)",
        draw_speedup,
    )


def save_png(fig: Figure, path: Path) -> None:
    """Save as a 256-colour PNG: it looks the same as matplotlib's RGBA PNG at a third of
    the bytes (under 100 kB), which matters for images committed to the repository."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)


# ---------------------------------------------------------------------------------------
# Thread scaling.

THREAD_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def thread_series(
    rows: list[dict[str, Any]], function: str, impl: str, count: int, key: str
) -> tuple[list[int], list[float]]:
    """Sizes and ``key`` of one implementation at one thread count, sorted by size."""
    chosen = sorted(
        (
            r
            for r in rows
            if (r["function"], r["implementation"], r["threads"]) == (function, impl, count)
        ),
        key=lambda r: r["n"],
    )
    return [r["n"] for r in chosen], [r[key] for r in chosen]


def threads_figure(report: dict[str, Any]) -> Figure:
    """GB/s and speed-up over 1 thread versus n: a column of two panels per function."""
    rows = report["thread_scaling"]
    functions = list(dict.fromkeys(r["function"] for r in rows))
    impls = list(dict.fromkeys(r["implementation"] for r in rows))
    counts = sorted({r["threads"] for r in rows})
    meta = report["metadata"]
    fig = Figure(
        figsize=(4.2 * max(2, len(functions)), 2 * PANEL_INCHES[1] + 1.2),
        dpi=DPI,
        layout="constrained",
    )
    axes = fig.subplots(2, len(functions), sharex=True, sharey="row", squeeze=False)
    for column, function in enumerate(functions):
        top, bottom = axes[0, column], axes[1, column]
        for impl in impls:
            color = SERIES_STYLE.get(impl, (impl, None))[1]
            for marker, count in zip(THREAD_MARKERS, counts, strict=False):
                style = {"color": color, "marker": marker, "markersize": 3.5, "linewidth": 1.2}
                label = f"{impl}, {count} thread{'s' * (count > 1)}"
                top.plot(*thread_series(rows, function, impl, count, "gbps"), label=label, **style)
                if count > counts[0]:
                    key = "speedup_vs_fewest_threads"
                    bottom.plot(*thread_series(rows, function, impl, count, key), **style)
        for count in counts[1:]:
            bottom.axhline(count / counts[0], color="0.6", linestyle=":", linewidth=0.9)
        bottom.axhline(1.0, color="black", linewidth=0.9)
        top.set_title(function, fontsize=9)
        for ax in (top, bottom):
            size_axis(ax, (r["n"] for r in rows))
            ax.grid(alpha=0.3)
        bottom.set_xlabel("n (elements per array, log scale)", fontsize=9)
    axes[0, 0].set_ylim(bottom=0)  # once every panel is drawn: the row shares its y-axis
    axes[0, 0].set_ylabel("GB/s (bytes read + written)", fontsize=9)
    axes[1, 0].set_ylabel(f"speed-up over {counts[0]} thread (dotted: ideal)", fontsize=9)
    fig.suptitle(
        f"Thread scaling, {rows[0]['dtype']}, each writing into a preallocated output\n"
        f"fastact {meta['fastact']['version']}, {meta['cpu']} ({meta['cores']} cores), "
        f"{report['mode']} run {meta['timestamp'][:10]}; medians",
        fontsize=10,
    )
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    return fig


FIGURES = {"throughput": throughput_figure, "speedup": speedup_figure}


def write_plots(
    report: dict[str, Any], directory: Path, dtypes: Iterable[str] | None = None
) -> list[Path]:
    """Write both figures of every dtype (or of ``dtypes``) as PNG, and the thread-scaling
    figure when the report has that table; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dtype in dtypes or report_dtypes(report):
        for name, make in FIGURES.items():
            path = directory / f"{name}_{dtype}.png"
            save_png(make(report, dtype), path)
            written.append(path)
    if report.get("thread_scaling"):
        path = directory / "threads.png"
        save_png(threads_figure(report), path)
        written.append(path)
    return written
