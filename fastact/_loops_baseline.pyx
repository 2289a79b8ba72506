"""The loops of ``_loops.pxd`` and ``_mask_loops.pxd`` compiled for the platform's
baseline instruction set."""
from fastact._loops cimport export_loop_table
from fastact._mask_loops cimport export_mask_table

loop_table = export_loop_table(b"baseline")
mask_table = export_mask_table(b"baseline")
