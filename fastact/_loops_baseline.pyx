"""The loops of ``_loops.pxd``, ``_mask_loops.pxd`` and
``_channel_loops.pxd`` compiled for the platform's
baseline instruction set."""
from fastact._loops cimport export_loop_table
from fastact._channel_loops cimport export_channel_table
from fastact._mask_loops cimport export_mask_table

loop_table = export_loop_table(b"baseline")
mask_table = export_mask_table(b"baseline")
channel_table = export_channel_table(b"baseline")
