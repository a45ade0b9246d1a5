"""Seeded, disjoint splits: weak-train (A), transfer (B), validation, test, and fresh transfer sets for chains."""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset

from w2s.errors import TaskError

SPLIT_ORDER = ("weak", "transfer", "val", "test")


def is_fraction(value: Any) -> bool:
    """A split size in (0, 1) is a fraction of the task's rows; an integer >= 1 is a count."""
    return isinstance(value, float) and 0 < value < 1


def split_sizes(
    split_cfg: Any, n_extra_transfer: int = 0, n_rows: int | None = None
) -> dict[str, int | float]:
    """Size of each split; bootstrap steps add fresh transfer sets `transfer1`, `transfer2`, ...

    Given `n_rows` (the task's rows after balancing) every size is a count (`resolve_sizes`), so the task
    artifact keyed by these sizes is shared by `split.weak=0.1` on a 10,000-row task and `split.weak=1000`.
    Without it fractions stay fractions, and `make_splits` resolves them.
    """
    asked = {name: split_cfg[name] for name in SPLIT_ORDER}
    for k in range(1, n_extra_transfer + 1):
        asked[f"transfer{k}"] = split_cfg.transfer
    return asked if n_rows is None else resolve_sizes(asked, n_rows)


def resolve_sizes(sizes: dict[str, Any], n_rows: int, about: str = "") -> dict[str, int]:
    """Counts stay; a fraction in (0, 1) becomes that share of `n_rows`, rounded down. `about` says where the
    rows went (balancing), for the error."""
    out = {name: int(v * n_rows) if is_fraction(v) else int(v) for name, v in sizes.items()}
    for name, n in out.items():
        if n <= 0:
            raise TaskError(
                f"split.{name}={sizes[name]} gives {n} of {n_rows} examples{about}; every split needs at least one"
            )
    return out


def make_splits(ds: Dataset, sizes: dict[str, int | float], seed: int, about: str = "") -> dict[str, Dataset]:
    """Shuffle once with `seed` and cut consecutive blocks; each split keeps `idx`, its row in `ds`."""
    sizes = resolve_sizes(sizes, len(ds), about)
    need = sum(sizes.values())
    if need > len(ds):
        asked = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise TaskError(
            f"splits ask for {need} examples ({asked}) but the task has only {len(ds)}{about}; "
            "give fractions of the rows instead, e.g. split=fraction or split.transfer=0.4"
        )
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
