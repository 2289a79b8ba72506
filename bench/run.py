"""Benchmark fastact against the NumPy idioms it replaces, optional peers and a roofline.

The README's main command, and a thin entry to the benchmark that ships with the package
(``fastact._bench``; the same as ``python -m fastact bench`` and ``fastact.bench()``): same
options, same tables, with the results written to ``bench/results/latest.json`` and the
plots beside it. ``bench/README.md`` explains every table; ``--help`` lists the options.
"""

import sys
from pathlib import Path

from fastact._bench.cli import main

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], default_json=DEFAULT_JSON, prog="bench/run.py"))
