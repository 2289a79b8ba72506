"""The public functions, built at import from the function table.

Each function is compiled from a few lines of source (as :mod:`dataclasses` builds its
methods), so that it has the table's exact signature and does as little as possible on
the common call: hand the arguments untouched to the compiled entry point, and only if it
declines, validate and compute another way (:func:`fastact._dispatch.call`)::

    def leaky_relu(x, negative_slope=0.01, out=None):
        result = _unary(1, x, out, negative_slope, 0.0)
        if result is not None:
            return result
        return _call(_SPEC, 1, (x,), (negative_slope,), out)

The composite functions of the table are imported from their own modules and given the
table's docstring. The stubs type checkers read are in ``_api.pyi``, written from the same
table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from . import _dispatch
from ._functions import COMPOSITES, FUNCTIONS, Composite, Function

__all__ = sorted(f.name for f in (*FUNCTIONS, *COMPOSITES))


def _build(op: int, spec: Function) -> Callable[..., Any]:
    params = [p.name if p.default is None else f"{p.name}={p.default!r}" for p in spec.parameters]
    signature = ", ".join([*spec.operands, *params, "out=None"])
    operands = "".join(f"{name}, " for name in spec.operands)
    given = "".join(f"{p.name}, " for p in spec.parameters)
    # Functions whose rule parameters are fixed (relu6) pass none; unused slots get 0.0.
    passed = [p.name for p in spec.parameters] if not spec.fixed else []
    slots = ", ".join((*passed, "0.0", "0.0")[:2])
    entry = "_binary" if spec.is_backward else "_unary"
    source = (
        f"def {spec.name}({signature}):\n"
        f"    result = {entry}({op}, {operands}out, {slots})\n"
        f"    if result is not None:\n"
        f"        return result\n"
        f"    return _call(_SPEC, {op}, ({operands}), ({given}), out)\n"
    )
    namespace: dict[str, Any] = {
        "_unary": _dispatch._compiled.unary,
        "_binary": _dispatch._compiled.binary,
        "_call": _dispatch.call,
        "_SPEC": spec,
    }
    exec(compile(source, f"<fastact.{spec.name}>", "exec"), namespace)
    func: Callable[..., Any] = namespace[spec.name]
    func.__module__ = "fastact"
    func.__qualname__ = spec.name
    func.__doc__ = spec.doc
    return func


def _composite(spec: Composite) -> Callable[..., Any]:
    func: Callable[..., Any] = getattr(
        importlib.import_module(f"fastact.{spec.module}"), spec.name
    )
    func.__doc__ = spec.doc
    return func


globals().update({spec.name: _build(op, spec) for op, spec in enumerate(FUNCTIONS)})
globals().update({spec.name: _composite(spec) for spec in COMPOSITES})
