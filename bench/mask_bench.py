"""The mask functions against the ways they replace, and three training paths.

Kernel rows: GB/s counting bytes read + written, the median of interleaved rounds (every
variant once per round, so a noisy neighbour slows them all alike), and the roofline
(``np.copyto`` of as many bytes) in the same run:

- forward: ``relu_with_mask(x)`` (reads x, writes y and n/8 mask bytes) against
  ``relu(x)`` alone and against ``relu(x)`` + ``np.packbits(x > 0, bitorder="little")``;
- backward: ``relu_backward_mask(g, mask)`` (reads g and n/8 bytes) against
  ``relu_backward(g, x)`` (reads g and x);
- bias, on an ``(n / 1024, 1024)`` array: ``bias_relu(x, b)`` against
  ``np.add(x, b, out=y)`` + ``relu(y, out=y)``, and ``bias_relu_backward(g, mask)``
  against ``relu_backward(g, x)`` + ``.sum(axis=0)``;
- the targets: each of those ratios (the replaced way's time over fastact's), and the
  bytes each training path keeps between forward and backward per element.

Training paths, on the MLP of ``relu_experiment.py`` (its data, initialisation and loss):

- ``x``: keeps each hidden layer's pre-activation ``z`` for ``relu_backward(g, z)``;
- ``mask``: keeps only ``relu_with_mask``'s bits, for ``relu_backward_mask``;
- ``bias+mask``: ``bias_relu_with_mask(a @ w, b)`` and ``bias_relu_backward``, whose bias
  gradient is summed in float64 (so its weights differ from the others in the last bits).

The ``x`` and ``mask`` paths give the same weights, bit for bit, after every epoch
(``same_weights`` checks it and the tests run it on a short configuration).

Run ``python bench/mask_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import fastact

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relu_experiment as experiment

# ---------------------------------------------------------------------------------------
# Kernel rows.


def interleaved_medians(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds per call of each, the median over rounds; each round runs every call once."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm: pages touched, caches and branch predictors as in steady state
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


COLS = 1024  # the bias cases' last axis: (n / 1024, 1024), the issue's (2^15, 2^10) at 2^25


def kernel_rows(n: int, rounds: int, dtype: type = np.float32) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    cols = min(COLS, n)
    n = max(1, n // cols) * cols
    x = rng.standard_normal((n // cols, cols)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    b = rng.standard_normal(cols).astype(dtype)
    y, y2 = np.empty_like(x), np.empty_like(x)
    mask = np.empty((n + 7) // 8, np.uint8)
    item = x.itemsize
    bits = mask.nbytes
    copy_src, copy_dst = np.empty(n * item, np.uint8), np.empty(n * item, np.uint8)

    def add_then_relu() -> None:
        np.add(x, b, out=y)
        fastact.relu(y, out=y)

    # name: (call, bytes it must move at least)
    cases: dict[str, tuple[Callable[[], object], int]] = {
        "copy (roofline)": (lambda: np.copyto(copy_dst, copy_src), 2 * n * item),
        "relu(x)": (lambda: fastact.relu(x, out=y), 2 * n * item),
        "relu_with_mask(x)": (
            lambda: fastact.relu_with_mask(x, out=y, mask=mask),
            2 * n * item + bits,
        ),
        "relu(x) + np.packbits(x > 0)": (
            lambda: (fastact.relu(x, out=y), np.packbits(x > 0, bitorder="little")),
            2 * n * item + bits,
        ),
        "relu_backward(g, x)": (lambda: fastact.relu_backward(g, x, out=y2), 3 * n * item),
        "relu_backward_mask(g, mask)": (
            lambda: fastact.relu_backward_mask(g, mask, out=y2),
            2 * n * item + bits,
        ),
        "bias_relu(x, b)": (lambda: fastact.bias_relu(x, b, out=y), 2 * n * item),
        "np.add(x, b, out=y); relu(y, out=y)": (add_then_relu, 2 * n * item),
        "bias_relu_with_mask(x, b)": (
            lambda: fastact.bias_relu_with_mask(x, b, out=y, mask=mask),
            2 * n * item + bits,
        ),
        "bias_relu_backward(g, mask)": (
            lambda: fastact.bias_relu_backward(g, mask, out=y2),
            2 * n * item + bits,
        ),
        "relu_backward(g, x).sum(axis=0)": (
            lambda: fastact.relu_backward(g, x, out=y2).sum(axis=0),
            3 * n * item,
        ),
    }
    fastact.bias_relu_with_mask(x, b, out=y, mask=mask)
    seconds = interleaved_medians({k: v[0] for k, v in cases.items()}, rounds)
    return [
        {
            "case": name,
            "n": n,
            "dtype": np.dtype(dtype).name,
            "seconds": seconds[name],
            "GB/s": traffic / seconds[name] / 1e9,
        }
        for name, (_, traffic) in cases.items()
    ]


# The targets as (fastact case, the case it replaces, the ratio wanted): the
# replaced case's time over fastact's, so that above the target is better.
TARGETS = (
    ("relu_with_mask(x)", "relu(x)", 1 / 1.1),
    ("relu_backward_mask(g, mask)", "relu_backward(g, x)", 1.3),
    ("bias_relu(x, b)", "np.add(x, b, out=y); relu(y, out=y)", 1.7),
    ("bias_relu_backward(g, mask)", "relu_backward(g, x).sum(axis=0)", 1.4),
)


def target_rows(rows: list[dict[str, object]]) -> list[str]:
    seconds = {row["case"]: float(row["seconds"]) for row in rows}  # type: ignore[arg-type]
    lines = []
    for mine, theirs, wanted in TARGETS:
        ratio = seconds[theirs] / seconds[mine]
        lines.append(f"  {mine:30} vs {theirs:38} {ratio:5.2f}x  (target >= {wanted:.2f}x)")
    return lines


def bytes_kept(dtype: type) -> dict[str, float]:
    """Bytes kept between the forward and the backward pass, per element, for each path."""
    return {"x": float(np.dtype(dtype).itemsize), "mask": 1 / 8, "bias+mask": 1 / 8}


# ---------------------------------------------------------------------------------------
# Training paths.

PATHS = ("x", "mask", "bias+mask")


def sgd_step(model: experiment.MLP, path: str, x: np.ndarray, y: np.ndarray, lr: float) -> int:
    """One step of SGD along ``path``; returns the bytes kept for the backward pass."""
    inputs, kept = [x], []
    a = x
    for w, b in zip(model.weights[:-1], model.biases[:-1], strict=True):
        if path == "x":
            z = a @ w + b
            a = fastact.relu(z)
            kept.append(z)
        elif path == "mask":
            a, mask = fastact.relu_with_mask(a @ w + b)
            kept.append(mask)
        else:
            a, mask = fastact.bias_relu_with_mask(a @ w, b)
            kept.append(mask)
        inputs.append(a)
    logits = a @ model.weights[-1] + model.biases[-1]
    _, grad = experiment.softmax_cross_entropy(logits, y)
    grad_b = grad.sum(axis=0)
    for layer in reversed(range(len(model.weights))):
        grad_w = inputs[layer].T @ grad
        if layer > 0:
            grad_a = grad @ model.weights[layer].T
            if path == "x":
                below = fastact.relu_backward(grad_a, kept[layer - 1])
                below_b = below.sum(axis=0)
            elif path == "mask":
                below = fastact.relu_backward_mask(grad_a, kept[layer - 1])
                below_b = below.sum(axis=0)
            else:
                below, below_b = fastact.bias_relu_backward(grad_a, kept[layer - 1])
        model.weights[layer] -= lr * grad_w
        model.biases[layer] -= lr * grad_b
        if layer > 0:
            grad, grad_b = below, below_b
    return sum(k.nbytes for k in kept)


def train(
    config: experiment.Config, data: experiment.Data, path: str, seed: int, epochs: int
) -> tuple[list[list[np.ndarray]], float]:
    """The weights after every epoch, and the seconds of SGD steps."""
    rng = np.random.default_rng(seed)
    sizes = (data.x_train.shape[1], *config.hidden, data.n_classes)
    model = experiment.init_mlp(sizes, experiment.relu_activation(), 0.0, rng)
    n = len(data.y_train)
    snapshots, seconds = [], 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        start = time.perf_counter()
        for first in range(0, n, config.batch_size):
            batch = order[first : first + config.batch_size]
            sgd_step(model, path, data.x_train[batch], data.y_train[batch], 0.05)
        seconds += time.perf_counter() - start
        snapshots.append([w.copy() for w in (*model.weights, *model.biases)])
    return snapshots, seconds


def same_weights(config: experiment.Config, epochs: int, seed: int = 0) -> bool:
    """Whether the x and mask paths give the same weights, bit for bit, after every epoch."""
    data = experiment.make_data(config)
    by_x, _ = train(config, data, "x", seed, epochs)
    by_mask, _ = train(config, data, "mask", seed, epochs)
    return all(
        all(
            np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in zip(p, q, strict=True)
        )
        for p, q in zip(by_x, by_mask, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer rounds: a smoke test"
    )
    args = parser.parse_args(argv)
    config = fastact.show_config(print_out=False)
    print(
        f"# {platform.processor() or platform.machine()}, simd={config['simd']}, "
        f"threads={fastact.get_num_threads()}, numpy {np.__version__}"
    )
    sizes = (1 << 14, 1 << 18) if args.quick else (1 << 18, 1 << 25)
    rounds = 5 if args.quick else 21
    for dtype in (np.float32, np.float64):
        for n in sizes:
            rows = kernel_rows(n, rounds, dtype)
            for row in rows:
                print(
                    f"{row['dtype']:8} n={row['n']:>9}  {row['case']:38} "
                    f"{row['GB/s']:7.2f} GB/s  {row['seconds'] * 1e3:9.3f} ms"
                )
            print("\n".join(target_rows(rows)))
        kept = ", ".join(f"{path} {b:g}" for path, b in bytes_kept(dtype).items())
        print(f"bytes kept for the backward pass per element, {np.dtype(dtype).name}: {kept}")
    cfg = experiment.QUICK if args.quick else experiment.Config()
    epochs = 3 if args.quick else 20
    data = experiment.make_data(cfg)
    timings: dict[str, list[float]] = {p: [] for p in PATHS}
    for _ in range(1 if args.quick else 3):
        for path in PATHS:
            timings[path].append(train(cfg, data, path, 0, epochs)[1])
    rng = np.random.default_rng(0)
    sizes = (data.x_train.shape[1], *cfg.hidden, data.n_classes)
    batch = slice(0, cfg.batch_size)
    for path in PATHS:
        model = experiment.init_mlp(sizes, experiment.relu_activation(), 0.0, rng)
        kept = sgd_step(model, path, data.x_train[batch], data.y_train[batch], 0.05)
        print(
            f"training path {path:10} {statistics.median(timings[path]):.3f} s / {epochs} epochs,"
            f" activations kept for the backward pass: {kept} bytes per batch of "
            f"{cfg.batch_size}"
        )
    print(f"x and mask paths: same weights after every epoch: {same_weights(cfg, epochs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
