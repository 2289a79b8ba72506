"""Put the textbook claims about ReLU to the test on a small network.

The claims
----------
1. With gradient descent, ReLU converges faster than sigmoid or tanh.
2. ReLU is cheaper to compute: a threshold, no exponential.
3. Its weakness is the dead unit: once a unit's input is <= 0 for every sample, its
   output and derivative are 0 there, and it never learns again.
4. Leaky ReLU (a small slope for x <= 0) keeps the gradient alive and has fewer dead
   units.
5. Plain ReLU is the default anyway; Leaky ReLU is "a bit better".

And those of Xu et al. 2015, "Empirical Evaluation of Rectified Activations in
Convolutional Network" (CIFAR-10/100, NDSB):

6. The leaky variants (Leaky ReLU, PReLU, RReLU) beat ReLU on small data sets.
7. PReLU, whose slopes are learned, fits the training set best and overfits.
8. RReLU, whose slopes are random while training, regularises: the smallest gap between
   training and test accuracy.

The experiment
--------------
A multilayer perceptron (2 -> 64 -> 64 -> 3, softmax cross-entropy) in plain NumPy,
float32, trained by mini-batch SGD (no momentum, no weight decay) on three interleaved
noisy spirals generated from a fixed seed (nothing is downloaded). The rectifiers run
through fastact (``relu``/``leaky_relu`` forward, ``relu_backward``/
``leaky_relu_backward`` backward) with He initialisation; sigmoid and tanh are NumPy with
Glorot initialisation, and once more with He initialisation as a control. Every
(activation, setting) is trained from several seeds (the seed draws the initial weights
and the batch order; the data set is the same for all).

PReLU (``fastact.prelu``, one slope per hidden unit, starting at 0.25, learned by SGD from
``prelu_backward``'s weight gradient, no weight decay) and RReLU (``fastact.rrelu``,
slopes drawn from [1/8, 1/3] while training by a generator seeded from the run's seed,
the mean slope 11/48 in evaluation) are two more rows of the activation list, with Leaky
ReLU fixed at 0.25 as their control (is it the learned or random slope, or only a larger
one?). A second data set nobody here generated: scikit-learn's bundled 8x8 handwritten
digits (1,797 samples, 64 -> 64 -> 64 -> 10, features standardised with the training
split's statistics, a fixed split), trained with the five rectifiers and the control at
the two convergence settings; without scikit-learn that part is skipped with a message.

* Claims 1 and 5: training loss and train/test accuracy after every epoch, at two
  learning rates; epochs until the training accuracy first reaches a threshold.
* Claim 2: the activation forward + backward calls of one training epoch (the very
  tensors of a ReLU run: every batch, both hidden layers) are replayed, timed with
  fastact and with the NumPy idioms, as is one larger batch; a whole SGD epoch is timed
  with each implementation, so that the activation's share of it shows.
* Claims 3 and 4: after every epoch, the fraction of dead units per hidden layer over
  the whole training set (``fastact.dead_fraction`` of the pre-activations: a unit is
  dead when its input is <= 0 for every training sample), in the ordinary settings and in
  two that provoke dying: a large learning rate and a negative initial bias; and how
  many units were dead at one point and alive after a later epoch. For Leaky ReLU the
  same count says how many units sit entirely on the leaky side, where they still learn.
* Claims 6 to 8: train and test accuracy and loss after the last epoch, their gap per
  seed, on both data sets, and PReLU's learned slopes.

Output: tables in the terminal, every number in a JSON file (default
``bench/results/relu_experiment.json``) and, when matplotlib is installed, PNG plots
beside it. Everything but the timings is a function of the seeds: the same command on
the same machine prints the same numbers.

Run ``python bench/relu_experiment.py`` (2-3 minutes on 2 cores; ``--no-digits`` leaves
the digits out); ``--quick`` runs a tiny configuration in seconds (the test suite does).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# One BLAS thread, set before NumPy loads its BLAS: the matrices are tiny, so threads cost
# far more than they save (a run took 7x longer with two threads on a 2-core machine),
# and the results do not depend on how the work was split among threads. Only as a
# script: importing this module must not change the environment of its importer.
if __name__ == "__main__":
    for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

import numpy as np

import fastact
from fastact._bench.cli import write_problem

DTYPE = np.float32
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_JSON = RESULTS_DIR / "relu_experiment.json"
# A separate name, so that a smoke test never overwrites the real results.
QUICK_JSON = RESULTS_DIR / "relu_experiment_quick.json"


# ---------------------------------------------------------------------------------------
# Activations. ``backward(g, z, a)`` is dL/dz from g = dL/da, the pre-activation z and
# the output a (sigmoid and tanh are cheaper from their output).


@dataclass(frozen=True)
class Activation:
    name: str
    #: With ``slope_init`` set (PReLU) both take the layer's slopes ``w`` as a last
    #: argument, and ``backward`` returns (dL/dz, dL/dw).
    forward: Callable[..., np.ndarray]
    backward: Callable[..., Any]
    #: Hidden weights with std sqrt(2 / fan_in) (He), else sqrt(2 / (fan_in + fan_out))
    #: (Glorot); the output layer is always Glorot.
    he_init: bool
    #: PReLU: every hidden unit's slope starts here and is learned by SGD.
    slope_init: float | None = None
    #: RReLU: training differs from evaluation (``forward``/``backward``):
    #: ``train_forward(z, rng) -> (a, noise)`` and ``train_backward(g, z, noise)``.
    train_forward: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Any]] | None = (
        None
    )
    train_backward: Callable[[np.ndarray, np.ndarray, Any], np.ndarray] | None = None


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of -|z| only: never overflows, so no RuntimeWarning for large |z|.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_backward(g: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return g * a * (1 - a)


def _tanh_backward(g: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return g * (1 - a * a)


def relu_activation() -> Activation:
    return Activation("relu", fastact.relu, lambda g, z, a: fastact.relu_backward(g, z), True)


def leaky_activation(slope: float) -> Activation:
    return Activation(
        f"leaky_relu({slope:g})",
        lambda z: fastact.leaky_relu(z, slope),
        lambda g, z, a: fastact.leaky_relu_backward(g, z, slope),
        True,
    )


def prelu_activation(slope_init: float = 0.25) -> Activation:
    return Activation(
        "prelu",
        fastact.prelu,
        lambda g, z, a, w: fastact.prelu_backward(g, z, w),
        True,
        slope_init=slope_init,
    )


def rrelu_activation(lower: float = 1 / 8, upper: float = 1 / 3) -> Activation:
    return Activation(
        "rrelu",
        lambda z: fastact.rrelu(z, lower, upper, training=False),
        lambda g, z, a: fastact.rrelu_backward(g, z, lower, upper, training=False),
        True,
        train_forward=lambda z, rng: fastact.rrelu(z, lower, upper, training=True, rng=rng),
        train_backward=lambda g, z, noise: fastact.rrelu_backward(
            g, z, lower, upper, training=True, noise=noise
        ),
    )


def activations() -> list[Activation]:
    sigmoid = Activation("sigmoid", _sigmoid, _sigmoid_backward, he_init=False)
    tanh = Activation("tanh", np.tanh, _tanh_backward, he_init=False)
    return [
        relu_activation(),
        leaky_activation(0.01),
        leaky_activation(0.1),
        # Xu et al. 2015's settings: PReLU's slopes start at 0.25 (He et al. 2015) and
        # get no weight decay (there is none here); RReLU draws from [1/8, 1/3] in
        # training and uses the mean, 11/48, in evaluation (torch's defaults).
        prelu_activation(),
        rrelu_activation(),
        # The control for both: a fixed slope at PReLU's start (RReLU's mean is 0.23). Is
        # a difference the learned or random slope, or only the slope being larger?
        leaky_activation(0.25),
        sigmoid,
        tanh,
        # With two inputs, Glorot's fan-out term shrinks the first layer's weights six-fold
        # and leaves sigmoid and tanh nearly linear there: these rows show how much of
        # their gap is initialisation rather than the function.
        replace(sigmoid, name="sigmoid (He init)", he_init=True),
        replace(tanh, name="tanh (He init)", he_init=True),
    ]


#: The activations with a dead-unit question: dead for relu, on the leaky side for leaky.
RECTIFIERS = ("relu", "leaky_relu(0.01)", "leaky_relu(0.1)", "prelu", "rrelu")


# ---------------------------------------------------------------------------------------
# Data: interleaved spirals, one arm per class, standardised, split once; and
# scikit-learn's bundled handwritten digits (a data set nobody here generated).


def spirals(
    n_per_class: int, n_classes: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(n_classes):
        radius = np.linspace(0.05, 1.0, n_per_class)
        # Each arm turns 1.5 times around the centre, offset by 1/n_classes of a turn.
        angle = 3 * np.pi * radius + 2 * np.pi * k / n_classes
        angle = angle + noise * rng.standard_normal(n_per_class)
        xs.append(np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]))
        ys.append(np.full(n_per_class, k))
    x = np.concatenate(xs)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(DTYPE), np.concatenate(ys)


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def _split(config: Config, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Test and train indices: one permutation drawn from the data seed."""
    order = np.random.default_rng(config.data_seed + 1).permutation(n)
    n_test = round(n * config.test_fraction)
    return order[:n_test], order[n_test:]


