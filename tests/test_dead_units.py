"""dead_units and dead_fraction: the compiled loop against the reference, and the API."""

import numpy as np
import pytest
from bitwise import (
    BFLOAT16_DTYPES,
    FLOAT_DTYPES,
    INT_DTYPES,
    KERNEL_FLOAT_DTYPES,
    assert_bitwise_equal,
    edge_values,
    finfo,
    python_runs_during,
    requires_compiled,
    sample,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact
from fastact import _reference

# Row counts around the folding of narrow blocks (256 flags, 4 rows per sweep).
ROWS = (*range(13), 63, 64, 65, 255, 256, 257, 600)
UNITS = (*range(71), 127, 128, 129, 255, 256, 257, 1000)
# Around the loop's block of flags (2048 units, read a chunk of 64 rows at a time when
# wider) and half of it (the narrow batches folded into wide rows).
WIDE_UNITS = (1023, 1024, 1025, 2047, 2048, 2049, 4096, 4100)
WIDE_ROWS = (1, 3, 4, 5, 63, 64, 65, 130)
ALIVE_VALUES = (np.nan, np.inf, 1.0)
DEAD_UNITS_DTYPES = KERNEL_FLOAT_DTYPES  # the compiled loop's (16-bit ones by their bits)


def kernel(x, axis):
    from fastact import _kernels

    return _kernels.dead_units(x, axis)


def with_dead_units(dtype, rows: int, units: int, rng: np.random.Generator) -> np.ndarray:
    """A (rows, units) batch in which about half the units are dead.

    Dead columns still hold every non-positive edge value (-0.0, -inf, -subnormal); some
    of them get a single alive value (NaN, +inf, a positive subnormal, 1) at a random row,
    which must be enough to bring the unit back.
    """
    x = sample(dtype, rows * units, rng).reshape(rows, units)
    dead = rng.random(units) < 0.5
    with np.errstate(invalid="ignore"):
        x[:, dead] = np.where(np.isnan(x[:, dead]), -0.0, -np.abs(x[:, dead]))
    tiny = finfo(dtype).smallest_subnormal
    for j in np.flatnonzero(dead & (rng.random(units) < 0.5)):
        if rows:
            x[rng.integers(rows), j] = rng.choice((*ALIVE_VALUES, tiny))
    return x


def expected(x, axis):
    return _reference.dead_units(x.astype(x.dtype.newbyteorder("=")), axis)


@requires_compiled
@pytest.mark.parametrize("dtype", DEAD_UNITS_DTYPES)
def test_kernel_every_shape_matches_reference(dtype):
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    for rows in ROWS:
        for units in UNITS if rows < 100 else UNITS[::7]:
            x = with_dead_units(dtype, rows, units, rng)
            got = kernel(x, 0)
            assert got is not None, f"declined a C-contiguous {x.shape} {np.dtype(dtype)}"
            assert_bitwise_equal(got, expected(x, 0))
            # The same data as a Fortran array, reduced along its trailing axis.
            assert_bitwise_equal(kernel(np.asfortranarray(x.T), 1), expected(x, 0))


@requires_compiled
@pytest.mark.parametrize("dtype", DEAD_UNITS_DTYPES)
def test_kernel_wide_batches_match_reference(dtype):
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    for rows in WIDE_ROWS:
        for units in WIDE_UNITS:
            x = with_dead_units(dtype, rows, units, rng)
            assert_bitwise_equal(kernel(x, 0), expected(x, 0))
            # A single alive value in the last row of the last chunk, in the last unit.
            x[-1, -1] = x.dtype.type(1.0)
            assert_bitwise_equal(kernel(x, 0), expected(x, 0))
    # One unit, its samples folded into rows of up to 2048 places and the rest one by one.
    for n in (2047, 2048, 2049, 4097, 6000):
        x = with_dead_units(dtype, n, 1, rng)
        assert_bitwise_equal(kernel(x, 0), expected(x, 0))
        x = -abs(x.ravel())
        assert_bitwise_equal(kernel(x, 0), expected(x, 0))
        x[-1] = x.dtype.type(1.0)
        assert_bitwise_equal(kernel(x, 0), expected(x, 0))


@requires_compiled
@pytest.mark.parametrize("dtype", DEAD_UNITS_DTYPES)
def test_kernel_every_edge_value_alone_and_in_every_row(dtype):
    edges = edge_values(dtype)
    # Column j holds edge j in one row and -1 in all others: dead iff edge j <= 0.
    for rows in (1, 2, 3, 4, 5, 9, 300):
        for row in sorted({0, rows // 2, rows - 1}):
            x = np.full((rows, edges.size), -1, dtype)
            x[row] = edges
            assert_bitwise_equal(kernel(x, 0), edges <= 0)
            assert_bitwise_equal(kernel(x, 0), expected(x, 0))


@requires_compiled
@pytest.mark.parametrize("dtype", (np.float16, *BFLOAT16_DTYPES))
def test_kernel_every_16_bit_pattern(dtype):
    # The 16-bit loop compares bits as integers: every pattern (±0, subnormals, ±inf,
    # NaNs of either sign) against float32's compare of the exactly widened value, as a
    # row of units and (every 97th) as one sample among negative ones.
    x = np.arange(1 << 16, dtype=np.uint16).view(dtype)
    want = x.astype(np.float32) <= 0
    assert_bitwise_equal(kernel(x.reshape(1, -1), 0), want)
    for i, (v, dead) in enumerate(zip(x[::97], want[::97], strict=True)):
        samples = np.full((7, 3), -1, dtype)
        samples[i % 7, i % 3] = v
        assert kernel(samples, 0)[i % 3] == dead


@requires_compiled
@pytest.mark.parametrize("dtype", DEAD_UNITS_DTYPES)
def test_kernel_covers_n_d_arrays_along_their_slowest_axis(dtype):
    rng = np.random.default_rng(3)
    for shape in ((0, 3, 4), (5, 0, 2), (6, 3, 4), (9, 2, 3, 5), (4,), (0,), (300,)):
        x = with_dead_units(dtype, shape[0], int(np.prod(shape[1:])), rng).reshape(shape)
        assert_bitwise_equal(kernel(x, 0), expected(x, 0))
        f = np.asfortranarray(np.moveaxis(x, 0, -1))
        assert_bitwise_equal(kernel(f, -1), expected(x, 0))
        assert_bitwise_equal(kernel(f, f.ndim - 1), expected(x, 0))


@requires_compiled
def test_kernel_declines_what_it_does_not_cover():
    x = np.zeros((4, 6), np.float32)
    declined = [
        (x.astype(x.dtype.newbyteorder()), 0),
        (x[:, ::2], 0),
        (x, 1),
        (x, -1),
        (np.asfortranarray(x), 0),
        (x.astype(np.int32), 0),
        (x.tolist(), 0),
        (np.float32(1.0), 0),
        (np.array(1.0, np.float32), 0),
        (x, 2),
        (x, -3),
        (x, 2**80),
        (x, np.int64(0)),
        (x, None),
        (x, 0.0),
    ]
    for args in declined:
        assert kernel(*args) is None, args


def layouts(dtype, rng):
    """Batches of every layout the public functions accept."""
    base = with_dead_units(dtype, 6, 7, rng)
    mis = np.frombuffer(bytearray(b"\0" + base.tobytes()), dtype, offset=1).reshape(6, 7)
    yield "2-D C", base
    yield "2-D F", np.asfortranarray(base)
    yield "3-D C", with_dead_units(dtype, 5, 12, rng).reshape(5, 3, 4)
    yield "3-D F", np.asfortranarray(with_dead_units(dtype, 5, 12, rng).reshape(5, 3, 4))
    yield "strided", base[::2, ::3]
    yield "transposed slice", base[:, 1:5].T
    yield "byte-swapped", base.astype(base.dtype.newbyteorder())
    yield "misaligned", mis
    yield "read-only", np.frombuffer(base.tobytes(), dtype).reshape(6, 7)
    yield "1-D", base[:, 0].copy()
    yield "empty rows", base[:0]
    yield "empty units", base[:, :0]
    yield "broadcast (zero stride)", np.broadcast_to(base[:1], (5, 7))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_every_layout_and_axis_matches_reference(dtype):
    rng = np.random.default_rng(5)
    for label, x in layouts(dtype, rng):
        for axis in range(-x.ndim, x.ndim):
            want = expected(x, axis)
            got = fastact.dead_units(x, axis)
            assert_bitwise_equal(got, want)
            if x.ndim == 1:
                assert isinstance(got, np.bool_), label
            else:
                assert isinstance(got, np.ndarray), label
            fraction = fastact.dead_fraction(x, axis=axis)
            assert type(fraction) is float
            assert fraction == (want.mean() if want.size else 0.0), label


def test_the_contract_on_named_values():
    # Dead means relu_grad is 0 for every sample: ±0 and -inf are dead, NaN is alive.
    nan, inf = float("nan"), float("inf")
    for dtype in FLOAT_DTYPES:
        tiny = np.finfo(dtype).smallest_subnormal
        x = np.array([[-0.0, 0.0, nan, -inf, inf, -2.0, 3.0, -tiny, tiny]], dtype)
        x = np.repeat(x, 3, axis=0)
        want = np.array([1, 1, 0, 1, 0, 1, 0, 1, 0], bool)
        assert_bitwise_equal(fastact.dead_units(x), want)
        assert_bitwise_equal(fastact.dead_units(x), np.all(fastact.relu_grad(x) == 0, axis=0))
        assert fastact.dead_fraction(x) == 5 / 9
        assert fastact.dead_units(x[:, 2]) == np.False_


def test_no_samples_means_every_unit_is_dead():
    x = np.empty((0, 4), np.float32)
    assert_bitwise_equal(fastact.dead_units(x), np.ones(4, bool))
    assert fastact.dead_fraction(x) == 1.0
    assert fastact.dead_units(np.empty(0)) == np.True_


def test_no_units_means_a_fraction_of_zero():
    for x in (np.empty((5, 0)), np.empty((0, 0)), np.empty((3, 0, 2), np.float16)):
        assert fastact.dead_units(x).shape == x.shape[1:]
        assert fastact.dead_fraction(x) == 0.0


def test_axis_accepts_any_integer():
    x = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, 6.0]])
    for axis in (1, -1, np.int64(1), np.int8(-1)):
        assert_bitwise_equal(fastact.dead_units(x, axis), np.array([True, False]))
        assert_bitwise_equal(fastact.dead_units(x, axis=axis), np.array([True, False]))
    assert_bitwise_equal(fastact.dead_units(x.tolist()), np.array([True, True, False]))


