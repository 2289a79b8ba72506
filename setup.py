"""Build of the fastact C extension (the metadata lives in pyproject.toml).

Compiler flags, and why:
- ``-O3``: turns on the loop vectoriser for the branch-free loops.
- ``-fno-trapping-math``: lets GCC compute ``x * s`` for every element and then select,
  which is what makes the leaky loops branch-free. It changes no result.
- never ``-ffast-math``: it would break the NaN/-0.0 rules and, linked into a shared
  object, switch the whole process to flush-to-zero.
- no ``-march=native``: the wheel must run on any x86-64 / aarch64 machine. On x86-64 the
  loops are compiled a second time with ``-mavx2 -mf16c`` (``fastact._loops_avx2``), used
  only when a CPUID check at import finds both: up to 1.4x in cache (float16 products 5x),
  in a wheel that still runs on any x86-64; and a third time for AVX-512
  (``fastact._loops_avx512``), used where the CPU has it and the OS saves the ZMM state.
- ``-fopenmp`` for the thread drivers in ``_kernels`` and ``_channels``, only if a probe
  program compiles, links and runs with it; otherwise a serial build (``FASTACT_OPENMP=0``
  forces that).

``FASTACT_DEBUG_BUILD=1`` builds without optimisation and with Cython's run-time checks
back on (bounds, wraparound, initialised memoryviews), for debugging and sanitizer runs.
"""

import os
import platform
import shlex
import subprocess
import sys
import tempfile

import Cython
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

DEBUG_BUILD = os.environ.get("FASTACT_DEBUG_BUILD", "") not in ("", "0")