def make_data(config: Config) -> Data:
    x, y = spirals(config.n_per_class, config.n_classes, config.noise, config.data_seed)
    test, train = _split(config, len(y))
    return Data(x[train], y[train], x[test], y[test], config.n_classes)


def make_digits_data(config: Config) -> Data:
    """The 1,797 8x8 digits of scikit-learn (bundled with it: nothing is downloaded),
    standardised with the training split's mean and sd; pixels constant there stay 0."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    test, train = _split(config, len(y))
    if config.digits_train_limit is not None:
        train = train[: config.digits_train_limit]
    mean, sd = x[train].mean(axis=0), x[train].std(axis=0)
    x = ((x - mean) / np.where(sd > 0, sd, 1.0)).astype(DTYPE)
    return Data(x[train], y[train], x[test], y[test], 10)


def have_sklearn() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


#: Xu et al. 2015's comparison: the rectifiers and the fixed-slope control.
XU_ACTIVATIONS = (*RECTIFIERS, "leaky_relu(0.25)")
#: The digits are trained with those at the convergence settings: the question there is
#: generalisation, not dying.
DIGITS_ACTIVATIONS = XU_ACTIVATIONS
SKLEARN_MISSING = "skipped the digits: scikit-learn is not installed (pip install '.[bench]')"


# ---------------------------------------------------------------------------------------
# The network: hidden layers with the activation, a linear output layer, softmax.


@dataclass
class MLP:
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    #: PReLU's learned slopes, one array of one slope per unit for each hidden layer.
    slopes: list[np.ndarray] = field(default_factory=list)


def init_mlp(
    sizes: Sequence[int], activation: Activation, bias_init: float, rng: np.random.Generator
) -> MLP:
    weights, biases = [], []
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        hidden = layer < len(sizes) - 2
        if activation.he_init and hidden:
            std = np.sqrt(2.0 / fan_in)
        else:
            std = np.sqrt(2.0 / (fan_in + fan_out))
        weights.append((std * rng.standard_normal((fan_in, fan_out))).astype(DTYPE))
        # The bias provocation applies to the hidden layers; the output layer starts at 0.
        biases.append(np.full(fan_out, bias_init if hidden else 0.0, DTYPE))
    # Not drawn: the rng's stream, and with it every other weight, is the same for all.
    slopes = []
    if activation.slope_init is not None:
        slopes = [np.full(units, activation.slope_init, DTYPE) for units in sizes[1:-1]]
    return MLP(weights, biases, slopes)


@dataclass
class Forward:
    inputs: list[np.ndarray]  # the input of each layer (x, then each hidden output)
    pre_activations: list[np.ndarray]  # z of each hidden layer
    logits: np.ndarray
    #: RReLU in training: the slopes drawn in each hidden layer, for the backward pass.
    noise: list[Any] = field(default_factory=list)


def forward(
    model: MLP, activation: Activation, x: np.ndarray, rng: np.random.Generator | None = None
) -> Forward:
    """Evaluation, or with ``rng`` the training pass (it matters for RReLU only)."""
    inputs, pre, noise = [x], [], []
    a = x
    for layer, (w, b) in enumerate(zip(model.weights[:-1], model.biases[:-1], strict=True)):
        z = a @ w + b
        if model.slopes:
            a = activation.forward(z, model.slopes[layer])
        elif rng is not None and activation.train_forward is not None:
            a, drawn = activation.train_forward(z, rng)
            noise.append(drawn)
        else:
            a = activation.forward(z)
        pre.append(z)
        inputs.append(a)
    return Forward(inputs, pre, a @ model.weights[-1] + model.biases[-1], noise)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean loss and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    grad = exp / total
    grad[rows, y] -= 1
    return loss, grad / len(y)


def sgd_step(
    model: MLP,
    activation: Activation,
    x: np.ndarray,
    y: np.ndarray,
    learning_rate: float,
    record: list[tuple[np.ndarray, np.ndarray]] | None = None,
    rng: np.random.Generator | None = None,
) -> None:
    """One step; ``rng`` draws RReLU's training slopes (the others ignore it)."""
    if rng is None and activation.train_forward is not None:
        # Without it the step would silently train in evaluation mode.
        raise ValueError(f"{activation.name} trains with random draws: pass rng")
    fwd = forward(model, activation, x, rng)
    _, grad = softmax_cross_entropy(fwd.logits, y)
    for layer in reversed(range(len(model.weights))):
        grad_w = fwd.inputs[layer].T @ grad
        grad_b = grad.sum(axis=0)
        if layer > 0:
            grad_a = grad @ model.weights[layer].T
            z, a = fwd.pre_activations[layer - 1], fwd.inputs[layer]
            if record is not None:
                record.append((z, grad_a))
            if model.slopes:
                # PReLU's slopes: plain SGD, no weight decay (He et al. 2015, Xu et al.).
                grad, grad_slopes = activation.backward(grad_a, z, a, model.slopes[layer - 1])
                model.slopes[layer - 1] -= learning_rate * grad_slopes
            elif fwd.noise:
                grad = activation.train_backward(grad_a, z, fwd.noise[layer - 1])
            else:
                grad = activation.backward(grad_a, z, a)
        model.weights[layer] -= learning_rate * grad_w
        model.biases[layer] -= learning_rate * grad_b


