"""Peers: the optional libraries a user would pick instead, each on one thread.

A peer is loaded only if it imports: a missing one is a skipped column with the reason,
never an error. Each binds its own names into a statement's namespace (tensors sharing
the arrays' memory, compiled loops, sessions bound to the arrays) and lists the dtypes it
does not compute in. Its statements go through the same edge-value check as fastact's
(``checks.py``) before anything is timed: one that disagrees is starred, one that raises
is left out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .statements import NEGATIVE_SLOPE

# numba and numexpr know no bfloat16 type, and onnxruntime's IO binding takes no ml_dtypes
# array. torch.from_numpy does not take one either, but a tensor of its bits reinterpreted
# as torch.bfloat16 shares the array's memory (torch_view); JAX takes it as it is.
NO_BFLOAT16 = "no bfloat16 type for NumPy arrays"

# By peer, by column, by function: the main table's statements.
PEER_STATEMENTS: dict[str, dict[str, dict[str, str]]] = {
    "torch": {
        "torch": {
            "relu": "torch.relu(tx)",
            "leaky_relu": "F.leaky_relu(tx, s)",
            "relu_backward": "torch.ops.aten.threshold_backward(tg, tx, 0)",
            "leaky_relu_backward": "torch.ops.aten.leaky_relu_backward(tg, tx, s, False)",
            "hardtanh": "F.hardtanh(tx, min_val, max_val)",
            "hardtanh_backward": "torch.ops.aten.hardtanh_backward(tg, tx, min_val, max_val)",
            "relu6": "F.relu6(tx)",
            "relu6_backward": "torch.ops.aten.hardtanh_backward(tg, tx, 0.0, 6.0)",
            "threshold": "F.threshold(tx, threshold, value)",
            "threshold_backward": "torch.ops.aten.threshold_backward(tg, tx, threshold)",
        },
    },
    "numba": {
        "numba": {
            "relu": "nb_relu(x, y)",
            "leaky_relu": "nb_leaky_relu(x, sx, y)",
            "relu_backward": "nb_relu_backward(g, x, y)",
            "leaky_relu_backward": "nb_leaky_relu_backward(g, x, sx, y)",
        },
        "nb vec": {
            "relu": "nbv_relu(x, out=y)",
            "leaky_relu": "nbv_leaky_relu(x, sx, out=y)",
            "relu_backward": "nbv_relu_backward(g, x, out=y)",
            "leaky_relu_backward": "nbv_leaky_relu_backward(g, x, sx, out=y)",
        },
    },
    "numexpr": {
        "numexpr": {
            "relu": 'ne.evaluate("where(x < 0, 0, x)", out=y)',
            "leaky_relu": 'ne.evaluate("where(x > 0, x, x * sx)", out=y)',
            "relu_backward": 'ne.evaluate("where(x <= 0, 0, g)", out=y)',
            "leaky_relu_backward": 'ne.evaluate("where(x > 0, g, g * sx)", out=y)',
        },
    },
    # Each a session run into the preallocated y (IO binding); see load_onnxruntime.
    "onnxruntime": {
        "ort": {
            "relu": "ort_relu()",
            "leaky_relu": "ort_leaky_relu()",
            "relu_backward": "ort_relu_backward()",
            "leaky_relu_backward": "ort_leaky_relu_backward()",
        },
    },
    # Each a jitted function on arrays already on the CPU device, its result waited for;
    # the backward passes are what jax.vjp of jax.nn's functions runs.
    "jax": {
        "jax": {
            "relu": "jax_relu(jx).block_until_ready()",
            "leaky_relu": "jax_leaky_relu(jx).block_until_ready()",
            "relu_backward": "jax_relu_backward(jg, jx).block_until_ready()",
            "leaky_relu_backward": "jax_leaky_relu_backward(jg, jx).block_until_ready()",
        },
    },
}
# By peer (the column), by function.
PEER_IN_PLACE: dict[str, dict[str, str]] = {"torch": {"relu": "torch.relu_(txi)"}}
# By peer, by direction: the PReLU table's statements (names from the peer's bind_prelu).
PEER_PRELU: dict[str, dict[str, str]] = {
    "torch": {
        "forward": "F.prelu(tx, tw)",
        "backward": "torch.autograd.grad(ty, (txr, twr), tg, retain_graph=True)",
    },
    "onnxruntime": {"forward": "ort_prelu()"},
}

Binder = Callable[[dict[str, np.ndarray]], dict[str, Any]]


@dataclass
class Peer:
    name: str
    version: str
    bind: Binder  # the names its statements use, for the arrays x, g, y, xi, gi
    unsupported: dict[str, str] = field(default_factory=dict)  # dtype name: why it is skipped
    threads: Callable[[int], AbstractContextManager[Any]] | None = None  # a block on n threads
    default_threads: int | None = None  # before the benchmark set one
    bind_prelu: Binder | None = None  # the PReLU table's names, for x, g, w (weights), y

    @property
    def columns(self) -> dict[str, dict[str, str]]:
        """Main-table statements, by column, then by function."""
        return PEER_STATEMENTS[self.name]

    @property
    def in_place(self) -> dict[str, str]:
        """In-place statements, by function."""
        return PEER_IN_PLACE.get(self.name, {})

    def supports(self, dtype: np.dtype) -> bool:
        return dtype.name not in self.unsupported


class ThreadCountRefused(Exception):
    """A library kept its thread count (numexpr beyond its NUMEXPR_MAX_THREADS)."""


def thread_setter(
    get: Callable[[], int], put: Callable[[int], Any]
) -> Callable[[int], AbstractContextManager[None]]:
    """A context manager factory: its block runs on n threads, then the count is restored;
    ``ThreadCountRefused`` where the library does not take n (its row would be mislabelled)."""

    @contextmanager
    def threads(count: int) -> Iterator[None]:
        before = get()
        put(count)
        if get() != count:
            put(before)
            raise ThreadCountRefused(count)
        try:
            yield
        finally:
            put(before)

    return threads


def load_torch() -> Peer:
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(1)

    def torch_view(arr: np.ndarray) -> Any:
        """A tensor on the array's memory; a bfloat16 one through its bits."""
        if arr.dtype.name == "bfloat16":
            return torch.from_numpy(arr.view(np.uint16)).view(torch.bfloat16)
        return torch.from_numpy(arr)

    def bind(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        tensors = {f"t{name}": torch_view(arr) for name, arr in arrays.items()}
        return {"torch": torch, "F": torch.nn.functional, **tensors}

    def bind_prelu(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        # The autograd graph is built once and replayed (retain_graph=True).
        txr = torch_view(arrays["x"]).requires_grad_(True)
        twr = torch_view(arrays["w"].copy()).requires_grad_(True)
        names = bind(arrays)
        return {**names, "txr": txr, "twr": twr, "ty": torch.nn.functional.prelu(txr, twr)}

    threads = thread_setter(torch.get_num_threads, torch.set_num_threads)
    return Peer(
        "torch",
        torch.__version__,
        bind,
        {},
        threads=threads,
        default_threads=default,
        bind_prelu=bind_prelu,
    )


def load_numba() -> Peer:
    import numba

    @numba.njit
    def nb_relu(x, out):
        for i in range(x.size):
            out[i] = 0 if x[i] < 0 else x[i]
        return out

    @numba.njit
    def nb_leaky_relu(x, s, out):
        for i in range(x.size):
            out[i] = x[i] if x[i] > 0 else x[i] * s
        return out

    @numba.njit
    def nb_relu_backward(g, x, out):
        for i in range(x.size):
            out[i] = 0 if x[i] <= 0 else g[i]
        return out

    @numba.njit
    def nb_leaky_relu_backward(g, x, s, out):
        for i in range(x.size):
            out[i] = g[i] if x[i] > 0 else g[i] * s
        return out

    # The same rules as element functions that numba compiles into NumPy ufuncs (NumPy
    # runs the loop), now, for the float32 and float64 signatures.
    unary = ["float32(float32)", "float64(float64)"]
    binary = ["float32(float32, float32)", "float64(float64, float64)"]

    @numba.vectorize(unary)
    def nbv_relu(v):
        return 0 if v < 0 else v

    @numba.vectorize(binary)
    def nbv_leaky_relu(v, s):
        return v if v > 0 else v * s

    @numba.vectorize(binary)
    def nbv_relu_backward(g, v):
        return 0 if v <= 0 else g

    @numba.vectorize(["float32(float32, float32, float32)", "float64(float64, float64, float64)"])
    def nbv_leaky_relu_backward(g, v, s):
        return g if v > 0 else g * s

    kernels = {
        "nb_relu": nb_relu,
        "nb_leaky_relu": nb_leaky_relu,
        "nb_relu_backward": nb_relu_backward,
        "nb_leaky_relu_backward": nb_leaky_relu_backward,
        "nbv_relu": nbv_relu,
        "nbv_leaky_relu": nbv_leaky_relu,
        "nbv_relu_backward": nbv_relu_backward,
        "nbv_leaky_relu_backward": nbv_leaky_relu_backward,
    }
    why = (
        "numba has no float16 arithmetic on the CPU (@njit raises NotImplementedError; "
        "the @vectorize ufuncs would compute in float32 and convert)"
    )
    # The loops compile on first call, per dtype: the edge-value check does that first.
    unsupported = {"float16": why, "bfloat16": NO_BFLOAT16}
    return Peer("numba", numba.__version__, lambda arrays: kernels, unsupported)


def load_numexpr() -> Peer:
    import numexpr

    default = numexpr.set_num_threads(1)  # returns the previous count
    why = "numexpr has no float16 type (it would compute in float32 and convert)"
    return Peer(
        "numexpr",
        numexpr.__version__,
        lambda arrays: {"ne": numexpr},
        {"float16": why, "bfloat16": NO_BFLOAT16},
        thread_setter(numexpr.get_num_threads, numexpr.set_num_threads),
        default,
    )


# onnxruntime: by function, the nodes of its model as (operator, inputs, output,
# attributes). Relu and LeakyRelu are one node each. ONNX has no gradient operators outside
# onnxruntime's training builds, so the backward passes are the graph a user writes for the
# function's rule: 0 where x <= 0 else g; g where x > 0 else g * s. "zero" and "s" are
# constants of the input's dtype.
ONNX_NODES: dict[str, tuple[tuple[str, tuple[str, ...], str, dict[str, float]], ...]] = {
    "relu": (("Relu", ("x",), "y", {}),),
    "leaky_relu": (("LeakyRelu", ("x",), "y", {"alpha": NEGATIVE_SLOPE}),),
    "relu_backward": (
        ("LessOrEqual", ("x", "zero"), "dead", {}),
        ("Where", ("dead", "zero", "g"), "y", {}),
    ),
    "leaky_relu_backward": (
        ("Greater", ("x", "zero"), "live", {}),
        ("Mul", ("g", "s"), "scaled", {}),
        ("Where", ("live", "g", "scaled"), "y", {}),
    ),
}
# An opset and IR version every onnxruntime of the last years reads (LessOrEqual: 12+).
ONNX_OPSET, ONNX_IR_VERSION = 17, 8


def onnx_model(
    nodes: Iterable[tuple[str, tuple[str, ...], str, dict[str, float]]],
    inputs: dict[str, tuple[np.dtype, list[str | int]]],
    constants: dict[str, np.ndarray],
    output: tuple[np.dtype, list[str | int]],
) -> bytes:
    """A serialised ONNX model of ``nodes``, with named inputs (dtype, dims; a str dim is
    symbolic), constants and the output ``y``; only the constants the nodes use."""
    from onnx import helper, numpy_helper

    def value(name: str, dtype: np.dtype, dims: list[str | int]) -> Any:
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), dims)

    nodes = list(nodes)
    used = {name for _, names, _, _ in nodes for name in names}
    graph = helper.make_graph(
        [helper.make_node(op, list(names), [out], **attrs) for op, names, out, attrs in nodes],
        "fastact_bench",
        [value(name, *spec) for name, spec in inputs.items() if name in used],
        [value("y", *output)],
        [numpy_helper.from_array(arr, name) for name, arr in constants.items() if name in used],
    )
    opsets = [helper.make_opsetid("", ONNX_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ONNX_IR_VERSION)
    return model.SerializeToString()


class SessionCall:
    """One run of an onnxruntime session, IO-bound to arrays it reads and the output it
    writes; calling it runs the session and returns that output."""

    __slots__ = ("_binding", "_out", "_run")

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], out: np.ndarray) -> None:
        binding = session.io_binding()
        for name, arr in {**inputs, "y": out}.items():
            # IO binding hands onnxruntime a pointer: a view with gaps would be misread.
            if not arr.flags.c_contiguous:
                raise ValueError(f"onnxruntime binds C-contiguous arrays only ({name})")
        for name, arr in inputs.items():
            binding.bind_input(name, "cpu", 0, arr.dtype, arr.shape, arr.ctypes.data)
        binding.bind_output("y", "cpu", 0, out.dtype, out.shape, out.ctypes.data)
        self._run, self._binding, self._out = session.run_with_iobinding, binding, out

    def __call__(self) -> np.ndarray:
        self._run(self._binding)
        return self._out


