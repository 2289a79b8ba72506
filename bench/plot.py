"""Redraw the plots of a saved ``bench/run.py`` report, without running the benchmark.

Reads the JSON that ``run.py`` wrote (default ``bench/results/latest.json``) and writes
the same PNGs ``run.py`` writes after a run (``throughput_<dtype>.png`` and
``speedup_<dtype>.png``, and ``threads.png`` when the report has a thread-scaling table;
see ``fastact/_bench/plots.py`` for what they show), by default next to the JSON. Needs
matplotlib (``pip install matplotlib``, or ``pip install ".[bench]"``).

    python bench/plot.py                                   # bench/results/latest.json
    python bench/plot.py other.json --out bench/figures --dtypes float32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "json", type=Path, nargs="?", default=DEFAULT_JSON, help="default: %(default)s"
    )
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: the JSON's)")
    parser.add_argument("--dtypes", help="comma-separated (default: every dtype in the JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from fastact._bench import plots
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
        print(
            'error: plotting needs matplotlib (pip install matplotlib, or ".[bench]")',
            file=sys.stderr,
        )
        return 1
    try:
        report = json.loads(args.json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # no run yet, or not a JSON file
        print(f"error: cannot read a report from {args.json}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(report, dict) or "metadata" not in report:
        print(f"error: {args.json} is not a report of bench/run.py", file=sys.stderr)
        return 1
    if not (plots.report_dtypes(report) or report.get("thread_scaling")):
        print(f"error: {args.json} has no table to plot", file=sys.stderr)
        return 1
    dtypes = args.dtypes.split(",") if args.dtypes else None
    missing = set(dtypes or ()) - set(plots.report_dtypes(report))
    if missing:
        print(f"error: {args.json} has no results for {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        written = plots.write_plots(report, args.out or args.json.parent, dtypes)
    except OSError as exc:
        print(f"error: cannot write the plots: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
