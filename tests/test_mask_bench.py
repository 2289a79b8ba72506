"""bench/mask_bench.py: the mask path trains the same weights, bit for bit, as the x path."""

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "mask_bench.py"


def load():
    spec = importlib.util.spec_from_file_location("mask_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mask_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_mask_path_gives_the_same_weights_after_every_epoch():
    bench = load()
    config = replace(bench.experiment.QUICK, n_per_class=40, hidden=(16, 16))
    assert bench.same_weights(config, epochs=4)


def test_bias_path_stays_close():
    bench = load()
    config = replace(bench.experiment.QUICK, n_per_class=40, hidden=(16, 16))
    data = bench.experiment.make_data(config)
    by_x, _ = bench.train(config, data, "x", 0, 3)
    by_bias, _ = bench.train(config, data, "bias+mask", 0, 3)
    for mine, theirs in zip(by_bias[-1], by_x[-1], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


def test_kernel_rows_run():
    rows = load().kernel_rows(4096, rounds=1)
    assert {row["case"] for row in rows} >= {"relu_with_mask(x)", "relu_backward_mask(g, mask)"}
    assert all(row["GB/s"] > 0 for row in rows)
