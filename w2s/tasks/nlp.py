"""Task loaders for text: hub datasets through one registered formatter each, and a user's own file.

One generic loader, `load_hub`, reads a hub dataset (or an injected fixture / local file in the hub's own
schema) and applies one formatter of `w2s.tasks.formatters`; the task's `template` renders `text` from its
fields. `load_custom` reads a CSV / TSV / JSON(L) / parquet file with a text and a binary label column.
See docs/TASKS.md for ids, splits and the leak findings.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from w2s.errors import FormatError
from w2s.tasks.formatters import FORMATTERS, Fields

OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class HubUnavailableError(ConnectionError):
    """A hub dataset could not be read: no network and no local cache."""


# ---------------------------------------------------------------------------------------------------------
# Loading


def offline_requested() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENV)


@contextlib.contextmanager
def respect_offline_env() -> Iterator[None]:
    """`datasets` reads HF_DATASETS_OFFLINE at import; honour it when it was set later (e.g. in a test)."""
    import datasets.config as dcfg

    old = dcfg.HF_HUB_OFFLINE
    if offline_requested():
        dcfg.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dcfg.HF_HUB_OFFLINE = old


_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def read_hub(
    hub_id: str,
    config: str | None = None,
    split: str = "train",
    dataset: Any = None,
    data_files: Any = None,
    path: str | None = None,
    revision: str | None = None,
) -> Dataset:
    """Rows in the hub's own schema: an injected `dataset`, local `data_files`, a `path` (local dir or
    another hub id, e.g. a mirror), or `hub_id` itself (`revision="refs/convert/parquet"` reads the hub's
    parquet export of a script-only dataset, which `datasets` 4+ cannot run). A hub that cannot be reached raises one clear error."""
    if dataset is not None:
        return dataset if isinstance(dataset, Dataset) else Dataset.from_dict(dataset)
    import datasets

    if data_files is not None:
        first = data_files if isinstance(data_files, str) else next(iter(_flat(data_files)))
        ext = Path(first).suffix.lower()
        if ext not in _BUILDERS:
            raise FormatError(
                f"data_files {first!r}: unknown extension {ext!r}; choices: {sorted(_BUILDERS)}"
            )
        kw = {"delimiter": "\t"} if ext == ".tsv" else {}
        return datasets.load_dataset(_BUILDERS[ext], data_files=data_files, split="train", **kw)
    source = path or hub_id
    try:
        with respect_offline_env():
            return datasets.load_dataset(source, config, split=split, revision=revision)
    except (ConnectionError, OSError) as e:
        # FileNotFoundError/DatasetNotFoundError are OSErrors too: all mean "not readable from here"
        mode = (
            "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set, so only the local cache was read"
            if offline_requested()
            else "the Hugging Face Hub could not be reached"
        )
        raise HubUnavailableError(
            f"cannot load hub dataset {source!r} (config={config!r}, split={split!r}): {mode}. "
            f"This task needs network access or a local cache of {source!r}: unset HF_DATASETS_OFFLINE "
            f"and run once with network (it caches under HF_HOME), or pass loader.path=<local copy> / "
            f"loader.data_files=<files in the hub's schema>. Cause: {type(e).__name__}: {e}"
        ) from e


def _flat(x: Any) -> Iterator[str]:
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flat(v)
    else:
        for v in x:
            yield from _flat(v)


def rows_of(ds: Dataset) -> Iterator[dict[str, Any]]:
    """The rows as dicts, read a batch at a time: a Dataset iterated row by row costs minutes per million."""
    for batch in ds.iter(batch_size=10_000):
        yield from (dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True))


def render(template: str, fields: Fields, task: str) -> str:
    try:
        return template.format(**fields)
    except KeyError as e:
        raise FormatError(
            f"task {task!r}: template field {e} not produced by the formatter; fields: {sorted(fields)}"
        ) from None


def load_hub(
    hub_id: str,
    formatter: str,
    config: str | None = None,
    split: str = "train",
    seed: int = 0,
    template: str | None = None,
    limit: int | None = None,
    dataset: Any = None,
    data_files: Any = None,
    path: str | None = None,
    revision: str | None = None,
) -> Dataset:
    """Load a hub dataset and format it to the `classify` schema (id, text, label + the formatter's fields).

    `limit` keeps the first rows of the hub split (before formatting), for quick runs."""
    if formatter not in FORMATTERS:
        raise FormatError(f"unknown formatter {formatter!r}; choices: {sorted(FORMATTERS)}")
    spec = FORMATTERS[formatter]
    raw = read_hub(
        hub_id, config, split, dataset=dataset, data_files=data_files, path=path, revision=revision
    )
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    n = len(raw)
    targets: list[int | None] = [None] * n
    if spec.multiple_choice:  # exactly balanced, seeded: the paper's 50/50 right-or-random-wrong pairing
        perm = np.random.default_rng(seed).permutation(n)
        targets = [int(perm[i] % 2 == 0) for i in range(n)]
    template = template or spec.template
    out: dict[str, list[Any]] = {"id": [], "text": [], "label": []}
    rows: list[Fields] = []
    for i, row in enumerate(rows_of(raw)):
        try:
            fields = spec.fn(row, targets[i], random.Random(f"{seed}:{i}"))
        except KeyError as e:
            raise FormatError(
                f"{hub_id} ({config}, split {split!r}) row {i}: no column {e}; has {sorted(row)}"
            ) from None
        if fields is None:
            continue
        fields = {k: (v.strip() if isinstance(v, str) else v) for k, v in fields.items()}
        label = int(fields.pop("label"))  # popped first: a template can never print the label
        out["id"].append(f"{formatter}:{split}:{i}")
        out["text"].append(render(template, fields, formatter))
        out["label"].append(label)
        rows.append(fields)
    if not rows:
        raise FormatError(f"{hub_id} ({config}, split {split!r}): no usable rows out of {n}")
    for k in rows[0]:
        out[k] = [r.get(k) for r in rows]
    return Dataset.from_dict(out)


# ---------------------------------------------------------------------------------------------------------
# A user's own file


_READERS: dict[str, Callable[[str], Any]] = {
    ".csv": lambda p: __import__("pandas").read_csv(p),
    ".tsv": lambda p: __import__("pandas").read_csv(p, sep="\t"),
    ".jsonl": lambda p: __import__("pandas").read_json(p, lines=True),
    ".json": lambda p: __import__("pandas").read_json(p),
    ".parquet": lambda p: __import__("pandas").read_parquet(p),
}


def _read(p: Path, ext: str) -> Any:
    """The file as a DataFrame; a file that is not what its extension says is one line naming the reason."""
    if p.stat().st_size == 0:
        raise FormatError(f"custom task file {str(p)!r} is empty")
    try:
        return _READERS[ext](str(p))
    except UnicodeDecodeError as e:
        raise FormatError(
            f"custom task file {str(p)!r} is not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    except (ValueError, OSError, NotImplementedError) as e:
        # pandas' ParserError / EmptyDataError and pyarrow's ArrowInvalid are ValueErrors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormatError(
            f"custom task file {str(p)!r} cannot be read as {ext} ({type(e).__name__}: {reason}); "
            f"its content must match its extension; choices: {sorted(_READERS)}"
        ) from None


def load_custom(
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    label_map: dict[Any, int] | None = None,
    limit: int | None = None,
) -> Dataset:
    """A user's CSV / TSV / JSONL / JSON / parquet with a text and a binary label column (or a mapping).

    `limit` keeps the first rows (quick runs)."""
    p = Path(str(path)).expanduser()
    if p.is_dir():
        raise FormatError(f"custom task path {str(p)!r} is a directory; task.path names one data file")
    if not p.is_file():
        raise FormatError(f"custom task file not found: {str(p)!r} (set task.path=FILE)")
    ext = p.suffix.lower()
    if ext not in _READERS:
        raise FormatError(
            f"custom task file {str(p)!r}: unknown extension {ext!r}; choices: {sorted(_READERS)}"
        )
    df = _read(p, ext)
    if limit is not None:
        df = df.iloc[: int(limit)]
    if len(df) == 0:
        raise FormatError(f"custom task file {str(p)!r} has no data rows (a header at most)")
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise FormatError(
            f"custom task file {str(p)!r}: missing column(s) {missing}; it has {list(map(str, df.columns))} "
            "(set task.loader.text_column / task.loader.label_column)"
        )
    raw = df[label_column].tolist()
    if label_map is not None:
        lm = {str(k): int(v) for k, v in dict(label_map).items()}
        unmapped = sorted({str(v) for v in raw} - set(lm))
        if unmapped:
            raise FormatError(f"custom task: label values {unmapped[:10]} not in label_map keys {sorted(lm)}")
        labels = [lm[str(v)] for v in raw]
    else:
        labels = [_as_binary(v) for v in raw]
    bad = sorted({str(v) for v, b in zip(raw, labels, strict=True) if b not in (0, 1)})
    if bad:
        raise FormatError(
            f"custom task: labels must be binary 0/1, found {bad[:10]}; map them with "
            "task.loader.label_map={pos: 1, neg: 0}"
        )
    return Dataset.from_dict(
        {
            "id": [f"custom-{i}" for i in range(len(df))],
            # an empty cell stays None (not the string "nan"), so check_schema names its row
            "text": [_text_cell(t, i, p) for i, t in enumerate(df[text_column])],
            "label": labels,
        }
    )


def _text_cell(t: Any, row: int, p: Path) -> str | None:
    """A text cell as a string: an empty cell stays None (check_schema names its row); a nested object or a NUL
    byte is refused (a JSON object's repr or a truncated C string is no text the user meant)."""
    if t is None or (isinstance(t, float) and np.isnan(t)):
        return None
    if isinstance(t, dict | list | tuple | np.ndarray):
        raise FormatError(
            f"custom task file {str(p)!r} row {row}: text is a {type(t).__name__}, not a string"
        )
    if "\x00" in str(t):
        raise FormatError(f"custom task file {str(p)!r} row {row}: text holds a NUL byte (\\x00)")
    return str(t)


def _as_binary(v: Any) -> int | None:
    """0/1 from ints, bools, floats 0.0/1.0 and their strings; anything else -> None (reported)."""
    if isinstance(v, bool | np.bool_):
        return int(v)
    s = str(v).strip().lower()
    return {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "true": 1, "false": 0}.get(s)
