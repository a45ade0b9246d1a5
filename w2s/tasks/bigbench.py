"""BIG-bench JSON tasks offline, from the `bigbench` 1.0.0 source distribution on PyPI (Apache-2.0).

The sdist holds every task's `task.json`; it is fetched once by `make install-offline` into the cache
(`$W2S_CACHE/bigbench`, default `~/.cache/w2s/bigbench`), checked against its sha256, and its task.json
files (only those) are unpacked beside it on first use, all in one pass (atomically: a temp folder renamed
into place). Nothing here touches the network. A multiple-choice example (`target_scores` with one best
option; two options is the binary case) becomes one `classify` row with the MC conversion of
w2s.tasks.formatters: the question with its right answer (label 1) or with a random wrong one (label 0),
seeded and exactly balanced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from filelock import FileLock

from w2s.errors import TaskError
from w2s.tasks.formatters import pick, register
from w2s.tasks.nlp import load_hub

SDIST = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
TASKS_IN_SDIST = "bigbench-1.0.0/bigbench/benchmark_tasks/"
INSTALL = "make install-offline (or: pip download --no-deps --no-binary :all: bigbench==1.0.0 -d {dir})"
TEMPLATE = "{question}\nAnswer: {answer}"


def cache_dir() -> Path:
    """Where the sdist and the unpacked task files live: $W2S_CACHE/bigbench, else ~/.cache/w2s/bigbench."""
    root = os.environ.get("W2S_CACHE") or Path.home() / ".cache" / "w2s"
    return Path(root).expanduser() / "bigbench"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(cache: Path | None = None) -> Path:
    """The folder of every task's task.json files (subtask folders kept), unpacked from the checked sdist in
    one pass on first use: one scan of the 360 MB gzip instead of one per task. Built in a temp folder and
    renamed into place under a file lock, so a second process waits and reuses it; the sdist's other files
    (task.py programs, model results) are never unpacked."""
    cache = cache or cache_dir()
    out = cache / "task_json"
    if out.is_dir():
        return out
    sdist = cache / SDIST
    if not sdist.is_file():
        raise TaskError(f"BIG-bench tasks need {sdist}: run {INSTALL.format(dir=cache)}")
    with FileLock(str(out) + ".lock"):
        if out.is_dir():  # another process unpacked it while this one waited
            return out
        if _sha256(sdist) != SDIST_SHA256:
            raise TaskError(
                f"{sdist} does not match sha256 {SDIST_SHA256}: delete it and run make install-offline"
            )
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".tmp-task_json-"))
        try:
            with tarfile.open(sdist) as tar:
                for m in tar:
                    if m.isfile() and m.name.startswith(TASKS_IN_SDIST) and m.name.endswith("/task.json"):
                        dest = tmp / m.name[len(TASKS_IN_SDIST) :]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(m)
                        assert src is not None  # a regular file member always has a stream
                        dest.write_bytes(src.read())
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the cache from the rest of the group
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def task_dir(task: str, cache: Path | None = None) -> Path:
    """The folder of `task`'s task.json files, from the unpacked sdist."""
    out = unpack(cache) / task
    if not out.is_dir():
        raise TaskError(f"BIG-bench has no JSON task {task!r} (a Python task, or a misspelled name)")
    return out


def mc_examples(task: str, subtasks: list[str] | None = None, cache: Path | None = None) -> list[dict]:
    """Unique (input, options) examples with one best option, over the task's task.json files (subtask
    folders in sorted order; `subtasks` keeps some). Examples without `target_scores` are skipped."""
    folder = task_dir(task, cache)
    files = sorted(folder.rglob("task.json"))
    if subtasks is not None:
        known = sorted(str(f.parent.relative_to(folder)) for f in files)
        bad = sorted(set(subtasks) - set(known))
        if bad:
            raise TaskError(f"BIG-bench {task}: subtasks {bad} unknown; choices: {known}")
        files = [f for f in files if str(f.parent.relative_to(folder)) in subtasks]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for f in files:
        for ex in json.loads(f.read_text()).get("examples", []):
            scores = ex.get("target_scores")
            if not isinstance(scores, dict) or len(scores) < 2:
                continue
            best = max(scores.values())
            right = [k for k, v in scores.items() if v == best]
            if len(right) != 1:
                continue
            key = (str(ex["input"]).strip(), tuple(sorted(scores)))
            if key in seen:
                continue
            seen.add(key)
            wrong = [k for k in scores if k != right[0]]
            out.append({"input": key[0], "correct": right[0], "wrong": wrong})
    if not out:
        raise TaskError(f"BIG-bench {task}: no example has target_scores with one best option")
    return out


@register("bigbench", TEMPLATE, multiple_choice=True)
def fmt_bigbench(row, target, rng):
    ans, label = pick(row["correct"], row["wrong"], target, rng)
    return {"question": row["input"], "answer": ans, "label": label}


def load_bigbench(
    task: str,
    subtasks: list[str] | None = None,
    seed: int = 0,
    template: str | None = None,
    limit: int | None = None,
    cache: str | None = None,
) -> Dataset:
    """A BIG-bench JSON task as balanced `classify` rows. Rows whose rendered text repeats are dropped and
    the classes cut to equal size with `seed` here, so every run seed sees the same rows (one feature cache
    per model); `limit` keeps a seeded random `limit // 2` rows of each class (quick runs, sweeps)."""
    examples = mc_examples(task, subtasks, Path(cache) if cache else None)
    raw = {k: [e[k] for e in examples] for k in ("input", "correct", "wrong")}
    cols = load_hub(f"bigbench/{task}", "bigbench", dataset=raw, seed=seed, template=template).to_dict()
    first: dict[str, int] = {}
    for i, t in enumerate(cols["text"]):
        first.setdefault(t, i)
    rows = np.asarray(sorted(first.values()))
    labels = np.asarray(cols["label"])[rows]
    n = int(min((labels == 0).sum(), (labels == 1).sum()))
    if limit is not None:
        n = min(n, limit // 2)
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.choice(rows[labels == c], n, replace=False) for c in (0, 1)]))
    out = {k: [v[i] for i in keep] for k, v in cols.items()}
    out["id"] = [f"bb_{task}:{i.rsplit(':', 1)[-1]}" for i in out["id"]]
    return Dataset.from_dict(out)


def task_json(task: str, subtask: str = "", cache: Path | None = None) -> dict[str, Any]:
    """One task.json of `task` (`subtask` names its folder), for loaders with their own schema."""
    path = task_dir(task, cache) / subtask / "task.json"
    if not path.is_file():
        raise TaskError(f"BIG-bench {task}: no task.json under {subtask!r}")
    return json.loads(path.read_text())
