"""The public functions: every layout and input kind, out=, errors, and import hygiene."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from bitwise import (
    BFLOAT16,
    BINARY,
    FLOAT_DTYPES,
    FUNCTIONS,
    INT_DTYPES,
    KERNEL_FLOAT_DTYPES,
    SANITIZED,
    args_for,
    assert_bitwise_equal,
    default_parameters,
    requires_compiled,
    requires_ml_dtypes,
    sample,
)

import fastact
from fastact import _reference
from fastact._dispatch import DISABLE_ENV_VAR
from fastact._functions import BY_NAME


def call(name, *args, **kwargs):
    return getattr(fastact, name)(*args, **kwargs)


def expected(name, *args):
    """The reference result, from native-order arrays (the reference's own input rule)."""
    arrays = [np.asarray(a) for a in args if not isinstance(a, float)]
    arrays = [a.astype(a.dtype.newbyteorder("=")) for a in arrays]
    params = [a for a in args if isinstance(a, float)]
    return getattr(_reference, name)(*arrays, *params)


def layouts(dtype, rng):
    """Arrays of every layout the public functions must accept, same-shape in pairs."""
    base = sample(dtype, 6 * 7, rng)
    mis = np.frombuffer(bytearray(b"\0" + base.tobytes()), dtype, offset=1)
    yield "contiguous", base
    yield "2-D C", base.reshape(6, 7)
    yield "2-D F", np.asfortranarray(base.reshape(6, 7))
    yield "strided", base[::2]
    yield "reversed", base[::-1]
    yield "transposed slice", base.reshape(6, 7)[:, 1:5].T
    yield "byte-swapped", base.astype(base.dtype.newbyteorder())
    yield "misaligned", mis
    yield "read-only", np.frombuffer(base.tobytes(), dtype)
    yield "0-d", np.array(base[0])
    yield "empty", base[:0]
    yield "empty 2-D", base[:0].reshape(0, 3)
    yield "broadcast (zero stride)", np.broadcast_to(base[:1], (5,))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_every_layout_matches_reference(name, dtype):
    rng = np.random.default_rng(5)
    for label, x in layouts(dtype, rng):
        g = sample(dtype, x.size, rng).reshape(x.shape)
        args = args_for(name, x, g, 0.2)
        got = call(name, *args)
        want = expected(name, *args)
        assert_bitwise_equal(got, want)
        if x.ndim == 0:
            assert isinstance(got, np.generic), label
        else:
            assert isinstance(got, np.ndarray) and got.shape == x.shape, label
        out = np.empty(x.shape, dtype)
        assert call(name, *args, out=out) is out, label
        assert_bitwise_equal(out, want)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_relu_layouts(dtype):
    rng = np.random.default_rng(9)
    for _, x in layouts(dtype, rng):
        got = fastact.relu(x)
        assert np.asarray(got).dtype == np.dtype(dtype)
        assert_bitwise_equal(got, expected("relu", x))


def test_python_scalars_and_lists():
    assert fastact.relu(-3.0) == 0.0 and isinstance(fastact.relu(-3.0), np.float64)
    assert np.signbit(fastact.relu(-0.0))
    assert fastact.relu(-3) == 0 and fastact.relu(4) == 4
    assert fastact.leaky_relu(-2.0, 0.5) == -1.0
    assert_bitwise_equal(fastact.relu([[-1.0, 2.0]]), np.array([[0.0, 2.0]]))
    assert_bitwise_equal(fastact.relu_backward([1.0, 1.0], [-1.0, 1.0]), [0.0, 1.0])
    assert_bitwise_equal(fastact.relu((-1, 5)), np.array([0, 5]))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
def test_in_place(name, dtype):
    rng = np.random.default_rng(1)
    for n in (0, 1, 33, 1000):
        x, g = sample(dtype, n, rng), sample(dtype, n, rng)
        want = expected(name, *args_for(name, x, g, 0.2))
        targets = ("x", "grad_output") if name in BINARY else ("x",)
        for target in targets:
            xi, gi = x.copy(), g.copy()
            out = xi if target == "x" else gi
            assert call(name, *args_for(name, xi, gi, 0.2), out=out) is out
            assert_bitwise_equal(out, want)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES)
