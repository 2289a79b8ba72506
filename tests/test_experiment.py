"""The ReLU experiment in bench/: it learns, and its dead-unit numbers are right."""

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import fastact

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "relu_experiment.py"


@pytest.fixture(scope="module")
def ex():
    spec = importlib.util.spec_from_file_location("relu_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def data(ex):
    return ex.make_data(ex.QUICK)


def activation(ex, name):
    return next(a for a in ex.activations() if a.name == name)


def numpy_dead_fractions(model, x, slope=0.0):
    """Straight from the definition: the hidden pre-activations, then all(z <= 0)."""
    fractions = []
    a = x
    for w, b in zip(model.weights[:-1], model.biases[:-1], strict=True):
        z = a @ w + b
        fractions.append(np.all(z <= 0, axis=0).mean())
        a = np.where(z > 0, z, slope * z)
    return fractions


def test_spirals_are_balanced_standardised_and_reproducible(ex, data):
    assert np.bincount(data.y_train).min() > 0.6 * len(data.y_train) / data.n_classes
    x, _ = ex.spirals(100, 3, 0.2, seed=0)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-5)
    assert np.array_equal(x, ex.spirals(100, 3, 0.2, seed=0)[0])


@pytest.mark.parametrize("name", ["relu", "leaky_relu(0.1)", "tanh (He init)"])
def test_training_lowers_the_loss(ex, data, name):
    run, _ = ex.train(ex.QUICK, data, activation(ex, name), ex.Setting("lr=0.5", 0.5), seed=0)
    assert len(run.train_loss) == ex.QUICK.epochs + 1
    assert not run.diverged
    assert run.train_loss[-1] < 0.85 * run.train_loss[0], run.train_loss
    assert run.train_accuracy[-1] > 1.2 / data.n_classes


@pytest.mark.parametrize(("name", "slope"), [("relu", 0.0), ("leaky_relu(0.1)", 0.1)])
def test_dead_fractions_match_a_direct_numpy_computation(ex, data, name, slope):
    act = activation(ex, name)
    setting = ex.Setting("bias=-2", 0.5, bias_init=-2.0)
    run, model = ex.train(ex.QUICK, data, act, setting, seed=1)
    sizes = (2, *ex.QUICK.hidden, data.n_classes)
    initial = ex.init_mlp(sizes, act, setting.bias_init, np.random.default_rng(1))
    assert [curve[0] for curve in run.dead_fraction] == numpy_dead_fractions(initial, data.x_train)
    final = numpy_dead_fractions(model, data.x_train, slope)
    assert [curve[-1] for curve in run.dead_fraction] == final
    # Not a comparison of zeros: the negative bias kills units from the start.
    assert min(final) > 0


def test_a_dead_first_layer_relu_unit_never_comes_back(ex, data):
    # Its inputs are the fixed data and its weights get no gradient: the textbook claim
    # holds exactly in the first layer (later layers see inputs that keep changing).
    for setting in ex.QUICK.settings:
        for seed in ex.QUICK.seeds:
            run, _ = ex.train(ex.QUICK, data, activation(ex, "relu"), setting, seed)
            assert np.all(np.diff(run.dead_fraction[0]) >= 0)
            assert run.revived[0] == 0.0


def test_same_seed_same_numbers(ex, data):
    config = replace(ex.QUICK, epochs=3)
    act, setting = activation(ex, "leaky_relu(0.01)"), ex.QUICK.settings[0]
    first, _ = ex.train(config, data, act, setting, seed=4)
    second, _ = ex.train(config, data, act, setting, seed=4)
    first.epoch_seconds = second.epoch_seconds = []
    assert first == second


def test_a_diverging_run_is_reported_not_warned(ex, data):
    config = replace(ex.QUICK, epochs=5)
    run, _ = ex.train(config, data, activation(ex, "relu"), ex.Setting("huge", 1e6), seed=0)
    assert run.diverged
    assert not np.isfinite(run.train_loss[-1])


@pytest.mark.slow
def test_quick_command_writes_tables_and_json(tmp_path):
    report = tmp_path / "relu.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-plots", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for title in ("1. Convergence", "3/4. Dead units", "2. Activation forward + backward"):
        assert title in result.stdout
    data = json.loads(report.read_text())
    assert len(data["runs"]) == len(data["config"]["seeds"]) * (7 + 3)
    assert data["timing"]["epoch"]["relu"]["fastact"] > 0
    assert data["metadata"]["fastact"]["compiled"] is fastact.COMPILED
    assert all(r["train_loss"][-1] < r["train_loss"][0] for r in data["runs"][:3])


@pytest.mark.slow
def test_plots(ex, tmp_path):
    pytest.importorskip("matplotlib")
    results = ex.run_experiment(replace(ex.QUICK, epochs=2, timing_rounds=1), progress=False)
    paths = ex.plot(results, tmp_path / "run")
    assert len(paths) == 3
    assert all(p.stat().st_size > 10_000 for p in paths)
