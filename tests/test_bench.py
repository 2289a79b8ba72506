"""The benchmark (the README's main job) runs and writes its report, from each of its entry
points: ``python bench/run.py``, ``python -m fastact bench`` and ``fastact.bench()``."""

import dataclasses
import json
import subprocess
import sys
import timeit
from pathlib import Path

import numpy as np
import pytest
from bitwise import requires_compiled

import fastact
from fastact._bench import checks, cli, peers, sections, statements, timing
from fastact._bench.timing import MODES, Settings
from fastact._functions import FUNCTIONS

try:  # bfloat16 is benchmarked when ml_dtypes is installed
    import ml_dtypes
except ImportError:
    ml_dtypes = None

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.slow
def test_quick_benchmark_runs(tmp_path):
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--peers", "", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "relu_backward" in result.stdout
    data = json.loads(report.read_text())
    meta = data["metadata"]
    # The child inherits FASTACT_DISABLE_COMPILED, if set, as this process did.
    assert meta["fastact"]["compiled"] is fastact.COMPILED
    assert isinstance(meta["cpu_flags"], list)
    assert "env" in meta["threads"]

    # The main table: every dtype by default, every function, fastact and a roofline.
    dtypes = {"float16", "float32", "float64"} | ({"bfloat16"} if ml_dtypes else set())
    assert {case["dtype"] for case in data["cases"]} == dtypes
    # The rows come from the function table: every function has its row.
    assert {case["function"] for case in data["cases"]} == {f.name for f in FUNCTIONS}
    for case in data["cases"]:
        assert case["competitors"]["fastact"]["exact"] == "yes"
        assert case["competitors"]["alloc"]["allocates"] is True
        assert case["competitors"][case["roofline"]]["exact"] == "roofline"
    relu = next(c for c in data["cases"] if (c["function"], c["dtype"]) == ("relu", "float32"))
    # x * (x > 0) differs from ReLU on NaN and -inf: it must be flagged, not passed.
    assert relu["competitors"]["mul"]["exact"].startswith("no")

    # In place: only the functions whose repeated call is idempotent.
    assert {case["function"] for case in data["in_place"]} == {
        "relu",
        "relu_grad",
        "leaky_relu_grad",
        "relu_backward",
    }
    for case in data["in_place"]:
        assert case["competitors"]["fastact"]["allocates"] is False

    patterns = {name for row in data["input_patterns"] for name in row["over_random"]}
    assert patterns == {"random", "sorted", "half NaN"}
    assert {row["layout"] for row in data["strided"]} == {"x2[::2]", "x2[:, :c]", "x2.T"}
    assert all(row["out_over_contiguous"] > 0 for row in data["strided"])
    # The size sweep: every size, float32 and float64, each against np.copyto at least.
    sweep = data["sweep"]
    assert {row["dtype"] for row in sweep} == {"float32", "float64"}
    assert {row["n"] for row in sweep} == {2**e for e in data["settings"]["sweep_exponents"]}
    assert all(row["of_better"] == min(row["over"].values()) for row in sweep)
    # No peers asked for: no peer column, so no fastest peer.
    assert all(case["fastest_peer"] is None for case in data["cases"])
    assert data["metadata"]["cpu"] in result.stdout
    assert {row["n"] for row in data["call_overhead"]} == {1, 16, 256}
    # Dead units: every dtype, fastact's mask the reference's, against a read roofline.
    assert {row["dtype"] for row in data["dead_units"]} == dtypes
    for row in data["dead_units"]:
        assert row["exact"]["fastact"] == "yes"
        assert row["exact"]["np"] == "yes"
        assert row["of_roofline"] > 0

    rows = data["thread_scaling"]
    assert {row["threads"] for row in rows} >= {1}
    assert all(row["exact"] == "yes" for row in rows if row["implementation"] == "fastact")


def test_bench_docstring_names_every_section():
    for name in cli.SECTIONS:
        assert name in fastact.bench.__doc__, name


