"""What differs between task kinds, once per kind: the weak-to-strong ladder (`w2s.pipeline`) is written over it.

A kind answers five questions for the ladder: what a model sees of a row (`rows`), which network trains
(`network`, `load_trained`), what a trained model says about a split (`predict`: the labels it would give),
how good that is (`score`) and whether two models say the same thing (`same`, `right`). Two kinds exist:

- `Scored` (classify, pairwise): labels are P(class 1); metrics acc/AUROC; checkpoints by `early_stop.metric`.
- `Generative` (generate): labels are answer strings (greedy decoding); metrics from `task.metrics`;
  checkpoints by teacher-forced exact match, ties broken by token accuracy.

A new kind is one class here and one entry in `KINDS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from hydra.utils import instantiate

from w2s import analysis, dist, models, networks
from w2s.data import AnswerCollate, Collate, Examples, loader
from w2s.errors import ConfigError
from w2s.features import feature_precision, features, tokenize
from w2s.generative import (
    SELECT,
    TIE_BREAK,
    Encoded,
    GenModule,
    build_gen_network,
    features_at_answers,
    generate_answers,
)
from w2s.metrics import binary_metrics, exact_match, same_text
from w2s.module import W2SModule, predict


@dataclass
class TaskData:
    """The task stage's output: its splits (a DatasetDict on disk at `path`, `all` holding every row), the
    loader's counts, and the key that names it (the `data` part of every downstream key)."""

    splits: DatasetDict
    path: str
    info: dict[str, Any]
    key: dict[str, Any]

    def rows_used(self) -> list[int]:
        """The task rows some split of this run holds (frozen features are computed for these only)."""
        return sorted({i for name, part in self.splits.items() if name != "all" for i in part["idx"]})


def load_state(net: torch.nn.Module, artifact: Path) -> torch.nn.Module:
    """Load the trainable weights a train stage saved (tensors only: a shared cache can run no code)."""
    net.load_state_dict(torch.load(artifact / "state.pt", weights_only=True), strict=False)
    return net


# ----------------------------------------------------------------------------------------------- scored
#: Logit count of the head per scored kind: two classes, or one score per candidate (pairwise).
N_OUT = {"classify": 2, "pairwise": 1}


def build_network(
    model_cfg: Any, kind: str, inputs: list[Any], head_init: torch.Tensor | None = None
) -> torch.nn.Module:
    """The trainable network of one train mode; `head_init` [D] seeds a one-score (reward) head."""
    n_out = N_OUT[kind]
    builders = {
        "probe": lambda: networks.Head(next(x for x in inputs if x is not None).shape[-1], n_out),
        "full": lambda: networks.Classifier(models.load_backbone(model_cfg), model_cfg.pooling, n_out),
        "lora": lambda: networks.add_lora(
            networks.Classifier(models.load_backbone(model_cfg), model_cfg.pooling, n_out), model_cfg
        ),
    }
    net = builders[model_cfg.train_mode]()  # validated against config.TRAIN_MODES
    for m in net.modules():  # the Classifier may sit inside a LoRA wrapper
        if isinstance(m, networks.Classifier):
            m.layer = model_cfg.get("layer")
    if model_cfg.train_mode == "lora":
        for p in net.head.parameters():
            p.requires_grad_(True)
    if head_init is not None:
        with torch.no_grad():
            net.head.weight.copy_(head_init.reshape(1, -1))
            net.head.bias.zero_()
    return net


def reward_head_init(task_cfg: Any, model_cfg: Any, kind: str) -> torch.Tensor | None:
    """Pairwise tasks on a decoder: the unembedding row of `task.reward_init_token` (the paper's reward head
    init); encoders, other kinds, or a null token keep the zero init."""
    token = task_cfg.get("reward_init_token", " Yes")
    if kind != "pairwise" or model_cfg.get("arch") != "decoder" or token is None:
        return None
    return models.unembedding_row(model_cfg, token)