# ---------------------------------------------------------------------------------------
# Training runs.


@dataclass(frozen=True)
class Setting:
    """A learning rate and an initial hidden bias, with the claim it serves."""

    label: str
    learning_rate: float
    bias_init: float = 0.0
    purpose: str = "convergence"  # or "dying"


@dataclass(frozen=True)
class Config:
    n_per_class: int = 400
    n_classes: int = 3
    noise: float = 0.2
    test_fraction: float = 0.25
    data_seed: int = 0
    hidden: tuple[int, ...] = (64, 64)
    batch_size: int = 32
    epochs: int = 150
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # Two learning rates ten-fold apart for convergence (both train the rectifiers to
    # ~100%); then the two classic ways to kill ReLU units: a learning rate twice the
    # larger one, and the larger one with every hidden bias starting at -2.
    settings: tuple[Setting, ...] = (
        Setting("lr=0.05", 0.05),
        Setting("lr=0.5", 0.5),
        Setting("lr=1.0", 1.0, purpose="dying"),
        Setting("lr=0.5, bias=-2", 0.5, bias_init=-2.0, purpose="dying"),
    )
    accuracy_threshold: float = 0.9
    #: Train on scikit-learn's digits too (skipped, with a message, without scikit-learn).
    digits: bool = True
    #: Use only the first N of the digits' training split (None: all of it).
    digits_train_limit: int | None = None
    timing_rounds: int = 15
    #: Rows of the large-batch timing: 256 x 64 float32 is 64 KiB per tensor, small
    #: enough that the allocator reuses memory instead of mapping fresh pages per call.
    timing_large_batch: int = 256


QUICK = Config(
    n_per_class=80,
    hidden=(32, 32),
    epochs=40,
    seeds=(0, 1),
    settings=(
        Setting("lr=0.5", 0.5),
        Setting("lr=0.5, bias=-2", 0.5, bias_init=-2.0, purpose="dying"),
    ),
    digits_train_limit=300,
    timing_rounds=3,
    timing_large_batch=64,
)


