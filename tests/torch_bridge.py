"""NumPy arrays to torch tensors and back, bfloat16 included (torch.from_numpy has none:
the bits travel as int16)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from bitwise import is_bfloat16


def to_torch(a: np.ndarray) -> Any:
    if is_bfloat16(a.dtype):
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))


def from_torch(t: Any, dtype: Any) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(dtype)
    return t.numpy()
