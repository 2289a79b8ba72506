#!/usr/bin/env bash
# Run the test suite against a build of fastact's extension with AddressSanitizer,
# UndefinedBehaviorSanitizer and, by default, Cython's run-time checks (FASTACT_DEBUG_BUILD=1:
# -O0, boundscheck, wraparound, initializedcheck).
#
#   tests/sanitize.sh                  # the whole suite
#   tests/sanitize.sh -m "not slow"    # any other arguments go to pytest
#   SANITIZE_BUILD=optimised tests/sanitize.sh tests/test_kernels.py
#
# SANITIZE_BUILD=optimised keeps the release flags (-O3 ..., the vectorised loops users
# run) instead of FASTACT_DEBUG_BUILD's -O0: a vectorised loop or an unrolled tail reads
# and writes other addresses than the scalar code, and only this build checks those.
#
# Needs gcc (with libasan and libubsan) and, in the active Python environment, the test
# dependencies (pip install ".[test]") and the build requirements: Cython, setuptools and
# numpy (the script installs the first two if they are missing).
#
# The extension is built in a scratch copy of the package and imported from there through
# PYTHONPATH, so whatever fastact is installed stays as it is. Python itself is not
# instrumented, hence LD_PRELOAD of the ASan runtime (it must come first in the process),
# and no leak detection: the interpreter does not free everything at exit. Any ASan or
# UBSan report stops the process with an error, so it fails the run.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cc="${CC:-gcc}"

asan_runtime="$("$cc" -print-file-name=libasan.so)"
if [[ ! -e "$asan_runtime" ]]; then
    echo "sanitize.sh: $cc has no libasan.so (install gcc's ASan runtime)" >&2
    exit 1
fi
if ! python -c "import Cython, setuptools" 2>/dev/null; then
    python -m pip install --quiet "Cython>=3.1" "setuptools>=68"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for item in fastact setup.py pyproject.toml README.md setup.cfg MANIFEST.in LICENSE; do
    if [[ -e "$repo/$item" ]]; then cp -r "$repo/$item" "$scratch/"; fi
done
rm -rf "$scratch"/fastact/*.so "$scratch"/fastact/__pycache__
for pyx in "$scratch"/fastact/*.pyx; do rm -f "${pyx%.pyx}.c"; done

case "${SANITIZE_BUILD:-debug}" in
    debug) debug_build=1 ;;
    optimised) debug_build=0 ;;
    *) echo "sanitize.sh: SANITIZE_BUILD must be debug or optimised" >&2; exit 1 ;;
esac

echo "== building the sanitized extension (${SANITIZE_BUILD:-debug}) in $scratch"
(
    cd "$scratch"
    FASTACT_DEBUG_BUILD=$debug_build \
        CC="$cc" \
        CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
        LDFLAGS="-fsanitize=address,undefined" \
        python setup.py --quiet build_ext --inplace >build.log 2>&1 || {
        cat build.log
        exit 1
    }
)
# Every Cython module must have been built here: one missing from setup.py would
# otherwise be imported from wherever fastact is installed, uninstrumented.
for pyx in "$scratch"/fastact/*.pyx; do
    so=("${pyx%.pyx}".*.so)
    if [[ ! -e "${so[0]}" ]] || ! grep -q __asan_report "${so[0]}"; then
        echo "sanitize.sh: $(basename "$pyx") was not built with ASan (is it in setup.py?)" >&2
        exit 1
    fi
done

export PYTHONPATH="$scratch${PYTHONPATH:+:$PYTHONPATH}"
# libstdc++ too: ASan intercepts C++ throws only if it is loaded at start-up, and torch
# (imported by some tests) throws C++ exceptions that become Python errors.
export LD_PRELOAD="$asan_runtime $("$cc" -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# From an empty directory: `python -` puts the working directory first on sys.path.
mkdir "$scratch/empty"
(cd "$scratch/empty" && python - "$scratch") <<'EOF'
import sys
import fastact
assert fastact.__file__.startswith(sys.argv[1]), f"imported {fastact.__file__} instead"
assert fastact.COMPILED
print("== fastact from", fastact.__file__, fastact.show_config(print_out=False)["cflags"])
EOF

cd "$repo"
# --capture=sys: a sanitizer report goes straight to stderr; captured at the file
# descriptor, it would be lost when the process aborts.
# ASan keeps freed memory in quarantine (that is how it finds use after free), so the
# resident-memory test would see it grow; the tracemalloc leak tests still run.
pytest -p no:cacheprovider --capture=sys \
    --deselect tests/test_resources.py::test_resident_memory_is_flat "$@"
