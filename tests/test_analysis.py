"""Section 5 analyses: hand-computed values for the functions, and each analysis switched on end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import built

from w2s import analysis
from w2s.config import ConfigError
from w2s.fit import eval_schedule
from w2s.kinds import Classify
from w2s.pipeline import run
from w2s.prompting import build_prompts, label_token_ids

TINY = ["experiment=tiny", "logger=csv"]


def test_agreement_by_supervisor_correctness():
    gt = np.array([1, 1, 0, 0, 1, 0])
    sup = np.array([0.9, 0.2, 0.1, 0.8, 0.7, 0.3])  # right, wrong, right, wrong, right, right
    stu = np.array([0.8, 0.9, 0.4, 0.6, 0.1, 0.2])  # agrees: yes, no, yes, yes, no, yes
    kind = Classify.__new__(Classify)  # the scored kind's comparisons on hand-made arrays
    kind._gt = lambda split: gt

    def agreement(student, supervisor):
        return analysis.agreement_of(kind.same(student, supervisor, "test"), kind.right(supervisor, "test"))

    a = agreement(stu, sup)
    assert a["all"] == pytest.approx(4 / 6)
    assert a["supervisor_right"] == pytest.approx(3 / 4)  # rows 0, 2, 4, 5: agree on 0, 2, 5
    assert a["supervisor_wrong"] == pytest.approx(1 / 2)  # rows 1, 3: agree on 3 (imitated the error)
    assert a["supervisor_acc"] == pytest.approx(4 / 6) and a["n_wrong"] == 2
    perfect = agreement(stu, gt.astype(float))
    assert perfect["supervisor_wrong"] is None


def test_stopping_final_oracle_and_selected():
    curve = [
        {"step": 10, "val/auroc": 0.70, "test_gt/acc": 0.80},
        {"step": 20, "val/auroc": 0.75, "test_gt/acc": 0.86},
        {"step": 30, "val/auroc": 0.78, "test_gt/acc": 0.83},
        {"step": 40, "val/auroc": 0.78, "test_gt/acc": 0.81},
    ]
    s = analysis.stopping(curve, "val/auroc")
    assert s["final"] == 0.81 and s["oracle"] == 0.86 and s["oracle_step"] == 20
    assert s["selected"] == 0.83 and s["selected_step"] == 30  # ties keep the earliest point
    assert analysis.stopping([{"step": 1, "val/auroc": 0.5}], "val/auroc")["final"] is None


def test_random_noise_keeps_error_rate_and_confidences_but_moves_errors():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 2, 400)
    weak = np.where(gt == 1, rng.uniform(0.3, 1.0, 400), rng.uniform(0.0, 0.7, 400))
    noisy = analysis.random_noise_labels(weak, gt, seed=3)
    wrong_weak = (weak > 0.5) != gt
    wrong_noisy = (noisy > 0.5) != gt
    assert wrong_noisy.sum() == wrong_weak.sum() > 0
    assert not np.array_equal(wrong_noisy, wrong_weak)
    conf = lambda p: np.sort(np.maximum(p, 1 - p))  # noqa: E731
    np.testing.assert_allclose(conf(noisy), conf(weak), rtol=1e-6)
    np.testing.assert_array_equal(noisy, analysis.random_noise_labels(weak, gt, seed=3))
    assert not np.array_equal(noisy, analysis.random_noise_labels(weak, gt, seed=4))


def test_easy_mask_direction():
    rating = np.array([800, 1200, 1500, 2000, 2500, 900])
    np.testing.assert_array_equal(analysis.easy_mask(rating, 0.5, easy_is_low=True), rating <= 1200)
    conf = np.array([0.45, 0.1, 0.3, 0.05])
    np.testing.assert_array_equal(analysis.easy_mask(conf, 0.5, easy_is_low=False), conf >= 0.3)
    with pytest.raises(ValueError, match="quantile"):
        analysis.easy_mask(conf, 1.5, easy_is_low=False)


def test_eval_schedule_spreads_points_over_the_run():
    assert eval_schedule({"max_epochs": 2}, 100, 10, None) == {}
    # 10 steps per epoch, 2 epochs, 4 points: every 5 steps, inside the epoch
    assert eval_schedule({"max_epochs": 2}, 100, 10, 4) == {
        "val_check_interval": 5,
        "check_val_every_n_epoch": 1,
    }
    # 2 steps per epoch, 10 epochs, 4 points: every 5 steps, counted across epochs
    assert eval_schedule({"max_epochs": 10}, 20, 10, 4)["check_val_every_n_epoch"] is None


def test_prompts_carry_k_labelled_shots_then_the_query():
    pool = [{"text": f"p{i}"} for i in range(6)]
    prompts = build_prompts(
        "T: {text}\nA:", [{"text": "query"}], pool, np.array([1, 0, 1, 0, 1, 0]), 3, (" N", " Y"), 0
    )
    blocks = prompts[0].split("\n\n")
    assert len(blocks) == 4 and blocks[-1] == "T: query\nA:"
    for b in blocks[:3]:
        i = int(b.split("\n")[0][4:])
        assert b.endswith(" Y" if i % 2 == 0 else " N")  # the shot's own label word
    zero = build_prompts("T: {text}\nA:", [{"text": "q"}], pool, np.zeros(6), 0, (" N", " Y"), 0)
    assert zero == ["T: q\nA:"]


def test_label_words_must_differ_in_first_token():
    from w2s.tiny import byte_tokenizer

    tok = byte_tokenizer()
    assert len(set(label_token_ids(tok, ("No", "Yes")))) == 2
    with pytest.raises(ValueError, match="same token"):
        label_token_ids(tok, (" No", " Yes"))  # bytes: both start with a space


def test_every_analysis_end_to_end(cfg_factory):
    cfg = cfg_factory(
        *TINY,
        "analysis.eval_points=4",
        "analysis.noise_control=true",
        "analysis.easy_to_hard.by=confidence",
        "analysis.prompting.enabled=true",
        "analysis.prompting.model=tiny-llama",
        "analysis.prompting.shots=[0,2]",
        "analysis.prompting.max_test=30",
        "+task.label_words=[No,Yes]",
    )
    t = time.time()
    res = run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert set(saved["agreement"]) == {"w2s"}
    ag = saved["agreement"]["w2s"]
    assert 0 <= ag["all"] <= 1 and ag["supervisor_acc"] == pytest.approx(res["weak"]["acc"])
    # the agreement curve: the student's agreement with the supervisor on test, over training
    curve = saved["curves"]["w2s"]
    assert len(curve) >= 3 and all("test_weak/acc" in p and "test_gt/acc" in p for p in curve)
    chosen = [p for p in curve if p["step"] == saved["stopping"]["w2s"]["selected_step"]][0]
    assert chosen["test_weak/acc"] == pytest.approx(ag["all"])  # the kept checkpoint is the one scored
    for stage in ("weak", "w2s", "ceiling", "noise", "easy"):
        s = saved["stopping"][stage]
        assert s["points"] >= 3 and s["oracle"] >= max(s["final"], s["selected"])
    assert set(saved["noise"]) == {"acc", "auroc"} and "acc" in saved["pgr_noise"]
    assert 0 < saved["noise_error_rate"] < 1
    e2h = saved["easy_to_hard"]
    assert e2h["n_train_easy"] == 60 and e2h["n_test_hard"] == 50
    assert set(e2h) >= {"easy", "weak", "w2s", "ceiling"}
    assert set(saved["prompting"]) == {"model", "n_test", "0shot", "2shot_gt", "2shot_weak"}
    assert saved["prompting"]["n_test"] == 30
    assert all(0 <= saved["prompting"][k]["acc"] <= 1 for k in ("0shot", "2shot_gt", "2shot_weak"))
    assert built(cfg.paths.artifact_root, t)["prompt"] == 3
    # a second run reuses every stage, analyses included
    t = time.time()
    again = run(cfg)
    assert built(cfg.paths.artifact_root, t) == {}
    assert again["prompting"]["2shot_weak"]["acc"] == res["prompting"]["2shot_weak"]["acc"]
    assert again["noise"] == res["noise"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("analysis.eval_points=0", "analysis.eval_points"),
        ("analysis.easy_to_hard.quantile=1.5", "quantile"),
        ("analysis.prompting.model=minilm-l6", "not a decoder"),
        ("analysis.prompting.labels=[gt,oracle]", "'oracle'"),
        ("analysis.prompting.shots=[-1]", "shots"),
    ],
)
def test_bad_analysis_values_name_themselves(cfg_factory, override, message):
    """Config checks in `validate`, the analyses' own in their hooks' `check`, all before any training."""
    cfg = cfg_factory(
        *TINY, "analysis.prompting.enabled=true", "analysis.easy_to_hard.by=confidence", override
    )
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not Path(cfg.paths.artifact_root, "train").exists()


def test_analysis_errors_are_one_line_before_any_training(cfg_factory):
    """A prompting model whose tokenizer cannot tell the label words apart, or a difficulty column the task does
    not have: refused after the task stage, before the supervisor trains (nothing else is lost)."""
    from w2s.config import ConfigError

    cases = {
        "analysis.prompting.model=tiny-llama": "start with the same token",  # byte tokens: ' No', ' Yes' -> ' '
        "analysis.prompting.model=tiny-bert": "not a decoder",
        "analysis.easy_to_hard.by=no_such_column": r"easy_to_hard.by='no_such_column'; choices .*'confidence'",
        "analysis.easy_to_hard.quantile=1.5": "quantile",
    }
    for override, match in cases.items():
        extra = (
            ["analysis.prompting.enabled=true"]
            if "prompting" in override
            else ["analysis.easy_to_hard.by=confidence"]
        )
        cfg = cfg_factory(*TINY, *extra, override)
        with pytest.raises(ConfigError, match=match):
            run(cfg)
        assert not Path(cfg.paths.artifact_root, "train").exists()