class Unavailable:
    """Stands for a statement's callable that could not be built: calling it raises why,
    so the edge-value check reports the column and leaves it out."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self) -> None:
        raise self.error


def load_onnxruntime() -> Peer:
    import onnx  # noqa: F401 (builds the models; without it the peer is skipped)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    sessions: dict[Any, Any] = {}  # by (model, dtype, rank): a session serves every size

    def session(key: Any, model: Callable[[], bytes]) -> Any:
        if key not in sessions:
            try:
                sessions[key] = onnxruntime.InferenceSession(
                    model(), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # e.g. no kernel for this dtype: reported by the check
                sessions[key] = exc
        return sessions[key]

    def call(key: Any, model: Callable[[], bytes], inputs: dict[str, np.ndarray], out: Any) -> Any:
        found = session(key, model)
        if isinstance(found, Exception):
            return Unavailable(found)
        try:
            return SessionCall(found, inputs, out)
        except ValueError as exc:
            return Unavailable(exc)

    def bind(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        x, g, y = arrays["x"], arrays["g"], arrays["y"]
        spec: tuple[np.dtype, list[str | int]] = (x.dtype, [f"d{i}" for i in range(x.ndim)])
        constants = {"zero": np.zeros((), x.dtype), "s": np.array(NEGATIVE_SLOPE, x.dtype)}
        names = {}
        for func, nodes in ONNX_NODES.items():
            model = partial(onnx_model, nodes, {"x": spec, "g": spec}, constants, spec)
            reads_g = any("g" in node[1] for node in nodes)
            inputs = {"x": x, "g": g} if reads_g else {"x": x}
            names[f"ort_{func}"] = call((func, x.dtype.str, x.ndim), model, inputs, y)
        return names

    def bind_prelu(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        x, w, y = arrays["x"], arrays["w"], arrays["y"]
        # The weights broadcast over the dimensions after the channel axis (axis 1).
        slope = w.reshape(w.shape + (1,) * (x.ndim - 2))
        dims: list[str | int] = ["n", w.size, *(f"d{i}" for i in range(2, x.ndim))]
        nodes = [("PRelu", ("x", "slope"), "y", {})]
        model = partial(
            onnx_model, nodes, {"x": (x.dtype, dims)}, {"slope": slope}, (x.dtype, dims)
        )
        return {
            "ort_prelu": call(("prelu", x.dtype.str, x.shape[1:], w.tobytes()), model, {"x": x}, y)
        }

    return Peer(
        "onnxruntime",
        onnxruntime.__version__,
        bind,
        {"bfloat16": NO_BFLOAT16},
        bind_prelu=bind_prelu,
    )


# XLA's CPU backend reads these when it starts: one intra-op thread, no Eigen thread pool.
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def load_jax() -> Peer:
    started_before = "jax" in sys.modules
    saved = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{saved or ''} {XLA_ONE_THREAD}".strip()
    try:
        import jax

        # float64 arrays stay float64 (JAX otherwise computes them in float32); a setting of
        # the whole process, as JAX has no other way.
        jax.config.update("jax_enable_x64", True)
        cpu = jax.devices("cpu")[0]  # starts the backend while XLA_FLAGS holds the above
    finally:
        if saved is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = saved

    def vjp(f: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
        """The backward pass autodiff runs for ``f``: grad_output g to the input's gradient."""
        return lambda g, x: jax.vjp(f, x)[1](g)[0]

    def leaky_relu(x: Any) -> Any:
        return jax.nn.leaky_relu(x, NEGATIVE_SLOPE)

    compiled = {
        "jax_relu": jax.jit(jax.nn.relu),
        "jax_leaky_relu": jax.jit(leaky_relu),
        "jax_relu_backward": jax.jit(vjp(jax.nn.relu)),
        "jax_leaky_relu_backward": jax.jit(vjp(leaky_relu)),
    }

    def bind(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        jx, jg = jax.device_put(arrays["x"], cpu), jax.device_put(arrays["g"], cpu)
        # Compiled here, for this shape and dtype (a first call takes milliseconds): the
        # timing's warm-up call would otherwise calibrate on the compilation.
        for name, function in compiled.items():
            operands = (jg, jx) if name.endswith("_backward") else (jx,)
            try:
                function(*operands).block_until_ready()
            except Exception:  # e.g. a dtype XLA lacks: the edge-value check reports it
                pass
        return {**compiled, "jx": jx, "jg": jg}

    # Imported earlier in this process, its backend may have started with other flags.
    version = jax.__version__ + (" (imported earlier: threads as set then)" * started_before)
    return Peer("jax", version, bind)


PEER_LOADERS: dict[str, Callable[[], Peer]] = {
    "torch": load_torch,
    "numba": load_numba,
    "numexpr": load_numexpr,
    "onnxruntime": load_onnxruntime,
    "jax": load_jax,
}


def load_peers(names: Iterable[str]) -> tuple[list[Peer], dict[str, str]]:
    """The peers that import, and a version (or why not) for every name asked for."""
    peers, versions = [], {}
    for name in names:
        try:
            peer = PEER_LOADERS[name]()
        except ImportError as exc:
            versions[name] = f"skipped ({exc})"
            continue
        except Exception as exc:  # installed but broken (a jaxlib of another version)
            versions[name] = f"skipped ({type(exc).__name__}: {exc})"
            continue
        peers.append(peer)
        versions[name] = peer.version
    return peers, versions
