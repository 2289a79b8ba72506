"""The streaming and thread thresholds: where they come from, and exact results either way."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bitwise import (
    FUNCTIONS,
    INT_DTYPES,
    KERNEL_FLOAT_DTYPES,
    args_for,
    assert_bitwise_equal,
    requires_compiled,
    sample,
    thresholds,
)

import fastact
from fastact import _reference, _tuning

ENV_VARS = (*_tuning.ENV_VARS.values(), "XDG_CACHE_HOME")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """An empty cache folder, and no threshold variables."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def _config_in_child(env):
    code = "import json, fastact; print(json.dumps(fastact.show_config(print_out=False)))"
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "PYTHONWARNINGS": "default", **env},
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def _record(stream=12 << 20, parallel=200 << 10, transposed=768 << 10):
    return {
        "stream_min_bytes": stream,
        "transposed_stream_min_bytes": transposed,
        "parallel_min_bytes": parallel,
        "measured": {},
    }


def test_defaults_without_a_file(cache_home):
    in_force = _tuning.thresholds_in_force()
    assert in_force == {
        "stream_min_bytes": (64 << 20, "default"),
        "transposed_stream_min_bytes": (2 << 20, "default"),
        "parallel_min_bytes": (512 << 10, "default"),
    }


def test_tuned_file_round_trip(cache_home):
    path = _tuning.save_tuned(_record())
    assert path == _tuning.tuned_path()
    assert path.parent == cache_home / "fastact"
    assert _tuning.load_tuned(path) == {
        "stream_min_bytes": 12 << 20,
        "transposed_stream_min_bytes": 768 << 10,
        "parallel_min_bytes": 200 << 10,
    }
    source = f"tuned: {path}"
    assert _tuning.thresholds_in_force() == {
        "stream_min_bytes": (12 << 20, source),
        "transposed_stream_min_bytes": (768 << 10, source),
        "parallel_min_bytes": (200 << 10, source),
    }
    stored = json.loads(path.read_text())
    assert stored["machine"] == _tuning.machine_key() and stored["format"] == _tuning.FORMAT


def test_unmeasured_threshold_keeps_the_default(cache_home):
    _tuning.save_tuned(_record(parallel=None))
    in_force = _tuning.thresholds_in_force()
    assert in_force["stream_min_bytes"][0] == 12 << 20
    assert in_force["parallel_min_bytes"] == (512 << 10, "default")


def test_a_file_from_before_a_threshold_existed_keeps_its_default(cache_home):
    record = _record()
    del record["transposed_stream_min_bytes"]
    _tuning.save_tuned(record)
    in_force = _tuning.thresholds_in_force()
    assert in_force["stream_min_bytes"][0] == 12 << 20
    assert in_force["transposed_stream_min_bytes"] == (2 << 20, "default")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        "[]",
        '{"format": 1}',
        '{"format": 99, "stream_min_bytes": 1}',
        '{"format": 1, "machine": "another-cpu", "stream_min_bytes": 1}',
        "\x00\xff",
    ],
)
def test_corrupt_or_foreign_file_is_ignored(cache_home, text):
    path = _tuning.tuned_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("latin-1"))
    assert _tuning.load_tuned(path) == {}
    assert {v[1] for v in _tuning.thresholds_in_force().values()} == {"default"}


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None])
def test_bad_values_in_the_file_are_ignored(cache_home, bad):
    record = _record()
    path = _tuning.save_tuned(record)
    data = json.loads(path.read_text())
    data["stream_min_bytes"] = data["transposed_stream_min_bytes"] = bad
    data["parallel_min_bytes"] = 0 if bad is not None else bad
    path.write_text(json.dumps(data))
    assert _tuning.load_tuned(path) == {}


@requires_compiled  # the child's show_config reports thresholds of the compiled driver
def test_unwritable_cache_is_an_error_to_tune_only(cache_home, monkeypatch):
    blocker = cache_home / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "below"))
    with pytest.raises(OSError):
        _tuning.save_tuned(_record())
    assert {v[1] for v in _tuning.thresholds_in_force().values()} == {"default"}
    config, stderr = _config_in_child({"XDG_CACHE_HOME": str(blocker / "below")})
    assert config["stream_min_bytes_source"] == "default"
    assert "Warning" not in stderr


