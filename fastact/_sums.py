"""The exact sum of float64 terms, shared by the NumPy reference (the weight and bias
gradients it computes term by term) and the compiled paths (which add exactly the
float64 partial sums the loops return, e.g. the channels' sums into one shared weight).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["exact_sum"]


def exact_sum(values: np.ndarray) -> float:
    """The correctly rounded sum; with a NaN or infinity, IEEE's (fsum refuses inf - inf)."""
    if not np.isfinite(values).all():
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.sum(values))
    try:
        return math.fsum(values.tolist())
    except OverflowError:
        # A partial sum beyond float64: scaled down by a power of two so that no sum of
        # the terms can overflow, every term stays exact but subnormals (which cannot
        # matter beside terms that large); scaled back up, the sum is inf if it must be.
        scale = 2.0 ** (values.size.bit_length() + 1)
        return math.fsum((values / scale).tolist()) * scale