@pytest.mark.parametrize("shift", [-3, -1, 1, 5])
def test_partial_overlap_acts_as_if_separate(name, dtype, shift):
    # out is the input's buffer shifted by a few elements: writing the result while still
    # reading the input would corrupt it.
    rng = np.random.default_rng(2)
    n = 100
    buf = sample(dtype, n + 10, rng)
    x = buf[5 : 5 + n]
    g = sample(dtype, n, rng)
    want = expected(name, *args_for(name, x.copy(), g, 0.2))
    out = buf[5 + shift : 5 + shift + n]
    assert call(name, *args_for(name, x, g, 0.2), out=out) is out
    assert_bitwise_equal(out, want)
    if name in BINARY:  # the same hazard through grad_output
        buf = sample(dtype, n + 10, rng)
        g, x = buf[5 : 5 + n], sample(dtype, n, rng)
        want = expected(name, *args_for(name, x, g.copy(), 0.2))
        out = buf[5 + shift : 5 + shift + n]
        call(name, *args_for(name, x, g, 0.2), out=out)
        assert_bitwise_equal(out, want)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_out_with_another_layout_or_byte_order(name):
    rng = np.random.default_rng(4)
    x = sample(np.float32, 42, rng).reshape(6, 7)
    g = sample(np.float32, 42, rng).reshape(6, 7)
    args = args_for(name, x, g, 0.2)
    want = expected(name, *args)
    for out in (
        np.empty((6, 7), np.float32, order="F"),
        np.empty((6, 7), ">f4"),
        np.empty((6, 14), np.float32)[:, ::2],
    ):
        assert call(name, *args, out=out) is out
        assert_bitwise_equal(out, want)


def misaligned(a: np.ndarray) -> np.ndarray:
    return np.frombuffer(bytearray(b"\0" + a.tobytes()), a.dtype, offset=1).reshape(a.shape)


def refuse_reference(monkeypatch, name):
    def refused(*args):
        raise AssertionError(f"fastact.{name} fell back to the NumPy reference")

    monkeypatch.setattr(_reference, name, refused)


@requires_compiled
@pytest.mark.parametrize(
    ("name", "dtype"), [(n, t) for n in FUNCTIONS for t in FLOAT_DTYPES] + [("relu", np.int16)]
)
def test_byte_swapped_and_misaligned_run_the_compiled_loops(name, dtype, monkeypatch):
    # The loops cannot read them directly; the ufunc form runs the same loops over NumPy's
    # buffered iterator. The reference (a few times slower) must not be what runs.
    rng = np.random.default_rng(10)
    x, g = sample(dtype, 6 * 9, rng).reshape(6, 9), sample(dtype, 6 * 9, rng).reshape(6, 9)
    want = expected(name, *args_for(name, x, g, 0.2))
    swapped = x.dtype.newbyteorder()
    cases = {
        "byte-swapped": (x.astype(swapped), g.astype(swapped)),
        "misaligned": (misaligned(x), misaligned(g)),
        "byte-swapped, misaligned": (misaligned(x.astype(swapped)), misaligned(g.astype(swapped))),
    }
    refuse_reference(monkeypatch, name)
    for label, (xs, gs) in cases.items():
        args = args_for(name, xs, gs, 0.2)
        assert_bitwise_equal(call(name, *args), want)
        out = misaligned(np.empty(x.shape, swapped))
        assert call(name, *args, out=out) is out, label
        assert_bitwise_equal(out, want)


@requires_compiled
@requires_ml_dtypes
@pytest.mark.parametrize("name", FUNCTIONS)
def test_byte_swapped_or_misaligned_bfloat16_take_the_reference(name, monkeypatch):
    # The ufuncs have no bfloat16 loops: what the loops cannot read goes to the reference.
    x = sample(BFLOAT16, 20, np.random.default_rng(11))
    want = expected(name, *args_for(name, x, x, 0.2))
    for xs in (x.astype(x.dtype.newbyteorder()), misaligned(x)):
        assert_bitwise_equal(call(name, *args_for(name, xs, xs, 0.2)), want)
    refuse_reference(monkeypatch, name)
    with pytest.raises(AssertionError, match="reference"):
        call(name, *args_for(name, misaligned(x), misaligned(x), 0.2))


class Tagged(np.ndarray):
    """An ndarray subclass with nothing to say about arithmetic."""