UNIX_FLAGS = ["-O0", "-g"] if DEBUG_BUILD else ["-O3", "-fno-trapping-math", "-funroll-loops"]
# The loops move float bits through integer types (tile transposes, mask lanes) into buffers
# read as floats: with strict aliasing GCC may move such a read above the store (it did,
# in the mask expand). NumPy builds without it too.
UNIX_FLAGS += ["-fno-strict-aliasing"]
MSVC_FLAGS = ["/Od", "/Zi"] if DEBUG_BUILD else ["/O2"]
AVX2_FLAGS = ["-mavx2", "-mf16c"]
# The AVX-512 subsets every AVX-512 CPU since Skylake-SP has (F, BW for 16-bit lanes, VL and
# DQ for masked 256-bit forms), with F16C; the import-time check asks for each of them and
# for the OS's ZMM state. -mavx512f brings FMA: contraction stays off, as every product is
# rounded once, alone (none is followed by an add today; this keeps it so).
AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mf16c"]
AVX512_FLAGS += ["-ffp-contract=off"]
# GCC's cost model leaves loops over runtime strides scalar, and scalar GCC code branches
# on the selects (11x slower on random signs); vectorised, even with element-by-element
# loads, they stay branch-free. Each op's loops are called from one place (the dispatch),
# and GCC would inline all of them into one function of hundreds of kilobytes, where it
# spilled the output pointer and reloaded it from the stack in every iteration; the loop
# then ran at 0.63x a plain C loop's speed from L2 to DRAM (float32 relu at 2^22: 51 GB/s
# against 82, AMD Zen 5; likely the reload waiting behind the loop's own stores). Kept
# apart, each op's function is small enough to hold its pointers in registers.
# GCC only: probed like the rest.
LOOP_FLAGS = ["-fvect-cost-model=unlimited", "-fno-inline-functions-called-once"]
OPENMP_FLAGS = {"unix": "-fopenmp", "msvc": "/openmp"}
USE_OPENMP = os.environ.get("FASTACT_OPENMP", "") != "0"
# The modules whose entry points split a call over threads.

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel num_threads(2) reduction(+:n)
    n += 1;
    printf("%d", n);
    return n == 2 ? 0 : 1;
}
"""
TRIVIAL_PROBE = "int main(void) { return 0; }\n"
AVX2_PROBE = r"""
#include <immintrin.h>
int main(void) {
    __m256 f = _mm256_cvtph_ps(_mm_set1_epi16(0x3c00));
    return _mm256_cvtsi256_si32(_mm256_cvtps_epi32(f)) - 1;
}
"""

AVX512_PROBE = r"""
#include <immintrin.h>
int main(void) {
    __m512 f = _mm512_cvtph_ps(_mm256_set1_epi16(0x3c00));
    return _mm512_reduce_add_epi32(_mm512_cvtps_epi32(f)) - 16;
}
"""

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG_BUILD,
    "wraparound": DEBUG_BUILD,
    "initializedcheck": DEBUG_BUILD,
    "cdivision": not DEBUG_BUILD,
    "embedsignature": True,
}


class BuildExt(build_ext):
    """Cythonizes, chooses the flags by compiler and records them for ``show_config()``."""

    def compiles(self, source: str, flags: list[str], run: bool = False) -> bool:
        """Whether ``source`` compiles with ``flags`` (and, if asked, links and runs)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "probe.c")
            with open(path, "w") as f:
                f.write(source)
            try:
                objects = self.compiler.compile([path], output_dir=tmp, extra_postargs=flags)
                if run:
                    exe = os.path.join(tmp, "probe")
                    # LDFLAGS as for the extensions (a sanitizer build needs its runtime).
                    ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
                    self.compiler.link_executable(
                        objects, exe, extra_preargs=ldflags, extra_postargs=flags
                    )
                    subprocess.run(
                        [exe + (".exe" if sys.platform == "win32" else "")],
                        check=True,
                        capture_output=True,
                        timeout=60,
                    )
            except Exception:
                return False
        return True

    def build_extensions(self):
        # The Cython derived from the function table (fastact/_functions.py) first.
        write_generated_cython()
        # Cythonize here, when building, rather than at import: an sdist then lists the
        # .pyx sources and never ships generated C, which every build regenerates.
        generated = cythonize(self.extensions, compiler_directives=DIRECTIVES)
        sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = sources[ext.name]
        kind = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        flags = MSVC_FLAGS if kind == "msvc" else UNIX_FLAGS
        openmp = OPENMP_FLAGS.get(kind)
        if not (USE_OPENMP and openmp and self.compiles(OPENMP_PROBE, [openmp], run=True)):
            openmp = None
        loop_flags = []
        if kind == "unix" and self.compiles(TRIVIAL_PROBE, LOOP_FLAGS):
            loop_flags = LOOP_FLAGS
        # The AVX2 build needs GCC/Clang on x86-64: the import-time CPUID check uses
        # __builtin_cpu_supports.
        x86_64 = platform.machine().lower() in ("x86_64", "amd64")
        isa_builds = {"fastact._loops_avx2": (AVX2_PROBE, AVX2_FLAGS)}
        isa_builds["fastact._loops_avx512"] = (AVX512_PROBE, AVX512_FLAGS)
        for name, (probe, isa_flags) in isa_builds.items():
            if not (kind == "unix" and x86_64 and self.compiles(probe, isa_flags)):
                self.extensions = [e for e in self.extensions if e.name != name]
        for ext in self.extensions:
            ext_flags = list(flags)
            if ext.name.startswith("fastact._loops_"):
                ext_flags += loop_flags
            if ext.name in isa_builds:
                ext_flags += isa_builds[ext.name][1]
            if ext.name in THREADED_MODULES and openmp:
                ext_flags.append(openmp)
                ext.extra_link_args = [*ext.extra_link_args, openmp]
            ext.extra_compile_args = ext_flags + ext.extra_compile_args
            # CFLAGS from the environment go on the command line too (before these), so
            # show_config() reports them: an -ffast-math there is as harmful as here.
            shown = " ".join([*shlex.split(os.environ.get("CFLAGS", "")), *ext_flags])
            shown = shown.replace("\\", "\\\\").replace('"', '\\"')
            ext.define_macros.append(("FASTACT_CFLAGS", f'"{shown}"'))
        super().build_extensions()


class BuildPy(build_py):
    def run(self):
        # The generated .pxi are package data too (the .pxd files of the Cython API include
        # them), and build_py copies the package before build_ext runs: written here first,
        # a fresh tree's install ships them.
        write_generated_cython()
        super().run()


def write_generated_cython() -> None:
    """Write fastact/_ops*.pxi from the function table, by path: nothing is built yet."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastact")
    sys.path.insert(0, folder)
    try:
        import _codegen

        _codegen.write(_codegen.GENERATED_PXI)
    finally:
        sys.path.remove(folder)


# The modules with an OpenMP thread driver.
THREADED_MODULES = ("fastact._kernels", "fastact._channels", "fastact._mask_kernels")
NUMPY_INCLUDE = numpy.get_include()
MACROS = [
    ("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
    ("FASTACT_CYTHON_VERSION", f'"{Cython.__version__}"'),
    ("FASTACT_NUMPY_VERSION", f'"{numpy.__version__}"'),
]

extensions = [
    Extension(
        name,
        [name.replace(".", "/") + ".pyx"],
        include_dirs=[NUMPY_INCLUDE],
        define_macros=list(MACROS),
    )
    for name in (
        "fastact._kernels",
        "fastact._ufuncs",
        "fastact._channels",
        "fastact._noise",
        "fastact._loops_baseline",
        "fastact._loops_avx2",
        "fastact._loops_avx512",
        "fastact._mask_kernels",
    )
]

setup(
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