@dataclass
class Run:
    activation: str
    setting: str
    seed: int
    dataset: str = "spirals"
    #: Index 0 is the initial network, index e the network after e epochs.
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    #: dead_fraction[layer][e]: over the whole training set, for every activation.
    dead_fraction: list[list[float]] = field(default_factory=list)
    #: revived[layer]: the fraction of units that were dead at initialisation or after
    #: some epoch, and alive after a later one (claim 3 says a dead unit never comes back).
    revived: list[float] = field(default_factory=list)
    #: Wall time of each epoch's SGD steps (evaluation excluded).
    epoch_seconds: list[float] = field(default_factory=list)
    diverged: bool = False
    #: PReLU: each hidden layer's learned slopes at the end (empty for the others).
    slopes: list[list[float]] = field(default_factory=list)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == y))


def evaluate(model: MLP, activation: Activation, data: Data, run: Run) -> list[np.ndarray]:
    """Append the current numbers to ``run``; return the dead-unit mask of each layer."""
    fwd = forward(model, activation, data.x_train)
    loss, _ = softmax_cross_entropy(fwd.logits, data.y_train)
    run.train_loss.append(loss)
    run.train_accuracy.append(accuracy(fwd.logits, data.y_train))
    test_logits = forward(model, activation, data.x_test).logits
    run.test_loss.append(softmax_cross_entropy(test_logits, data.y_test)[0])
    run.test_accuracy.append(accuracy(test_logits, data.y_test))
    for layer, z in enumerate(fwd.pre_activations):
        run.dead_fraction[layer].append(fastact.dead_fraction(z, axis=0))
    return [fastact.dead_units(z, axis=0) for z in fwd.pre_activations]


def train(
    config: Config,
    data: Data,
    activation: Activation,
    setting: Setting,
    seed: int,
    record: list[tuple[np.ndarray, np.ndarray]] | None = None,
    dataset: str = "spirals",
) -> tuple[Run, MLP]:
    """Train one network; ``record`` receives (z, dL/da) of every step of the first epoch."""
    rng = np.random.default_rng(seed)
    # RReLU's slopes from a stream of their own, so that the initial weights and the
    # batch order of a seed are the same for every activation.
    noise_rng = None
    if activation.train_forward is not None:
        noise_rng = np.random.default_rng([seed, 1])
    sizes = (data.x_train.shape[1], *config.hidden, data.n_classes)
    model = init_mlp(sizes, activation, setting.bias_init, rng)
    run = Run(
        activation.name, setting.label, seed, dataset, dead_fraction=[[] for _ in config.hidden]
    )
    n = len(data.y_train)
    # A diverging run may overflow on the way to inf/NaN; that is reported, not warned.
    with np.errstate(over="ignore", invalid="ignore"):
        ever_dead = evaluate(model, activation, data, run)
        revived = [np.zeros_like(mask) for mask in ever_dead]
        for epoch in range(config.epochs):
            order = rng.permutation(n)
            start = time.perf_counter()
            for first in range(0, n, config.batch_size):
                batch = order[first : first + config.batch_size]
                sgd_step(
                    model,
                    activation,
                    data.x_train[batch],
                    data.y_train[batch],
                    setting.learning_rate,
                    record if epoch == 0 else None,
                    noise_rng,
                )
            run.epoch_seconds.append(time.perf_counter() - start)
            dead = evaluate(model, activation, data, run)
            if not np.isfinite(run.train_loss[-1]):
                # NaN pre-activations are not <= 0, so no unit reads as dead: counted,
                # every unit ever dead would look revived.
                run.diverged = True
                break
            for layer, mask in enumerate(dead):
                revived[layer] |= ever_dead[layer] & ~mask
                ever_dead[layer] |= mask
    run.revived = [float(np.mean(r)) for r in revived]
    run.slopes = [w.tolist() for w in model.slopes]
    return run, model


# ---------------------------------------------------------------------------------------
# Claim 2: the activation calls of one epoch, replayed with each implementation.


def timing_implementations() -> dict[str, dict[str, tuple[Callable, Callable]]]:
    """activation -> implementation -> (forward(z), backward(g, z, a))."""

    def leaky(s: float) -> dict[str, tuple[Callable, Callable]]:
        return {
            "fastact": (
                lambda z: fastact.leaky_relu(z, s),
                lambda g, z, a: fastact.leaky_relu_backward(g, z, s),
            ),
            "numpy": (
                lambda z: np.where(z > 0, z, s * z),
                lambda g, z, a: np.where(z > 0, g, s * g),
            ),
        }

    return {
        "relu": {
            "fastact": (fastact.relu, lambda g, z, a: fastact.relu_backward(g, z)),
            "numpy": (lambda z: np.maximum(z, 0), lambda g, z, a: g * (z > 0)),
        },
        "leaky_relu(0.01)": leaky(0.01),
        "leaky_relu(0.1)": leaky(0.1),
        "sigmoid": {"numpy": (_sigmoid, _sigmoid_backward)},
        "tanh": {"numpy": (np.tanh, _tanh_backward)},
    }


def replay_seconds(
    forward_fn: Callable, backward_fn: Callable, tensors: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    start = time.perf_counter()
    for z, g in tensors:
        backward_fn(g, z, forward_fn(z))
    return time.perf_counter() - start


def interleaved_medians(
    tasks: dict[tuple[str, str], Callable[[], float]], rounds: int
) -> dict[str, dict[str, float]]:
    """Median seconds of each task, as ``{activation: {implementation: seconds}}``.

    Every task runs once to warm up, then once per round, all tasks taking turns within a
    round, so that they share the machine's noise (it is a shared machine).
    """
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in tasks}
    with np.errstate(over="ignore"):
        for task in tasks.values():
            task()
        for _ in range(rounds):
            for key, task in tasks.items():
                samples[key].append(task())
    result: dict[str, dict[str, float]] = {}
    for (act, impl), values in samples.items():
        result.setdefault(act, {})[impl] = statistics.median(values)
    return result


