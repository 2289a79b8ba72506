"""fastact: fast, exact ReLU-family activations for NumPy arrays.

Forward, derivative and fused backward of ReLU and its family, computed by compiled,
branch-free loops and bit-identical to PyTorch CPU, edge cases included. Inputs the
loops do not cover go through a plain NumPy reference with the same results. Every
elementwise function is declared once, in the table of ``fastact._functions``.
"""

from __future__ import annotations

import platform
import sys
from typing import TYPE_CHECKING, Any

from . import _api
from ._api import *  # noqa: F403 (the functions of the table, listed in _api.__all__)
from ._dispatch import _DISABLED, COMPILED, _kernels, dead_fraction, dead_units
from ._threads import get_num_threads, set_num_threads, threads
from ._version import __version__

__all__ = [
    "__version__",
    *_api.__all__,
    "dead_fraction",
    "dead_units",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "threads",
]


if TYPE_CHECKING:
    # What the lazy attributes below are, for a type checker; a module-level __getattr__
    # that it could see would make every misspelt name of fastact an ``Any``.
    from collections.abc import Callable

    from . import ufunc as ufunc

    bench: Callable[..., dict[str, Any]]
else:

    def __getattr__(name: str) -> Any:
        # ``fastact.ufunc`` after a plain ``import fastact``, loaded on first use (as SciPy
        # loads its submodules): it needs the compiled extension, the rest does not.
        import importlib

        if name == "ufunc":
            return importlib.import_module(f"{__name__}.ufunc")
        # ``fastact.bench()``: the benchmark ships with the package but loads only when
        # called for, so that importing fastact imports no benchmark code, plotting library
        # or peer (nor does a type checker of user code follow into it and its untyped
        # peers: its signature is declared above as a plain callable).
        if name == "bench":
            return importlib.import_module(f"{__name__}._bench").bench
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def show_config(print_out: bool = True) -> dict[str, Any]:
    """Describe this fastact installation: the first thing to include in a bug report.

    Parameters
    ----------
    print_out : bool, default True
        Also print the description, one ``key: value`` per line.

    Returns
    -------
    dict
        ``version``; ``compiled`` (whether the compiled loops are in use) and
        ``disabled_by_env`` (whether ``FASTACT_DISABLE_COMPILED`` turned them off);
        ``kernel_dtypes`` (per function, the dtypes the loops cover: everything else runs
        the NumPy reference; ``rrelu_backward`` in training is NumPy's product);
        ``compiler``, ``cflags``, ``cython`` and ``built_against_numpy`` (how the
        extension was built); ``simd`` (the build of
        the loops in use: ``avx512``, ``avx2`` or ``baseline``; ``FASTACT_SIMD`` picks
        another), ``simd_runnable`` (every build this machine can run, best first) and
        ``loops_cflags`` (the build's compiler flags), ``openmp`` (whether threads
        are available), ``streaming_stores`` and ``stream_min_bytes`` (non-temporal stores for
        outputs of at least that size), ``transposed_stream_min_bytes`` (the same for an
        output written from a transposed input), ``parallel_min_bytes_per_thread`` (the
        traffic each extra thread needs), each with its ``*_source`` (``default``,
        ``tuned: <file>`` from ``python -m fastact tune``, or ``env: <variable>``), and
        ``num_threads`` (the current default);
        ``numpy``, ``python`` and ``platform``.
    """
    import numpy

    build: dict[str, Any] = dict(_kernels.BUILD_INFO) if _kernels is not None else {}
    in_force: dict[str, tuple[int, str]] = _kernels.thresholds() if _kernels is not None else {}
    stream_min, stream_source = in_force.get("stream_min_bytes", (None, None))
    parallel_min, parallel_source = in_force.get("parallel_min_bytes", (None, None))
    transposed_min, transposed_source = in_force.get("transposed_stream_min_bytes", (None, None))
    config: dict[str, Any] = {
        "version": __version__,
        "compiled": COMPILED,
        "disabled_by_env": _DISABLED,
        "kernel_dtypes": dict(_kernels.KERNEL_DTYPES) if _kernels is not None else {},
        "compiler": build.get("compiler"),
        "cflags": build.get("cflags"),
        "cython": build.get("cython"),
        "built_against_numpy": build.get("built_against_numpy"),
        "simd": build.get("simd"),
        "simd_runnable": build.get("simd_runnable"),
        "loops_cflags": build.get("loops_cflags"),
        "openmp": build.get("openmp"),
        "streaming_stores": build.get("streaming_stores"),
        "stream_min_bytes": stream_min,
        "stream_min_bytes_source": stream_source,
        "transposed_stream_min_bytes": transposed_min,
        "transposed_stream_min_bytes_source": transposed_source,
        "parallel_min_bytes_per_thread": parallel_min,
        "parallel_min_bytes_source": parallel_source,
        "num_threads": get_num_threads(),
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if print_out:
        for key, value in config.items():
            if key == "kernel_dtypes":
                value = "; ".join(f"{k}: {', '.join(v)}" for k, v in value.items()) or "none"
            print(f"{key}: {value}")
    return config
