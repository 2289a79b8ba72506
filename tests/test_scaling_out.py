"""dask and xarray: lazy, chunked, distributed; the same bits as on the whole array."""

import math

import numpy as np
import pytest
from bitwise import BINARY, args_for, assert_bitwise_equal, requires_compiled, sample
from composites import COMPOSITE_CASES, assert_sum_close, sum_ulps

import fastact
from fastact import ufunc

da = pytest.importorskip("dask.array")

# Duck arrays go to the ufunc forms, which are part of the compiled extension.
pytestmark = requires_compiled


def chunked(seed=0):
    x = sample(np.float32, 40_000, np.random.default_rng(seed)).reshape(200, 200)
    return x, da.from_array(x, chunks=(64, 50))


def test_main_function_keeps_dask_lazy():
    x, dx = chunked()
    result = fastact.relu(dx)
    assert isinstance(result, da.Array), type(result)
    assert result.chunks == dx.chunks
    assert_bitwise_equal(result.compute(scheduler="threads"), fastact.relu(x))


def test_backward_on_dask_threaded():
    x, dx = chunked(1)
    g, dg = chunked(2)
    result = fastact.leaky_relu_backward(dg, dx, 0.1)
    assert isinstance(result, da.Array)
    assert_bitwise_equal(
        result.compute(scheduler="threads"), fastact.leaky_relu_backward(g, x, 0.1)
    )


@pytest.mark.slow
def test_local_cluster_processes():
    distributed = pytest.importorskip("distributed")
    x, dx = chunked(3)
    g, dg = chunked(4)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        relu, backward = client.compute(
            [fastact.relu(dx), fastact.leaky_relu_backward(dg, dx, 0.2)], sync=True
        )
    assert_bitwise_equal(relu, fastact.relu(x))
    assert_bitwise_equal(backward, fastact.leaky_relu_backward(g, x, 0.2))


def test_xarray_keeps_dims_and_coords():
    xr = pytest.importorskip("xarray")
    x = sample(np.float64, 12, np.random.default_rng(5)).reshape(3, 4)
    arr = xr.DataArray(x, dims=("batch", "unit"), coords={"unit": list("abcd")})
    for result in (fastact.relu(arr), ufunc.leaky_relu(arr, 0.1)):
        assert isinstance(result, xr.DataArray)
        assert result.dims == ("batch", "unit")
        assert list(result.coords["unit"].values) == list("abcd")
    assert_bitwise_equal(fastact.relu(arr).values, fastact.relu(x))
    assert_bitwise_equal(ufunc.leaky_relu(arr, 0.1).values, fastact.leaky_relu(x, 0.1))


# ---------------------------------------------------------------------------------------
# The composites that are not one ufunc: PReLU's backward pass and RReLU's training draws
# build their own lazy graphs.


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "chunks", "channels"),
    [((6, 4, 50), (4, 3, 16), 4), ((6, 4, 50), (4, 3, 16), 1), ((300,), 64, 1), ((9, 5), 4, 5)],
)
def test_prelu_backward_stays_lazy(dtype, shape, chunks, channels):
    rng = np.random.default_rng(7)
    x, g = (sample(dtype, math.prod(shape), rng).reshape(shape) for _ in range(2))
    x[0] = np.abs(rng.standard_normal(shape[1:])).astype(dtype)  # some x > 0 everywhere
    w = sample(dtype, channels, rng)
    dx, dg = da.from_array(x, chunks=chunks), da.from_array(g, chunks=chunks)
    grad_input, grad_weight = fastact.prelu_backward(dg, dx, w)
    assert isinstance(grad_input, da.Array) and isinstance(grad_weight, da.Array)
    assert grad_input.chunks == dx.chunks
    eager_input, eager_weight = fastact.prelu_backward(g, x, w)
    got_input, got_weight = da.compute(grad_input, grad_weight, scheduler="threads")
    assert_bitwise_equal(got_input, eager_input)
    assert got_weight.shape == np.shape(eager_weight) == w.shape
    assert got_weight.dtype == np.asarray(eager_weight).dtype == w.dtype
    # The documented accuracy: float64 sums rounded once, as the eager call's...
    case = COMPOSITE_CASES["prelu_backward"]
    terms = case.sum_terms({"grad_output": g, "x": x, "weight": w})[0]
    assert_sum_close(got_weight, terms, sum_ulps(dtype))
    # ...and the same bits for the same chunks, on any scheduler, from a graph built anew.
    _, again = fastact.prelu_backward(dg, dx, w)
    assert_bitwise_equal(again.compute(scheduler="synchronous"), got_weight)