def time_activations(
    tensors: list[tuple[np.ndarray, np.ndarray]], rounds: int
) -> dict[str, dict[str, float]]:
    """Seconds to run every activation implementation over ``tensors``: (z, dL/da) pairs."""
    tasks = {
        (act, impl): functools.partial(replay_seconds, *fns, tensors)
        for act, by_impl in timing_implementations().items()
        for impl, fns in by_impl.items()
    }
    return interleaved_medians(tasks, rounds)


def time_epochs(config: Config, data: Data, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per SGD epoch (the steps only) with every activation implementation."""
    he_init = {a.name: a.he_init for a in activations()}
    setting = config.settings[0]
    tasks = {}
    for act, by_impl in timing_implementations().items():
        for impl, (fwd, bwd) in by_impl.items():
            activation = Activation(f"{act} {impl}", fwd, bwd, he_init[act])
            sizes = (data.x_train.shape[1], *config.hidden, data.n_classes)
            model = init_mlp(sizes, activation, 0.0, np.random.default_rng(0))
            tasks[act, impl] = functools.partial(
                epoch_seconds, config, data, model, activation, setting.learning_rate
            )
    return interleaved_medians(tasks, rounds)


def epoch_seconds(
    config: Config, data: Data, model: MLP, activation: Activation, learning_rate: float
) -> float:
    n = len(data.y_train)
    # The same batches every time: only the implementation differs between the tasks.
    order = np.random.default_rng(0).permutation(n)
    start = time.perf_counter()
    for first in range(0, n, config.batch_size):
        batch = order[first : first + config.batch_size]
        sgd_step(model, activation, data.x_train[batch], data.y_train[batch], learning_rate)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# The whole experiment and its summaries.


def train_grid(
    config: Config,
    data: Data,
    dataset: str,
    settings: Sequence[Setting],
    acts: Sequence[Activation],
    record: list[tuple[np.ndarray, np.ndarray]] | None,
    progress: bool,
    started: float,
) -> list[Run]:
    """Every seed of every (setting, activation); ``record`` gets the first ReLU epoch."""
    runs = []
    for setting in settings:
        for act in acts:
            if setting.purpose == "dying" and act.name not in RECTIFIERS:
                continue
            for seed in config.seeds:
                wanted = record is not None and not record and act.name == "relu"
                run, _ = train(
                    config, data, act, setting, seed, record if wanted else None, dataset
                )
                runs.append(run)
            if progress:
                elapsed = time.perf_counter() - started
                print(
                    f"  [{elapsed:6.1f} s] {dataset:<8} {setting.label:<18} {act.name}",
                    file=sys.stderr,
                )
    return runs


def run_experiment(config: Config, progress: bool = True) -> dict[str, Any]:
    data = make_data(config)
    epoch_tensors: list[tuple[np.ndarray, np.ndarray]] = []
    started = time.perf_counter()
    runs = train_grid(
        config, data, "spirals", config.settings, activations(), epoch_tensors, progress, started
    )
    sizes = {"spirals": _data_sizes(data)}
    skipped = {}
    if config.digits and not have_sklearn():
        skipped["digits"] = SKLEARN_MISSING
        print(SKLEARN_MISSING, file=sys.stderr)
    elif config.digits:
        digits = make_digits_data(config)
        convergence = [s for s in config.settings if s.purpose == "convergence"]
        acts = [a for a in activations() if a.name in DIGITS_ACTIVATIONS]
        runs += train_grid(config, digits, "digits", convergence, acts, None, progress, started)
        sizes["digits"] = _data_sizes(digits)
    large = [(z, np.ones_like(z)) for z in _large_batch_pre_activations(config, data)]
    timing = {
        "whole_epoch": time_epochs(config, data, config.timing_rounds),
        "epoch": time_activations(epoch_tensors, config.timing_rounds),
        "large_batch": time_activations(large, config.timing_rounds),
        "epoch_calls": len(epoch_tensors),
        "epoch_elements": int(sum(z.size for z, _ in epoch_tensors)),
        "large_batch_shape": list(large[0][0].shape),
    }
    return {
        "config": _config_dict(config),
        "data": sizes,
        "skipped": skipped,
        "runs": [asdict(r) for r in runs],
        "timing": timing,
        "metadata": _metadata(time.perf_counter() - started),
    }


def _data_sizes(data: Data) -> dict[str, int]:
    return {
        "train": len(data.y_train),
        "test": len(data.y_test),
        "features": data.x_train.shape[1],
        "classes": data.n_classes,
    }


def _large_batch_pre_activations(config: Config, data: Data) -> list[np.ndarray]:
    """The hidden pre-activations of a fresh ReLU network on the first training points."""
    model = init_mlp(
        (data.x_train.shape[1], *config.hidden, data.n_classes),
        relu_activation(),
        0.0,
        np.random.default_rng(0),
    )
    x = data.x_train[: config.timing_large_batch]
    return forward(model, relu_activation(), x).pre_activations


def _config_dict(config: Config) -> dict[str, Any]:
    d = asdict(config)
    d["settings"] = [asdict(s) for s in config.settings]
    return d


def blas_in_use() -> list[dict[str, Any]]:
    """The BLAS libraries behind NumPy's matrix products, with the kernel each picked for
    this CPU (threadpoolctl's report; empty without it). The products' last bits depend
    on the kernel, and the unstable settings' outcomes on those bits."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "num_threads")
    return [
        {key: info.get(key) for key in keys}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]


def _metadata(seconds: float) -> dict[str, Any]:
    return {
        "fastact": fastact.show_config(print_out=False),
        "blas": blas_in_use(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "command": " ".join(sys.argv),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "seconds": round(seconds, 1),
    }


def runs_of(
    results: dict[str, Any], setting: str, activation: str, dataset: str = "spirals"
) -> list[dict[str, Any]]:
    return [
        r
        for r in results["runs"]
        if r["setting"] == setting and r["activation"] == activation and r["dataset"] == dataset
    ]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def epochs_to_reach(run: dict[str, Any], threshold: float) -> int | None:
    return next((e for e, a in enumerate(run["train_accuracy"]) if a >= threshold), None)


def _per_layer(
    runs: list[dict[str, Any]], key: str, pick: Callable[[Any], float]
) -> list[tuple[float, float]]:
    layers = range(len(runs[0][key]))
    return [mean_sd([pick(r[key][k]) for r in runs]) for k in layers]


def _generalisation(
    results: dict[str, Any], runs: list[dict[str, Any]], dataset: str
) -> dict[str, Any]:
    """After the last epoch, over the runs that did not diverge (a diverged network's
    accuracy says nothing about overfitting)."""
    kept = [r for r in runs if not r["diverged"]]
    relu = {
        r["seed"]: r
        for r in runs_of(results, runs[0]["setting"], "relu", dataset)
        if not r["diverged"]
    }
    slope_layers = range(len(kept[0]["slopes"]) if kept else 0)
    return {
        "train_accuracy": mean_sd([r["train_accuracy"][-1] for r in kept]),
        "test_accuracy": mean_sd([r["test_accuracy"][-1] for r in kept]),
        # The generalisation gap, per seed.
        "accuracy_gap": mean_sd([r["train_accuracy"][-1] - r["test_accuracy"][-1] for r in kept]),
        "train_loss": mean_sd([r["train_loss"][-1] for r in kept]),
        "test_loss": mean_sd([r["test_loss"][-1] for r in kept]),
        # Paired by seed (the same initial weights and batch order): the spread of the
        # difference is smaller than that of either accuracy.
        "test_accuracy_vs_relu": mean_sd(
            [
                r["test_accuracy"][-1] - relu[r["seed"]]["test_accuracy"][-1]
                for r in kept
                if r["seed"] in relu
            ]
        ),
        "slope_mean": [
            mean_sd([statistics.fmean(r["slopes"][k]) for r in kept]) for k in slope_layers
        ],
        "slope_range": [
            (min(min(r["slopes"][k]) for r in kept), max(max(r["slopes"][k]) for r in kept))
            for k in slope_layers
        ],
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per (setting, activation): the numbers of the tables, as (mean, sd) over seeds."""
    config = results["config"]
    threshold = config["accuracy_threshold"]
    summary: dict[str, Any] = {}
    for dataset, setting, act in itertools.product(
        results["data"], config["settings"], [a.name for a in activations()]
    ):
        runs = runs_of(results, setting["label"], act, dataset)
        if not runs:
            continue
        reached = [epochs_to_reach(r, threshold) for r in runs]
        key = f"{setting['label']} | {act}"
        summary[key if dataset == "spirals" else f"{dataset} | {key}"] = {
            "dataset": dataset,
            "setting": setting["label"],
            "activation": act,
            "seeds": len(runs),
            "diverged": sum(r["diverged"] for r in runs),
            "final_train_loss": mean_sd([r["train_loss"][-1] for r in runs]),
            "final_test_accuracy": mean_sd([r["test_accuracy"][-1] for r in runs]),
            "best_test_accuracy": mean_sd([max(r["test_accuracy"]) for r in runs]),
            "generalisation": _generalisation(results, runs, dataset),
            "epochs_to_threshold": mean_sd([e for e in reached if e is not None]),
            "reached_threshold": sum(e is not None for e in reached),
            "dead_initial": _per_layer(runs, "dead_fraction", lambda curve: curve[0]),
            "dead_max": _per_layer(runs, "dead_fraction", max),
            "dead_final": _per_layer(runs, "dead_fraction", lambda curve: curve[-1]),
            "revived": _per_layer(runs, "revived", lambda value: value),
        }
    return summary


# ---------------------------------------------------------------------------------------
# Printing and plotting.


def _pm(pair: Sequence[float], fmt: str = ".3f") -> str:
    mean, sd = pair
    if not np.isfinite(mean):
        return "-"
    return f"{mean:{fmt}} ± {sd:{fmt}}"


def _signed_pm(pair: Sequence[float]) -> str:
    mean, sd = pair
    return f"{mean:+.3f} ± {sd:.3f}" if np.isfinite(mean) else "-"


def _table(header: Sequence[tuple[str, int]], rows: list[list[str]]) -> None:
    """Left-align the first two columns, right-align the others."""

    def line(cells: Sequence[str]) -> str:
        return " ".join(
            f"{c:<{w}}" if i < 2 else f"{c:>{w}}"
            for i, (c, (_, w)) in enumerate(zip(cells, header, strict=True))
        ).rstrip()

    text = line([h for h, _ in header])
    print(text)
    print("-" * len(text))
    for row in rows:
        print(line(row))


def print_tables(results: dict[str, Any], summary: dict[str, Any]) -> None:
    config = results["config"]
    for name, data in results["data"].items():
        layers = "-".join(map(str, (data["features"], *config["hidden"], data["classes"])))
        print(
            f"\n{name.capitalize()}: {data['train']} train / {data['test']} test points, "
            f"{data['classes']} classes; MLP {layers}, float32, SGD batch "
            f"{config['batch_size']}, {config['epochs']} epochs, seeds "
            f"{list(config['seeds'])}; mean ± sd over the seeds."
        )
    for name, why in results.get("skipped", {}).items():
        print(f"({name}: {why})")
    blas = results.get("metadata", {}).get("blas") or []
    print(
        "BLAS: "
        + (
            "; ".join(
                f"{b['internal_api']} {b['version']}, {b['architecture']} kernel" for b in blas
            )
            or "unknown (threadpoolctl is not installed)"
        )
        + " (the unstable settings' outcomes depend on its rounding)"
    )
    spirals = {k: row for k, row in summary.items() if row["dataset"] == "spirals"}
    print_convergence_table(config, spirals)
    print_dead_table(spirals)
    print_timing_table(results)
    print_generalisation_table(config, summary)


def print_convergence_table(config: dict[str, Any], summary: dict[str, Any]) -> None:
    n_seeds = len(config["seeds"])
    target = format(config["accuracy_threshold"], ".0%")
    print(f"\n1. Convergence. Epochs to {target} train accuracy: mean over the seeds that got "
          "there (how many, if not all).")  # fmt: skip
    rows = []
    for row in summary.values():
        reached = row["reached_threshold"]
        epochs = _pm(row["epochs_to_threshold"], ".0f") if reached else "never"
        if 0 < reached < n_seeds:
            epochs += f" ({reached}/{n_seeds})"
        if row["diverged"]:
            epochs += f", {row['diverged']} diverged"
        rows.append(
            [
                row["setting"],
                row["activation"],
                _pm(row["final_train_loss"]),
                _pm(row["final_test_accuracy"]),
                _pm(row["best_test_accuracy"]),
                epochs,
            ]
        )
    header = [
        ("setting", 16),
        ("activation", 17),
        ("final train loss", 16),
        ("final test acc", 14),
        ("best test acc", 14),
        (f"epochs to {target}", 19),
    ]
    _table(header, rows)


def print_dead_table(summary: dict[str, Any]) -> None:
    print("\n3/4. Dead units: the fraction of a layer's units whose input is <= 0 for every "
          "training sample, at initialisation / at the worst epoch / at the end; revived: "
          "the fraction that was dead at initialisation or after some epoch, and alive "
          "after a later one.")  # fmt: skip
    rows = []
    for row in summary.values():
        if row["activation"] not in RECTIFIERS:
            continue
        cells = [row["setting"], row["activation"]]
        for k in range(len(row["dead_initial"])):
            cells.append(
                f"{row['dead_initial'][k][0]:.2f} / {row['dead_max'][k][0]:.2f} / "
                f"{row['dead_final'][k][0]:.2f}"
            )
            cells.append(f"{row['revived'][k][0]:.2f}")
        rows.append(cells)
    layers = (len(rows[0]) - 2) // 2 if rows else 0
    header = [("setting", 16), ("activation", 17)]
    for k in range(layers):
        header += [(f"layer {k + 1} dead", 20), ("revived", 7)]
    _table(header, rows)


def print_generalisation_table(config: dict[str, Any], summary: dict[str, Any]) -> None:
    print("\n6-8. Generalisation (Xu et al. 2015: leaky variants beat ReLU on small data, "
          "PReLU overfits, RReLU regularises), at the convergence settings, after the last "
          "epoch, over the seeds that did not diverge. gap: train minus test accuracy; vs "
          "relu: test accuracy minus ReLU's, per seed (same initial weights and batches); "
          "PReLU's learned slopes: mean per layer (min..max over units and seeds).")  # fmt: skip
    convergence = {s["label"] for s in config["settings"] if s["purpose"] == "convergence"}
    rows = []
    for row in summary.values():
        if row["setting"] not in convergence or row["activation"] not in XU_ACTIVATIONS:
            continue
        gen = row["generalisation"]
        slopes = " | ".join(
            f"{mean:.2f} ({low:.2f}..{high:.2f})"
            for (mean, _), (low, high) in zip(gen["slope_mean"], gen["slope_range"], strict=True)
        )
        rows.append(
            [
                f"{row['dataset']}, {row['setting']}",
                row["activation"],
                str(row["diverged"]) if row["diverged"] else "",
                _pm(gen["train_accuracy"]),
                _pm(gen["test_accuracy"]),
                _pm(gen["accuracy_gap"]),
                _signed_pm(gen["test_accuracy_vs_relu"]) if row["activation"] != "relu" else "",
                _pm(gen["train_loss"], ".4f"),
                _pm(gen["test_loss"]),
                slopes,
            ]
        )
    header = [
        ("data, setting", 17),
        ("activation", 17),
        ("diverged", 8),
        ("train acc", 13),
        ("test acc", 13),
        ("gap", 14),
        ("test acc vs relu", 16),
        ("train loss", 15),
        ("test loss", 13),
        ("prelu slopes", 12),
    ]
    _table(header, rows)


def print_timing_table(results: dict[str, Any]) -> None:
    timing = results["timing"]
    rows_large, units = timing["large_batch_shape"]
    print(
        f"\n2. Activation forward + backward of both hidden layers: one training epoch's "
        f"calls replayed ({timing['epoch_calls']} tensors, {timing['epoch_elements']} "
        f"elements in all) and one {rows_large}x{units} batch; a whole SGD epoch (the "
        f"steps) with that implementation, and the activation's share of it. Medians."
    )
    base_epoch = timing["epoch"]["relu"]["fastact"]
    base_large = timing["large_batch"]["relu"]["fastact"]
    rows = []
    for act, by_impl in timing["epoch"].items():
        for impl, seconds in by_impl.items():
            large = timing["large_batch"][act][impl]
            whole = timing["whole_epoch"][act][impl]
            rows.append(
                [
                    act,
                    impl,
                    f"{seconds * 1e3:.3f}",
                    f"{seconds / base_epoch:.2f}x",
                    f"{large * 1e6:.1f}",
                    f"{large / base_large:.2f}x",
                    f"{whole * 1e3:.2f}",
                    f"{seconds / whole:.0%}",
                ]
            )
    header = [
        ("activation", 17),
        ("impl", 8),
        ("ms / epoch", 10),
        ("vs fastact relu", 15),
        (f"{rows_large}x{units} µs", 10),
        ("vs fastact relu", 15),
        ("whole epoch ms", 14),
        ("share", 5),
    ]
    _table(header, rows)


def plot(results: dict[str, Any], stem: Path) -> list[Path]:
    """PNG plots named ``<stem>_*.png``, when matplotlib is installed; the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    stem.parent.mkdir(parents=True, exist_ok=True)
    config = results["config"]
    convergence = [s["label"] for s in config["settings"] if s["purpose"] == "convergence"]
    names = [a.name for a in activations()]
    paths = []

    fig, axes = plt.subplots(2, len(convergence), figsize=(6 * len(convergence), 8), squeeze=False)
    for col, setting in enumerate(convergence):
        for name in names:
            runs = runs_of(results, setting, name)
            _band(axes[0][col], [r["train_loss"] for r in runs], name)
            _band(axes[1][col], [r["test_accuracy"] for r in runs], name)
        axes[0][col].set(title=f"training loss, {setting}", yscale="log", xlabel="epoch")
        axes[1][col].set(title=f"test accuracy, {setting}", xlabel="epoch")
        axes[0][col].legend()
    paths.append(_save(fig, stem.with_name(f"{stem.name}_convergence.png")))

    settings = [s["label"] for s in config["settings"]]
    layers = len(config["hidden"])
    fig, axes = plt.subplots(
        len(settings), layers, figsize=(6 * layers, 3.2 * len(settings)), squeeze=False
    )
    for row, setting in enumerate(settings):
        for k in range(layers):
            for name in RECTIFIERS:
                runs = runs_of(results, setting, name)
                _band(axes[row][k], [r["dead_fraction"][k] for r in runs], name)
            axes[row][k].set(title=f"dead units, layer {k + 1}, {setting}", ylim=(-0.02, 1.02))
        axes[row][0].legend()
    axes[-1][0].set_xlabel("epoch")
    paths.append(_save(fig, stem.with_name(f"{stem.name}_dead_units.png")))

    datasets = list(results["data"])
    fig, axes = plt.subplots(
        len(datasets),
        len(convergence),
        figsize=(6 * len(convergence), 4 * len(datasets)),
        squeeze=False,
    )
    for row, dataset in enumerate(datasets):
        for col, setting in enumerate(convergence):
            for name in XU_ACTIVATIONS:
                runs = runs_of(results, setting, name, dataset)
                if runs:
                    _band(axes[row][col], [r["test_loss"] for r in runs], name)
            axes[row][col].set(title=f"test loss, {dataset}, {setting}", yscale="log")
        axes[row][0].legend()
    axes[-1][0].set_xlabel("epoch")
    paths.append(_save(fig, stem.with_name(f"{stem.name}_generalisation.png")))

    fig, ax = plt.subplots(figsize=(8, 4))
    labels, values = [], []
    for act, by_impl in results["timing"]["epoch"].items():
        for impl, seconds in by_impl.items():
            labels.append(f"{act}\n{impl}")
            values.append(seconds * 1e3)
    ax.bar(range(len(values)), values)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set(ylabel="ms per epoch", title="activation forward + backward, one epoch's calls")
    paths.append(_save(fig, stem.with_name(f"{stem.name}_timing.png")))
    return paths


def _band(ax: Any, curves: list[list[float]], label: str) -> None:
    """Mean over seeds, with the range of the seeds shaded."""
    length = max(len(c) for c in curves)
    padded = np.array([c + [np.nan] * (length - len(c)) for c in curves], dtype=float)
    with np.errstate(invalid="ignore"):
        line = ax.plot(np.nanmean(padded, axis=0), label=label)[0]
        ax.fill_between(
            range(length),
            np.nanmin(padded, axis=0),
            np.nanmax(padded, axis=0),
            color=line.get_color(),
            alpha=0.2,
        )


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny configuration: seconds")
    parser.add_argument("--epochs", type=_positive, help="epochs per run")
    parser.add_argument("--seeds", type=_positive, help="number of seeds (0, 1, ..., N-1)")
    parser.add_argument(
        "--json",
        type=Path,
        help=f"where to write (default {DEFAULT_JSON.name}, with --quick {QUICK_JSON.name}, "
        "in bench/results/); the plots go beside it",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-digits", action="store_true", help="spirals only")
    args = parser.parse_args(argv)
    # Checked before the run: found only at the end, a bad path would cost all of it.
    path = args.json or (QUICK_JSON if args.quick else DEFAULT_JSON)
    problem = write_problem(path)
    if problem is not None:
        parser.error(f"argument --json: cannot write {path}: {problem}")
    config = QUICK if args.quick else Config()
    if args.no_digits:
        config = replace(config, digits=False)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.seeds is not None:
        config = replace(config, seeds=tuple(range(args.seeds)))
    results = run_experiment(config)
    summary = summarise(results)
    results["summary"] = summary
    print_tables(results, summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(results), indent=1, allow_nan=False))
    print(f"\nwrote {path}")
    if not args.no_plots:
        paths = plot(results, path.with_suffix(""))
        for path in paths:
            print(f"wrote {path}")
        if not paths:
            print("(no plots: matplotlib is not installed; pip install '.[bench]')")
    return 0


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (a diverged run) as None: strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