@pytest.mark.parametrize("name", FUNCTIONS)
def test_subclasses_come_back_as_plain_ndarrays(name):
    data = np.array([[-1.5, -0.0, 2.0, np.nan]])
    masked = np.ma.masked_array(data, mask=[[False, True, False, True]])
    for x in (data.view(Tagged), masked):
        got = call(name, *args_for(name, x, x, 0.2))
        assert type(got) is np.ndarray, type(x)
        # The mask is not applied: every element is computed from the data underneath.
        assert_bitwise_equal(got, expected(name, *args_for(name, data, data, 0.2)))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_subclass_out_is_written_as_its_memory_on_every_path(name):
    # A masked out keeps its mask and is returned itself, whether the loops write it
    # (native x) or NumPy's iterator does (byte-swapped x): the data is all that changes.
    data = np.array([-1.5, -0.0, 2.0, np.nan], np.float32)
    want = expected(name, *args_for(name, data, data, 0.2))
    for x in (data, data.astype(data.dtype.newbyteorder())):
        out = np.ma.masked_array(np.full(4, 7.0, np.float32), mask=[False, True, False, True])
        assert call(name, *args_for(name, x, x, 0.2), out=out) is out
        assert_bitwise_equal(np.ma.getmaskarray(out), np.array([False, True, False, True]))
        assert_bitwise_equal(out.data, want)


@requires_compiled
@pytest.mark.parametrize("name", FUNCTIONS)
def test_masked_arrays_keep_their_mask_through_the_ufuncs(name):
    from fastact import ufunc

    data = np.array([-1.5, -0.0, 2.0, np.nan, 4.0])
    mask = np.array([False, True, False, True, False])
    x = np.ma.masked_array(data, mask=mask)
    got = getattr(ufunc, name)(*args_for(name, x, x, 0.2))
    assert isinstance(got, np.ma.MaskedArray)
    assert_bitwise_equal(np.ma.getmaskarray(got), mask)
    want = expected(name, *args_for(name, data, data, 0.2))
    assert_bitwise_equal(got.data[~mask], want[~mask])


def bad_calls(name):
    """(arguments, keyword arguments, error type, words the message must contain)."""
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    rows = [
        ((x.astype(bool),), {}, TypeError, "dtype bool"),
        ((x.astype(np.complex64),), {}, TypeError, "dtype complex64"),
        ((np.array(["a", "b"]),), {}, TypeError, "dtype <U1"),
        ((np.array([None, 1], dtype=object),), {}, TypeError, "dtype object"),
        ((None,), {}, TypeError, "dtype object"),
        ((np.zeros(3, np.longdouble),), {}, TypeError, "float128"),
        (([[1.0], [1.0, 2.0]],), {}, ValueError, "cannot be converted"),
        ((x,), {"out": [0.0] * 8}, TypeError, "out must be a numpy.ndarray"),
        ((x,), {"out": np.empty(8, np.float64)}, TypeError, "out has dtype float64"),
        ((x,), {"out": np.empty(9, np.float32)}, ValueError, "out has shape (9,)"),
        ((x,), {"out": np.frombuffer(bytes(32), np.float32)}, ValueError, "out is read-only"),
    ]
    if name != "relu":
        rows.append(((x.astype(np.int32),), {}, TypeError, "only relu takes integers"))
    # Every row passes valid parameters, but for the rows below that spoil one of them.
    params = default_parameters(name, 0.2)
    rows = [((*a, *params), k, e, m) for a, k, e, m in rows]
    for index, param in enumerate(BY_NAME[name].parameters):
        for bad, error, words in (
            ("0.1", TypeError, f"{param.name} must be a real number, not str"),
            (1j, TypeError, f"{param.name} must be a real number, not complex"),
            (None, TypeError, f"{param.name} must be a real number, not NoneType"),
            # NumPy registers timedelta64 as a number, but float() refuses it.
            (
                np.timedelta64(1, "s"),
                TypeError,
                f"{param.name} must be a real number, not timedelta64",
            ),
            (np.array([0.1, 0.2]), TypeError, f"{param.name} must be a real number"),
            (10**400, ValueError, f"{param.name} (a number of 401 digits) is too large"),
            (1e39, ValueError, f"{param.name}=1e+39 overflows float32"),
        ):
            spoiled = list(params)
            spoiled[index] = bad
            rows.append(((x, *spoiled), {}, error, words))
    if BY_NAME[name].ordered:
        rows.append(((x, 2.0, 1.0), {}, ValueError, "min_val=2.0 is greater than max_val=1.0"))
    if name in BINARY:
        rows = [((x, *a[:1], *a[1:]), k, e, m) for a, k, e, m in rows]
        rows += [
            (
                (x[:4], x, *params),
                {},
                ValueError,
                "grad_output has shape (4,) but x has shape (8,)",
            ),
            ((x.reshape(2, 4), x, *params), {}, ValueError, "must be equal"),
            ((x.astype(np.float64), x, *params), {}, TypeError, "grad_output has dtype float64"),
            ((x.astype(bool), x, *params), {}, TypeError, "grad_output has dtype bool"),
        ]
    return rows