def test_prelu_backward_lazy_checks_first():
    dx = da.ones((4, 3), chunks=2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\)"):
        fastact.prelu_backward(dx, dx, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="grad_output has dtype float64"):
        fastact.prelu_backward(dx.astype(np.float64), dx, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="grad_output has shape"):
        fastact.prelu_backward(dx[:2], dx, np.ones(3, np.float32))


def chunk_slices(chunks):
    """The index of every chunk, in C order of the chunk grid."""
    import itertools

    bounds = [np.cumsum((0, *c)) for c in chunks]
    for index in itertools.product(*(range(len(c)) for c in chunks)):
        yield tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, index, strict=True))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rrelu_training_stays_lazy_by_the_documented_rule(dtype):
    x = sample(dtype, 70 * 30, np.random.default_rng(8)).reshape(70, 30)
    dx = da.from_array(x, chunks=(32, 12))
    y, noise = fastact.rrelu(dx, 0.1, 0.3, training=True, rng=11)
    assert isinstance(y, da.Array) and isinstance(noise, da.Array)
    assert y.chunks == dx.chunks == noise.chunks
    got_y, got_noise = da.compute(y, noise, scheduler="threads")
    # Chunk k (C order of the grid) draws as the eager function on that chunk alone, from
    # the k-th generator rng.spawn(number of chunks) gives.
    children = np.random.default_rng(11).spawn(dx.npartitions)
    for child, where in zip(children, chunk_slices(dx.chunks), strict=True):
        want_y, want_noise = fastact.rrelu(x[where], 0.1, 0.3, training=True, rng=child)
        assert_bitwise_equal(got_y[where], want_y)
        assert_bitwise_equal(got_noise[where], want_noise)
    # Same seed, same chunks: same bits, whatever the scheduler.
    again = fastact.rrelu(dx, 0.1, 0.3, training=True, rng=np.random.default_rng(11))
    for a, b in zip(da.compute(*again, scheduler="synchronous"), (got_y, got_noise), strict=True):
        assert_bitwise_equal(a, b)
    # One Generator: each call spawns new children, as each eager call draws new slopes.
    generator = np.random.default_rng(11)
    first, second = (fastact.rrelu(dx, training=True, rng=generator)[1] for _ in range(2))
    assert not np.array_equal(first.compute(), second.compute())
    # The backward pass stays lazy too: grad_output * noise.
    grad = fastact.rrelu_backward(dx, dx, 0.1, 0.3, training=True, noise=noise)
    assert isinstance(grad, da.Array)
    assert_bitwise_equal(
        grad.compute(), fastact.rrelu_backward(x, x, 0.1, 0.3, training=True, noise=got_noise)
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rrelu_lazy_training_backward_is_as_quiet_as_the_eager_one(dtype, recwarn):
    # A product that overflows to inf (or 0 * inf) is the gradient's value, no warning,
    # eagerly; computing the lazy one later, outside any errstate, must not warn either
    # (the reference build's lazy product is NumPy's own multiply, with NumPy's warnings).
    big = np.finfo(dtype).max
    g = np.array([big, -big, 0.0, np.inf, 1.0, np.nan], dtype)
    noise = np.array([4.0, 4.0, np.inf, 0.0, 0.25, 1.0], dtype)
    x = np.full_like(g, -1)
    want = fastact.rrelu_backward(g, x, training=True, noise=noise)
    lazy = fastact.rrelu_backward(
        da.from_array(g, chunks=4), da.from_array(x, chunks=4), training=True, noise=noise
    )
    assert_bitwise_equal(lazy.compute(), want)
    assert np.isinf(want[:2]).all() and np.isnan(want[2:4]).all()
    warned = [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert not warned or not fastact.COMPILED


def test_rrelu_lazy_draws_are_uniform():
    # Kolmogorov-Smirnov against U[lower, upper] over every chunk's draws.
    dx = da.full((400, 500), -1.0, chunks=(100, 125))
    _, noise = fastact.rrelu(dx, 0.25, 0.75, training=True, rng=2025)
    r = np.sort((noise.compute().ravel() - 0.25) / 0.5)
    n = r.size
    gap = max(np.max(np.arange(1, n + 1) / n - r), np.max(r - np.arange(n) / n))
    assert gap < 1.95 / np.sqrt(n), gap


def test_rrelu_lazy_refuses_what_it_cannot_keep_lazy():
    dx = da.ones(10, chunks=5, dtype=np.float32)
    with pytest.raises(TypeError, match="out must be None for a dask array"):
        fastact.rrelu(dx, training=True, rng=1, out=np.empty(10, np.float32))
    with pytest.raises(TypeError, match="x has dtype int64"):
        fastact.rrelu(da.ones(10, chunks=5, dtype=np.int64), training=True)
    with pytest.raises(ValueError, match="upper=1e\\+39 overflows"):
        fastact.rrelu(dx, 0.1, 1e39, training=True)
    # Evaluation is leaky_relu at the mean slope: lazy through the ufunc.
    assert isinstance(fastact.rrelu(dx), da.Array)


# Each lazy entry point, called with an out (None: its eager result, for comparison).
LAZY_OUT_CALLS = {
    "relu": lambda dx, out: fastact.relu(dx, out=out),
    "leaky_relu_backward": lambda dx, out: fastact.leaky_relu_backward(dx, dx, 0.1, out=out),
    "prelu": lambda dx, out: fastact.prelu(dx, np.full(dx.shape[1], 0.25, dx.dtype), out=out),
    "prelu_backward": lambda dx, out: fastact.prelu_backward(
        dx, dx, np.full(dx.shape[1], 0.25, dx.dtype), out=out
    )[0],
    "rrelu_backward": lambda dx, out: fastact.rrelu_backward(
        dx, dx, training=True, noise=np.full_like(dx, 0.25), out=out
    ),
}


@pytest.mark.parametrize("name", list(LAZY_OUT_CALLS))
def test_lazy_out_is_checked_like_an_eager_one(name):
    # A dask out of the result's dtype and shape is written through dask's own ufunc
    # protocol; one of another dtype or shape, or a NumPy out (which dask cannot write
    # lazily), is the documented TypeError/ValueError naming out, not dask's own
    # NotImplementedError or a silent change of out's dtype.
    x, dx = chunked(5)
    call = LAZY_OUT_CALLS[name]
    want = call(x, None)
    out = da.zeros(x.shape, chunks=dx.chunks, dtype=x.dtype)
    assert call(dx, out) is out
    assert_bitwise_equal(out.compute(), want)
    other = da.zeros(x.shape, chunks=dx.chunks, dtype=np.float64)
    with pytest.raises(TypeError, match=rf"^fastact\.{name}: out has dtype float64"):
        call(dx, other)
    assert other.dtype == np.float64
    with pytest.raises(ValueError, match=rf"^fastact\.{name}: out has shape \(200, 201\)"):
        call(dx, da.zeros((200, 201), dtype=x.dtype))
    eager_out = np.full(x.shape, 7, x.dtype)
    with pytest.raises(TypeError, match=rf"^fastact\.{name}: out is a numpy\.ndarray, which"):
        call(dx, eager_out)
    assert (eager_out == 7).all()


XARRAY_CALLS = {
    "relu": lambda x, out: fastact.relu(x, out=out),
    "leaky_relu": lambda x, out: fastact.leaky_relu(x, 0.1, out=out),
    "relu_backward": lambda x, out: fastact.relu_backward(x, x, out=out),
    "hardtanh": lambda x, out: fastact.hardtanh(x, out=out),
    "threshold": lambda x, out: fastact.threshold(x, 0.5, 2.0, out=out),
    "prelu": lambda x, out: fastact.prelu(x, np.float32(0.25), out=out),
    "rrelu": lambda x, out: fastact.rrelu(x, out=out),
    "rrelu_backward": lambda x, out: fastact.rrelu_backward(x, x, out=out),
}


@pytest.mark.parametrize("name", XARRAY_CALLS)
def test_xarray_out_is_a_type_error(name):
    # xarray refuses an xarray out; a NumPy one it writes, but returns a new DataArray
    # around it (not out, as the functions promise): both refused before any write.
    xr = pytest.importorskip("xarray")
    x = xr.DataArray(np.float32([[-1.0, 2.0, 0.5]]), dims=("n", "c"))
    for out in (
        xr.DataArray(np.full((1, 3), 7, np.float32), dims=("n", "c")),
        np.full((1, 3), 7, np.float32),
    ):
        kind = type(out).__module__.partition(".")[0] + r"\." + type(out).__name__
        with pytest.raises(TypeError, match=rf"^fastact\.{name}: out is a {kind}"):
            XARRAY_CALLS[name](x, out)
        assert (np.asarray(out) == 7).all()


# The composites that keep a dask array lazy; every other one refuses it, as dead_units
# does, rather than compute the whole graph into a NumPy array behind the caller's back.
KEEP_DASK_LAZY = {"prelu", "prelu_backward", "rrelu", "rrelu_backward"}


def _poisoned(x: np.ndarray):
    """A dask array like ``x`` whose computation fails: proof that nothing computed it."""
    import dask

    def never():
        raise AssertionError("the dask array was computed")

    return da.from_delayed(dask.delayed(never)(), shape=x.shape, dtype=x.dtype)


@pytest.mark.parametrize("name", [*COMPOSITE_CASES, "dead_units", "dead_fraction"])
def test_dask_input_stays_lazy_or_is_refused(name):
    from composites import build_call

    x = sample(np.float32, 6 * 8, np.random.default_rng(3)).reshape(6, 8)
    if name in COMPOSITE_CASES:
        case = COMPOSITE_CASES[name]
        call = build_call(case, np.float32, x.shape, np.random.default_rng(4))
        first = case.arrays[0]
        call[first] = _poisoned(call[first])
        run = lambda: case.call(call)  # noqa: E731
    else:
        run = lambda: getattr(fastact, name)(_poisoned(x))  # noqa: E731
    if name in KEEP_DASK_LAZY:
        results = run()
        assert all(isinstance(r, da.Array) for r in results), [type(r) for r in results]
    else:
        first = case.arrays[0] if name in COMPOSITE_CASES else "pre_activation"
        with pytest.raises(TypeError, match=rf"{first} is of type dask\.Array.*numpy\.asarray"):
            run()


def test_xarray_input_keeps_its_labels_or_is_refused():
    xr = pytest.importorskip("xarray")
    x = xr.DataArray(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4), dims=("n", "c"))
    w = np.full(4, 0.25, np.float32)
    for labelled in (fastact.prelu(x, w), fastact.rrelu(x), fastact.relu(x)):
        assert isinstance(labelled, xr.DataArray) and labelled.dims == ("n", "c")
    refused = {
        "prelu_backward": lambda: fastact.prelu_backward(x, x, w),
        "rrelu": lambda: fastact.rrelu(x, training=True, rng=0),
        "relu_with_mask": lambda: fastact.relu_with_mask(x),
        "bias_relu": lambda: fastact.bias_relu(x, w),
        "dead_units": lambda: fastact.dead_units(x),
    }
    for name, run in refused.items():
        with pytest.raises(TypeError, match=rf"^fastact\.{name}: .* is of type xarray"):
            run()


def test_prelu_on_a_duck_array_checks_its_weight_as_the_eager_call():
    x = da.ones((4, 3), chunks=2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"weight has shape \(5,\) but x has shape \(4, 3\)"):
        fastact.prelu(x, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="weight has dtype float64 but x has dtype float32"):
        fastact.prelu(x, np.ones(3, np.float64))


# A backward pass pairs grad_output with x element by element. Beside a duck array, the
# other operand's shape and dtype are checked as on the NumPy path, and labelled types
# (xarray, pandas) must carry the same labels: their ufunc protocol would broadcast other
# dimension names into an outer product and align other indexes into a join.


@pytest.mark.parametrize("name", BINARY)
def test_backward_beside_a_dask_array_checks_the_other_operand(name):
    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float32)
    dx = da.from_array(x, chunks=2)
    func = getattr(fastact, name)
    with pytest.raises(ValueError, match=rf"^fastact\.{name}: grad_output has shape \(3, 1\)"):
        func(*args_for(name, dx, [[1.0], [2.0], [3.0]], 0.1))
    with pytest.raises(TypeError, match=rf"^fastact\.{name}: grad_output has dtype float64"):
        func(*args_for(name, dx, [1.0] * 4, 0.1))
    g = np.ones(4, np.float32)
    lazy = func(*args_for(name, dx, g, 0.1))
    assert isinstance(lazy, da.Array)
    assert_bitwise_equal(lazy.compute(), func(*args_for(name, x, g, 0.1)))