def test_import_fastact_loads_no_benchmark_code():
    # A fresh interpreter: this one has imported the benchmark already.
    code = (
        "import sys, fastact; "
        "heavy = ('fastact._bench', 'matplotlib', 'torch', 'numba', 'numexpr', 'onnx', "
        "'onnxruntime', 'jax'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
        "m.startswith('fastact._bench')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
    assert fastact.bench.__module__ == "fastact._bench"
    assert "bench" not in fastact.__all__  # a star import must not load it either


def test_bench_function_returns_the_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the command line's default JSON would go
    report = fastact.bench(
        mode="quick",
        dtypes=["float32"],
        functions=["relu"],
        peers=[],
        sections=["main", "strided"],
        sizes=[6],
    )
    assert [case["n"] for case in report["cases"]] == [64]
    assert report["cases"][0]["competitors"]["fastact"]["exact"] == "yes"
    assert {row["layout"] for row in report["strided"]} == set(sections.LAYOUTS)
    out = capsys.readouterr().out
    assert "relu" in out and report["metadata"]["cpu"] in out
    assert not list(tmp_path.iterdir())  # nothing written unless asked
    written = tmp_path / "out" / "report.json"
    report = fastact.bench(
        mode="quick",
        dtypes=["float32"],
        functions=["relu"],
        peers=[],
        sections=["strided"],
        repeat=1,
        target_ms=0.1,
        json=written,
    )
    settings = json.loads(written.read_text())["settings"]
    assert (settings["repeat"], settings["target"]) == (1, 0.0001)


# A bench run small enough to finish in a second, were an error to let it start.
SMALL = ["--quick", "--dtypes", "float32", "--functions", "relu", "--sizes", "10"]
SMALL += ["--sections", "main", "--peers", "", "--no-plots"]


def usage_error(capsys, argv, option):
    """The command line's error for argv: status 2, the option named, before any table."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(SMALL + argv, prog="bench")
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # no header, no table: nothing was timed
    assert f"bench: error: argument {option}" in err
    return err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--repeat", "0", "at least 1"),  # was: the mode's default, silently
        ("--repeat", "-1", "at least 1"),  # was: a crash after the first tables
        ("--repeat", "2.5", "not an integer"),
        ("--target-ms", "-5", "between 0.001 and"),
        ("--target-ms", "0", "between 0.001 and"),
        ("--target-ms", "nan", "between 0.001 and"),
        ("--target-ms", "inf", "between 0.001 and"),
        ("--target-ms", "fast", "not a number"),
        ("--sizes", "40", "between 0 and 28"),
        ("--threads", "0", "between 1 and 4096"),
        # An empty list would run empty tables (only --peers takes one: no peers).
        ("--sections", "", "name at least one of"),
        ("--sections", ",,", "name at least one of"),
        ("--dtypes", "", "name at least one of"),
        ("--functions", "", "name at least one of"),
    ],
)
def test_a_bad_value_is_a_usage_error_before_anything_runs(
    capsys, monkeypatch, tmp_path, option, value, message
):
    monkeypatch.chdir(tmp_path)  # where the default JSON would go
    monkeypatch.setattr(cli, "run", lambda args: pytest.fail("the run started"))
    assert message in usage_error(capsys, [option, value], option)
    assert not list(tmp_path.iterdir())


def test_a_name_given_twice_runs_once():
    argv = ["--dtypes", "float32,float64,float32", "--functions", "relu,relu", "--peers", ""]
    args = cli.parse_args(cli.build_parser(None, "bench"), argv)
    assert (args.dtypes, args.functions, args.peers) == (["float32", "float64"], ["relu"], [])


def test_an_unwritable_plots_folder_is_a_usage_error_before_anything_runs(
    capsys, monkeypatch, tmp_path
):
    (tmp_path / "file.txt").write_text("not a folder")
    monkeypatch.setattr(cli, "run", lambda args: pytest.fail("the run started"))
    path = tmp_path / "file.txt"
    small = [arg for arg in SMALL if arg != "--no-plots"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*small, "--json", str(tmp_path / "x.json"), "--plots", str(path)])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and f"argument --plots: cannot write into {path}: " in err
    with pytest.raises(SystemExit) as exit_info:
        fastact.bench(plots=path)
    assert exit_info.value.code == 2
    assert "argument --plots" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_good_values_are_the_run_settings():
    args = cli.parse_args(cli.build_parser(None, "bench"), ["--repeat", "1", "--target-ms", "0.5"])
    mode, cfg = cli.settings_from(args)
    assert (mode, cfg.repeat, cfg.large_repeat, cfg.target) == ("default", 1, 1, 0.0005)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file.txt/x.json", "file.txt is not a folder"),  # a regular file fails root too
        ("file.txt/deeper/x.json", "file.txt is not a folder"),
        ("folder", "it is a folder"),
        # Looking it up fails (ENAMETOOLONG, for root too; an unsearchable folder alike).
        (f"{'n' * 300}/x.json", "it cannot be looked up"),
    ],
)
def test_an_unwritable_json_path_is_a_usage_error_before_anything_runs(
    capsys, monkeypatch, tmp_path, where, message
):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    monkeypatch.setattr(cli, "run", lambda args: pytest.fail("the run started"))
    path = tmp_path / where
    err = usage_error(capsys, ["--json", str(path)], "--json")
    assert f"cannot write {path}: " in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]


def test_the_default_json_path_is_checked_too(capsys, monkeypatch, tmp_path):
    """In a folder where nothing can be made, the default JSON fails before the run."""
    (tmp_path / "fastact-bench").write_text("a file where the folder would be")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "run", lambda args: pytest.fail("the run started"))
    err = usage_error(capsys, [], "--json")
    assert f"cannot write {cli.PACKAGE_JSON}: fastact-bench is not a folder" in err


def test_checking_the_json_path_leaves_nothing_behind(tmp_path):
    """The folders made to try the path, and the file, are removed; an existing file is
    kept as it was, until the report replaces it."""
    path = tmp_path / "new" / "deeper" / "x.json"
    assert cli.write_problem(path) is None
    assert not list(tmp_path.iterdir())
    path = tmp_path / "old.json"
    path.write_text("{}")
    assert cli.write_problem(path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]
    assert path.read_text() == "{}"


def test_bench_function_rejects_bad_arguments_as_the_command_line(capsys, tmp_path):
    """A bad mode or value: SystemExit(2) and the usage message, as the docstring says,
    before anything is timed."""
    (tmp_path / "file.txt").write_text("not a folder")
    bad = [
        ({"mode": "fast"}, "mode must be one of"),
        ({"repeat": 0}, "argument --repeat"),
        ({"target_ms": -5}, "argument --target-ms"),
        ({"sizes": [-1, 2]}, "argument --sizes"),
        ({"json": tmp_path / "file.txt" / "x.json"}, "argument --json"),
    ]
    for kwargs, message in bad:
        with pytest.raises(SystemExit) as exit_info:
            fastact.bench(**kwargs)
        assert exit_info.value.code == 2, kwargs
        out, err = capsys.readouterr()
        assert out == "" and "fastact.bench: error: " + message in err, kwargs


@requires_compiled
def test_thresholds_at_their_defaults_are_measured_for_the_run(monkeypatch):
    """A threshold neither the environment nor a tuned file sets is measured before the
    tables (for that run only); one that is set is kept."""
    from fastact import _kernels, _tuning

    before = _kernels._thresholds()
    sources = {
        "stream_min_bytes": "default",
        "transposed_stream_min_bytes": "tuned: F",
        "parallel_min_bytes": "env: X",
    }
    in_force = {name: (value, sources[name]) for name, value in before.items()}
    monkeypatch.setattr(_kernels, "thresholds", lambda: in_force)
    measured = {
        "stream_min_bytes": 12345 << 10,
        "transposed_stream_min_bytes": 99 << 10,
        "parallel_min_bytes": 678 << 10,
    }
    monkeypatch.setattr(_tuning, "calibrate", lambda: dict(measured))
    try:
        cli.measure_default_thresholds()
        assert _kernels._thresholds() == {**before, "stream_min_bytes": 12345 << 10}
        monkeypatch.undo()
        assert _kernels.thresholds()["stream_min_bytes"] == (12345 << 10, cli.MEASURED_SOURCE)
    finally:
        _kernels._load_thresholds()  # the environment's, the tuned file's or the defaults


def test_no_thresholds_to_measure_on_the_reference_path(monkeypatch):
    """With the compiled loops disabled there is nothing to measure, and no error."""
    monkeypatch.setattr(cli, "_kernels", None)
    monkeypatch.setattr(cli._tuning, "calibrate", lambda: pytest.fail("calibrated"))
    cli.measure_default_thresholds()


@pytest.mark.slow
def test_package_entry_point_runs(tmp_path):
    report = tmp_path / "out" / "bench.json"
    command = [sys.executable, "-m", "fastact", "bench", "--quick", "--peers", ""]
    command += ["--dtypes", "float64", "--functions", "relu,relu_backward"]
    command += ["--sections", "sweep", "--sweep-sizes", "12", "--json", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert [(row["function"], row["n"]) for row in data["sweep"]] == [
        ("relu", 4096),
        ("relu_backward", 4096),
    ]
    assert "Size sweep" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fastact", "bench", "--peers", "tensorflow"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "tensorflow" in bad.stderr


@pytest.mark.parametrize(
    ("name", "error", "reason"),
    [
        ("onnxruntime", ImportError("No module named 'onnxruntime'"), "No module named"),
        # Installed but broken (a jaxlib of another version): skipped with the reason too,
        # rather than ending a run that did not ask for it.
        ("jax", RuntimeError("jaxlib is version 0.1"), "RuntimeError: jaxlib is version 0.1"),
    ],
)
def test_a_peer_that_does_not_load_is_a_skipped_column(monkeypatch, name, error, reason):
    def load():
        raise error

    monkeypatch.setitem(peers.PEER_LOADERS, name, load)
    loaded, versions = peers.load_peers([name])
    assert loaded == []
    assert versions[name].startswith(f"skipped ({reason}")


@requires_compiled
def test_tuning_restores_each_threshold_with_its_source(monkeypatch):
    # A measurement runs with thresholds of its own; afterwards each one is back with the
    # source it had (the environment's, not "set").
    from fastact import _kernels, _tuning

    before = _kernels.thresholds()
    try:
        _kernels._set_thresholds(stream_min_bytes=1 << 20, source="env: X")
        monkeypatch.setattr(_tuning, "STREAM_SWEEP_KIB", (1024,))
        monkeypatch.setattr(_tuning, "TRANSPOSED_SWEEP_KIB", (256,))
        monkeypatch.setattr(_tuning, "THREAD_SWEEP_KIB", (64,))
        _tuning.calibrate(repeat=1)
        assert _kernels.thresholds()["stream_min_bytes"] == (1 << 20, "env: X")
        assert _kernels.thresholds()["parallel_min_bytes"] == before["parallel_min_bytes"]
    finally:
        _kernels._load_thresholds()


def test_a_thread_count_a_library_refuses_is_no_row(monkeypatch):
    # numexpr above NUMEXPR_MAX_THREADS keeps its count: a row would time the wrong one.
    counts = []
    control = peers.thread_setter(lambda: min(counts[-1] if counts else 1, 64), counts.append)
    with control(8):
        assert counts == [8]
    with pytest.raises(peers.ThreadCountRefused), control(4096):
        pytest.fail("the block ran")
    assert counts[-2:] == [4096, 1]  # tried, then restored
    # The thread-scaling table leaves such a count out: fastact's control stands in for a
    # library that takes at most 64 threads.
    taken = [1]
    capped = peers.thread_setter(lambda: taken[-1], lambda n: taken.append(min(n, 64)))
    monkeypatch.setattr(sections, "thread_controls", lambda loaded: {"fastact": capped})
    funcs = [statements.FUNCTIONS["relu"]]
    cfg = dataclasses.replace(MODES["quick"], thread_exponents=(10,))
    verdicts = sections.check_threads(funcs, [])
    rows = sections.thread_scaling(funcs, [], [1, 65], cfg, verdicts)
    assert {(row["implementation"], row["threads"]) for row in rows} == {("fastact", 1)}


def edge_verdicts(peer, dtype, names=("relu", "leaky_relu", "relu_backward")):
    funcs = [statements.FUNCTIONS[name] for name in names]
    return sections.check_exactness(funcs, np.dtype(dtype), [peer])


def test_a_peer_that_disagrees_is_reported_and_still_timed():
    # A peer whose relu is np.maximum: it turns -0.0 into +0.0.
    peer = peers.Peer("fake", "0", lambda arrays: {})
    fake = {"fake": {"relu": "np.maximum(x, 0, out=y)", "leaky_relu": "1 / 0"}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(peers.PEER_STATEMENTS, "fake", fake)
        verdicts = edge_verdicts(peer, "float32", ("relu", "leaky_relu"))
        relu = verdicts["main", "relu", "fake"]
        assert relu.exact.startswith("no (") and not relu.failed
        # One that raises is left out, with the reason.
        assert verdicts["main", "leaky_relu", "fake"].exact.startswith("error (ZeroDivisionError")
        cfg = Settings(repeat=1, large_repeat=1, target=1e-4, large_sample=1.0, exponents=(5,))
        funcs = [statements.FUNCTIONS["relu"], statements.FUNCTIONS["leaky_relu"]]
        cases = sections.run_cases(funcs, np.dtype(np.float32), [peer], cfg, verdicts)
    by_function = {c.function.name: c for c in cases if c.table == statements.MAIN}
    assert "fake" in by_function["relu"].timings
    assert by_function["relu"].fastest_peer()[0] == "fake"
    assert "fake" not in by_function["leaky_relu"].timings


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnxruntime_peer_writes_into_the_output(dtype):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    peer = peers.load_onnxruntime()
    verdicts = edge_verdicts(peer, dtype)
    for name in ("relu", "leaky_relu", "relu_backward"):
        verdict = verdicts["main", name, "ort"]
        assert not verdict.failed, verdict.exact
        assert not verdict.allocates  # IO binding: the session wrote into y
    # Relu's rule is fastact's, -0.0 and NaN included.
    assert verdicts["main", "relu", "ort"].exact == "yes"
    # A view with gaps cannot be bound: reported as an error, not misread.
    x = np.zeros(8, dtype)[::2]
    bound = peer.bind({"x": x, "g": x, "y": np.empty(4, dtype)})
    with pytest.raises(ValueError, match="C-contiguous"):
        bound["ort_relu"]()


def test_onnxruntime_prelu_matches_the_reference():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    verdicts = sections.check_prelu([peers.load_onnxruntime()], [np.dtype(np.float32)])
    assert verdicts["prelu", "forward", "onnxruntime"].exact == "yes"
    assert verdicts["prelu", "forward", "fastact"].exact == "yes"


@pytest.mark.skipif(ml_dtypes is None, reason="bfloat16 needs ml_dtypes")
def test_torch_peer_takes_bfloat16_on_the_arrays_memory():
    pytest.importorskip("torch")
    peer = peers.load_torch()
    bf16 = np.dtype(ml_dtypes.bfloat16)
    assert peer.supports(bf16)
    x = np.array([-2.0, -0.0, 0.5, np.nan], bf16)
    ns = peer.bind({"x": x, "y": np.empty_like(x)})
    x[0] = 3.0  # a view, not a copy
    assert checks.as_numpy(ns["tx"]).dtype == bf16
    assert checks.as_numpy(ns["tx"])[0] == 3.0
    got = checks.as_numpy(ns["torch"].relu(ns["tx"]))  # fastact's contract: torch's bits
    assert got.dtype == bf16
    assert got.view(np.uint16)[:3].tolist() == fastact.relu(x).view(np.uint16)[:3].tolist()
    assert got.view(np.uint16)[0] == 0x4040 and np.isnan(got[3])
    names = ("relu", "leaky_relu", "relu_backward", "leaky_relu_backward")
    verdicts = sections.check_exactness([statements.FUNCTIONS[n] for n in names], bf16, [peer])
    assert {verdicts[key].exact for key in verdicts if "torch" in key} == {"yes"}
    prelu = sections.check_prelu([peer], [bf16])
    assert prelu["prelu", "forward", "torch", "bfloat16"].exact == "yes"
    assert prelu["prelu", "backward", "torch", "bfloat16"].exact == "yes"


# JAX in a child process: once imported, it warns at every os.fork() (as an error here),
# and other tests fork.
JAX_CHECK = """
import json, sys
import numpy as np
from fastact._bench import checks, peers, sections, statements
peer = peers.load_jax()
dtype = np.dtype(sys.argv[1])
names = ("relu", "leaky_relu", "relu_backward")
verdicts = sections.check_exactness([statements.FUNCTIONS[n] for n in names], dtype, [peer])
x, g = checks.edge_operands(dtype)
ns = statements.namespace(x, g, [peer])
results = {}
for name in names:
    got = checks.as_numpy(eval(peers.PEER_STATEMENTS["jax"]["jax"][name], ns))
    verdict = verdicts["main", name, "jax"]
    results[name] = [verdict.failed, verdict.allocates, got.dtype.name]
print(json.dumps(results))
"""


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_jax_peer_runs_in_the_dtype_it_is_given(dtype):
    pytest.importorskip("jax")
    child = subprocess.run(
        [sys.executable, "-c", JAX_CHECK, dtype],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    results = json.loads(child.stdout.strip().splitlines()[-1])
    # Every statement ran (none left out) and returned its result in the input's dtype:
    # float64 stays float64 (x64 enabled), so the comparison is of the same work.
    assert results == {name: [False, True, dtype] for name in results}
    assert set(results) == {"relu", "leaky_relu", "relu_backward"}


@pytest.mark.parametrize("rewarm", [False, True])
def test_samples_are_interleaved_and_rewarmed_when_asked(rewarm):
    # Each statement counts its calls: a warm-up call and the calibration's samples
    # (two single calls, then samples that at least double: 3 to 3 + 2 * number calls),
    # then per round one sample of `number` calls, and with rewarm an untimed one before.
    calls = {"a": 0, "b": 0}
    cfg = Settings(repeat=5, large_repeat=5, target=1e-4, large_sample=1.0)
    timers = {k: timeit.Timer(f"calls[{k!r}] += 1", globals={"calls": calls}) for k in calls}
    timings = timing.time_interleaved(timers, cfg, rewarm=rewarm)
    fields = timing.timing_fields(timings)
    for key, t in timings.items():
        assert len(t.samples) == cfg.repeat and all(s > 0 for s in t.samples)
        calibration = calls[key] - cfg.repeat * t.number * (2 if rewarm else 1)
        assert 3 <= calibration <= 3 + 2 * t.number, (key, calibration, t.number)
        assert fields["calls_per_sample"][key] == t.number
        assert fields["samples_s"][key] == t.samples
        assert fields["median_s"][key] == t.median


def test_calibration_counts_from_the_faster_of_two_calls():
    # A machine coming back from a pause: the first timed call runs slow (3 ms), the next
    # at its speed (1.2 ms per call). With a 2 ms target a sample is two calls; counted
    # from the slow call alone it would be one.
    class RampTimer:
        def __init__(self):
            self.single_calls = iter([0.005, 0.003, 0.0012])

        def timeit(self, number):
            return next(self.single_calls) if number == 1 else 0.0012 * number

    number, elapsed = timing.calibrate(RampTimer(), 0.002)
    assert (number, elapsed) == (2, 0.0024)
