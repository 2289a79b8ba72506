"""The ReLU experiment in bench/: it learns, its dead-unit numbers are right, PReLU and RReLU
train as they should, and the digits are loaded honestly."""

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


@pytest.mark.parametrize("name", ["leaky_relu(0.01)", "prelu", "rrelu"])
def test_same_seed_same_numbers(ex, data, name):
    config = replace(ex.QUICK, epochs=3)
    act, setting = activation(ex, name), ex.QUICK.settings[0]
    first, _ = ex.train(config, data, act, setting, seed=4)
    second, _ = ex.train(config, data, act, setting, seed=4)
    other, _ = ex.train(config, data, act, setting, seed=5)
    first.epoch_seconds = second.epoch_seconds = other.epoch_seconds = []
    assert first == second
    assert first.train_loss != other.train_loss


def test_prelu_learns_one_slope_per_unit_without_touching_the_other_weights(ex, data):
    act = activation(ex, "prelu")
    config = replace(ex.QUICK, epochs=5)
    run, model = ex.train(config, data, act, ex.QUICK.settings[0], seed=0)
    assert [w.shape for w in model.slopes] == [(units,) for units in config.hidden]
    for slopes in model.slopes:
        assert slopes.dtype == np.float32
        assert np.all(np.isfinite(slopes))
        # Every unit its own slope, moved away from the initial 0.25.
        assert len(np.unique(slopes)) > len(slopes) // 2
        assert np.mean(np.abs(slopes - 0.25)) > 1e-3
    assert run.slopes == [w.tolist() for w in model.slopes]
    # The slopes are not drawn: the other weights start as for any He-initialised net.
    sizes = (2, *config.hidden, data.n_classes)
    relu_init = ex.init_mlp(sizes, activation(ex, "relu"), 0.0, np.random.default_rng(0))
    prelu_init = ex.init_mlp(sizes, act, 0.0, np.random.default_rng(0))
    assert all(
        np.array_equal(a, b) for a, b in zip(relu_init.weights, prelu_init.weights, strict=True)
    )
    assert relu_init.slopes == []
    assert all(np.all(w == np.float32(0.25)) for w in prelu_init.slopes)


def test_the_prelu_slope_step_is_the_loss_gradient(ex, data):
    # In float64, one SGD step at learning rate 1 moves each slope by minus its gradient;
    # central differences of the loss must agree: the backward pass is wired to the right
    # layer and the right sign.
    act = activation(ex, "prelu")
    sizes = (2, 8, 6, data.n_classes)
    model = ex.init_mlp(sizes, act, 0.0, np.random.default_rng(3))
    model = ex.MLP(
        *([a.astype(np.float64) for a in arrays] for arrays in (model.weights, model.biases))
    )
    model.slopes = [np.linspace(-0.2, 0.6, n) for n in sizes[1:-1]]
    x, y = data.x_train[:50].astype(np.float64), data.y_train[:50]

    def loss(m):
        return ex.softmax_cross_entropy(ex.forward(m, act, x).logits, y)[0]

    stepped = ex.MLP(
        [w.copy() for w in model.weights],
        [b.copy() for b in model.biases],
        [w.copy() for w in model.slopes],
    )
    ex.sgd_step(stepped, act, x, y, learning_rate=1.0)
    for layer, slopes in enumerate(model.slopes):
        gradient = slopes - stepped.slopes[layer]
        numeric = np.empty_like(slopes)
        for unit in range(len(slopes)):
            probe = ex.MLP(model.weights, model.biases, [w.copy() for w in model.slopes])
            probe.slopes[layer][unit] += 1e-6
            up = loss(probe)
            probe.slopes[layer][unit] -= 2e-6
            numeric[unit] = (up - loss(probe)) / 2e-6
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)
        assert np.any(gradient != 0)


def test_rrelu_trains_with_random_slopes_and_evaluates_with_the_mean(ex, data):
    act = activation(ex, "rrelu")
    model = ex.init_mlp((2, *ex.QUICK.hidden, data.n_classes), act, 0.0, np.random.default_rng(0))
    x = data.x_train
    evaluated = ex.forward(model, act, x)
    # Evaluation: exactly Leaky ReLU at (1/8 + 1/3) / 2 = 11/48, rounded to float32.
    mean_slope = ex.forward(model, ex.leaky_activation(11 / 48), x)
    assert all(
        np.array_equal(a, b) for a, b in zip(evaluated.inputs, mean_slope.inputs, strict=True)
    )
    assert not evaluated.noise
    # Training: a slope per element, uniform in [1/8, 1/3] where z <= 0, 1 elsewhere.
    trained = ex.forward(model, act, x, np.random.default_rng(7))
    z, noise = trained.pre_activations[0], trained.noise[0]
    negative = z <= 0
    assert np.all(noise[~negative] == 1)
    assert np.all((noise[negative] >= np.float32(1 / 8)) & (noise[negative] <= np.float32(1 / 3)))
    assert noise[negative].std() > 0.05
    np.testing.assert_array_equal(trained.inputs[1], np.where(negative, z * noise, z))
    with pytest.raises(ValueError, match="rng"):
        ex.sgd_step(model, act, x[:8], data.y_train[:8], 0.1)


