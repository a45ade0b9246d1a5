"""Model inputs: the text a row renders to, its token ids, and the frozen features a linear probe trains on.

`features` is the one frozen feature pass of the scored kinds (probes). It is cached per row in a store per
(model, template, precision): shard files named by their content, each written atomically, so a later run
computes only the rows no earlier run did, and processes adding rows at the same time never corrupt the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from filelock import FileLock
from torch import nn

from w2s import artifacts, dist, models, networks
from w2s.data import pad, token_batches
from w2s.errors import ConfigError
from w2s.progress import track

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
#: CPU flags of native bfloat16 arithmetic (x86 AVX512-BF16 / AMX, ARM BF16): bf16 matmuls run at 4x fp32.
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def render(task_cfg: Any, row: dict[str, Any]) -> str | list[str]:
    """The model's input text(s) for one row: one string, or one per candidate for pairwise rows."""
    if task_cfg.type == "pairwise":
        tmpl = task_cfg.get("template") or "{prompt}{completion}"
        return [tmpl.format(**{**row, "completion": row[c]}) for c in ("first", "second")]
    return (task_cfg.get("template") or "{text}").format(**row)


def _encode(model_cfg: Any, texts: list[str]) -> tuple[list[list[int]], Any]:
    tok = models.load_tokenizer(model_cfg, padding_side="right")
    tok.truncation_side = "left"
    enc = tok(texts, truncation=True, max_length=int(model_cfg.max_length), add_special_tokens=True)
    return enc["input_ids"], tok


def tokenize(model_cfg: Any, task_cfg: Any, ds: Dataset) -> tuple[list[Any], Any]:
    """Token ids per row, truncated from the left so the end of the context (the answer) survives."""
    texts = [render(task_cfg, r) for r in ds]
    enc, tok = _encode(model_cfg, [t for x in texts for t in (x if isinstance(x, list) else [x])])
    if texts and isinstance(texts[0], list):
        k = len(texts[0])
        return [enc[i : i + k] for i in range(0, len(enc), k)], tok
    return enc, tok


# --- precision ----------------------------------------------------------------------------------------------------


def device() -> torch.device:
    """Where frozen passes run: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@cache
def _cpu_flags() -> frozenset[str]:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return frozenset()
    return frozenset(
        w
        for line in info.read_text().splitlines()
        if line.startswith(("flags", "Features"))
        for w in line.split()
    )


def native_bf16(dev: torch.device) -> bool:
    """Whether `dev` computes bfloat16 natively (emulated bf16 is slower than fp32, so it never counts)."""
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if dev.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(_cpu_flags() & BF16_FLAGS)
    return False


def feature_precision(cfg: Any, model_cfg: Any) -> str:
    """ "bf16" or "fp32" for frozen passes of `model_cfg`: `features.precision` (auto: bf16 where native),
    except models listed in `features.fp32_models` and models whose weights load in bfloat16 anyway."""
    fcfg = cfg.features
    if fcfg.precision not in PRECISIONS:
        raise ConfigError(f"features.precision {fcfg.precision!r} unknown; choices: {list(PRECISIONS)}")
    if model_cfg.get("dtype", "float32") == "bfloat16":
        return "bf16"
    if fcfg.precision == "fp32" or model_cfg.name in (fcfg.get("fp32_models") or []):
        return "fp32"
    return "bf16" if fcfg.precision == "bf16" or native_bf16(device()) else "fp32"


def frozen(net: nn.Module, precision: str, dev: torch.device) -> tuple[nn.Module, Any]:
    """`net` on `dev` in eval mode and the context to run a frozen pass in: bf16 autocast (matmuls in bf16, norms
    and softmax in fp32) or plain fp32. oneDNN fp32 linears (`torch.utils.mkldnn`) measured 0.9x plain fp32 on
    this project's CPU (docs/RESULTS.md), so fp32 stays plain."""
    net = net.to(dev).eval()
    if precision == "bf16":
        return net, torch.autocast(dev.type, dtype=torch.bfloat16)
    return net, contextlib.nullcontext()


# --- the per-row feature store ------------------------------------------------------------------------------------


def store(cfg: Any, model_cfg: Any, task_cfg: Any) -> Path:
    """Folder of the per-row features of one (model, template, precision); its manifest's `meta.precision`
    says how they were computed."""
    key = _store_key(cfg, model_cfg, task_cfg)
    return Path(cfg.paths.artifact_root) / "features" / artifacts.key_hash(key)


def _store_key(cfg: Any, model_cfg: Any, task_cfg: Any) -> dict[str, Any]:
    return {
        "model": models.model_key(model_cfg),
        "type": task_cfg.type,
        "template": task_cfg.get("template"),
        "precision": feature_precision(cfg, model_cfg),
    }


def row_key(text: str | list[str]) -> str:
    """Cache key of one row: a hash of exactly what the model reads (the rendered text, all candidates)."""
    return hashlib.sha256(json.dumps(text).encode()).hexdigest()[:24]


