"""The methods beside naive finetuning, end to end on tiny random models: label cleaning (its own stage), the
losses that read all training targets first, strong-to-strong rounds, and the intervals of every role.

The tests share one artifact root, so the supervisor, its labels and the ceiling are trained once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import built, make_cfg
from datasets import load_from_disk
from test_image_kind import TINY as IMAGE_TINY
from test_image_kind import image_folder

from w2s import artifacts, tracking
from w2s.clean import count
from w2s.config import validate
from w2s.errors import ConfigError
from w2s.losses import Window
from w2s.pipeline import run

TINY = ["experiment=tiny", "logger=csv"]
TRANSFER = 120  # conf/experiment/tiny.yaml's split.transfer
REPO = Path(__file__).resolve().parents[1]
IMAGES = [
    o for o in IMAGE_TINY if o != "logger=none"
]  # tests/test_image_kind.py's tiny image models and splits


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """Compose a tiny run; every test of the module writes its artifacts under one root."""
    root = tmp_path_factory.mktemp("methods")
    return lambda *overrides: make_cfg(root, [*TINY, *overrides])


def _cleaned(res: dict) -> tuple[list[int], list[float]]:
    """The cleaning stage's rows and labels."""
    part = load_from_disk(str(Path(res["clean"]["artifact"]) / "labels"))["transfer"]
    return part["idx"], part["label"]


def _weak_and_gt(res: dict) -> tuple[dict[int, float], dict[int, int]]:
    """The supervisor's (uncleaned) labels of the transfer split and its ground truth, by row id."""
    root = Path(res["clean"]["artifact"]).parents[1]
    labels = artifacts.manifest(Path(res["clean"]["artifact"]))["key"]["labels"]
    weak = load_from_disk(str(root / "labels" / labels / "labels"))["transfer"]
    data = artifacts.manifest(Path(res["stages"]["w2s"]))["key"]["data"]
    rows = load_from_disk(str(root / "task" / artifacts.key_hash(data) / "splits"))["transfer"]
    by_id = lambda part, col: dict(zip(part["idx"], part[col], strict=True))  # noqa: E731
    return by_id(weak, "label"), by_id(rows, "label")


