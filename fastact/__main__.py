"""``python -m fastact`` prints :func:`fastact.show_config`; ``python -m fastact tune``
measures this machine's streaming and thread thresholds and saves them (see
``fastact._tuning``); ``python -m fastact bench [options]`` runs the benchmark (see
``fastact._bench``; ``--help`` lists the options)."""

import sys

from . import show_config


def main(argv: list[str]) -> int:
    if argv[:1] == ["tune"]:
        from ._tuning import tune

        result = tune(save="--dry-run" not in argv[1:])
        return 1 if "error" in result else 0
    if argv[:1] == ["bench"]:
        from ._bench.cli import main as bench

        return bench(argv[1:], prog="python -m fastact bench")
    if argv:
        print("usage: python -m fastact [tune [--dry-run] | bench [options]]", file=sys.stderr)
        return 2
    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
