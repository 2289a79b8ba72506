# What Python sees of the compiled extension. Each entry point returns None when its
# arguments are not something the loops cover (the Python layer then takes over).
from typing import Any

import numpy as np

KERNEL_DTYPES: dict[str, tuple[str, ...]]
BUILD_INFO: dict[str, str | bool | int | tuple[str, ...]]
SIMD_ENV_VAR: str
SIMD_BUILDS: tuple[str, ...]
RUNNABLE_SIMD: tuple[str, ...]

def thresholds() -> dict[str, tuple[int, str]]: ...
def _thresholds() -> dict[str, int]: ...
def _set_thresholds(
    stream_min_bytes: int | None = None,
    parallel_min_bytes: int | None = None,
    transposed_stream_min_bytes: int | None = None,
    source: str = "set",
) -> None: ...

# ``op`` is the function's index in fastact._functions.FUNCTIONS; p0 and p1 its
# parameters as Python floats (0.0 where it has fewer).
def unary(op: int, x: Any, out: Any, p0: Any, p1: Any) -> np.ndarray | None: ...
def binary(op: int, grad_output: Any, x: Any, out: Any, p0: Any, p1: Any) -> np.ndarray | None: ...
def dead_units(x: Any, axis: Any) -> np.ndarray | None: ...
