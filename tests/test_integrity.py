"""Nothing lost, nothing stale (issue 16): content-keyed inputs, SIGTERM that is never swallowed, one output
folder per run, weights checked against their pin in a shared cache, a read-only cache, a full disk."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import built, zip_maker

from w2s import artifacts, offline, signals
from w2s.errors import ConfigError, ModelError, StorageError, clip
from w2s.pipeline import task_stage
from w2s.tasks import fingerprint

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=tiny", "logger=none"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = "1"  # competing OpenMP threads make a tiny run many times slower on a shared box
    return env


def _train_py(args: list[str], cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _csv(path: Path, flip: bool = False, n: int = 400) -> Path:
    """A learnable binary task: the label is in the words (flip: every label inverted, same texts)."""
    rows = [(f"{'great fine' if i % 2 else 'awful poor'} review number {i}", i % 2) for i in range(n)]
    path.write_text("text,label\n" + "".join(f"{t},{1 - y if flip else y}\n" for t, y in rows))
    return path


# --- 1. an input file edited in place ------------------------------------------------------------------------------


def test_editing_a_custom_file_in_place_rebuilds_from_the_new_content(cfg_factory, tmp_path):
    data = _csv(tmp_path / "data.csv")
    cfg = cfg_factory(*TINY, "task=custom", f"task.path={data}")
    first = task_stage(cfg)
    before = {r["text"]: r["label"] for r in first.splits["all"]}
    mtime = data.stat().st_mtime_ns
    _csv(data, flip=True)  # same path, same size, every label inverted
    os.utime(data, ns=(mtime, mtime))  # even with the old mtime (a copy that preserves times)
    data2 = task_stage(cfg)
    after = {r["text"]: r["label"] for r in data2.splits["all"]}
    assert artifacts.key_hash(first.key) != artifacts.key_hash(data2.key)
    assert after and all(after[t] == 1 - before[t] for t in after)
    assert built(cfg.paths.artifact_root, 0)["task"] == 2


def test_fingerprint_covers_local_paths_and_folders_not_hub_ids(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    f = _csv(tmp_path / "x.csv")
    task = {
        "name": "t",
        "path": str(f),
        "loader": {"data_files": [str(folder / "a.json")], "path": "org/hub"},
    }
    task["loader"]["engine_path"] = str(folder)
    got = fingerprint(task)["inputs"]
    assert set(got) == {str(f), str(folder / "a.json"), str(folder)}
    (folder / "b.json").write_text("{}")  # a new file in a folder input changes its fingerprint
    assert fingerprint(task)["inputs"][str(folder)] != got[str(folder)]
    assert fingerprint({"name": "hub", "loader": {"path": "org/hub"}}) == {}  # hub-only task: key unchanged


# --- 3. SIGTERM ------------------------------------------------------------------------------------------------


class _SigtermInFinalizer:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.time() + 5
        while not signals.terminated() and time.time() < deadline:
            pass  # the handler runs here, inside __del__, where Python discards what it raises


def test_sigterm_inside_a_finalizer_is_not_lost_and_prints_nothing(capfd):
    with signals.sigterm_raises():
        _SigtermInFinalizer()  # collected at once: Python would print "Exception ignored in ... Traceback"
        assert signals.terminated() and capfd.readouterr().err == ""
        with pytest.raises(signals.Terminated):
            artifacts.cached("/nonexistent", "x", {}, lambda out: None)  # a safe point before any write
        with pytest.raises(signals.Terminated):
            signals.StopOnSigterm().on_train_batch_end()
    signals._TERMINATED.clear()


FAKE_RUN = """
import os, runpy, signal, sys, time
import w2s.pipeline
from w2s import signals

class Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        t = time.time()
        while time.time() - t < 2 and not signals.terminated():
            pass

def run(cfg):
    Finalizer()
    time.sleep(0.5)
    m = {"acc": 0.5, "auroc": 0.5}
    return {"task": "t", "supervisor": "s", "student": "s", "loss": "xent", "seed": 0,
            "weak": m, "w2s": m, "ceiling": m, "pgr": {"acc": None, "auroc": None}}

