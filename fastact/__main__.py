"""``python -m fastact`` prints :func:`fastact.show_config`."""

from . import show_config

show_config()
