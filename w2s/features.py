"""Frozen features, cached per row, for every kind: the store, and the precision frozen passes run in.

A kind that trains probes says what a row's features are (`Featurizer`: a content key per row, and how to
compute a batch of rows); this module keeps them. A store per (model, the kind's own key, precision) under
`<artifact_root>/features/<hash>/` holds shard files `rows-<sha>.pt` named by their content (`{"keys",
"features"}`), each written to a temp file and renamed into place, and checked against its name when read: a
shard whose bytes changed (even one that still loads) costs only its rows, which are computed again. A later run
computes only the rows no earlier run stored, under the store's file lock, so processes adding rows at the same
time never corrupt it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch
from filelock import FileLock
from torch import nn

from w2s import artifacts, dist
from w2s.errors import ConfigError
from w2s.models import model_key
from w2s.progress import track

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
#: CPU flags of native bfloat16 arithmetic (x86 AVX512-BF16 / AMX, ARM BF16): bf16 matmuls run at 4x fp32.
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


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


class Featurizer(Protocol):
    """What a kind gives the store: the key of each row's content, and the features of a list of rows."""

    def keys(self, rows: Sequence[int]) -> list[str]:
        """A content key per task row: equal keys mean equal features (a hash of what the model reads)."""
        ...

    def compute(self, rows: Sequence[int]) -> torch.Tensor:
        """Float features of the task rows `rows`, in their order ([N, D], or [N, K, D] for K candidates)."""
        ...


def store(cfg: Any, model_cfg: Any, kind_key: dict[str, Any]) -> Path:
    """Folder of the per-row features of one (model, kind key, precision)."""
    return (
        Path(cfg.paths.artifact_root) / "features" / artifacts.key_hash(_store_key(cfg, model_cfg, kind_key))
    )


def _store_key(cfg: Any, model_cfg: Any, kind_key: dict[str, Any]) -> dict[str, Any]:
    return {"model": model_key(model_cfg), **kind_key, "precision": feature_precision(cfg, model_cfg)}


def _intact(shard: Path) -> bool:
    """A shard's name holds the first 16 hex digits of its content's sha256."""
    return artifacts.file_sha256(shard)[:16] == shard.stem.removeprefix("rows-")


def _read(folder: Path, want: set[str]) -> dict[str, torch.Tensor]:
    """Features of the `want` rows found in intact shards; a damaged one is skipped (its rows recomputed)."""
    found: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("rows-*.pt")):
        try:
            if not _intact(shard):
                raise ValueError("content does not match its name")
            part = torch.load(shard, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged shard costs its rows, never the run
            log.warning("skipping damaged feature shard %s (%s)", shard, e)
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


def features(
    cfg: Any, model_cfg: Any, kind_key: dict[str, Any], feat: Featurizer, idx: Sequence[int]
) -> torch.Tensor:
    """Frozen features of task rows `idx`, float32, in the order of `idx`: the linear-probe inputs. Only rows
    missing from the store are computed, `features.shard_rows` at a time (a killed pass keeps its shards)."""
    idx = [int(i) for i in idx]
    keys = feat.keys(idx)
    folder = store(cfg, model_cfg, kind_key)
    force = bool(cfg.force) and dist.is_zero()  # other ranks read what rank 0 recomputed
    found = {} if force or not folder.exists() else _read(folder, set(keys))
    if len(found) < len(set(keys)) or not (folder / artifacts.MANIFEST).exists():
        folder.mkdir(parents=True, exist_ok=True)
        # one writer at a time: a second run waits, then finds the rows the first computed
        with FileLock(str(folder) + ".lock"):
            found = _fill(cfg, model_cfg, kind_key, feat, folder, dict(zip(keys, idx, strict=True)), force)
    if not keys:
        return torch.empty(0)
    return torch.stack([found[k] for k in keys]).float()


def _fill(
    cfg: Any,
    model_cfg: Any,
    kind_key: dict,
    feat: Featurizer,
    folder: Path,
    rows: dict[str, int],
    force: bool,
) -> dict[str, torch.Tensor]:
    """Under the store's lock: drop damaged (or, with `force`, all) shards, compute the missing rows."""
    for shard in folder.glob("rows-*.pt"):
        if force or not _intact(shard):
            shard.unlink()
    found = _read(folder, set(rows))
    todo = [k for k in rows if k not in found]
    step = int(cfg.features.shard_rows)
    precision = feature_precision(cfg, model_cfg)
    chunks = [todo[s : s + step] for s in range(0, len(todo), step)]
    for chunk in track(chunks, len(todo), f"features {model_cfg.name} ({precision})"):
        part = feat.compute([rows[k] for k in chunk])
        _write(folder, chunk, part)
        found.update(zip(chunk, part, strict=True))
    if not (folder / artifacts.MANIFEST).exists():
        meta = {"precision": precision, "device": device().type}
        manifest = {"kind": "features", "key": _store_key(cfg, model_cfg, kind_key), "meta": meta}
        artifacts.atomic_write_text(folder / artifacts.MANIFEST, artifacts.to_json(manifest))
    return found
