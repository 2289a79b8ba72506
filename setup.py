"""Build of the fastact C extension (the metadata lives in pyproject.toml).

Compiler flags, and why:
- ``-O3``: turns on the loop vectoriser for the branch-free loops.
- ``-fno-trapping-math``: lets GCC compute ``x * s`` for every element and then select,
  which is what makes the leaky loops branch-free. It changes no result.
- never ``-ffast-math``: it would break the NaN/-0.0 rules and, linked into a shared
  object, switch the whole process to flush-to-zero.
- no ``-march=native``: the wheel must run on any x86-64 / aarch64 machine.

``FASTACT_DEBUG_BUILD=1`` builds without optimisation and with Cython's run-time checks
back on (bounds, wraparound, initialised memoryviews), for debugging and sanitizer runs.
"""

import os

import Cython
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG_BUILD = os.environ.get("FASTACT_DEBUG_BUILD", "") not in ("", "0")

UNIX_FLAGS = ["-O0", "-g"] if DEBUG_BUILD else ["-O3", "-fno-trapping-math", "-funroll-loops"]
MSVC_FLAGS = ["/Od", "/Zi"] if DEBUG_BUILD else ["/O2"]

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

    def build_extensions(self):
        # Cythonize here, when building, rather than at import: an sdist then lists the
        # .pyx sources and never ships generated C, which every build regenerates.
        generated = cythonize(self.extensions, compiler_directives=DIRECTIVES)
        sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = sources[ext.name]
        flags = MSVC_FLAGS if self.compiler.compiler_type == "msvc" else UNIX_FLAGS
        for ext in self.extensions:
            ext.extra_compile_args = flags + ext.extra_compile_args
            ext.define_macros.append(("FASTACT_CFLAGS", f'"{" ".join(flags)}"'))
        super().build_extensions()


# The ufunc loops convert float16 with NumPy's own npy_half functions (libnpymath).
NUMPY_INCLUDE = numpy.get_include()
NUMPY_LIB = os.path.join(NUMPY_INCLUDE, "..", "lib")
MACROS = [
    ("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
    ("FASTACT_CYTHON_VERSION", f'"{Cython.__version__}"'),
    ("FASTACT_NUMPY_VERSION", f'"{numpy.__version__}"'),
]

extensions = [
    Extension(
        "fastact._kernels",
        ["fastact/_kernels.pyx"],
        include_dirs=[NUMPY_INCLUDE],
        define_macros=list(MACROS),
    ),
    Extension(
        "fastact._ufuncs",
        ["fastact/_ufuncs.pyx"],
        include_dirs=[NUMPY_INCLUDE],
        library_dirs=[NUMPY_LIB],
        libraries=["npymath"],
        define_macros=list(MACROS),
    ),
]

setup(
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExt},
)