class Scored:
    """Classification and pairwise preference: labels are P(class 1) (soft), metrics acc and AUROC."""

    gt_column = "label"
    module_cls = W2SModule
    tie_break: str | None = None
    has_confidence = True  # easy-to-hard may rank rows by the supervisor's confidence

    def __init__(self, cfg: Any, data: TaskData):
        self.cfg, self.data, self.type = cfg, data, cfg.task.type
        self.select = str(cfg.early_stop.metric)
        self._inputs: dict[str, tuple[list[Any], Collate]] = {}

    def key(self) -> dict[str, Any]:
        return {}

    def info(self) -> dict[str, Any]:
        return {}

    def feature_precision(self, model_cfg: Any) -> str | None:
        """What a probe's frozen features were computed in (bf16 where native): part of its stage's key."""
        return feature_precision(self.cfg, model_cfg) if model_cfg.train_mode == "probe" else None

    def _view(self, model_cfg: Any) -> tuple[list[Any], Collate]:
        """Per-row inputs of the task for this model: cached features (probe) or token ids (full, LoRA)."""
        if model_cfg.name not in self._inputs:
            ds = self.data.splits["all"]
            if model_cfg.train_mode == "probe":  # only the rows the run's splits hold; rank 0 computes them
                idx = self.data.rows_used()
                feats = features(self.cfg, model_cfg, self.cfg.task, ds, idx) if dist.is_zero() else None
                dist.barrier()
                if feats is None:
                    feats = features(self.cfg, model_cfg, self.cfg.task, ds, idx)
                inputs: list[Any] = [None] * len(ds)
                for i, f in zip(idx, feats, strict=True):
                    inputs[i] = f
                self._inputs[model_cfg.name] = (inputs, Collate())
            else:
                ids, tok = tokenize(model_cfg, self.cfg.task, ds)
                self._inputs[model_cfg.name] = (ids, Collate(pad_id=tok.pad_token_id))
        return self._inputs[model_cfg.name]

    def prepare(self, model_cfg: Any) -> None:
        """Compute what the model sees of the task (cached per model) before a stage seeds its RNG."""
        self._view(model_cfg)

    def collate(self, model_cfg: Any) -> Collate:
        return self._view(model_cfg)[1]

    def network(self, model_cfg: Any) -> torch.nn.Module:
        inputs = self._view(model_cfg)[0]
        return build_network(
            model_cfg, self.type, inputs, reward_head_init(self.cfg.task, model_cfg, self.type)
        )

    def load_trained(self, model_cfg: Any, artifact: Path) -> torch.nn.Module:
        return load_state(build_network(model_cfg, self.type, self._view(model_cfg)[0]), artifact)

    def rows(self, model_cfg: Any, net: torch.nn.Module):
        inputs = self._view(model_cfg)[0]

        def make(rows: Dataset, labels: list[Any]) -> Examples:
            idx = rows["idx"]
            return Examples([inputs[i] for i in idx], [float(v) for v in labels], idx)

        return make

    def predict(self, model_cfg: Any, net: torch.nn.Module, rows: Dataset) -> list[float]:
        """P(class 1) for every row of `rows`, in its order."""
        make = self.rows(model_cfg, net)
        batches = loader(
            make(rows, [0.0] * len(rows)), int(self.cfg.eval_batch_size), self.collate(model_cfg), False
        )
        idx, prob = predict(net, batches)
        at = {int(i): float(p) for i, p in zip(idx, prob, strict=True)}
        return [at[i] for i in rows["idx"]]

    def _gt(self, split: str) -> np.ndarray:
        return np.asarray(self.data.splits[split]["label"], dtype=np.float32)

    def score(
        self, preds: list[Any], split: str = "test", mask: np.ndarray | None = None
    ) -> dict[str, float]:
        p, y = np.asarray(preds, dtype=np.float32), self._gt(split)
        if mask is not None:
            p, y = p[mask], y[mask]
        return binary_metrics(p, y)

    def same(self, a: list[Any], b: list[Any], split: str) -> np.ndarray:
        return (np.asarray(a) > 0.5) == (np.asarray(b) > 0.5)

    def right(self, preds: list[Any], split: str) -> np.ndarray:
        return (np.asarray(preds) > 0.5) == (self._gt(split) > 0.5)

    def noise(self, weak: list[Any], split: str, seed: int) -> list[float]:
        return analysis.random_noise_labels(
            np.asarray(weak, dtype=np.float32), self._gt(split), seed
        ).tolist()

    def confidence(self, labels: list[Any]) -> np.ndarray:
        """Difficulty by the supervisor's confidence |p - 0.5| (high = easy)."""
        return np.abs(np.asarray(labels, dtype=np.float32) - 0.5)


