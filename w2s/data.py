"""Batches for every kind of task, and the weak-label DataModule that every training stage reads.

Labels live on disk as `datasets` DatasetDicts (`LabelSource`): the task's own splits are the ground-truth
source, a label stage's output and a train stage's test predictions are weak sources. The DataModule joins a
source to the split's rows by row id in `setup()`, so a stage is fully described by (split, label source).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from w2s import dist


def soft_targets(labels: Sequence[Any]) -> torch.Tensor:
    """Stored labels -> [N, C] distributions (the loss signature's target): a binary label is P(class 1), a
    C-class label its C probabilities."""
    p = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    return torch.stack([1 - p, p], dim=-1) if p.dim() == 1 else p


@dataclass(frozen=True)
class LabelSource:
    """Labels on disk: a `datasets` DatasetDict folder, one of its splits, the column holding the label.

    Every such split has an `idx` column (the row's position in the task), so labels join rows by id.
    """

    path: str
    split: str
    column: str = "label"

    def read(self) -> dict[int, Any]:
        """Row id -> label."""
        part = datasets.load_from_disk(self.path)[self.split]
        return dict(zip(part["idx"], part[self.column], strict=True))

    def values(self) -> list[Any]:
        """The labels in their stored row order (a split's own order, for predictions written by a stage)."""
        return list(datasets.load_from_disk(self.path)[self.split][self.column])


def join(rows: datasets.Dataset, source: LabelSource) -> tuple[datasets.Dataset, list[Any]]:
    """The rows of `rows` that `source` labels, in `rows` order, and their labels."""
    lookup = source.read()
    keep = [i for i, r in enumerate(rows["idx"]) if r in lookup]
    if len(keep) < len(rows):
        rows = rows.select(keep)
    return rows, [lookup[r] for r in rows["idx"]]


def write_labels(path: str, parts: dict[str, tuple[Sequence[int], Sequence[Any]]]) -> None:
    """Store labels (or predictions) as a DatasetDict of `idx`, `label`: the format `LabelSource` reads."""
    datasets.DatasetDict(
        {n: datasets.Dataset.from_dict({"idx": list(i), "label": list(v)}) for n, (i, v) in parts.items()}
    ).save_to_disk(path)


class Examples(Dataset):
    """Rows of model inputs (token id lists, or feature tensors) with their targets: P(class 1) for scored
    kinds, the answer's token ids for generation."""

    def __init__(self, inputs: Sequence[Any], targets: Sequence[Any], idx: Sequence[int]):
        if not (len(inputs) == len(targets) == len(idx)):
            raise ValueError(
                f"inputs ({len(inputs)}), targets ({len(targets)}), ids ({len(idx)}) differ in length"
            )
        self.inputs, self.targets, self.idx = inputs, list(targets), list(map(int, idx))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input": self.inputs[i], "target": self.targets[i], "idx": self.idx[i]}

    def lengths(self) -> list[int]:
        """Token count of each row (the sum over candidates for pairwise rows); a feature tensor's rows."""
        first = self.inputs[0] if len(self.inputs) else []
        if not isinstance(first, torch.Tensor) and first and isinstance(first[0], list | tuple):
            return [sum(map(len, x)) for x in self.inputs]
        return [len(x) for x in self.inputs]


class BucketSampler(Sampler[list[int]]):
    """Length-bucketed batches: shuffle, sort within windows of `window` batches, shuffle the batches.

    Keeps training order random at the batch level while padding only to neighbours of similar length.
    With `shuffle=False` the batches are simply sorted by length (inference).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        window: int = 50,
        rank: int = 0,
        world: int = 1,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed, self.window = batch_size, shuffle, seed, window
        self.rank, self.world = rank, world
        self.epoch = 0

    def batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            return longest_first(self.lengths, bs)
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(n)
        span = bs * self.window
        out = []
        for s in range(0, n, span):
            chunk = order[s : s + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            out += [chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs)]
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(self._mine(batches))

    def _mine(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's share of the epoch's batches: every world-th, cycling so every rank steps equally often
        (DDP synchronises each step)."""
        if self.world == 1:
            return batches
        per_rank = -(-len(batches) // self.world)
        return [batches[(self.rank + k * self.world) % len(batches)] for k in range(per_rank)]

    def __len__(self) -> int:
        n = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return -(-n // self.world)


def by_length(lengths: Sequence[int]) -> list[int]:
    """Row positions longest first (ties in row order): every inference batching starts here, so a batch pads
    its rows only to neighbours of similar length."""
    return np.argsort(-np.asarray(lengths), kind="stable").tolist()


def longest_first(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Inference batches of `size` rows, longest first."""
    order = by_length(lengths)
    return [order[i : i + size] for i in range(0, len(order), size)]


def pad(seqs: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> padded ids [B, L] and attention mask, padding on the left or the right."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


class TextCollate:
    """Token id lists -> padded `input_ids`, `attention_mask`; with `pairs`, each row holds one list per
    candidate, flattened to [B*K, L] with `candidates` = K. Targets become [B, C] distributions."""

    def __init__(self, pad_id: int = 0, left_pad: bool = False, pairs: bool = False):
        self.pad_id, self.left_pad, self.pairs = pad_id, left_pad, pairs

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        seqs = [s for r in rows for s in r["input"]] if self.pairs else [r["input"] for r in rows]
        ids, mask = pad(seqs, self.pad_id, self.left_pad)
        return {**_head(rows), "input_ids": ids, "attention_mask": mask, **_k(rows, self.pairs)}


class FeatureCollate:
    """Cached feature tensors -> `features` [B, D]; with `pairs`, [K, D] per row flattened to [B*K, D]."""

    def __init__(self, pairs: bool = False):
        self.pairs = pairs

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        feats = torch.stack([r["input"] for r in rows])
        return {
            **_head(rows),
            "features": feats.flatten(0, 1) if self.pairs else feats,
            **_k(rows, self.pairs),
        }


def _head(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "target": soft_targets([r["target"] for r in rows]),
        "idx": torch.tensor([r["idx"] for r in rows], dtype=torch.long),
    }


def _k(rows: list[dict[str, Any]], pairs: bool) -> dict[str, int]:
    return {"candidates": len(rows[0]["input"])} if pairs else {}


class AnswerCollate:
    """Generation: right-pads prompt + answer ids and lists the positions that predict answer tokens, or
    concatenates per-answer-token features. `answer_ids` holds each answer token, `row` its batch row."""

    def __init__(self, pad_id: int = 0):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {"idx": torch.tensor([r["idx"] for r in rows])}
        answer = [r["target"] for r in rows]
        batch["answer_ids"] = torch.tensor([t for a in answer for t in a], dtype=torch.long)
        batch["row"] = torch.tensor([i for i, a in enumerate(answer) for _ in a], dtype=torch.long)
        if isinstance(rows[0]["input"], torch.Tensor):
            batch["features"] = torch.cat([r["input"] for r in rows])
            return batch
        ids, mask = pad([r["input"] for r in rows], self.pad_id, left=False)
        width = ids.shape[1]
        pos = []
        for i, r in enumerate(rows):
            n, length = len(r["target"]), len(r["input"])
            pos += [i * width + t for t in range(length - n - 1, length - 1)]
        batch.update(input_ids=ids, attention_mask=mask, pos=torch.tensor(pos, dtype=torch.long))
        return batch


class PromptCollate:
    """Generation: prompts left-padded (the answer continues at the right edge), with the decoding settings."""

    def __init__(self, pad_id: int, eos_id: int, max_new_tokens: int):
        self.settings = {"pad_id": pad_id, "eos_id": eos_id, "max_new_tokens": max_new_tokens}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        ids, mask = pad([r["input"] for r in rows], self.settings["pad_id"], left=True)
        idx = torch.tensor([r["idx"] for r in rows], dtype=torch.long)
        return {"idx": idx, "input_ids": ids, "attention_mask": mask, **self.settings}


def loader(ds: Examples, batch_size: int, collate: Any, shuffle: bool, seed: int = 0) -> DataLoader:
    """Length-bucketed batches. Training batches (`shuffle`) are shared out over the ranks of a multi-process
    run, `batch_size` staying the global batch; evaluation batches are whole on every rank."""
    world = dist.size() if shuffle else 1
    sampler = BucketSampler(
        ds.lengths(), max(1, batch_size // world), shuffle=shuffle, seed=seed, rank=dist.rank(), world=world
    )
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=0)


class WeakLabelDataModule(pl.LightningDataModule):
    """One training stage's data: a split's rows joined in `setup()` to a label source (GT or weak labels),
    and validation sets (the first selects checkpoints; the others are analyses, e.g. GT test accuracy).

    `make_rows(rows, labels)` turns joined rows into the kind's `Examples` (token ids or features).
    """

    def __init__(
        self,
        splits_path: str,
        train: LabelSource,
        vals: Sequence[LabelSource],
        make_rows: Callable[[datasets.Dataset, list[Any]], Examples],
        collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
        batch_size: int,
        eval_batch_size: int,
        seed: int = 0,
    ):
        super().__init__()
        self.splits_path, self.train_source, self.val_sources = splits_path, train, list(vals)
        self.make_rows, self.collate = make_rows, collate
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.train_rows: Examples | None = None
        self.val_rows: list[Examples] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_rows is not None:  # joined once, however often Lightning asks
            return
        task = datasets.load_from_disk(self.splits_path)
        self.train_rows = self.make_rows(*join(task[self.train_source.split], self.train_source))
        self.val_rows = [self.make_rows(*join(task[v.split], v)) for v in self.val_sources]

    def train_dataloader(self) -> DataLoader:
        return loader(self.train_rows, self.batch_size, self.collate, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> list[DataLoader]:
        return [loader(v, self.eval_batch_size, self.collate, shuffle=False) for v in self.val_rows]


def padding_fraction(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Fraction of padded positions over all batches (the padding-waste benchmark's figure)."""
    lengths = np.asarray(lengths)
    total = sum(len(b) * lengths[b].max() for b in batches)
    return float(1 - lengths.sum() / total) if total else 0.0


def token_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None) -> list[list[int]]:
    """Inference batches with little padding: rows longest first, each batch as many rows as fit `max_tokens`
    padded positions (and `max_rows`). A fixed batch pads a short row to a long one's width and makes batches
    of long rows too large for the CPU's caches; a token budget keeps both in check. Rows carry their index."""
    lengths = np.asarray(lengths)
    batches: list[list[int]] = []
    width = 0
    for i in by_length(lengths):
        if batches and len(batches[-1]) < (max_rows or len(lengths)):
            if (len(batches[-1]) + 1) * width <= max_tokens:
                batches[-1].append(i)
                continue
        batches.append([i])
        width = max(int(lengths[i]), 1)
    return batches
