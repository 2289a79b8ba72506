"""The loops of ``_loops.pxd`` compiled for AVX-512 (x86-64 only; chosen at run time)."""
from fastact._loops cimport export_loop_table

loop_table = export_loop_table(b"avx512")
