"""``python -m fastact`` prints :func:`fastact.show_config`; ``python -m fastact tune``
measures this machine's streaming and thread thresholds and saves them (see
``fastact._tuning``)."""

import sys

from . import show_config


def main(argv: list[str]) -> int:
    if argv[:1] == ["tune"]:
        from ._tuning import tune

        result = tune(save="--dry-run" not in argv[1:])
        return 1 if "error" in result else 0
    if argv:
        print("usage: python -m fastact [tune [--dry-run]]", file=sys.stderr)
        return 2
    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
