"""Batches for every kind of task: tokenised text or cached features, soft targets, length-bucketed order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def soft_targets(prob1: Sequence[float]) -> torch.Tensor:
    """[N] P(class 1) -> [N, 2] distributions (the loss signature's target)."""
    p = torch.as_tensor(np.asarray(prob1, dtype=np.float32))
    return torch.stack([1 - p, p], dim=-1)


class Examples(Dataset):
    """Rows of model inputs (token id lists, or feature vectors) with their target P(class 1)."""

    def __init__(self, inputs: Sequence[Any], prob1: Sequence[float], idx: Sequence[int]):
        if not (len(inputs) == len(prob1) == len(idx)):
            raise ValueError(
                f"inputs ({len(inputs)}), targets ({len(prob1)}), ids ({len(idx)}) differ in length"
            )
        self.inputs, self.prob1, self.idx = inputs, list(map(float, prob1)), list(map(int, idx))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input": self.inputs[i], "prob1": self.prob1[i], "idx": self.idx[i]}

    def lengths(self) -> list[int]:
        """Token count of each row (the sum over candidates for pairwise rows)."""
        first = self.inputs[0] if len(self.inputs) else []
        if isinstance(first, torch.Tensor):
            return [1] * len(self.inputs)
        if first and isinstance(first[0], list | tuple):
            return [sum(map(len, x)) for x in self.inputs]
        return [len(x) for x in self.inputs]


class BucketSampler(Sampler[list[int]]):
    """Length-bucketed batches: shuffle, sort within windows of `window` batches, shuffle the batches.

    Keeps training order random at the batch level while padding only to neighbours of similar length.
    With `shuffle=False` the batches are simply sorted by length (inference).
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0, window: int = 50
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed, self.window = batch_size, shuffle, seed, window
        self.epoch = 0

    def batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i : i + bs].tolist() for i in range(0, n, bs)]
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
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


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


class Collate:
    """Pads token ids ([B, L], or [B, K, L] for K candidates) or stacks features; adds [B, 2] targets."""

    def __init__(self, pad_id: int = 0, left_pad: bool = False):
        self.pad_id, self.left_pad = pad_id, left_pad

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {
            "target": soft_targets([r["prob1"] for r in rows]),
            "idx": torch.tensor([r["idx"] for r in rows], dtype=torch.long),
        }
        first = rows[0]["input"]
        if isinstance(first, torch.Tensor):
            batch["features"] = torch.stack([r["input"] for r in rows])
        elif first and isinstance(first[0], list | tuple):
            k = len(first)
            flat = [seq for r in rows for seq in r["input"]]
            ids, mask = pad(flat, self.pad_id, self.left_pad)
            batch["input_ids"], batch["attention_mask"] = (
                ids.view(len(rows), k, -1),
                mask.view(len(rows), k, -1),
            )
        else:
            batch["input_ids"], batch["attention_mask"] = pad(
                [r["input"] for r in rows], self.pad_id, self.left_pad
            )
        return batch


def loader(ds: Examples, batch_size: int, collate: Collate, shuffle: bool, seed: int = 0) -> DataLoader:
    sampler = BucketSampler(ds.lengths(), batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=0)


class W2SDataModule(pl.LightningDataModule):
    """Train rows (GT or weak labels), validation sets (weak-label val first: it selects checkpoints), test."""

    def __init__(
        self,
        train: Examples,
        val: list[Examples],
        collate: Collate,
        batch_size: int,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.train, self.val, self.collate = train, val, collate
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size or 2 * batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return loader(self.train, self.batch_size, self.collate, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> list[DataLoader]:
        return [loader(v, self.eval_batch_size, self.collate, shuffle=False) for v in self.val]


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
    for i in np.argsort(-lengths, kind="stable").tolist():
        if batches and len(batches[-1]) < (max_rows or len(lengths)):
            if (len(batches[-1]) + 1) * width <= max_tokens:
                batches[-1].append(i)
                continue
        batches.append([i])
        width = max(int(lengths[i]), 1)
    return batches