def test_digits_are_split_once_and_standardised_on_the_training_part(ex):
    pytest.importorskip("sklearn")
    config = replace(ex.QUICK, digits_train_limit=None)
    digits = ex.make_digits_data(config)
    assert digits.x_train.dtype == np.float32
    assert digits.x_train.shape[1] == 64
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert set(np.unique(digits.y_test)) == set(range(10))
    sd = digits.x_train.std(axis=0)
    varying = sd > 0.5
    np.testing.assert_allclose(digits.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(sd[varying], 1, atol=1e-4)
    assert np.all(digits.x_train[:, ~varying] == 0)
    again = ex.make_digits_data(config)
    assert np.array_equal(digits.x_test, again.x_test)
    assert np.array_equal(digits.y_train, again.y_train)


def test_the_experiment_runs_without_scikit_learn(ex, monkeypatch, capsys):
    monkeypatch.setattr(ex, "have_sklearn", lambda: False)
    config = replace(ex.QUICK, epochs=1, seeds=(0,), timing_rounds=1)
    results = ex.run_experiment(config, progress=False)
    assert "scikit-learn" in capsys.readouterr().err
    assert results["skipped"]["digits"] == ex.SKLEARN_MISSING
    assert list(results["data"]) == ["spirals"]
    assert {r["dataset"] for r in results["runs"]} == {"spirals"}
    ex.print_tables(results, ex.summarise(results))
    assert "skipped the digits" in capsys.readouterr().out


def test_a_diverging_run_is_reported_not_warned(ex, data):
    config = replace(ex.QUICK, epochs=5)
    # Hidden biases at -2: units are dead from the start, before the run diverges.
    setting = ex.Setting("huge", 1e6, bias_init=-2.0)
    run, _ = ex.train(config, data, activation(ex, "relu"), setting, seed=0)
    assert run.dead_fraction[0][0] > 0
    assert run.diverged
    assert not np.isfinite(run.train_loss[-1])
    # It diverges in its first epoch, which reads no layer-2 unit as dead (NaN is not
    # <= 0): that epoch revives none (it read 0.94 revived).
    assert run.dead_fraction[1][0] > 0.5  # at initialisation
    assert run.revived == [0.0, 0.0]


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
    titles = ("1. Convergence", "3/4. Dead units", "2. Activation forward", "6-8. General")
    for title in titles:
        assert title in result.stdout
    data = json.loads(report.read_text())
    seeds = len(data["config"]["seeds"])
    # Spirals: 10 activations at the convergence setting, the 5 rectifiers at the dying one.
    spirals = [r for r in data["runs"] if r["dataset"] == "spirals"]
    assert len(spirals) == seeds * (10 + 5)
    assert data["timing"]["epoch"]["relu"]["fastact"] > 0
    assert data["metadata"]["fastact"]["compiled"] is fastact.COMPILED
    assert all(r["train_loss"][-1] < r["train_loss"][0] for r in data["runs"][:3])
    prelu = [r for r in data["runs"] if r["activation"] == "prelu"]
    assert prelu and all(len(r["slopes"]) == 2 for r in prelu)
    digits = [r for r in data["runs"] if r["dataset"] == "digits"]
    if importlib.util.find_spec("sklearn") is None:
        assert not digits
        assert "scikit-learn is not installed" in result.stderr + result.stdout
    else:
        # The 5 rectifiers and the 0.25 control at the convergence setting; they learn.
        assert len(digits) == seeds * 6
        assert "Digits:" in result.stdout
        assert all(r["test_accuracy"][-1] > 0.8 for r in digits)


@pytest.mark.slow
def test_plots(ex, tmp_path):
    pytest.importorskip("matplotlib")
    results = ex.run_experiment(replace(ex.QUICK, epochs=2, timing_rounds=1), progress=False)
    paths = ex.plot(results, tmp_path / "run")
    assert len(paths) == 4
    assert all(p.stat().st_size > 10_000 for p in paths)
