"""dask and xarray: lazy, chunked, distributed; the same bits as on the whole array."""

import numpy as np
import pytest
from bitwise import assert_bitwise_equal, requires_compiled, sample

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
