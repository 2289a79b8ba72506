"""The loops of ``_loops.pxd``, ``_mask_loops.pxd`` and
``_channel_loops.pxd`` compiled for AVX-512 (x86-64
only; chosen at run time)."""
from fastact._loops cimport export_loop_table
from fastact._channel_loops cimport export_channel_table
from fastact._mask_loops cimport export_mask_table

loop_table = export_loop_table(b"avx512")
mask_table = export_mask_table(b"avx512")
channel_table = export_channel_table(b"avx512")
