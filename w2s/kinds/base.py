"""The kind interface: everything the ladder asks of a kind of task, as one typed protocol.

The ladder (`w2s.pipeline`), the train and label stages (`w2s.fit`), the cleaning stage and the analyses
(`w2s.hooks`) are written against `Kind` alone; they never branch on the kind. A kind owns the whole path of
a row: what a model reads of it (token ids, candidate pairs, pixels, or cached features), the network that
reads it, how rows become batches, what a trained network's output means as a label, how labels are scored,
and when two labels say the same thing. `docs/DESIGN.md` ("Adding a kind") walks through one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn
from torch.utils.data import DataLoader

from w2s.data import Examples

#: A split's labels (or predictions) in its row order: P(class 1), C class probabilities, or answer strings.
Labels = list[Any]


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


@runtime_checkable
class Kind(Protocol):
    """One kind of task, from rows to agreement. Built once per run as `KindClass(cfg, data)`."""

    data: TaskData
    #: the columns a loader's rows must fill (all but `label` define a row's content: dedup, disjoint splits)
    columns: tuple[str, ...]
    #: a classified kind's class count when task.num_classes is unset (None: the data's); unclassified kinds
    #: have no `label` column
    default_classes: int | None
    #: the task column holding ground truth (GT is one more label source: that column of a split)
    gt_column: str
    #: the validation metric checkpoints are selected by, and the one that breaks its ties
    select: str
    tie_break: str | None
    #: whether a label carries a confidence (easy-to-hard may rank rows by the supervisor's)
    has_confidence: bool
    #: the LightningModule class that trains and predicts this kind's networks
    module_cls: type

    def key(self) -> dict[str, Any]:
        """What the kind adds to every train and label stage key."""
        ...

    def info(self) -> dict[str, Any]:
        """What the kind adds to results.json `task_info`."""
        ...

    def feature_precision(self, model_cfg: Any) -> str | None:
        """The precision frozen features were computed in for this model (None: no frozen pass)."""
        ...

    def prepare(self, model_cfg: Any) -> None:
        """Compute what `model_cfg` reads of every row (cached per model), before a stage seeds its RNG."""
        ...

    def network(self, model_cfg: Any) -> nn.Module:
        """A fresh trainable network for `model_cfg`'s train mode."""
        ...

    def load_trained(self, model_cfg: Any, artifact: Path) -> nn.Module:
        """The network a train stage saved in `artifact`."""
        ...

    def examples(self, model_cfg: Any, net: nn.Module) -> Callable[[Dataset, Labels], Examples]:
        """Turns a split's rows and their labels into what `collate` batches."""
        ...

    def collate(self, model_cfg: Any) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Training and validation batches of `examples`' rows."""
        ...

    def predict_batches(self, model_cfg: Any, net: nn.Module, rows: Dataset) -> DataLoader:
        """Batches of `rows` for `module_cls.predict_step` (each carries `idx`, the rows' task ids)."""
        ...

    def decode(self, model_cfg: Any, out: Any) -> Labels:
        """One batch of `predict_step` output -> the labels it gives, in the batch's row order."""
        ...

    def score(self, preds: Labels, split: str = "test", mask: np.ndarray | None = None) -> dict[str, float]:
        """Metrics of `preds` against GT of `split` (rows where `mask` is true)."""
        ...

    def intervals(self, preds: Labels, split: str = "test") -> dict[str, list[float]]:
        """95% intervals [lo, hi] of `score`'s metrics of `preds`: Wilson for a proportion (accuracy), a
        seeded bootstrap (1,000 resamples) for AUROC; a metric without one is absent."""
        ...

    def same(self, a: Labels, b: Labels, split: str) -> np.ndarray:
        """Per row: do two label lists give the same answer (agreement)?"""
        ...

    def right(self, preds: Labels, split: str) -> np.ndarray:
        """Per row: does the label give GT's answer?"""
        ...

    def noise(self, weak: Labels, split: str, seed: int) -> Labels:
        """Appendix E: GT with as many wrong rows as `weak` has, at random rows."""
        ...

    def confidence(self, labels: Labels) -> np.ndarray:
        """Per row: how sure a label is (high = easy)."""
        ...

    def frozen_features(self, model_cfg: Any, rows: Sequence[int], layer: int | None) -> torch.Tensor:
        """Frozen features of task rows `rows` from hidden layer `layer` (None: the model's own setting), for
        the probes that clean weak labels; a kind without features raises a ConfigError."""
        ...

    def probe_layer(self, model_cfg: Any) -> int | None:
        """The layer a cleaning probe reads when `clean.layer` is null: the middle one where the model's layers
        can be chosen, None (the model's own features) where not; a kind without features raises."""
        ...


def load_state(net: nn.Module, artifact: Path) -> nn.Module:
    """Load the trainable weights a train stage saved (tensors only: a shared cache can run no code); every
    saved tensor must find its parameter, so a network of another shape never loads silently."""
    state = torch.load(artifact / "state.pt", weights_only=True)
    missing = set(state) - set(net.state_dict())
    if missing:
        raise RuntimeError(f"{artifact / 'state.pt'} holds weights this network lacks: {sorted(missing)[:5]}")
    net.load_state_dict(state, strict=False)
    return net


def class_probs(labels: Labels) -> np.ndarray:
    """Stored labels -> [N, C] probabilities: a binary label is P(class 1), a C-class label its C values."""
    p = np.asarray(labels, dtype=np.float32)
    return np.stack([1 - p, p], axis=-1) if p.ndim == 1 else p