@pytest.mark.parametrize("name", BINARY)
def test_backward_refuses_labels_that_would_broadcast_or_align(name):
    xr = pytest.importorskip("xarray")
    values = np.array([-1.0, 2.0, -3.0, 4.0], np.float32)
    func = getattr(fastact, name)
    x = xr.DataArray(values, dims="u", coords={"u": [0, 1, 2, 3]})
    other_dims = xr.DataArray(np.ones(4, np.float32), dims="batch")
    other_index = xr.DataArray(np.ones(4, np.float32), dims="u", coords={"u": [2, 3, 4, 5]})
    with pytest.raises(ValueError, match=rf"^fastact\.{name}: .* differ in their dims"):
        func(*args_for(name, x, other_dims, 0.1))
    with pytest.raises(ValueError, match=rf"^fastact\.{name}: .* differ in their index along 'u'"):
        func(*args_for(name, x, other_index, 0.1))
    # The same labels, or none on one side, pair element by element.
    for g in (x.copy(data=np.ones(4, np.float32)), xr.DataArray(np.ones(4, np.float32), dims="u")):
        result = func(*args_for(name, x, g, 0.1))
        assert result.dims == ("u",)
        assert_bitwise_equal(
            result.values, func(*args_for(name, values, np.ones(4, np.float32), 0.1))
        )
    pd = pytest.importorskip("pandas")
    series = pd.Series(values, index=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=rf"^fastact\.{name}: .* differ in their index"):
        func(*args_for(name, series, pd.Series(np.ones(4, np.float32), index=[4, 5, 6, 7]), 0.1))


