"""The loops of ``_loops.pxd`` compiled for the platform's baseline instruction set."""
from fastact._loops cimport export_loop_table

loop_table = export_loop_table(b"baseline")
