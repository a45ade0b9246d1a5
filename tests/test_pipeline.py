"""End to end on tiny random models: every stage runs, results are complete, upstream stages are reused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import built

from w2s import artifacts
from w2s.config import ConfigError
from w2s.pipeline import run
from w2s.tasks import TaskError

TINY = ["experiment=tiny", "logger=csv"]


def test_results_have_every_field(cfg_factory):
    cfg = cfg_factory(*TINY)
    res = run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert saved["pgr"] == res["pgr"]
    for role in ("weak", "w2s", "ceiling"):
        assert set(saved[role]) >= {"acc", "auroc"}
        assert 0.0 <= saved[role]["acc"] <= 1.0
    assert set(saved["pgr"]) == {"acc", "auroc"}
    assert saved["splits"] == {"weak": 100, "transfer": 120, "val": 40, "test": 100}
    assert saved["seed"] == 0 and saved["ceiling_on"] == "transfer" and saved["early_stop"] == "weak"
    assert saved["config"]["student"]["name"] == "tiny-bert-large"
    assert "torch" in saved["versions"] and "git_sha" in saved
    # labels are stored as a `datasets` dataset with the supervisor's transfer, val and test predictions
    from datasets import load_from_disk

    label_dirs = list((Path(cfg.paths.artifact_root) / "labels").glob("*/labels"))
    assert len(label_dirs) == 1
    labels = load_from_disk(str(label_dirs[0]))
    assert set(labels) == {"transfer", "val"} and len(labels["transfer"]) == 120
    assert all(0.0 <= p <= 1.0 for p in labels["transfer"]["label"])
    # the label artifact says what produced it: model, train stage, splits
    meta = artifacts.manifest(label_dirs[0].parent)["meta"]
    assert meta["model"] == "tiny-bert" and meta["splits"] == ["transfer", "val"]
    assert meta["stage"] == Path(saved["stages"]["weak"]).name


def test_changing_loss_or_student_retrains_nothing_upstream(cfg_factory):
    root = cfg_factory(*TINY).paths.artifact_root
    t = time.time()
    run(cfg_factory(*TINY))
    assert built(root, t) == {"task": 1, "train": 3, "labels": 1}
    t = time.time()
    run(cfg_factory(*TINY, "loss.hard=true"))
    assert built(root, t) == {"train": 1}  # only the weak-to-strong student
    t = time.time()
    run(cfg_factory(*TINY, "student=tiny-llama"))
    assert built(root, t) == {"train": 2}  # the new student and its ceiling; supervisor and labels reused
    t = time.time()
    run(cfg_factory(*TINY, "force=true"))
    assert built(root, t) == {"task": 1, "train": 3, "labels": 1}


def test_same_seed_same_results_other_seed_differs(cfg_factory, tmp_path):
    a = run(cfg_factory(*TINY))
    b = run(cfg_factory(*TINY, "force=true"))
    c = run(cfg_factory(*TINY, "seed=1"))
    assert a["weak"] == b["weak"] and a["w2s"] == b["w2s"]
    assert a["weak"] != c["weak"]


def test_bootstrap_reports_chain_and_direct(cfg_factory):
    res = run(cfg_factory(*TINY, "method=bootstrap", "chain1=tiny-bert", "split.transfer=60"))
    assert [c["model"] for c in res["chain"]] == ["tiny-bert"]
    assert set(res["direct"]) >= {"acc", "auroc"}
    assert res["splits"]["transfer1"] == 60
    assert {"weak", "chain1", "w2s", "ceiling", "direct"} <= set(res["stages"])


def test_too_few_examples_fails_before_training(cfg_factory):
    cfg = cfg_factory(*TINY, "split.test=1000")
    with pytest.raises(TaskError, match="only 400"):
        run(cfg)
    assert built(cfg.paths.artifact_root, 0)["train"] == 0


def test_student_smaller_than_supervisor_is_refused(cfg_factory):
    with pytest.raises(ConfigError, match="smaller than supervisor"):
        run(cfg_factory(*TINY, "supervisor=tiny-bert-large", "student=tiny-bert"))


def test_custom_csv_task_runs_without_code(cfg_factory, tmp_path):
    rows = ["text,label"] + [f"sample number {i} {'good' if i % 2 else 'bad'},{i % 2}" for i in range(300)]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(rows))
    res = run(
        cfg_factory(
            *TINY,
            "task=custom",
            f"task.path={path}",
            "split.weak=60",
            "split.transfer=80",
            "split.val=40",
            "split.test=60",
        )
    )
    assert res["task"] == "custom" and res["splits"]["test"] == 60
    with pytest.raises(ConfigError, match="does not exist"):
        run(cfg_factory(*TINY, "task=custom", f"task.path={tmp_path / 'missing.csv'}"))


def test_custom_multiclass_text_runs_the_ladder_with_its_analyses(cfg_factory, tmp_path):
    """A 3-class text file, labels as words: C logits per row, the conf loss for C > 2, analyses, PGR."""
    topics = ["sports", "music", "cooking"]
    rows = ["label,body,title"] + [f"{topics[i % 3]},a {topics[i % 3]} story {i},t{i}" for i in range(240)]
    path = tmp_path / "topics.csv"
    path.write_text("\n".join(rows))
    args = [*TINY, "task=custom", f"task.path={path}", "task.loader.text_column=[title,body]", "loss=conf"]
    args += ["split.weak=30", "split.transfer=90", "split.val=30", "split.test=90"]
    res = run(cfg_factory(*args, "analysis.noise_control=true", "analysis.easy_to_hard.by=confidence"))
    assert res["task_info"]["classes"] == 3 and res["task_info"]["after_each"] == 80
    for role in ("weak", "w2s", "ceiling", "noise"):
        assert 0 <= res[role]["acc"] <= 1 and 0 <= res[role]["auroc"] <= 1
    assert set(res["pgr"]) == {"acc", "auroc"} and res["agreement"]["w2s"]["all"] is not None
    with pytest.raises(ConfigError, match="prompting scores two label words; task 'custom' has 3 classes"):
        run(cfg_factory(*args, "analysis.prompting.enabled=true"))


def test_a_stage_cached_without_weights_is_rebuilt_when_a_later_role_needs_them(cfg_factory):
    """A student's stage (weights not kept) reused as a chain step (weights needed) used to crash on state.pt."""
    run(cfg_factory(*TINY, "student=tiny-llama"))
    cfg = cfg_factory(*TINY, "method=bootstrap", "chain1=tiny-llama", "method.reuse_transfer=true")
    t = time.time()
    res = run(cfg)
    assert Path(res["stages"]["chain1"], "state.pt").exists()
    assert built(cfg.paths.artifact_root, t)["train"] >= 1
    # the other way round: the ceiling on GT of A (no weights) later needed as a supervisor
    run(cfg_factory(*TINY, "split.ceiling_on=weak"))
    res = run(
        cfg_factory(
            *TINY, "supervisor=tiny-bert-large", "student=tiny-bert-large", "allow_smaller_student=true"
        )
    )
    assert Path(res["stages"]["weak"], "state.pt").exists()
