"""Seeded, disjoint splits: weak-train (A), transfer (B), validation, test, and fresh transfer sets for chains."""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset

from w2s.errors import TaskError

SPLIT_ORDER = ("weak", "transfer", "val", "test")


def split_sizes(split_cfg: Any, n_extra_transfer: int = 0) -> dict[str, int]:
    """Requested size of each split; bootstrap steps add fresh transfer sets `transfer1`, `transfer2`, ..."""
    sizes = {name: int(split_cfg[name]) for name in SPLIT_ORDER}
    for k in range(1, n_extra_transfer + 1):
        sizes[f"transfer{k}"] = int(split_cfg.transfer)
    for name, n in sizes.items():
        if n <= 0:
            raise TaskError(f"split.{name}={n}: every split needs at least one example")
    return sizes


def make_splits(ds: Dataset, sizes: dict[str, int], seed: int) -> dict[str, Dataset]:
    """Shuffle once with `seed` and cut consecutive blocks; each split keeps `idx`, its row in `ds`."""
    need = sum(sizes.values())
    if need > len(ds):
        asked = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise TaskError(f"splits ask for {need} examples ({asked}) but the task has only {len(ds)}")
    order = np.random.default_rng(seed).permutation(len(ds))
    out, start = {}, 0
    for name, n in sizes.items():
        rows = np.sort(order[start : start + n])
        start += n
        part = ds.select(rows)
        out[name] = part.add_column("idx", rows.tolist()) if "idx" not in part.column_names else part
    check_disjoint(out)
    return out


def check_disjoint(splits: dict[str, Dataset]) -> None:
    """Fail loudly if any example (by content hash) sits in two splits."""
    seen: dict[str, str] = {}
    for name, part in splits.items():
        for h in part["hash"]:
            if h in seen and seen[h] != name:
                raise TaskError(f"example {h} is in both {seen[h]!r} and {name!r} splits")
            seen[h] = name