# ----------------------------------------------------------------------------------------------- generative
def other_answer(position: str, target: str, pool: list[str], rng: random.Random) -> str:
    """A wrong answer for any exact-match task: another row's target that differs from this one."""
    others = sorted({a for a in pool if a.strip() != target.strip()})
    return rng.choice(others) if others else target


class Generative:
    """Generation (chess puzzles): labels are answer strings; weak labels are a supervisor's greedy answers."""

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

    def _view(self, model_cfg: Any) -> Encoded:
        if model_cfg.name not in self._enc:
            self._enc[model_cfg.name] = Encoded(model_cfg, self.data.splits["all"], self.max_answer)
        return self._enc[model_cfg.name]

    def prepare(self, model_cfg: Any) -> None:
        self._view(model_cfg)

    def collate(self, model_cfg: Any) -> AnswerCollate:
        return AnswerCollate(self._view(model_cfg).tok.pad_token_id)

    def network(self, model_cfg: Any) -> torch.nn.Module:
        return build_gen_network(model_cfg)

    def load_trained(self, model_cfg: Any, artifact: Path) -> torch.nn.Module:
        return load_state(build_gen_network(model_cfg), artifact)

    def rows(self, model_cfg: Any, net: torch.nn.Module):
        enc = self._view(model_cfg)

        def make(rows: Dataset, answers: list[Any]) -> Examples:
            ids, ns = enc.rows(rows, answers)
            inputs: list[Any] = ids
            if model_cfg.train_mode == "probe":
                inputs = features_at_answers(net, ids, ns, int(self.cfg.eval_batch_size))
            return Examples(inputs, [x[-n:] for x, n in zip(ids, ns, strict=True)], rows["idx"])

        return make

    def predict(self, model_cfg: Any, net: torch.nn.Module, rows: Dataset) -> list[str]:
        return generate_answers(net, self._view(model_cfg), rows, int(self.cfg.eval_batch_size))

    def _positions(self, split: str) -> list[str]:
        rows = self.data.splits[split]
        return list(rows["fen"] if "fen" in rows.column_names else rows["prompt"])

    def score(
        self, preds: list[Any], split: str = "test", mask: np.ndarray | None = None
    ) -> dict[str, float]:
        pos, gt = self._positions(split), list(self.data.splits[split]["target"])
        keep = range(len(gt)) if mask is None else np.flatnonzero(mask)
        return self.metric_fn([pos[i] for i in keep], [preds[i] for i in keep], [gt[i] for i in keep])

    def same(self, a: list[Any], b: list[Any], split: str) -> np.ndarray:
        pos = self._positions(split)
        return np.asarray([self.same_fn(p, x, y) for p, x, y in zip(pos, a, b, strict=True)], dtype=bool)

    def right(self, preds: list[Any], split: str) -> np.ndarray:
        return self.same(preds, list(self.data.splits[split]["target"]), split)

    def noise(self, weak: list[Any], split: str, seed: int) -> list[str]:
        """Appendix E for answers: GT everywhere but on random rows, as many as the weak labels get wrong,
        which get a random wrong answer (chess: a random legal move other than the solution)."""
        gt, pos = list(self.data.splits[split]["target"]), self._positions(split)
        n_wrong = int((~self.right(weak, split)).sum())
        rng = random.Random(seed)
        out = list(gt)
        for i in rng.sample(range(len(gt)), n_wrong):
            out[i] = self.wrong_fn(pos[i], gt[i], gt, rng)
        return out


#: One implementation per `task.type`.
KINDS: dict[str, type] = {"classify": Scored, "pairwise": Scored, "generate": Generative}


def kind_class(task_type: str) -> type:
    if task_type not in KINDS:
        raise ConfigError(f"task.type={task_type!r}; choices: {sorted(KINDS)}")
    return KINDS[task_type]