w2s.pipeline.run = run
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path(sys.argv[0].replace("train.py", %r), run_name="__main__")
"""


def test_train_py_exits_143_when_sigterm_lands_in_a_finalizer(tmp_path):
    """A Lightning Profiler's `__del__` swallowed 3 of 10 SIGTERMs and the run exited 0."""
    script = tmp_path / "fake.py"
    script.write_text(FAKE_RUN % str(REPO / "train.py"))
    proc = subprocess.run(
        [sys.executable, str(script), *TINY, f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "error: terminated by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[
        -2000:
    ]


@pytest.mark.slow
def test_sigterm_at_20_random_points_exits_143_every_time(tmp_path):
    """SIGTERM at random moments of a tiny run, each on a fresh artifact root so every stage is built: half
    from the start (imports, Hydra, the first stage), half once the first stage has begun (task, features,
    fits, labels, results). Exit 143 every time, never 0, a traceback or a death by signal."""

    def started(root: Path, proc: subprocess.Popen) -> float:
        t = time.time()
        while not root.exists() and proc.poll() is None:
            time.sleep(0.02)
        return time.time() - t

    warm_root = tmp_path / "warm"
    warm = _train_py([*TINY, f"paths.artifact_root={warm_root}"], tmp_path)
    startup = started(warm_root, warm)
    t0 = time.time()
    assert warm.wait(timeout=600) == 0, warm.stderr.read()[-2000:]
    stages = time.time() - t0
    rng = random.Random(16)
    codes: list[tuple[str, float, int, str]] = []
    tries = 0
    while len(codes) < 20 and tries < 30:
        tries += 1
        root = tmp_path / f"a{tries}"
        proc = _train_py([*TINY, f"paths.artifact_root={root}"], tmp_path)
        if tries % 2:  # from 0.5 s: before, the interpreter has not reached train.py's first line
            when, delay = "start", rng.uniform(0.5, startup + 0.95 * stages)
        else:
            when, delay = "stages", rng.uniform(0.0, 0.95 * stages)
            started(root, proc)
        time.sleep(delay)
        if proc.poll() is not None:  # finished before its signal (a faster run than the warm-up): not a try
            continue
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
        codes.append(
            (when, round(delay, 2), proc.returncode, err.strip().splitlines()[-1] if err.strip() else "")
        )
        assert "Traceback" not in err, err[-3000:]
    print(codes)
    assert len(codes) == 20, codes
    assert [c for c in codes if c[2] != 143] == [], codes


# --- 4. parallel runs ---------------------------------------------------------------------------------------------


FROZEN_CLOCK = """
import datetime, runpy, sys
import hydra.core.utils

class Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 12, 0, 0)

hydra.core.utils.datetime = Frozen  # `${now:...}`: both runs start in the same second, every time
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path(%r, run_name="__main__")
"""


def test_two_runs_started_in_the_same_second_keep_both_results(tmp_path):
    """Default output folder (no hydra.run.dir): two runs in the same second wrote one results.json."""
    script = tmp_path / "frozen.py"
    script.write_text(FROZEN_CLOCK % str(REPO / "train.py"))
    root = [f"paths.artifact_root={tmp_path / 'art'}"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *TINY, *root, f"seed={s}"],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    found = sorted(tmp_path.glob("outputs/2026-01-02/12-00-00*/results.json"))
    assert len(found) == 2, found
    assert sorted(json.loads(f.read_text())["seed"] for f in found) == [0, 1]


# --- 5. a cache other users can write ---------------------------------------------------------------------------


def test_shared_cache_is_checked_against_the_pin_not_the_sums_beside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_MODEL_CACHE", str(tmp_path / "shared"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    good = tmp_path / "probe.zip"
    zip_maker(b"weights")(good)
    pin = artifacts.file_sha256(good)
    hf = offline._assembled("m", zip_maker(b"weights"), pin, convert_gguf=False)
    os.chmod(hf.parent, 0o777)  # now anyone may write it: a shared cache
    assert offline._assembled("m", zip_maker(b"weights"), pin, convert_gguf=False) == hf  # checked, trusted
    (hf / "model.safetensors").write_bytes(b"evil!!!")  # another user edits the weights ...
    sums = hf.parent / offline.HF_SUMS
    sums.write_text(json.dumps(offline.folder_sums(hf)))  # ... and the checksums stored beside them
    offline._VERIFIED.clear()
    with pytest.raises(ModelError, match="sha256 mismatch"):
        offline._assembled("m", zip_maker(b"weights"), pin, convert_gguf=False)
    shutil.rmtree(tmp_path / "home")  # a user who never used it: rebuilt from the pin and compared
    with pytest.raises(ModelError, match="differs from what its pinned sha256"):
        offline._assembled("m", zip_maker(b"weights"), pin, convert_gguf=False)


def test_every_torch_load_is_weights_only():
    calls = [
        (p, line)
        for p in (REPO / "w2s").rglob("*.py")
        for line in p.read_text().splitlines()
        if "torch.load(" in line
    ]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "/abs", ""])