@pytest.mark.parametrize("name", FUNCTIONS)
def test_bad_input_raises_named_error_and_writes_nothing(name):
    for args, kwargs, error, words in bad_calls(name):
        sentinel = np.full(8, 7.0, np.float32)
        out = kwargs.get("out", sentinel)
        before = out.copy() if isinstance(out, np.ndarray) else None
        inputs = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        with pytest.raises(error) as info:
            call(name, *args, **{**kwargs, "out": out})
        assert words in str(info.value), (args, kwargs, str(info.value))
        assert f"fastact.{name}" in str(info.value)
        if before is not None:
            assert_bitwise_equal(out, before)
        for a, b in zip(args, inputs, strict=True):
            if isinstance(a, np.ndarray):
                assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_inputs_are_never_modified(name):
    rng = np.random.default_rng(8)
    for dtype in FLOAT_DTYPES:
        x, g = sample(dtype, 50, rng), sample(dtype, 50, rng)
        x0, g0 = x.copy(), g.copy()
        call(name, *args_for(name, x, g, 0.2))
        call(name, *args_for(name, x, g, 0.2), out=np.empty_like(x))
        assert_bitwise_equal(x, x0)
        assert_bitwise_equal(g, g0)


def test_slope_accepts_any_real_number():
    x = np.array([-2.0, 3.0], np.float32)
    for slope in (0, 1, True, np.float32(0.5), np.int64(2), np.float64(-0.25), 0.5):
        want = _reference.leaky_relu(x, float(slope))
        assert_bitwise_equal(fastact.leaky_relu(x, slope), want)
        assert_bitwise_equal(fastact.leaky_relu(x, negative_slope=slope), want)


def test_default_slope_is_torchs():
    x = np.array([-1.0, 1.0], np.float32)
    assert_bitwise_equal(fastact.leaky_relu(x), _reference.leaky_relu(x, 0.01))
    assert_bitwise_equal(fastact.leaky_relu_grad(x), _reference.leaky_relu_grad(x, 0.01))
    assert_bitwise_equal(
        fastact.leaky_relu_backward(x, x), _reference.leaky_relu_backward(x, x, 0.01)
    )


def test_the_contract_on_named_values():
    # The semantics table, read off directly (the kernels and the reference both obey it).
    nan, inf = float("nan"), float("inf")
    for dtype in FLOAT_DTYPES:
        x = np.array([-0.0, 0.0, nan, -inf, inf, -2.0, 3.0], dtype)
        assert_bitwise_equal(
            fastact.relu(x), np.array([-0.0, 0.0, nan, 0.0, inf, 0.0, 3.0], dtype)
        )
        assert_bitwise_equal(fastact.relu_grad(x), np.array([0, 0, 1, 0, 1, 0, 1], dtype))
        assert_bitwise_equal(
            fastact.leaky_relu(x, 0.0), np.array([-0.0, 0.0, nan, nan, inf, -0.0, 3.0], dtype)
        )
        assert_bitwise_equal(
            fastact.leaky_relu_grad(x, 0.5), np.array([0.5, 0.5, 0.5, 0.5, 1, 0.5, 1], dtype)
        )
        g = np.array([nan, inf, 2.0, nan, -1.0, -inf, nan], dtype)
        assert_bitwise_equal(
            fastact.relu_backward(g, x), np.array([0.0, 0.0, 2.0, 0.0, -1.0, 0.0, nan], dtype)
        )
        assert_bitwise_equal(
            fastact.leaky_relu_backward(g, x, 0.5),
            np.array([nan, inf, 1.0, nan, -1.0, -inf, nan], dtype),
        )
    assert_bitwise_equal(fastact.relu(np.array([-128, 127], np.int8)), np.array([0, 127], np.int8))
    assert_bitwise_equal(fastact.relu(np.array([255], np.uint8)), np.array([255], np.uint8))


