"""Preference loaders (`type: pairwise`): rows `id, prompt, first, second, label` (label 1 = `second` better).

Which completion comes first is drawn once per loader, seeded, exactly half each way, so position alone
scores 50%. Prompts end with "Assistant:"; a completion is rendered as `prompt + " " + completion`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

from w2s.tasks.bigbench import task_json
from w2s.tasks.chess import hub_error
from w2s.tasks.nlp import respect_offline_env

HHH_SUBSETS = ("helpful", "honest", "harmless", "other")
HH_RLHF = "Anthropic/hh-rlhf"
ASSISTANT = "\n\nAssistant:"


def pairs_to_dataset(rows: list[dict[str, Any]], seed: int, source: str) -> Dataset:
    """Rows with `better`/`worse` completions -> pairwise schema, order randomised (seeded, exactly 50/50)."""
    rows = [r for r in rows if r["better"].strip() != r["worse"].strip()]
    if not rows:
        raise ValueError(f"preference source {source!r} produced no usable pairs")
    flips = [i % 2 for i in range(len(rows))]
    random.Random(seed).shuffle(flips)
    out: dict[str, list[Any]] = {"id": [], "prompt": [], "first": [], "second": [], "label": []}
    extra = [k for k in rows[0] if k not in ("id", "prompt", "better", "worse")]
    out.update({k: [] for k in extra})
    for r, flip in zip(rows, flips, strict=True):
        out["id"].append(r["id"])
        out["prompt"].append(r["prompt"])
        out["first"].append(r["worse"] if flip else r["better"])
        out["second"].append(r["better"] if flip else r["worse"])
        out["label"].append(int(flip))
        for k in extra:
            out[k].append(r[k])
    return Dataset.from_dict(out)


def load_hhh_alignment(
    subsets: list[str] | tuple[str, ...] = HHH_SUBSETS,
    seed: int = 0,
    path: str | None = None,
) -> Dataset:
    """BIG-bench hhh_alignment (221 pairs): `input` is the human's request, `target_scores` gives each of
    the two responses 1 (preferred) or 0. Read from the bigbench sdist in the cache, or from `path`, a
    folder of `<subset>/task.json` in BIG-bench's schema (tests' fixtures); `subset` is kept."""
    bad = sorted(set(subsets) - set(HHH_SUBSETS))
    if bad:
        raise ValueError(f"hhh_alignment subsets {bad} unknown; choices: {list(HHH_SUBSETS)}")
    rows = []
    for sub in subsets:
        data = (
            json.loads((Path(path) / sub / "task.json").read_text())
            if path
            else task_json("hhh_alignment", sub)
        )
        for i, ex in enumerate(data["examples"]):
            ranked = sorted(ex["target_scores"].items(), key=lambda kv: -kv[1])
            if len(ranked) != 2 or ranked[0][1] == ranked[1][1]:
                raise ValueError(
                    f"hhh_alignment/{sub} example {i}: expected one preferred and one other response"
                )
            rows.append(
                {
                    "id": f"hhh-{sub}-{i}",
                    "prompt": f"Human: {ex['input'].strip()}{ASSISTANT}",
                    "better": ranked[0][0].strip(),
                    "worse": ranked[1][0].strip(),
                    "subset": sub,
                }
            )
    return pairs_to_dataset(rows, seed, "hhh_alignment")


def split_dialog(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(shared prompt ending in "Assistant:", chosen reply, rejected reply) of two HH-RLHF transcripts, or
    None when they differ before their last Assistant turn or a reply is empty."""
    i, j = chosen.rfind(ASSISTANT), rejected.rfind(ASSISTANT)
    if i < 0 or j < 0 or chosen[:i] != rejected[:j]:
        return None
    prompt = chosen[: i + len(ASSISTANT)].strip()
    a, b = chosen[i + len(ASSISTANT) :].strip(), rejected[j + len(ASSISTANT) :].strip()
    return (prompt, a, b) if a and b else None


def load_hh_rlhf(
    path: str = HH_RLHF,
    data_dir: str | None = None,
    split: str = "test",
    data_files: str | list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Anthropic/hh-rlhf: each row is two full transcripts `chosen`/`rejected` ("\\n\\nHuman: ...
    \\n\\nAssistant: ..."); the shared dialog is the prompt, the two last Assistant turns the completions.
    `data_dir` picks a subset (harmless-base, helpful-base, helpful-online, helpful-rejection-sampled)."""
    try:
        with respect_offline_env():
            raw = datasets.load_dataset(path, data_dir=data_dir, split=split, data_files=data_files)
    except Exception as e:  # noqa: BLE001 - any failure here means the same: no data offline
        raise hub_error(path, e, "task=hhh_alignment or task=chess_preference") from e
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    rows = []
    for k, ex in enumerate(raw):
        parts = split_dialog(ex["chosen"], ex["rejected"])
        if parts is not None:
            rows.append(
                {
                    "id": f"hh-{data_dir or 'all'}-{split}-{k}",
                    "prompt": parts[0],
                    "better": parts[1],
                    "worse": parts[2],
                }
            )
    return pairs_to_dataset(rows, seed, path)
