"""Pairwise preference tasks: hhh_alignment (offline), hh_rlhf (fixture in the hub schema), chess_preference."""

from __future__ import annotations

import json
import time
from pathlib import Path

import chess
import pytest
from conftest import built
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

import w2s.tasks.preference as pref
from w2s.chess import EngineNotFound, find_engine, open_engine, score_cp
from w2s.tasks import load_task
from w2s.tasks.chess_gen import generate_preferences

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def task_cfg(name: str):
    return OmegaConf.load(CONF / f"{name}.yaml")


def has_engine() -> bool:
    try:
        find_engine()
        return True
    except EngineNotFound:
        return False


def check_pairs(ds) -> None:
    """The contract every pairwise task keeps: distinct completions, order balanced."""
    assert all(a.strip() != b.strip() for a, b in zip(ds["first"], ds["second"], strict=True))
    n1 = sum(ds["label"])
    assert abs(len(ds) - 2 * n1) <= 1, f"labels unbalanced: {n1} of {len(ds)}"


def test_hhh_alignment_labels_point_at_the_preferred_response(fake_bigbench):
    files = {sub: FIXTURES / "bigbench" / "hhh_alignment" / sub / "task.json" for sub in pref.HHH_SUBSETS}
    examples = [ex for f in files.values() for ex in json.loads(f.read_text())["examples"]]
    ds, info = load_task(task_cfg("hhh_alignment"))  # from the (fixture) bigbench sdist in the cache
    assert info["loaded"] == len(examples) and len(ds) == 2 * (len(examples) // 2)
    check_pairs(pref.load_hhh_alignment())
    preferred = {}  # one response can be preferred in one pair and not in another (ranked lists)
    for ex in examples:
        pair = frozenset(r.strip() for r in ex["target_scores"])
        preferred[pair] = next(r.strip() for r, v in ex["target_scores"].items() if v == 1)
    for row in ds:
        better = row["second"] if row["label"] else row["first"]
        assert preferred[frozenset((row["first"], row["second"]))] == better
        assert row["prompt"].startswith("Human: ") and row["prompt"].endswith("\n\nAssistant:")
    from_path = pref.load_hhh_alignment(path=str(FIXTURES / "bigbench" / "hhh_alignment"))
    assert from_path["id"] == pref.load_hhh_alignment()["id"]


def test_order_depends_on_seed_not_on_content(fake_bigbench):
    a, b = pref.load_hhh_alignment(seed=0), pref.load_hhh_alignment(seed=1)
    assert a["id"] == b["id"] and a["label"] != b["label"]
    pairs = lambda d: [frozenset(p) for p in zip(d["first"], d["second"], strict=True)]  # noqa: E731
    assert pairs(a) == pairs(b)
    with pytest.raises(ValueError, match="choices"):
        pref.load_hhh_alignment(subsets=["helpfull"])


def test_split_dialog():
    c = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: A good one."
    r = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: No."
    assert pref.split_dialog(c, r) == (
        "Human: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant:",
        "A good one.",
        "No.",
    )
    assert pref.split_dialog("\n\nHuman: A\n\nAssistant: x", "\n\nHuman: B\n\nAssistant: y") is None
    assert pref.split_dialog("\n\nHuman: A\n\nAssistant:", "\n\nHuman: A\n\nAssistant: y") is None


def test_hh_rlhf_on_fixture_in_hub_schema():
    cfg = task_cfg("hh_rlhf")
    cfg.loader.path = "json"
    cfg.loader.data_files = str(FIXTURES / "hh_rlhf.jsonl")
    ds = pref.load_hh_rlhf(path="json", data_files=str(FIXTURES / "hh_rlhf.jsonl"), split="train")
    # row 3 differs before the last turn, row 4 has identical replies: both dropped
    assert len(ds) == 3
    check_pairs(ds)
    raw = [json.loads(line) for line in (FIXTURES / "hh_rlhf.jsonl").read_text().splitlines()]
    for row, ex in zip(ds, raw, strict=False):
        better = row["second"] if row["label"] else row["first"]
        assert ex["chosen"].endswith(better) and not ex["rejected"].endswith(better)
        assert ex["chosen"].strip().startswith(row["prompt"])
    loaded, info = load_task(cfg)
    assert info["loaded"] == 3 and set(loaded["label"]) == {0, 1}


def test_hh_rlhf_offline_error_names_dataset(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'Anthropic/hh-rlhf' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(pref.datasets, "load_dataset", offline)
    with pytest.raises(
        (RuntimeError, InstantiationException), match=r"Anthropic/hh-rlhf.*HF_DATASETS_OFFLINE"
    ):
        load_task(task_cfg("hh_rlhf"))


@pytest.mark.skipif(not has_engine(), reason="stockfish missing: apt-get install stockfish")
def test_chess_preference_is_oracle_labelled_balanced_and_cached(tmp_path):
    cfg = task_cfg("chess_preference")
    cfg.loader.update(n=24, depth=6, cache_dir=str(tmp_path))
    ds, info = load_task(cfg)
    assert info["loaded"] == 24
    check_pairs(ds)
    assert set(ds["kind"]) == {"best_vs_random", "nonbest_pair"}
    assert min(ds["margin_cp"]) >= 100
    engine = open_engine()
    try:  # re-ask the engine about a few pairs: the labelled-better move scores higher
        for row in ds.select(range(6)):
            board = chess.Board(row["fen"])
            moves = [board.parse_san(row["first"]), board.parse_san(row["second"])]
            infos = engine.analyse(
                board, chess.engine.Limit(depth=6), multipv=2, root_moves=moves, game=object()
            )
            scores = {i["pv"][0]: score_cp(i, board.turn) for i in infos}
            assert (scores[moves[1]] > scores[moves[0]]) == bool(row["label"])
    finally:
        engine.quit()
    again = generate_preferences(24, depth=6, cache_dir=str(tmp_path), engine_path="/nonexistent/sf")
    assert [r["id"] for r in again] == ds["id"]  # from the cache: no engine needed


# --- the reward model: pairwise head, its unembedding init, generative finetuning ---------------------------


def test_reward_head_starts_as_the_lm_logit_of_its_token(cfg_factory):
    import torch
    from transformers import AutoModelForCausalLM

    from w2s import models
    from w2s.kinds import Classify, Pairwise
    from w2s.kinds.scored import reward_head_init

    cfg = cfg_factory("task=hhh_alignment", "supervisor=tiny-bert", "student=tiny-llama")
    token = cfg.task.get("reward_init_token", " Yes")
    net = Pairwise(cfg, None).network(cfg.student)
    tok = models.load_tokenizer(cfg.student)
    tid = tok(token, add_special_tokens=False)["input_ids"][-1]
    lm = AutoModelForCausalLM.from_pretrained(models.resolve(cfg.student)).eval()
    ids = torch.tensor([tok("Human: hi\n\nAssistant: hello")["input_ids"]])
    mask = torch.ones_like(ids)
    net.eval()
    with torch.no_grad():
        score = net({"input_ids": ids, "attention_mask": mask, "candidates": 1})  # one candidate
        logit = lm(input_ids=ids, attention_mask=mask).logits[0, -1, tid]
    assert torch.allclose(score[0, 0], logit, atol=1e-4)
    # encoders (no unembedding) and classification keep the zero init
    assert reward_head_init(cfg.task, cfg.supervisor) is None
    assert not Classify(cfg, None).network(cfg.student).head.weight.any()


def test_generative_finetuning_runs_once_and_serves_student_and_ceiling(cfg_factory):
    from w2s.config import ConfigError, validate
    from w2s.pipeline import run

    small = ["split.weak=60", "split.transfer=60", "split.val=30", "split.test=60", "trainer=fast"]
    base = ["task=hhh_alignment", "supervisor=tiny-bert", "student=tiny-llama", *small]
    with pytest.raises(ConfigError, match="decoder student"):
        validate(cfg_factory(*base[:2], "student=tiny-bert-large", "gen_finetune.enabled=true"))
    root = cfg_factory(*base).paths.artifact_root
    t = time.time()
    res = run(cfg_factory(*base, "gen_finetune.enabled=true", "gen_finetune.epochs=2"))
    gft = res["gen_finetune"]
    assert gft["enabled"] and gft["steps"] > 0 and gft["texts"] > 0
    assert gft["val_lm_tok_acc_after"] > gft["val_lm_tok_acc_before"]  # it learnt the task's text
    assert res["models"]["student"]["name"] == "tiny-llama+gft"
    assert built(root, t)["gen_finetune"] == 1
    t = time.time()
    res2 = run(cfg_factory(*base, "gen_finetune.enabled=true", "gen_finetune.epochs=2", "loss=conf"))
    again = built(root, t)
    assert again["gen_finetune"] == 0 and again["train"] == 1  # only the w2s student retrains
    assert res2["ceiling"] == res["ceiling"]
    plain = run(cfg_factory(*base))
    assert plain["gen_finetune"] == {"enabled": False} and plain["ceiling"] != res["ceiling"]