def _read(folder: Path, want: set[str]) -> dict[str, torch.Tensor]:
    """Features of the `want` rows found in the shards; an unreadable shard is skipped (its rows recomputed)."""
    found: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("rows-*.pt")):
        try:
            part = torch.load(shard, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged shard costs its rows, never the run
            log.warning("skipping unreadable feature shard %s (%s)", shard, e)
            continue
        for k, f in zip(part["keys"], part["features"], strict=True):
            if k in want and k not in found:
                found[k] = f
    return found


def _write(folder: Path, keys: list[str], feats: torch.Tensor) -> None:
    """One shard, named by its content and renamed into place complete: readers see all of it or nothing."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rows-", suffix=".tmp")
    os.close(fd)
    torch.save({"keys": keys, "features": feats.contiguous()}, tmp)
    os.replace(tmp, folder / f"rows-{artifacts.file_sha256(Path(tmp))[:16]}.pt")


def features(cfg: Any, model_cfg: Any, task_cfg: Any, ds: Dataset, idx: Sequence[int]) -> torch.Tensor:
    """Frozen pooled features of rows `idx` of `ds`, float32 [len(idx), D] ([len(idx), 2, D] pairwise), in the
    order of `idx`: the linear-probe inputs. Only rows missing from the store are computed."""
    texts = [render(task_cfg, r) for r in ds.select([int(i) for i in idx])]
    keys = [row_key(t) for t in texts]
    folder = store(cfg, model_cfg, task_cfg)
    force = bool(cfg.force) and dist.is_zero()  # other ranks read what rank 0 recomputed
    found = {} if force or not folder.exists() else _read(folder, set(keys))
    if (
        len(found) == len(set(keys)) and (folder / artifacts.MANIFEST).exists()
    ):  # all cached: no lock, no write
        return torch.stack([found[k] for k in keys]).float() if keys else torch.empty(0)
    folder.mkdir(parents=True, exist_ok=True)
    # one writer at a time: a second run waits, then finds the rows the first computed
    with FileLock(str(folder) + ".lock"):
        if force:
            for shard in folder.glob("rows-*.pt"):
                shard.unlink()
        found = _read(folder, set(keys))
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if todo:
            found.update(_compute(cfg, model_cfg, folder, todo))
        if not (folder / artifacts.MANIFEST).exists():
            meta = {"precision": feature_precision(cfg, model_cfg), "device": device().type}
            manifest = {"kind": "features", "key": _store_key(cfg, model_cfg, task_cfg), "meta": meta}
            artifacts.atomic_write_text(folder / artifacts.MANIFEST, artifacts.to_json(manifest))
    if not keys:
        return torch.empty(0)
    return torch.stack([found[k] for k in keys]).float()


def _compute(
    cfg: Any, model_cfg: Any, folder: Path, todo: dict[str, str | list[str]]
) -> dict[str, torch.Tensor]:
    """Features of the rows in `todo` (key -> text), stored a shard of `features.shard_rows` rows at a time
    (a killed pass keeps what it wrote); sequences in `token_batches` within each shard."""
    keys = list(todo)
    seqs = [s for k in keys for s in (todo[k] if isinstance(todo[k], list) else [todo[k]])]
    per_row = len(seqs) // len(keys)
    ids, tok = _encode(model_cfg, seqs)
    plan: list[list[int]] = []
    ends: dict[int, tuple[int, int]] = {}  # batch position -> the rows [start, stop) it completes
    step = int(cfg.features.shard_rows)
    for start in range(0, len(keys), step):
        stop = min(start + step, len(keys))
        span = list(range(start * per_row, stop * per_row))
        lengths = [len(ids[i]) for i in span]
        plan += [[span[j] for j in b] for b in token_batches(lengths, int(cfg.features.max_tokens))]
        ends[len(plan) - 1] = (start, stop)
    precision, dev = feature_precision(cfg, model_cfg), device()
    net = networks.Classifier(models.load_backbone(model_cfg), model_cfg.pooling, n_out=1)
    net.layer = model_cfg.get("layer")
    net, ctx = frozen(net, precision, dev)
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    done: dict[str, torch.Tensor] = {}
    with torch.inference_mode(), ctx:
        for pos, batch in enumerate(track(plan, len(ids), f"features {model_cfg.name} ({precision})")):
            x, m = pad([ids[i] for i in batch], tok.pad_token_id, left=False)
            f = net.features(x.to(dev), m.to(dev)).float().cpu()
            for i, row in zip(batch, f, strict=True):
                out[i] = row
            if pos in ends:
                start, stop = ends[pos]
                part = torch.stack(out[start * per_row : stop * per_row]).reshape(stop - start, per_row, -1)
                part = part[:, 0] if per_row == 1 else part
                _write(folder, keys[start:stop], part)
                done.update(zip(keys[start:stop], part, strict=True))
    return done
