"""Task loading: a loader returns rows in its kind's schema; this module checks, dedups and balances them.

Each kind (`w2s.kinds`) declares its row columns; docs/DESIGN.md lists them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from omegaconf import DictConfig, ListConfig, OmegaConf

from w2s.errors import TaskError, build


def _hash(values: tuple[Any, ...]) -> str:
    parts = (v if isinstance(v, bytes) else str(v).encode() for v in values)
    return hashlib.sha256(b"\x1f".join(parts)).hexdigest()[:20]


def content(columns: tuple[str, ...]) -> list[str]:
    """The columns that define an example (all but its class label): dedup and split disjointness use these."""
    return [c for c in columns if c != "label"]


def row_hash(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    """Content hash of one row (text, or an image's bytes): used for dedup and split disjointness checks."""
    return _hash(tuple(row[c] for c in content(columns)))


def row_hashes(ds: Dataset, columns: tuple[str, ...]) -> list[str]:
    """`row_hash` of every row, read column by column (iterating a Dataset row by row costs minutes on a large
    task)."""
    table = ds.with_format("arrow")[:]
    cols = [table.column(c).to_pylist() for c in content(columns)]
    return [_hash(values) for values in zip(*cols, strict=True)]


def check_schema(ds: Dataset, columns: tuple[str, ...], task: str, classes: int | None = None) -> int | None:
    """Fail with the row index and field name when a loader returned an incomplete row, or a label outside
    [0, classes) (`classes` None: any class index, their count inferred). Column-wise (Arrow compute), so a task
    of millions of rows is checked in a second. Returns the class count (None for unlabelled kinds)."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise TaskError(f"task {task!r}: loader returned no column(s) {missing}; has {ds.column_names}")
    table = ds.with_format("arrow")[:]
    for c in columns:
        col = table.column(c)
        empty = pc.is_null(col)
        if c != "label" and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(col), ""))
        i = pc.index(empty, True).as_py()
        if i >= 0:
            raise TaskError(f"task {task!r}: row {i} (id={ds[i].get('id', i)!r}) has an empty field {c!r}")
    if "label" not in columns:
        return None
    found = pc.unique(table.column("label")).to_pylist()
    n = classes if classes is not None else max([int(v) + 1 for v in found if isinstance(v, int)] or [0])
    bad = sorted(v for v in found if not (isinstance(v, int) and 0 <= v < n))
    if bad:
        want = "0/1" if n == 2 else f"class indices 0..{n - 1}"
        raise TaskError(f"task {task!r}: labels must be {want}, found {bad[:5]}")
    return n


def balance(ds: Dataset, seed: int, classes: int = 2) -> tuple[Dataset, dict[str, int]]:
    """Undersample to the rarest class so every class is equally frequent (the paper's balanced tasks)."""
    labels = ds.with_format("arrow")["label"].to_numpy()  # a column at once, not row by row
    counts = {int(c): int((labels == c).sum()) for c in range(classes)}
    n = min(counts.values()) if counts else 0
    if len(labels) == 0:
        raise TaskError("dataset has no rows; a classification task needs examples of every class")
    if n == 0:
        raise TaskError(f"dataset lacks a class: counts {counts}; a classification task needs every class")
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in counts])
    keep.sort()
    return ds.select(keep), {**{f"before_{c}": k for c, k in counts.items()}, "after_each": n}


def balance_note(info: dict[str, Any]) -> str:
    """Where a classified task's rows went, for split errors: balancing keeps the rarest class's count of each."""
    before = {k.removeprefix("before_"): v for k, v in info.items() if k.startswith("before_")}
    if "after_each" not in info or len(set(before.values())) <= 1:
        return ""
    return (
        f" (class balancing keeps the rarest class's {info['after_each']} of each; classes had {before}; "
        "+task.balance=false keeps every row)"
    )


def load_task(task_cfg: Any, seed: int = 0, kind: Any = None) -> tuple[Dataset, dict[str, Any]]:
    """Load, check, dedup and (for classified kinds) balance a task. Returns the dataset and its counts.

    The row schema is the kind's (`kind.columns`; `task.type` names it when `kind` is not given); a classified
    kind's class count is `task.num_classes`, else the kind's default, else the data's."""
    if kind is None:
        from w2s.kinds import kind_class  # the kinds own their row schemas; they build on tasks' rows

        kind = kind_class(task_cfg.type)
    name = task_cfg.name
    ds = build(task_cfg.loader)
    if not isinstance(ds, Dataset):
        raise TaskError(f"task {name!r}: loader must return datasets.Dataset, got {type(ds).__name__}")
    classes = check_schema(ds, kind.columns, name, task_cfg.get("num_classes", kind.default_classes))
    hashes = row_hashes(ds, kind.columns)
    seen: set[str] = set()
    keep = [i for i, h in enumerate(hashes) if not (h in seen or seen.add(h))]
    info: dict[str, Any] = {"loaded": len(ds), "duplicates_dropped": len(ds) - len(keep)}
    ds = ds.select(keep)
    ds = ds.add_column("hash", [hashes[i] for i in keep])
    if "id" not in ds.column_names:
        ds = ds.add_column("id", [f"{name}-{i}" for i in keep])
    if classes is not None:
        info["classes"] = classes
        if task_cfg.get("balance", True):
            ds, counts = balance(ds, seed, classes)
            info.update(counts)
    info["size"] = len(ds)
    return ds, info


def _is_path_key(name: str) -> bool:
    return name in ("path", "data_files", "data_dir", "files") or name.endswith(("_path", "_file", "_dir"))


def _path_values(node: Any, under_path_key: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _path_values(v, under_path_key or _is_path_key(str(k)))
    elif isinstance(node, list):
        for v in node:
            yield from _path_values(v, under_path_key)
    elif under_path_key and isinstance(node, str) and node:
        yield node


#: (real path, size, mtime_ns, ctime_ns, inode) -> sha256, for this process only: a file is hashed once per run.
_DIGESTS: dict[tuple, str] = {}


def _file_digest(p: Path) -> str:
    st = p.stat()
    sig = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if sig not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        _DIGESTS[sig] = h.hexdigest()
    return _DIGESTS[sig]


def _digest(p: Path) -> str:
    if p.is_file():
        return _file_digest(p)
    h = hashlib.sha256()  # a folder: every file's relative path and content, in a fixed order
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(p)}\0{_file_digest(f)}\n".encode())
    return h.hexdigest()


def fingerprint(task_cfg: Any) -> dict[str, Any]:
    """The task key's fragment for its local inputs: `{"inputs": {path: sha256 of its bytes}}`, or `{}`.

    Every string under a path-like key (`path`, `data_files`, `*_path`, ...) that names a local file or folder is
    hashed by content, so editing a file in place changes the key and rebuilds every stage downstream (the
    path alone would reuse the old results). Hub ids and missing paths are left to the loader; a task with no
    local input keeps the key it had before this fragment existed.
    """
    plain = (
        OmegaConf.to_container(task_cfg, resolve=True)
        if isinstance(task_cfg, DictConfig | ListConfig)
        else task_cfg
    )
    inputs = {
        value: _digest(Path(value).expanduser())
        for value in _path_values(plain)
        if Path(value).expanduser().exists()
    }
    return {"inputs": dict(sorted(inputs.items()))} if inputs else {}