def test_model_source_name_cannot_leave_the_cache(name, tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_MODEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="one folder name"):
        offline._assembled(name, zip_maker(b"w"), None, convert_gguf=False)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "cache").exists()


# --- 6. a read-only cache, a full disk ---------------------------------------------------------------------------


def _no_root_powers() -> tuple[str, ...]:
    """As root, permission bits bind only without the capabilities that override them."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: chmod a-w cannot stop root from writing")
    return ("setpriv", "--bounding-set=-all", "--")


def test_read_only_complete_artifact_root_is_reused(tmp_path):
    root = tmp_path / "art"
    args = [*TINY, f"paths.artifact_root={root}"]
    first = _train_py([*args, f"hydra.run.dir={tmp_path / 'o1'}"], tmp_path)
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
    try:
        again = _train_py([*args, f"hydra.run.dir={tmp_path / 'o2'}"], tmp_path, prefix=_no_root_powers())
        _, err = again.communicate(timeout=600)
        assert again.returncode == 0, err[-2000:]
        r1, r2 = (json.loads((tmp_path / o / "results.json").read_text()) for o in ("o1", "o2"))
        assert {k: r1[k] for k in ("weak", "w2s", "ceiling")} == {
            k: r2[k] for k in ("weak", "w2s", "ceiling")
        }
        assert "building" not in err and "built " not in err
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


def test_full_disk_is_one_error_and_the_cache_stays_safe(tmp_path):
    key = {"x": 1}
    ok = artifacts.cached(tmp_path, "demo", key, lambda out: (out / "a.txt").write_text("ok") and None)

    def full(out: Path) -> None:
        (out / "half.bin").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="No space left on device"):
        artifacts.cached(tmp_path, "demo", {"x": 2}, full)
    with pytest.raises(StorageError):  # force=True over a complete copy: the copy survives
        artifacts.cached(tmp_path, "demo", key, full, force=True)
    assert artifacts.verify(ok) is None and (ok / "a.txt").read_text() == "ok"
    assert not list((tmp_path / "demo").glob(".tmp-*"))


# --- 7. error lines ---------------------------------------------------------------------------------------------


def test_a_huge_value_in_an_error_is_clipped_to_one_short_line():
    e = ConfigError(f"task.path={'x' * 10_000_000!r} has\nno rows; choices: ['a', 'b']")
    line = str(e)
    assert len(line) < 300 and "\n" not in line and line.endswith("choices: ['a', 'b']")
    assert "...(10000012 chars)" in line  # the word `task.path='xx...x'` cut to a prefix
    long = clip("a " * 5000 + "choices: [z]")
    assert long.endswith("choices: [z]") and len(long) < 900
