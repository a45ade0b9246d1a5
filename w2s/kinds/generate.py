"""The generative kind (chess puzzles): labels are answer strings; weak labels are a supervisor's greedy answers,
metrics come from `task.metrics`, checkpoints are selected by teacher-forced exact match, ties by token
accuracy. The models and stages of generation are in `w2s.generative`."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader

from w2s.data import AnswerCollate, Examples, PromptCollate, loader
from w2s.errors import ConfigError
from w2s.generative import SELECT, TIE_BREAK, Encoded, GenModule, build_gen_network, features_at_answers
from w2s.kinds.base import Labels, TaskData, load_state
from w2s.metrics import exact_match, same_text, wilson


def other_answer(position: str, target: str, pool: list[str], rng: random.Random) -> str:
    """A wrong answer for any exact-match task: another row's target that differs from this one."""
    others = sorted({a for a in pool if a.strip() != target.strip()})
    return rng.choice(others) if others else target


class Generative:
    """Generation: the model writes the answer; labels are answer strings."""

    columns = ("prompt", "target")  # a row's content; no class label, so no balancing
    default_classes = None
    gt_column = "target"
    module_cls = GenModule
    select, tie_break = SELECT, TIE_BREAK
    has_confidence = False  # greedy answers carry none: easy-to-hard needs a task column (e.g. `rating`)

    def __init__(self, cfg: Any, data: TaskData):
        self.cfg, self.data = cfg, data
        self.max_answer = int(cfg.task.get("max_answer_tokens", 8))
        # a task without a domain parser compares answers as strings
        self.metric_fn = instantiate(cfg.task.metrics) if cfg.task.get("metrics") else exact_match
        self.same_fn = instantiate(cfg.task.same_answer) if cfg.task.get("same_answer") else same_text
        wrong = cfg.task.get("wrong_answer")
        self.wrong_fn = instantiate(wrong) if wrong else other_answer
        self._enc: dict[str, Encoded] = {}

    def key(self) -> dict[str, Any]:
        return {"max_answer": self.max_answer, "select": [SELECT, TIE_BREAK]}

    def info(self) -> dict[str, Any]:
        return {"prompts_truncated": {n: len(e.truncated) for n, e in self._enc.items()}}

    def feature_precision(self, model_cfg: Any) -> str | None:
        """A generative probe's hidden states are computed per stage in the decoder's own dtype."""
        return None

    def _no_features(self) -> ConfigError:
        return ConfigError(
            f"task {self.cfg.task.name!r} generates answers: its labels are strings, which a probe on frozen "
            "features cannot clean (clean=none)"
        )

    def frozen_features(self, model_cfg: Any, rows: Sequence[int], layer: int | None) -> torch.Tensor:
        raise self._no_features()

    def probe_layer(self, model_cfg: Any) -> int | None:
        raise self._no_features()

    def _view(self, model_cfg: Any) -> Encoded:
        if model_cfg.name not in self._enc:
            self._enc[model_cfg.name] = Encoded(model_cfg, self.data.splits["all"], self.max_answer)
        return self._enc[model_cfg.name]

    def prepare(self, model_cfg: Any) -> None:
        self._view(model_cfg)

    def collate(self, model_cfg: Any) -> AnswerCollate:
        return AnswerCollate(self._view(model_cfg).tok.pad_token_id)

    def network(self, model_cfg: Any) -> nn.Module:
        return build_gen_network(model_cfg)

    def load_trained(self, model_cfg: Any, artifact: Path) -> nn.Module:
        return load_state(build_gen_network(model_cfg), artifact)

    def examples(self, model_cfg: Any, net: nn.Module) -> Callable[[Dataset, Labels], Examples]:
        enc = self._view(model_cfg)

        def make(rows: Dataset, answers: Labels) -> Examples:
            ids, ns = enc.rows(rows, answers)
            inputs: list[Any] = ids
            if model_cfg.train_mode == "probe":
                inputs = features_at_answers(net, ids, ns, int(self.cfg.eval_batch_size))
            return Examples(inputs, [x[-n:] for x, n in zip(ids, ns, strict=True)], rows["idx"])

        return make

    def predict_batches(self, model_cfg: Any, net: nn.Module, rows: Dataset) -> DataLoader:
        """Prompts, left-padded, longest first: greedy decoding of `max_answer` tokens per row."""
        enc = self._view(model_cfg)
        ids = enc.prompt_ids(rows)
        collate = PromptCollate(enc.tok.pad_token_id, enc.tok.eos_token_id, self.max_answer)
        return loader(
            Examples(ids, [0] * len(ids), rows["idx"]), int(self.cfg.eval_batch_size), collate, False
        )

    def decode(self, model_cfg: Any, out: Any) -> Labels:
        """Generated token ids per row -> the answer each names (its first move token)."""
        from w2s.generative import answer_of

        tok = self._view(model_cfg).tok
        return [answer_of(tok.decode(g, skip_special_tokens=True)) for g in out]

    def _positions(self, split: str) -> list[str]:
        rows = self.data.splits[split]
        return list(rows["fen"] if "fen" in rows.column_names else rows["prompt"])

    def score(self, preds: Labels, split: str = "test", mask: np.ndarray | None = None) -> dict[str, float]:
        pos, gt = self._positions(split), list(self.data.splits[split]["target"])
        keep = range(len(gt)) if mask is None else np.flatnonzero(mask)
        return self.metric_fn([pos[i] for i in keep], [preds[i] for i in keep], [gt[i] for i in keep])

    def intervals(self, preds: Labels, split: str = "test") -> dict[str, list[float]]:
        """Wilson for each metric, every one a proportion of the split's rows (exact match, legal moves);
        answers carry no score, so no AUROC."""
        n = len(self.data.splits[split])
        return {m: list(wilson(round(v * n), n)) for m, v in self.score(preds, split).items()}

    def same(self, a: Labels, b: Labels, split: str) -> np.ndarray:
        pos = self._positions(split)
        return np.asarray([self.same_fn(p, x, y) for p, x, y in zip(pos, a, b, strict=True)], dtype=bool)

    def right(self, preds: Labels, split: str) -> np.ndarray:
        return self.same(preds, list(self.data.splits[split]["target"]), split)

    def noise(self, weak: Labels, split: str, seed: int) -> Labels:
        """Appendix E for answers: GT everywhere but on random rows, as many as the weak labels get wrong,
        which get a random wrong answer (chess: a random legal move other than the solution)."""
        gt, pos = list(self.data.splits[split]["target"]), self._positions(split)
        n_wrong = int((~self.right(weak, split)).sum())
        rng = random.Random(seed)
        out = list(gt)
        for i in rng.sample(range(len(gt)), n_wrong):
            out[i] = self.wrong_fn(pos[i], gt[i], gt, rng)
        return out

    def confidence(self, labels: Labels) -> np.ndarray:
        raise ConfigError("greedy answers carry no confidence: easy_to_hard.by needs a task column")
