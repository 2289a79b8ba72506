"""``python -m fastact`` prints :func:`fastact.show_config`; ``python -m fastact tune``
measures this machine's streaming and thread thresholds and saves them (see
``fastact._tuning``); ``python -m fastact bench [options]`` runs the benchmark (see
``fastact._bench``; ``--help`` lists the options)."""

import argparse
import sys

from . import show_config


def tune_arguments(argv: list[str]) -> argparse.Namespace:
    """``tune``'s options; ``--help`` or an unknown option exits before anything runs
    (a typo must not save a tuned file that every later process of the user reads)."""
    parser = argparse.ArgumentParser(
        prog="python -m fastact tune",
        description="Measure this machine's streaming-store and per-thread thresholds and "
        "save them for this CPU in the user's cache directory.",
    )
    parser.add_argument("--dry-run", action="store_true", help="measure, but save nothing")
    return parser.parse_args(argv)


def command_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line without a command: ``--help`` prints this, anything else is a
    usage error (exit status 2) that names the commands."""
    parser = argparse.ArgumentParser(
        prog="python -m fastact",
        usage="%(prog)s [-h] [tune [--dry-run] | bench [options]]",
        description="Without a command, print fastact.show_config(): the build, the loops "
        "in use and the thresholds in force.",
        epilog="commands: 'tune [--dry-run]' measures and saves this machine's thresholds; "
        "'bench [options]' runs the benchmark (each takes --help).",
    )
    parser.add_argument("command", nargs="?", choices=["tune", "bench"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["tune"]:
        from ._tuning import tune

        options = tune_arguments(argv[1:])
        result = tune(save=not options.dry_run)
        return 1 if "error" in result else 0
    if argv[:1] == ["bench"]:
        from ._bench.cli import main as bench

        return bench(argv[1:], prog="python -m fastact bench")
    command_arguments(argv)
    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