def test_backward_on_dask_arrays_of_unknown_length():
    # A boolean selection leaves dask a NaN length: it matches any, as it does for out.
    x = np.array([-1.0, 2.0, -3.0, 4.0, 0.5], np.float32)
    dx = da.from_array(x, chunks=2)
    selected, kept = dx[dx > 0], x[x > 0]
    g = da.full_like(selected, 3.0)
    assert math.isnan(selected.shape[0])
    assert_bitwise_equal(
        fastact.relu_backward(g, selected).compute(),
        fastact.relu_backward(np.full(3, 3.0, np.float32), kept),
    )
    noise = da.full_like(selected, 0.5)
    trained = fastact.rrelu_backward(g, selected, training=True, noise=noise).compute()
    assert_bitwise_equal(trained, np.full(3, 1.5, np.float32))
    grad_input, grad_weight = fastact.prelu_backward(g, selected, np.float32(0.25))
    assert_bitwise_equal(grad_input.compute(), np.full(3, 3.0, np.float32))
    assert_bitwise_equal(grad_weight.compute(), np.float32(0.0))


def test_a_duck_dtype_numpy_cannot_interpret_is_named():
    pd = pytest.importorskip("pandas")
    nullable = pd.Series([1.0, None], dtype="Float32")
    with pytest.raises(TypeError, match=r"^fastact\.relu: x has dtype Float32, which is not a"):
        fastact.relu(nullable)
    with pytest.raises(TypeError, match=r"^fastact\.relu_backward: grad_output has dtype Float32"):
        fastact.relu_backward(nullable, nullable)
