"""The generative pipeline (chess): answer encoding, answer-token positions, greedy labels, the ladder."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import torch
from conftest import built
from datasets import Dataset, load_from_disk
from omegaconf import open_dict

from w2s import tiny
from w2s.chess import same_move
from w2s.config import ConfigError, validate
from w2s.data import AnswerCollate
from w2s.generative import answer_of, build_gen_network, encode
from w2s.pipeline import run

TINY = ["supervisor=tiny-llama", "student=tiny-llama", "allow_smaller_student=true", "trainer=fast"]
SMALL = ["split.weak=60", "split.transfer=60", "split.val=20", "split.test=40"]


def toy_rows(n: int = 400, seed: int = 0) -> Dataset:
    """A generative task a 2-layer model learns in seconds: the answer is a word named by the prompt's first
    last letter ("... R" -> rook, "... B" -> bishop, "... N" -> knight)."""
    rng = random.Random(seed)
    words = {"R": "rook", "B": "bishop", "N": "knight"}
    rows = []
    for i in range(n):
        c = rng.choice(sorted(words))
        tail = "".join(rng.choice("abcdefghij") for _ in range(6))
        rows.append({"id": f"toy{i}", "prompt": f"{tail} {c}", "target": words[c]})
    return Dataset.from_list(rows)


def toy_cfg(cfg_factory, *extra: str):
    cfg = cfg_factory("task=chess", *TINY, *extra)
    with open_dict(cfg):
        cfg.task.name = "toy"
        cfg.task.loader = {"_target_": "tests.test_generative.toy_rows", "n": 400}
        cfg.allowed_targets = ["tests."]  # this test's own loader, trusted explicitly
        del cfg.task.metrics, cfg.task.same_answer, cfg.task.wrong_answer  # a plain task: string answers
        cfg.split.weak, cfg.split.transfer, cfg.split.val, cfg.split.test = 150, 120, 30, 80
        for role in ("supervisor", "student"):
            cfg[role].lr = 1e-2
            cfg[role].epochs = 12
    return cfg


def test_answer_of_reads_the_first_move_token():
    assert answer_of(" Qxf7# 1-0") == "Qxf7#"
    assert answer_of("13. Nf3 Nc6") == "Nf3"
    assert answer_of("12... e5") == "e5"
    assert answer_of("   ") == ""


def test_same_move_compares_moves_not_strings():
    prompt = "1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4."
    assert same_move(prompt, "Qxf7", "Qxf7#")
    assert not same_move(prompt, "Qxf7", "Bxf7+")
    assert same_move(prompt, "zz", "zz") and not same_move(prompt, "zz", "Qxf7")


def test_encode_keeps_the_answer_and_cuts_the_prompt_on_the_left():
    tok = tiny.byte_tokenizer()
    ids, n, cut = encode(tok, "abcdefghij", "Qh5", max_length=8)
    answer = tok(" Qh5", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert n == len(answer) and ids[-n:] == answer and cut
    assert len(ids) == 8 and tok.decode(ids[:-n]) == "ghij"[-(8 - n) :]
    ids, n, cut = encode(tok, "ab", "e4", max_length=64)
    assert not cut and tok.decode(ids[:-n]) == "ab"


def test_collate_positions_predict_exactly_the_answer_tokens():
    tok = tiny.byte_tokenizer()
    enc = [
        encode(tok, p, a, 64)
        for p, a in (("1. e4 e5 2.", "Nf3"), ("a", "Qxf7#"), ("long prompt here", "O-O"))
    ]
    rows = [{"input": ids, "target": ids[-n:], "idx": i} for i, (ids, n, _) in enumerate(enc)]
    batch = AnswerCollate(tok.pad_token_id)(rows)
    flat = batch["input_ids"].reshape(-1)
    # the token after each scored position is the answer token it must predict, and it is real (mask 1)
    assert torch.equal(flat[batch["pos"] + 1], batch["answer_ids"])
    assert bool(batch["attention_mask"].reshape(-1)[batch["pos"] + 1].all())
    assert batch["row"].tolist() == [i for i, (_, n, _) in enumerate(enc) for _ in range(n)]


def test_probe_mode_trains_only_an_untied_unembedding(cfg_factory):
    cfg = cfg_factory("task=chess", *TINY, "student.train_mode=probe")
    net = build_gen_network(cfg.student)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["lm.lm_head.weight"]
    emb = net.lm.get_input_embeddings().weight
    assert net.lm.get_output_embeddings().weight.data_ptr() != emb.data_ptr()


def test_generative_tasks_need_decoders(cfg_factory):
    with pytest.raises(ConfigError, match="needs a decoder.*tiny-llama"):
        validate(cfg_factory("task=chess", "supervisor=tiny-bert", "student=tiny-llama"))


CHESS_ANALYSES = [
    *TINY,
    "task.limit=600",
    "split.weak=100",
    "split.transfer=100",
    "split.val=40",
    "split.test=100",
]


def test_chess_runs_every_analysis_the_paper_defines_for_it(cfg_factory):
    """Appendix C on puzzles by rating, Appendix E with random wrong moves, agreement by move, stopping."""
    cfg = cfg_factory(
        "task=chess", *CHESS_ANALYSES, "analysis.easy_to_hard.by=rating", "analysis.noise_control=true"
    )
    res = run(cfg)
    saved = json.loads(Path(cfg.paths.output_dir, "results.json").read_text())
    assert {"agreement", "stopping", "easy_to_hard", "noise"} <= set(saved)
    assert {"acc", "legal"} <= set(saved["noise"]) and 0 <= saved["noise_error_rate"] <= 1
    e2h = saved["easy_to_hard"]
    assert e2h["by"] == "rating" and e2h["n_train_easy"] == 50 and 0 < e2h["n_test_hard"] <= 100
    assert {"easy", "weak", "w2s", "ceiling"} <= set(e2h) and "legal" in e2h["easy"]
    assert set(saved["stopping"]) == {"weak", "w2s", "ceiling", "noise", "easy"}
    # noise labels: GT except on as many rows as the supervisor got wrong, where a different legal move stands
    assert res["noise_error_rate"] == pytest.approx(1 - res["agreement"]["w2s"]["supervisor_acc"], abs=0.2)


def test_chess_analysis_errors_are_one_line_before_training(cfg_factory):
    cfg = cfg_factory("task=chess", *CHESS_ANALYSES, "analysis.easy_to_hard.by=confidence")
    with pytest.raises(
        ConfigError, match=r"easy_to_hard.by='confidence'; choices for task 'chess': \[.*'rating'"
    ):
        run(cfg)
    assert not Path(cfg.paths.artifact_root, "train").exists()
    with pytest.raises(ConfigError, match="prompting needs a classify task"):
        run(cfg_factory("task=chess", *CHESS_ANALYSES, "analysis.prompting.enabled=true"))


def test_chess_defaults_are_decoders_and_chess_splits(cfg_factory):
    cfg = cfg_factory("task=chess", "loss=conf")
    assert (cfg.supervisor.arch, cfg.student.arch) == ("decoder", "decoder")
    assert cfg.split.transfer == 1000 and cfg.loss.name == "conf"
    validate(cfg)


def test_toy_ladder_learns_labels_are_greedy_and_upstream_is_reused(cfg_factory):
    cfg = toy_cfg(cfg_factory)
    t = time.time()
    res = run(cfg)
    assert res["ceiling"]["acc"] >= 0.9 and res["weak"]["acc"] >= 0.9  # the model can learn the task
    assert set(res["agreement"]["w2s"]) >= {"all", "supervisor_right", "supervisor_wrong"}
    assert res["stopping"]["w2s"]["points"] >= 1 and res["selected_by"] == "acc"
    # the stored weak labels are the supervisor's greedy answers, which its test predictions also are
    labels_dir = next(p for p in Path(cfg.paths.artifact_root, "labels").iterdir() if p.is_dir())
    lab = load_from_disk(str(labels_dir / "labels"))["transfer"]
    assert len(lab) == 120 and set(lab["label"]) <= {"rook", "bishop", "knight", ""}
    assert built(cfg.paths.artifact_root, t) == {"task": 1, "train": 3, "labels": 1}
    # another loss retrains only the weak-to-strong student
    t = time.time()
    cfg2 = toy_cfg(cfg_factory, "loss=conf")
    res2 = run(cfg2)
    assert built(cfg.paths.artifact_root, t) == {"train": 1}
    assert res2["weak"] == res["weak"] and res2["ceiling"] == res["ceiling"]
    saved = json.loads(Path(cfg2.paths.output_dir, "results.json").read_text())
    assert saved["loss"] == "conf" and saved["pgr"].keys() == {"acc"}


@pytest.mark.parametrize("mode", ["probe", "lora"])
def test_chess_bootstrap_runs_every_mode_and_reports_chain_and_direct(cfg_factory, mode):
    cfg = cfg_factory(
        "task=chess",
        *TINY,
        *SMALL,
        "method=bootstrap",
        "chain1=tiny-llama",
        f"supervisor.train_mode={mode}",
        f"student.train_mode={mode}",
        "loss=conf",
    )
    res = run(cfg)
    assert res["splits"]["transfer1"] == 60  # a fresh transfer split for the second step
    assert [c["model"] for c in res["chain"]] == ["tiny-llama"]
    assert {"acc", "legal"} <= set(res["direct"]) and "pgr_direct" in res
    assert set(res["agreement"]) == {"chain1", "w2s", "direct"}
    assert res["stages"]["direct"] != res["stages"]["w2s"]


def test_selection_breaks_exact_match_ties_by_token_accuracy():
    from types import SimpleNamespace

    from w2s.analysis import stopping
    from w2s.module import KeepBest

    net = torch.nn.Linear(2, 2)
    module = SimpleNamespace(model=net)
    points = [(4, 0.0, 0.2), (8, 0.0, 0.5), (12, 0.0, 0.4)]  # exact match stuck at 0, token accuracy rising
    plain, tied = KeepBest("val/acc"), KeepBest("val/acc", tie_break="val/tok_acc")
    for step, acc, tok in points:
        trainer = SimpleNamespace(
            sanity_checking=False, global_step=step, callback_metrics={"val/acc": acc, "val/tok_acc": tok}
        )
        with torch.no_grad():
            net.weight.fill_(step)
        plain.on_validation_end(trainer, module)
        tied.on_validation_end(trainer, module)
    assert plain.best_step == 4 and tied.best_step == 8
    assert float(tied.state["weight"][0, 0]) == 8.0  # the weights of that point are the ones kept
    curve = [{"step": s, "val/acc": a, "val/tok_acc": t, "test_gt/acc": s / 100} for s, a, t in points]
    assert stopping(curve, "val/acc", tie_break="val/tok_acc")["selected_step"] == 8
    assert stopping(curve, "val/acc")["selected_step"] == 4
