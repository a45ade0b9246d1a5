"""Scored kinds: labels are class distributions (a binary label is P(class 1)), metrics accuracy and AUROC,
checkpoints by `early_stop.metric`. `Classify` reads one text per row, `Pairwise` two candidate completions
scored by one reward head; the image kind (`w2s.kinds.image`) is a `Scored` too."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader

from w2s import analysis, dist, models
from w2s.data import Examples, FeatureCollate, TextCollate, loader
from w2s.features import Featurizer, feature_precision, features
from w2s.kinds.base import Labels, TaskData, class_probs, load_state
from w2s.metrics import bootstrap_auroc, scores, wilson
from w2s.module import W2SModule
from w2s.networks import Cached, Classifier, lora_body
from w2s.text import TextFeaturizer, store_key, tokenize


@dataclass
class View:
    """What one model reads of every task row (None for rows no split holds), and how those rows batch."""

    inputs: list[Any]
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]]


class Scored(ABC):
    """The shared half of the scored kinds; a subclass says what a model reads of a row (`_read`, `_featurizer`)
    and how many logits its head gives (`n_out`)."""

    gt_column = "label"
    module_cls = W2SModule
    tie_break: str | None = None
    has_confidence = True
    default_classes: int | None = 2  # the class count when task.num_classes is not set (None: the data's)
    n_out = 2  # logits per row
    pairs = False  # rows hold one input per candidate

    def __init__(self, cfg: Any, data: TaskData):
        self.cfg, self.data = cfg, data
        self.select = str(cfg.early_stop.metric)
        self._views: dict[str, View] = {}

    def key(self) -> dict[str, Any]:
        return {}

    def info(self) -> dict[str, Any]:
        return {}

    # --- what a model reads -------------------------------------------------------------------------------
    @abstractmethod
    def _featurizer(self, model_cfg: Any, layer: int | None = None) -> Featurizer:
        """Frozen features of rows (`w2s.features.Featurizer`) from hidden layer `layer`."""

    @abstractmethod
    def _store_key(self) -> dict[str, Any]:
        """What a feature store of this kind depends on besides the model (e.g. the text template)."""

    @abstractmethod
    def _read(self, model_cfg: Any) -> View:
        """What a finetuned (full, LoRA) model reads of every row."""

    def feature_precision(self, model_cfg: Any) -> str | None:
        """What a probe's frozen features were computed in (bf16 where native): part of its stage's key."""
        return feature_precision(self.cfg, model_cfg) if model_cfg.train_mode == "probe" else None

    def probe_layer(self, model_cfg: Any) -> int | None:
        """The model's own features (an image model's pooled output, the only ones it gives)."""
        return None

    def frozen_features(self, model_cfg: Any, rows: Sequence[int], layer: int | None) -> torch.Tensor:
        feat = self._featurizer(model_cfg, layer)
        key = {**self._store_key(), "layer": layer} if layer is not None else self._store_key()
        return features(self.cfg, model_cfg, key, feat, rows)

    def _view(self, model_cfg: Any) -> View:
        if model_cfg.name not in self._views:
            if model_cfg.train_mode == "probe":  # only the rows the run's splits hold; rank 0 computes them
                idx = self.data.rows_used()
                feats = self.frozen_features(model_cfg, idx, None) if dist.is_zero() else None
                dist.barrier()
                if feats is None:
                    feats = self.frozen_features(model_cfg, idx, None)
                inputs: list[Any] = [None] * len(self.data.splits["all"])
                for i, f in zip(idx, feats, strict=True):
                    inputs[i] = f
                self._views[model_cfg.name] = View(inputs, FeatureCollate(pairs=self.pairs))
            else:
                self._views[model_cfg.name] = self._read(model_cfg)
        return self._views[model_cfg.name]

    def prepare(self, model_cfg: Any) -> None:
        self._view(model_cfg)

    def collate(self, model_cfg: Any) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return self._view(model_cfg).collate

    # --- the network ----------------------------------------------------------------------------------------
    def _build(self, model_cfg: Any) -> nn.Module:
        """The network of `model_cfg`'s train mode: a head on cached features (probe), or on the body the model
        config names (`network`), with LoRA adapters on its backbone (lora) or trained whole (full)."""
        if model_cfg.train_mode == "probe":
            dim = next(x for x in self._view(model_cfg).inputs if x is not None).shape[-1]
            return Classifier(Cached(dim), self.n_out, zero_init=False)
        body = instantiate(model_cfg.network)(model_cfg)
        if model_cfg.train_mode == "lora":
            body = lora_body(body, model_cfg)
        return Classifier(body, self.n_out)

    def network(self, model_cfg: Any) -> nn.Module:
        return self._build(model_cfg)

    def load_trained(self, model_cfg: Any, artifact: Path) -> nn.Module:
        return load_state(self._build(model_cfg), artifact)

    # --- rows, batches, predictions ---------------------------------------------------------------------------
    def examples(self, model_cfg: Any, net: nn.Module) -> Callable[[Dataset, Labels], Examples]:
        inputs = self._view(model_cfg).inputs

        def make(rows: Dataset, labels: Labels) -> Examples:
            idx = rows["idx"]
            return Examples([inputs[i] for i in idx], [self._target(v) for v in labels], idx)

        return make

    def _target(self, label: Any) -> Any:
        """A stored label as a training target: a C-class GT index becomes its one-hot distribution (a binary
        one already is P(class 1))."""
        if self.n_out > 2 and not isinstance(label, list | tuple):
            return [float(c == int(label)) for c in range(self.n_out)]
        return label

    def predict_batches(self, model_cfg: Any, net: nn.Module, rows: Dataset) -> DataLoader:
        ex = self.examples(model_cfg, net)(rows, [0.0] * len(rows))
        return loader(ex, int(self.cfg.eval_batch_size), self.collate(model_cfg), False)

    def decode(self, model_cfg: Any, out: Any) -> Labels:
        """Class probabilities [B, C] -> P(class 1) per row (binary) or the C probabilities."""
        return (out[:, 1] if out.shape[-1] == 2 else out).tolist()

    # --- scores and agreement -----------------------------------------------------------------------------------
    def _gt(self, split: str) -> np.ndarray:
        return np.asarray(self.data.splits[split][self.gt_column])

    def score(self, preds: Labels, split: str = "test", mask: np.ndarray | None = None) -> dict[str, float]:
        p, y = class_probs(preds), self._gt(split)
        if mask is not None:
            p, y = p[mask], y[mask]
        return scores(p, y)

    def intervals(self, preds: Labels, split: str = "test") -> dict[str, list[float]]:
        """Wilson for the accuracy `score` reports; bootstrap AUROC on P(class 1), or macro over C classes."""
        p, y = class_probs(preds), self._gt(split)
        right = round(self.score(preds, split)["acc"] * len(y))
        auroc = bootstrap_auroc(p[:, 1] if p.shape[1] == 2 else p, y)  # 1,000 resamples, seed 0
        return {"acc": list(wilson(right, len(y))), "auroc": list(auroc)}

    def same(self, a: Labels, b: Labels, split: str) -> np.ndarray:
        return class_probs(a).argmax(-1) == class_probs(b).argmax(-1)

    def right(self, preds: Labels, split: str) -> np.ndarray:
        return class_probs(preds).argmax(-1) == self._gt(split)

    def noise(self, weak: Labels, split: str, seed: int) -> Labels:
        return analysis.random_noise_labels(np.asarray(weak), self._gt(split), seed).tolist()

    def confidence(self, labels: Labels) -> np.ndarray:
        """Difficulty by the supervisor's confidence, |p - 0.5| (binary) or its top probability (high = easy)."""
        p = class_probs(labels)
        return np.abs(p[:, 1] - 0.5) if p.shape[1] == 2 else p.max(1)