def test_environment_wins_over_the_file(cache_home, monkeypatch):
    _tuning.save_tuned(_record())
    monkeypatch.setenv("FASTACT_STREAM_MIN_BYTES", "4096")
    in_force = _tuning.thresholds_in_force()
    assert in_force["stream_min_bytes"] == (4096, "env: FASTACT_STREAM_MIN_BYTES")
    assert in_force["parallel_min_bytes"][1].startswith("tuned: ")


def test_thresholds_beyond_any_size_mean_never(cache_home, monkeypatch):
    # Larger than a Py_ssize_t: capped at the largest, which no array reaches, rather than
    # an OverflowError when the loops are given it (at import).
    huge = 10**20
    path = _tuning.save_tuned(_record(parallel=huge))
    assert _tuning.load_tuned(path)["parallel_min_bytes"] == sys.maxsize
    monkeypatch.setenv("FASTACT_STREAM_MIN_BYTES", str(huge))
    in_force = _tuning.thresholds_in_force()
    assert in_force["stream_min_bytes"] == (sys.maxsize, "env: FASTACT_STREAM_MIN_BYTES")
    assert in_force["parallel_min_bytes"][0] == sys.maxsize


@requires_compiled
def test_import_takes_a_threshold_beyond_any_size(cache_home):
    config, _ = _config_in_child({"FASTACT_STREAM_MIN_BYTES": str(10**20)})
    assert config["stream_min_bytes"] == sys.maxsize


@pytest.mark.parametrize("text", ["lots", "-5", "1e6", "0x10"])
def test_bad_environment_value_warns_and_is_ignored(cache_home, monkeypatch, text):
    monkeypatch.setenv("FASTACT_PARALLEL_MIN_BYTES", text)
    with pytest.warns(RuntimeWarning, match="FASTACT_PARALLEL_MIN_BYTES"):
        in_force = _tuning.thresholds_in_force()
    assert in_force["parallel_min_bytes"] == (512 << 10, "default")


@requires_compiled
@pytest.mark.slow
def test_show_config_reports_values_and_sources(cache_home):
    path = _tuning.save_tuned(_record())
    config, _ = _config_in_child(
        {"XDG_CACHE_HOME": str(cache_home), "FASTACT_PARALLEL_MIN_BYTES": "65536"}
    )
    assert config["stream_min_bytes"] == 12 << 20
    assert config["stream_min_bytes_source"] == f"tuned: {path}"
    assert config["parallel_min_bytes_per_thread"] == 65536
    assert config["parallel_min_bytes_source"] == "env: FASTACT_PARALLEL_MIN_BYTES"
    config, _ = _config_in_child({"XDG_CACHE_HOME": str(cache_home / "empty")})
    assert config["stream_min_bytes"] == 64 << 20
    assert config["stream_min_bytes_source"] == "default"


@requires_compiled
@pytest.mark.slow
def test_tune_measures_saves_and_applies(cache_home, monkeypatch):
    # A small sweep: the calibration's logic, not this machine's numbers.
    monkeypatch.setattr(_tuning, "STREAM_SWEEP_KIB", (1024, 2048))
    monkeypatch.setattr(_tuning, "TRANSPOSED_SWEEP_KIB", (256, 512))
    monkeypatch.setattr(_tuning, "THREAD_SWEEP_KIB", (64, 128))
    with thresholds():
        result = _tuning.tune(verbose=False)
        assert result["path"] == str(_tuning.tuned_path())
        loaded = _tuning.load_tuned()
        assert (
            loaded["stream_min_bytes"] == result["stream_min_bytes"] in (1 << 20, 2 << 20, 4 << 20)
        )
        in_force = fastact.show_config(print_out=False)
        assert in_force["stream_min_bytes"] == result["stream_min_bytes"]
        assert in_force["stream_min_bytes_source"] == "tuned: this process"
        assert len(result["measured"]["stream"]) == 2
        # Never above the contiguous threshold: past the caches a tile's lines are no
        # better off.
        transposed = result["transposed_stream_min_bytes"]
        assert loaded["transposed_stream_min_bytes"] == transposed
        assert transposed in (256 << 10, 512 << 10, result["stream_min_bytes"])
        assert transposed <= result["stream_min_bytes"]
        assert in_force["transposed_stream_min_bytes"] == transposed
        assert len(result["measured"]["transposed_stream"]) == 2


