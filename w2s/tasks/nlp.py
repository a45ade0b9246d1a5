"""Task loaders for text: hub datasets through one registered formatter each, and a user's own file.

One generic loader, `load_hub`, reads a hub dataset (or an injected fixture / local file in the hub's own
schema) and applies one formatter of `w2s.tasks.formatters`; the task's `template` renders `text` from its
fields. `load_custom` reads a CSV / TSV / JSON(L) / parquet file with a text column (or several) and a class label column.
See docs/TASKS.md for ids, splits and the leak findings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from w2s.errors import FormatError
from w2s.tasks.formatters import FORMATTERS, Fields

log = logging.getLogger(__name__)

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


#: Delimited text is read as strings, cells as written: "NA", "null" or "007" stay text, never NaN or 7.
_AS_WRITTEN = {"dtype": str, "keep_default_na": False}
_READERS: dict[str, Callable[[str], Any]] = {
    ".csv": lambda p: __import__("pandas").read_csv(p, **_AS_WRITTEN),
    ".tsv": lambda p: __import__("pandas").read_csv(p, sep="\t", **_AS_WRITTEN),
    ".jsonl": lambda p: __import__("pandas").read_json(p, lines=True, dtype=False, convert_dates=False),
    ".json": lambda p: _read_json(p),
    ".parquet": lambda p: __import__("pandas").read_parquet(p),
}
#: A label column with more distinct values than this, and more than half as many as it has rows, holds no classes
#: (most likely the text).
MAX_CLASSES = 100
_INT = re.compile(r"[+-]?\d+(\.0*)?")


def _read_json(p: str) -> Any:
    """A JSON array of records (or of columns); JSON lines saved as .json are read too."""
    import pandas as pd

    try:
        return pd.read_json(p, dtype=False, convert_dates=False)
    except ValueError:
        return pd.read_json(p, lines=True, dtype=False, convert_dates=False)


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
    text_column: str | list[str] = "text",
    label_column: str = "label",
    label_map: dict[Any, int] | None = None,
    limit: int | None = None,
) -> Dataset:
    """A user's CSV / TSV / JSONL / JSON / parquet file with a text column (or several, joined by newlines:
    `text_column=[question, passage]`) and a label column: two classes or more (`_class_indices`).

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
    df.columns = [str(c).strip() for c in df.columns]  # "text, label" from a hand-written header
    if limit is not None:
        df = df.iloc[: int(limit)]
    if len(df) == 0:
        raise FormatError(f"custom task file {str(p)!r} has no data rows (a header at most)")
    texts = [str(text_column)] if isinstance(text_column, str) else [str(c) for c in text_column]
    missing = [c for c in (*texts, label_column) if c not in df.columns]
    if missing or not texts:
        raise FormatError(
            f"custom task file {str(p)!r}: missing column(s) {missing or texts}; it has "
            f"{list(map(str, df.columns))} (set task.loader.text_column / task.loader.label_column)"
        )
    cells = [[_text_cell(t, i, p) for i, t in enumerate(df[c])] for c in texts]
    return Dataset.from_dict(
        {
            "id": [f"custom-{i}" for i in range(len(df))],
            # an empty cell stays None (not the string "nan"), so check_schema names its row
            "text": [None if None in row else "\n".join(row) for row in zip(*cells, strict=True)],
            "label": _class_indices(df[label_column].tolist(), label_map, p),
        }
    )


def _class_indices(raw: list[Any], label_map: dict[Any, int] | None, p: Path) -> list[int]:
    """Class indices for a label column. Through `label_map` when given; else 0/1, true/false and integer class
    indices 0..C-1 are taken as they are, and any other set of values (words, 1..5 stars, -1/1) is numbered in
    sorted order, the mapping logged. One class, a blank, a fraction or text-like variety is one line."""
    for i, v in enumerate(raw):
        if _absent(v) or not str(v).strip():
            raise FormatError(f"custom task file {str(p)!r} row {i}: empty label")
    if label_map is not None:
        lm = {str(k): int(v) for k, v in dict(label_map).items()}
        unmapped = sorted({str(v) for v in raw} - set(lm))
        if unmapped:
            raise FormatError(
                f"custom task: label values {_few(unmapped)} not in label_map keys {sorted(lm)}"
            )
        return [lm[str(v)] for v in raw]
    values = [_label_value(v, i, p) for i, v in enumerate(raw)]
    found = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if len(found) < 2:
        raise FormatError(
            f"custom task file {str(p)!r}: every label is {_few(found)}; a classifier needs two classes or more "
            "(or set task.loader.label_column to the column that holds them)"
        )
    if any(isinstance(v, str) for v in found) and any(isinstance(v, int) for v in found):
        raise FormatError(
            f"custom task: labels mix numbers and words, found {_few(found)}; map them with "
            "task.loader.label_map={pos: 1, neg: 0}"
        )
    if len(found) > MAX_CLASSES and len(found) > len(values) // 2:
        raise FormatError(
            f"custom task: the label column has {len(found)} distinct values in {len(values)} rows, e.g. "
            f"{_few(found)}; labels must be classes (set task.loader.label_column, or task.loader.label_map)"
        )
    if found != list(range(len(found))):
        log.info("custom task %s: labels %s -> class indices 0..%d", p.name, _few(found), len(found) - 1)
    index = {v: c for c, v in enumerate(found)}
    return [index[v] for v in values]


def _label_value(v: Any, row: int, p: Path) -> int | str:
    """A label cell as an int (bools, integral numbers and their strings) or a stripped word."""
    if isinstance(v, bool | np.bool_):
        return int(v)
    s = str(v).strip()
    if s.lower() in ("true", "false"):
        return int(s.lower() == "true")
    if _INT.fullmatch(s):
        return int(float(s)) if "." in s else int(s)
    if _is_number(s):  # a fraction, NaN or inf
        raise FormatError(
            f"custom task file {str(p)!r} row {row}: label {s[:40]!r} is a number but no whole one, so no class; "
            "labels are classes (0/1, indices 0..C-1, or words); map them with task.loader.label_map"
        )
    return s


def _absent(v: Any) -> bool:
    """An empty cell as pandas gives it: None, or a float NaN (JSON null, parquet null)."""
    return v is None or (isinstance(v, float) and np.isnan(v))


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _few(values: list[Any], n: int = 10, width: int = 40) -> str:
    """The first n values, each cut to `width` characters (a stray 10 MB cell stays one line)."""
    shown = [v if not isinstance(v, str) or len(v) <= width else v[:width] + "..." for v in values[:n]]
    return str(shown) + (f" (+{len(values) - n} more)" if len(values) > n else "")


def _text_cell(t: Any, row: int, p: Path) -> str | None:
    """A text cell as a string: an empty cell stays None (check_schema names its row); a nested object or a NUL
    byte is refused (a JSON object's repr or a truncated C string is no text the user meant)."""
    if _absent(t):
        return None
    if isinstance(t, dict | list | tuple | np.ndarray):
        raise FormatError(
            f"custom task file {str(p)!r} row {row}: text is a {type(t).__name__}, not a string"
        )
    if "\x00" in str(t):
        raise FormatError(f"custom task file {str(p)!r} row {row}: text holds a NUL byte (\\x00)")
    return str(t)