class _Text(Scored):
    """A scored kind whose rows are rendered to text by the task's template."""

    def _featurizer(self, model_cfg: Any, layer: int | None = None) -> TextFeaturizer:
        return TextFeaturizer(self.cfg, model_cfg, self.data.splits["all"], layer)

    def probe_layer(self, model_cfg: Any) -> int | None:
        """The middle block's output, `hidden_states[num_hidden_layers // 2]` (index 0 is the embeddings)."""
        return models.num_layers(model_cfg) // 2

    def _store_key(self) -> dict[str, Any]:
        return store_key(self.cfg.task)

    def _read(self, model_cfg: Any) -> View:
        ids, tok = tokenize(model_cfg, self.cfg.task, self.data.splits["all"])
        return View(ids, TextCollate(pad_id=tok.pad_token_id, pairs=self.pairs))


class Classify(_Text):
    """Classification of one text per row (`label` in [0, task.num_classes), binary by default)."""

    columns = ("text", "label")

    def __init__(self, cfg: Any, data: TaskData):
        super().__init__(cfg, data)
        self.n_out = classes(cfg, data, self.default_classes)


class Pairwise(_Text):
    """Reward modelling: which of two completions of a prompt is better. Both go through the model, one scalar
    head scores each, and the loss sees the two-way logits [r_first, r_second]."""

    columns = ("prompt", "first", "second", "label")
    n_out, pairs = 1, True

    def network(self, model_cfg: Any) -> nn.Module:
        """On a decoder the head starts as the unembedding row of `task.reward_init_token` (the paper's reward
        head init), so the first score is the LM's logit of that token; encoders start at zero."""
        net = self._build(model_cfg)
        init = reward_head_init(self.cfg.task, model_cfg)
        if init is not None:
            with torch.no_grad():
                net.head.weight.copy_(init.reshape(1, -1))
                net.head.bias.zero_()
        return net


def classes(cfg: Any, data: TaskData | None, default: int | None) -> int:
    """A classified task's class count: `task.num_classes`, else the count the task stage found, else the kind's
    default."""
    found = data.info.get("classes") if data is not None else None
    return int(cfg.task.get("num_classes") or found or default or 2)


def reward_head_init(task_cfg: Any, model_cfg: Any) -> torch.Tensor | None:
    """The unembedding row of `task.reward_init_token` on a decoder; None (zero init) on an encoder or with a
    null token."""
    token = task_cfg.get("reward_init_token", " Yes")
    if model_cfg.get("arch") != "decoder" or token is None:
        return None
    return models.unembedding_row(model_cfg, token)