BAD_DTYPES = (
    *(np.dtype(d) for d in INT_DTYPES),
    np.dtype(bool),
    np.dtype(np.complex128),
    np.dtype(object),
    np.dtype("U3"),
)


@pytest.mark.parametrize("name", ["dead_units", "dead_fraction"])
def test_bad_input_raises_named_error(name):
    func = getattr(fastact, name)
    x = np.zeros((3, 2), np.float32)
    bad = [((x.astype(d),), TypeError, f"pre_activation has dtype {d}") for d in BAD_DTYPES]
    bad += [
        ((x, None), TypeError, "axis must be an int, not NoneType"),
        ((x, 1.0), TypeError, "axis must be an int, not float"),
        ((x, True), TypeError, "axis must be an int, not bool"),
        ((x, "0"), TypeError, "axis must be an int, not str"),
        ((x, 2), np.exceptions.AxisError, "axis 2 is out of bounds"),
        ((x, -3), ValueError, "axis -3 is out of bounds"),
        ((x, 2**64), np.exceptions.AxisError, f"axis {2**64} is out of bounds"),
        ((x, -(2**80)), np.exceptions.AxisError, f"axis {-(2**80)} is out of bounds"),
        ((np.float32(1.0),), ValueError, "for array of dimension 0"),
        (([[1.0], [2.0, 3.0]],), ValueError, "pre_activation cannot be converted"),
    ]
    for args, error, words in bad:
        with pytest.raises(error) as info:
            func(*args)
        assert words in str(info.value), (args, str(info.value))
        assert f"fastact.{name}" in str(info.value)


def test_inputs_are_never_modified():
    rng = np.random.default_rng(8)
    for dtype in FLOAT_DTYPES:
        x = with_dead_units(dtype, 40, 9, rng)
        before = x.copy()
        fastact.dead_units(x)
        fastact.dead_fraction(np.asfortranarray(x), axis=-1)
        assert_bitwise_equal(x, before)


@settings(max_examples=200, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from(FLOAT_DTYPES),
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=9),
        elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": True},
    ),
    axis_seed=st.integers(0, 1000),
    fortran=st.booleans(),
)
def test_any_shape_order_and_axis_matches_reference(x, axis_seed, fortran):
    x = np.asfortranarray(x) if fortran else x
    axis = axis_seed % (2 * x.ndim) - x.ndim
    assert_bitwise_equal(fastact.dead_units(x, axis), expected(x, axis))


@requires_compiled
@pytest.mark.slow
def test_python_thread_progresses_during_a_long_call():
    x = -np.abs(np.random.default_rng(0).standard_normal((1 << 12, 1 << 12), np.float32))
    assert python_runs_during(lambda: fastact.dead_units(x)), (
        "no Python code ran during the calls: the GIL was held"
    )