def test_first_winning_size():
    rows = [(1, 1.0, 1.2), (2, 1.0, 0.5), (4, 1.0, 1.2), (8, 1.0, 0.9), (16, 1.0, 0.8)]
    assert _tuning._first_winning(rows) == 8
    # A tie above the crossover is noise; a loss is not.
    assert _tuning._first_winning([*rows, (32, 1.0, 0.99)]) == 8
    assert _tuning._first_winning([(1, 1.0, 1.0), (2, 1.0, 0.9), (4, 1.0, 1.01)]) == 2
    assert _tuning._first_winning(rows[:3]) is None
    assert _tuning._first_winning([(1, 1.0, 0.5)]) == 1


def test_each_sample_follows_its_own_warmup_calls():
    # Each kind is timed in its own steady state: the untimed calls of a sample come
    # right before its timed ones, never the other kind's.
    log = []
    samples = _tuning._sample_times(
        [lambda: log.append("a"), lambda: log.append("b")], repeat=2, batch=3, warmup=4
    )
    assert [len(s) for s in samples] == [2, 2]
    assert "".join(log) == ("a" * 7 + "b" * 7) * 2


def test_machine_key_is_a_file_name():
    key = _tuning.machine_key()
    assert key and "/" not in key and key == _tuning.machine_key()


# ---------------------------------------------------------------------------------------
# Streamed and threaded results are the same bits as plain ones, whatever the thresholds:
# forced on small arrays here, so that every dtype and every slice tail goes through them.

STREAM_LENGTHS = (0, 1, 15, 63, 64, 65, 1023, 2047, 2048, 2049, 4095, 4096, 4097, 3 * 4096 + 77)


@requires_compiled
@pytest.mark.parametrize("dtype", KERNEL_FLOAT_DTYPES + INT_DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_streamed_results_match_reference(dtype, n_threads):
    rng = np.random.default_rng(11)
    names = FUNCTIONS if np.dtype(dtype).kind not in "iu" else ("relu",)
    with thresholds(stream_min_bytes=0, parallel_min_bytes=1), fastact.threads(n_threads):
        for n in STREAM_LENGTHS:
            x, g = sample(dtype, n, rng), sample(dtype, n, rng)
            for offset in (0, 1, 3):
                buffer = np.empty(n + offset, x.dtype)
                out = buffer[offset:]
                for name in names:
                    args = args_for(name, x, g, 0.2)
                    assert getattr(fastact, name)(*args, out=out) is out
                    assert_bitwise_equal(out, getattr(_reference, name)(*args))


def test_relative_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert _tuning.cache_dir() == Path.home() / ".cache" / "fastact"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _tuning.cache_dir() == tmp_path / "fastact"


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["-h"], 0), (["x"], 2), (["-x"], 2)])
def test_command_line_without_a_command_prints_help_or_a_usage_error(capsys, argv, code):
    from fastact.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    captured = capsys.readouterr()
    # Help on stdout, a usage error on stderr; either names the commands.
    assert "tune [--dry-run] | bench" in (captured.out if code == 0 else captured.err)


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["--dryrun"], 2), (["x"], 2)])
def test_tune_command_line_runs_nothing_on_help_or_a_typo(cache_home, capsys, argv, code):
    # A typo must not measure and save a file that every later process reads.
    from fastact.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["tune", *argv])
    assert exit_info.value.code == code
    captured = capsys.readouterr()
    assert "usage: python -m fastact tune" in captured.out + captured.err
    assert not any(cache_home.iterdir())
