"""fastact's functions as NumPy ufuncs.

The same element rules and compiled loops as the main functions (``fastact.relu`` etc.),
with everything a ufunc brings: broadcasting, ``out=``, ``where=``, ``dtype=`` and
``__array_ufunc__`` dispatch, so dask arrays stay lazy and xarray DataArrays keep their
dims and coords::

    from fastact import ufunc
    ufunc.leaky_relu(x, slopes[:, None])   # per-channel slopes: PReLU
    ufunc.relu(dask_array)                 # lazy, chunk by chunk

Differences from the main functions, all NumPy's own rules: inputs broadcast (the
backward ufuncs too); dtypes follow NumPy's casting (integer input to the float-only
ufuncs is cast to the smallest float that holds it, or to float64 beside a Python-float
slope; bfloat16 to float32; a float64 slope array with float32 ``x`` gives float64); a
0-d result is a scalar. float16 loops take the slope as float32, as torch does, so they
are mixed-type loops (``ef->e``): ``dtype=np.float16`` selects them for float16 ``x``, but
not for ``x`` of another type (NumPy asks for every operand in float16, as it does of
``np.ldexp``); cast ``x`` to float16 first to compute in float16.
"""

from . import _ufuncs
from ._ufuncs import *  # noqa: F403 (one ufunc per function of the table)

__all__ = list(_ufuncs.UFUNCS)