def test_float16_multiplies_in_float32():
    # Every float16 value times a slope, against the float32 product rounded once.
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    x = x[~np.isnan(x)]
    for slope in (0.01, 0.1, 0.3, 3.0):
        with np.errstate(over="ignore"):
            want = (x.astype(np.float32) * np.float32(slope)).astype(np.float16)
        want = np.where(x > 0, x, want)
        assert_bitwise_equal(fastact.leaky_relu(x, slope), want)


def test_show_config():
    cfg = fastact.show_config(print_out=False)
    assert cfg["version"] == fastact.__version__
    assert cfg["compiled"] == fastact.COMPILED
    assert set(cfg) >= {"kernel_dtypes", "compiler", "cflags", "cython", "numpy", "python"}
    if fastact.COMPILED:
        assert "float32" in cfg["kernel_dtypes"]["leaky_relu_backward"]
        assert "int8" in cfg["kernel_dtypes"]["relu"]
        assert "-ffast-math" not in cfg["cflags"]


def test_show_config_prints(capsys):
    fastact.show_config()
    printed = capsys.readouterr().out
    assert f"version: {fastact.__version__}" in printed
    assert "compiled:" in printed


def run_python(code: str, **env: str) -> str:
    # From an empty directory: `python -c` puts the working directory first on sys.path,
    # and from the repository root it would import the uncompiled source tree instead of
    # the installed package.
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            cwd=cwd,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return result.stdout + result.stderr


def test_environment_variable_forces_reference():
    code = (
        "import numpy as np, fastact, fastact._reference as r\n"
        "c = fastact.show_config(print_out=False)\n"
        "assert not c['compiled'] and c['disabled_by_env']\n"
        "x = np.linspace(-1, 1, 101, dtype=np.float32)\n"
        "assert np.array_equal(fastact.leaky_relu(x, 0.1), r.leaky_relu(x, 0.1))\n"
        "print('ok')\n"
    )
    assert run_python(code, FASTACT_DISABLE_COMPILED="1").strip() == "ok"


IMPORT_CHILD = """
import json, os, threading, time
import numpy as np

def threads():
    tasks = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    return [threading.active_count(), tasks]

before = threads()
start = time.perf_counter()
import fastact
seconds = time.perf_counter() - start
tiny = np.nextafter(np.float32(0), np.float32(1))
print(json.dumps({
    "seconds": seconds,
    "threads": [before, threads()],
    "compiled": fastact.COMPILED,
    "file": fastact.__file__,
    # -ffast-math in any linked object would turn on flush-to-zero for the whole process.
    "subnormals": bool(tiny > 0 and tiny * np.float32(2) > 0 and np.float64(5e-324) * 3 > 0),
    "relu_keeps_subnormal": bool(fastact.relu(np.array([tiny]))[0] == tiny),
}))
"""


def test_import_is_silent_quick_threadless_and_keeps_subnormals():
    # -W error (run_python): a warning raised during the import fails the child.
    runs = []
    for _ in range(5):
        lines = run_python(IMPORT_CHILD).splitlines()
        assert len(lines) == 1, f"the import printed something: {lines}"
        runs.append(json.loads(lines[0]))
    info = runs[0]
    disabled = os.environ.get(DISABLE_ENV_VAR, "") not in ("", "0")
    assert info["compiled"] or disabled, f"{info['file']}: the compiled extension is missing"
    assert all(r["threads"][0] == r["threads"][1] for r in runs), [r["threads"] for r in runs]
    assert info["subnormals"] and info["relu_keeps_subnormal"]
    # On top of NumPy's import; the fastest of five, so a busy machine does not decide.
    # An ASan build loads and initialises instrumented code several times slower.
    limit = 1.0 if SANITIZED else 0.1
    assert min(r["seconds"] for r in runs) < limit, [r["seconds"] for r in runs]


def test_python_m_fastact_prints_config():
    with tempfile.TemporaryDirectory() as cwd:  # not the repository root: see run_python
        result = subprocess.run(
            [sys.executable, "-m", "fastact"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert "version:" in result.stdout and "compiled:" in result.stdout