CASES = {
    "knn-filter": (["clean=knn", "clean.action=filter", "analysis.noise_control=true"], TRANSFER - 12),
    "knn-relabel": (["clean=knn", "clean.action=relabel", "clean.k=10"], TRANSFER),
    "knn-both": (["clean=knn", "clean.action=both", "clean.contamination=0.05"], TRANSFER - 6),
    "logistic-relabel": (["clean=logistic", "clean.action=relabel"], TRANSFER),
    "logistic-both": (["clean=logistic", "clean.action=both"], TRANSFER - 12),
    "topo": (["clean=topo", "clean.k=10"], None),  # at least the count; more if components drop more
    "random": (["clean=random"], TRANSFER - 12),
    "oracle": (["clean=oracle", "clean.keep_frac=0.25"], 30),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_clean_method_is_a_stage_the_student_learns_from(cfg, case):
    overrides, kept = CASES[case]
    res = run(cfg(*overrides))
    info = res["clean"]
    method = overrides[0].removeprefix("clean=")
    assert info["method"] == method and info["rows"] == TRANSFER
    assert info["kept"] == kept if kept is not None else info["kept"] <= TRANSFER - count(0.1, TRANSFER)
    assert info["uses_ground_truth"] is (method == "oracle")
    features = method in ("knn", "logistic", "topo")
    assert info["layer"] == (1 if features else None)  # tiny-bert-large has 2 blocks: hidden_states[1]
    # the artifact holds the kept rows only, relabelled where the action relabels; the student learns it
    idx, values = _cleaned(res)
    weak, gt = _weak_and_gt(res)
    assert len(idx) == info["kept"] and set(idx) <= set(weak)
    changed = sum(abs(v - weak[i]) > 1e-6 for i, v in zip(idx, values, strict=True))
    assert changed == info["relabelled"]
    assert (changed > 0) is ("relabel" in case or "both" in case)
    assert info["weak_acc_all"] == pytest.approx(np.mean([(weak[i] > 0.5) == gt[i] for i in weak]))
    assert info["weak_acc_kept"] == pytest.approx(np.mean([(weak[i] > 0.5) == gt[i] for i in idx]))
    assert (info["probe_agree_weak"] is None) is (method in ("topo", "random", "oracle"))
    key = artifacts.manifest(Path(res["stages"]["w2s"]))["key"]
    assert key["labels"] == Path(info["artifact"]).name
    steps = json.loads(Path(res["stages"]["w2s"], "meta.json").read_text())["steps"]
    assert steps == -(-info["kept"] // key["batch_size"])  # one epoch over the kept rows only
    if "noise" in res:  # the noise control reads the uncleaned weak labels: all rows' error count
        assert res["noise_error_rate"] == pytest.approx(1 - info["weak_acc_all"])


def test_an_image_kind_cleans_its_c_class_labels_on_the_pooled_features(cfg, tmp_path):
    """Three classes: labels are C probabilities, the probe reads the model's pooled output (layer null)."""
    folder = image_folder(tmp_path / "images")
    res = run(cfg(*IMAGES, f"task.path={folder}", "clean=knn", "clean.k=5", "clean.action=both"))
    info = res["clean"]
    assert info["layer"] is None and info["kept"] == info["rows"] - count(0.1, info["rows"])
    idx, values = _cleaned(res)
    assert len(idx) == info["kept"] and all(len(v) == 3 and abs(sum(v) - 1) < 1e-5 for v in values)
    assert set(res["ci"]["w2s"]) == {"acc", "auroc"}  # macro one-vs-rest AUROC over the three classes


def test_window_midweak_reads_its_radius_from_the_cleaned_training_labels(cfg, monkeypatch):
    run(cfg("clean=knn"))  # the cleaning stage, built or reused
    seen: list[tuple[int, float]] = []
    prepare = Window.prepare

    def spy(self: Window, targets):
        prepare(self, targets)
        seen.append((len(targets), self.r))

    monkeypatch.setattr(Window, "prepare", spy)
    c = cfg("clean=knn", "loss=window", "loss.radius=midweak")
    t = time.time()
    res = run(c)
    assert built(c.paths.artifact_root, t) == {"train": 1}  # a new loss reuses the cleaning
    _, values = _cleaned(res)
    assert seen == [(TRANSFER - 12, pytest.approx(float(np.median(np.abs(np.asarray(values) - 0.5)))))]
    assert res["loss"] == "window"


@pytest.mark.parametrize(
    "overrides", [["loss=window", "loss.radius=0.15"], ["loss=conf", "loss.balance_batch=true"]]
)
def test_losses_run_through_the_pipeline(cfg, overrides):
    res = run(cfg(*overrides))
    assert res["loss"] == overrides[0].removeprefix("loss=") and set(res["w2s"]) == {"acc", "auroc"}


def test_s2s_trains_each_round_on_the_previous_rounds_labels(cfg):
    res = run(cfg("method=s2s", "method.iters=2"))
    assert [r["round"] for r in res["s2s"]] == [1, 2] and len(res["pgr_s2s"]) == 2
    assert all(set(r) == {"round", "acc", "auroc"} for r in res["s2s"])
    for name, sup in (("s2s1", "w2s"), ("s2s2", "s2s1")):
        assert artifacts.manifest(Path(res["stages"][name]))["key"]["labels"] == Path(res["stages"][sup]).name
    assert Path(res["stages"]["s2s1"], "state.pt").exists()  # it labels the split for round 2
    assert set(res["ci"]) == {"weak", "w2s", "s2s1", "s2s2", "ceiling"}
    with pytest.raises(ConfigError, match="method.iters"):
        validate(cfg("method=s2s", "method.iters=0"))


def test_every_scored_role_has_intervals(cfg):
    res = run(
        cfg(
            "method=bootstrap",
            "chain1=tiny-bert",
            "method.reuse_transfer=true",
            "analysis.noise_control=true",
        )
    )
    assert set(res["ci"]) == set(res["stages"]) == {"weak", "chain1", "w2s", "ceiling", "direct", "noise"}
    for role, ci in res["ci"].items():
        metrics = res["chain"][0] if role == "chain1" else res[role]
        assert set(ci) == {"acc", "auroc"}
        lo, hi = ci["acc"]
        assert 0 <= lo <= metrics["acc"] <= hi <= 1
        assert 0 <= ci["auroc"][0] <= ci["auroc"][1] <= 1
    flat = tracking.flat_metrics(res)
    assert flat["test/chain1_acc_lo"] == res["ci"]["chain1"]["acc"][0] and "test/noise_auroc_hi" in flat


def test_bad_clean_settings_fail_before_training(cfg):
    c = cfg("clean=knn", "clean.action=flip")
    with pytest.raises(ConfigError, match="clean.action='flip'"):
        run(c)
    with pytest.raises(ConfigError, match="cannot clean"):
        run(cfg("task=chess", "supervisor=tiny-llama", "student=tiny-llama", "clean=random"))


def test_train_py_filters_the_contamination_share(cfg, tmp_path):
    """The command a user types: knn filtering of 10% drops round-half-up(0.1 x transfer) rows."""
    c = cfg()
    args = ["clean=knn", "clean.action=filter", "clean.contamination=0.1", *TINY]
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        *args,
        f"paths.artifact_root={c.paths.artifact_root}",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "results.json").read_text())["clean"]
    assert info["rows"] == TRANSFER and info["kept"] == TRANSFER - count(0.1, TRANSFER) == 108
