"""Prompting baselines (Section 5.2.1): zero- and k-shot prompting of a decoder, GT or weak labels as shots.

A prompt is k demonstrations (the task's `prompt_template` followed by a label word) and the query; the answer
is scored by the next-token log-probabilities of the two label words, so P(class 1) = softmax over the pair.
No generation and no parsing: a model that would answer something else still gets a calibrated score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2s import models
from w2s.artifacts import cached
from w2s.config import choices, decoders, model_config
from w2s.errors import ConfigError
from w2s.metrics import binary_metrics

log = logging.getLogger(__name__)

DEFAULT_WORDS = (" No", " Yes")
#: Where the shots' labels come from: GT of split A, or the supervisor's labels of split B.
SHOT_LABELS = ("gt", "weak")


def build_prompts(
    template: str,
    queries: list[dict[str, Any]],
    pool: list[dict[str, Any]],
    pool_labels: np.ndarray,
    k: int,
    label_words: tuple[str, str],
    seed: int,
    max_chars: int = 600,
) -> list[str]:
    """One prompt per query: `k` demonstrations drawn from `pool` (seeded per query, never the query itself)."""
    rng = np.random.default_rng(seed)
    hard = (np.asarray(pool_labels) > 0.5).astype(int)
    out = []
    for q in queries:
        shots = []
        if k:
            for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False):
                row = {c: _clip(v, max_chars) for c, v in pool[int(j)].items()}
                shots.append(template.format(**row) + label_words[hard[int(j)]])
        shots.append(template.format(**{c: _clip(v, max_chars) for c, v in q.items()}))
        out.append("\n\n".join(shots))
    return out


def _clip(value: Any, n: int) -> Any:
    return value[:n] if isinstance(value, str) else value


def label_token_ids(tok: Any, label_words: tuple[str, str]) -> list[int]:
    """The first token of each label word; distinct, or the comparison would be meaningless."""
    ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in label_words]
    if ids[0] == ids[1]:
        raise ValueError(f"label words {label_words!r} start with the same token {ids[0]}; pick other words")
    return ids


@torch.no_grad()
def score(model: Any, tok: Any, prompts: list[str], label_ids: list[int], batch_size: int, max_length: int):
    """P(second label word) for every prompt: last-position logits, left padding, batches sorted by length."""
    tok.padding_side = "left"
    tok.truncation_side = "left"
    model.eval()
    order = np.argsort([len(p) for p in prompts])
    probs = np.zeros(len(prompts), dtype=np.float32)
    for start in range(0, len(prompts), batch_size):
        rows = order[start : start + batch_size]
        enc = tok([prompts[i] for i in rows], return_tensors="pt", padding=True, truncation=True,
                  max_length=max_length)  # fmt: skip
        logits = model(**enc).logits[:, -1, :].float()
        pair = torch.log_softmax(logits, dim=-1)[:, label_ids]
        probs[rows] = torch.softmax(pair, dim=-1)[:, 1].numpy()
    return probs


def check_prompting(cfg: Any, classes: int | None) -> None:
    """Every prompting setting that can fail, before any training: one line naming the value."""
    pr = cfg.analysis.prompting
    if cfg.task.type != "classify" or not cfg.task.get("prompt_template"):
        raise ConfigError(
            f"analysis.prompting needs a classify task with a prompt_template; task {cfg.task.name!r} has none"
        )
    if classes is not None and classes != 2:
        raise ConfigError(
            f"analysis.prompting scores two label words; task {cfg.task.name!r} has {classes} classes"
        )
    if pr.model not in choices("model"):
        raise ConfigError(f"analysis.prompting.model={pr.model!r} unknown; choices: {decoders()}")
    if model_config(pr.model).get("arch") != "decoder":
        raise ConfigError(f"analysis.prompting.model={pr.model!r} is not a decoder; choices: {decoders()}")
    for k in pr.shots:
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ConfigError(f"analysis.prompting.shots has {k!r}; shots are integers >= 0")
    for src in pr.labels:
        if src not in SHOT_LABELS:
            raise ConfigError(f"analysis.prompting.labels has {src!r}; choices: {list(SHOT_LABELS)}")
    words = tuple(cfg.task.get("label_words") or DEFAULT_WORDS)
    try:
        label_token_ids(models.load_tokenizer(model_config(pr.model)), words)
    except ValueError as e:
        raise ConfigError(f"analysis.prompting.model={pr.model!r}: {e}") from None


def prompted_rows(test: Any, max_test: int | None, seed: int) -> Any:
    """The test rows prompted: a seeded sample of `max_test` rows (the split may be sorted by label), or all."""
    if not max_test or int(max_test) >= len(test):
        return test
    pick = np.random.default_rng(seed).choice(len(test), int(max_test), replace=False)
    return test.select(np.sort(pick).tolist())


def settings(pcfg: Any) -> list[tuple[int, str]]:
    """(shots, shot labels) of every baseline: zero shots once (no labels to show), k shots per label source."""
    return [(int(k), src) for k in pcfg.shots for src in (["gt"] if int(k) == 0 else list(pcfg.labels))]


def prompting_stage(
    cfg: Any,
    splits: Any,
    weak_transfer: np.ndarray,
    data_key: Any,
    labels_from: str,
) -> dict[str, dict[str, float]]:
    """Test metrics of each (shots, label source) prompting baseline; cached per model, data and setting.

    `max_test` scores a seeded sample of the test split (prompting a 0.5B model on 3,000 long prompts is the
    slowest part of a CPU run); results say how many rows were scored.
    """
    pcfg = cfg.analysis.prompting
    model_cfg = model_config(pcfg.model)
    template = cfg.task.prompt_template
    words = tuple(cfg.task.get("label_words") or DEFAULT_WORDS)
    test = prompted_rows(splits["test"], pcfg.get("max_test"), int(cfg.seed))
    cols = [c for c in test.column_names if c not in ("label", "idx", "hash")]
    queries = [{c: r[c] for c in cols} for r in test]
    gt = np.asarray(test["label"])
    sources = {
        "gt": (splits["weak"], np.asarray(splits["weak"]["label"], dtype=np.float32)),
        "weak": (splits["transfer"], np.asarray(weak_transfer, dtype=np.float32)),
    }
    out: dict[str, dict[str, float]] = {}
    loaded: dict[str, Any] = {}
    for k, src in settings(pcfg):
        pool_ds, pool_labels = sources[src]
        name = "0shot" if k == 0 else f"{k}shot_{src}"

        def build(path: Path, k=k, pool_ds=pool_ds, pool_labels=pool_labels) -> dict[str, Any]:
            if not loaded:
                loaded["tok"] = models.load_tokenizer(model_cfg)
                loaded["model"] = models.load_backbone(model_cfg, causal_lm=True)
            pool = [{c: r[c] for c in cols} for r in pool_ds]
            prompts = build_prompts(template, queries, pool, pool_labels, k, words, int(cfg.seed))
            ids = label_token_ids(loaded["tok"], words)
            p = score(
                loaded["model"], loaded["tok"], prompts, ids, int(pcfg.batch_size), int(pcfg.max_length)
            )
            np.save(path / "prob.npy", p)
            return {"n": len(p), "example_prompt": prompts[0][-2000:]}

        key = {
            "model": model_cfg.name,
            "source": dict(model_cfg.source),
            "data": data_key,
            "shots": k,
            "labels": src if k else None,
            "labels_from": labels_from if src == "weak" and k else None,
            "template": template,
            "words": list(words),
            "max_test": pcfg.get("max_test"),
            "max_length": int(pcfg.max_length),
        }
        art = cached(cfg.paths.artifact_root, "prompt", key, build, force=bool(cfg.force))
        out[name] = binary_metrics(np.load(art / "prob.npy"), gt)
        log.info("prompting %s with %s: %s", name, model_cfg.name, out[name])
    return {"model": model_cfg.name, "n_test": len(test), **out}
