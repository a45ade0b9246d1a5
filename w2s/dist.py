"""Several processes, one run: who builds, who writes, and how predictions come back in row order.

The processes come from Lightning's own launchers (its `train.py` subprocesses for `trainer.strategy=ddp`, or
torchrun / SLURM `srun`, which start them from outside); `launch(cfg)` starts them and sets up the process group
once, at the start of a run, so every later stage can meet at a barrier. Rank 0 builds the stages that do not
train (task, features, prompting) and writes every artifact, results.json and the loggers; training runs on all
ranks under the configured strategy; prediction is sharded over the ranks and gathered in row order.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch.distributed as td

from w2s import signals
from w2s.errors import ConfigError

T = TypeVar("T")

#: How long a collective (all_reduce in a training step, a broadcast, a gather) may wait for a peer before the
#: run stops: minutes, not Lightning's 6 hours, so a rank that died or hangs ends the run. `dist.timeout_min`
#: in the config sets it (`timeout`); a barrier does not use it: ranks waiting for rank 0's feature pass poll.
DEFAULT_TIMEOUT_MIN = 30.0
_TIMEOUT = [timedelta(minutes=DEFAULT_TIMEOUT_MIN)]
#: Seconds between polls of a waiting rank at a barrier (each poll also notices a SIGTERM or a dead peer).
POLL_S = 0.2
_BARRIERS = itertools.count()
_LAUNCHED = threading.Event()
PEER_LOST = "another process of this run ended; finished stages are cached: rerun the same command to resume"
#: Environment variables that carry a process's global rank, by launcher: torchrun, SLURM srun, Lightning.
_RANK_VARS = ("RANK", "SLURM_PROCID")


def device_count(devices: Any) -> int | None:
    """The number of devices `trainer.devices` asks for: a positive integer, a list of device indices, or a
    string of either ("2", "0,1"); None for "auto" / -1 (Lightning picks). The one parser of that key."""
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        if devices and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            return len(devices)
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if devices > 0 or devices == -1:
            return None if devices == -1 else devices
    elif isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return None
        if text.isdigit() and int(text) > 0:
            return int(text)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if "," in text and parts and all(p.isdigit() for p in parts):
            return len(parts)
    raise ConfigError(
        f"trainer.devices={devices!r} is not a device count; choices: a positive integer, a list of device "
        "indices ([0, 1] or '0,1'), auto or -1"
    )


def world_size(trainer_cfg: Any) -> int:
    """Processes a trainer config asks for: devices per node x nodes (1 for "auto": one process)."""
    n = device_count(trainer_cfg.get("devices", 1)) or 1
    return n * int(trainer_cfg.get("num_nodes", 1) or 1)


def set_timeout(minutes: float) -> None:
    """The collective timeout of every process group and strategy this process makes (`dist.timeout_min`)."""
    _TIMEOUT[0] = timedelta(minutes=float(minutes))


def timeout() -> timedelta:
    return _TIMEOUT[0]


def env_rank() -> int:
    """This process's global rank as its launcher set it (0 before any launch, and in a plain run)."""
    for var in _RANK_VARS:
        if os.environ.get(var, "").strip().isdigit() and _launched_by(var):
            return int(os.environ[var])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return int(os.environ.get("NODE_RANK", "0") or 0) * max(1, _local_world()) + local


def _launched_by(var: str) -> bool:
    # SLURM sets SLURM_PROCID in an interactive allocation too; it is a rank only under srun with several tasks
    return var != "SLURM_PROCID" or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or int(os.environ.get("WORLD_SIZE", "1") or 1)


def launch(cfg: Any) -> None:
    """Start the run's processes (or join those a launcher started) and set up the process group, with
    Lightning's own launcher and strategy, when `trainer` asks for more than one process; else nothing."""
    if world_size(cfg.trainer) <= 1 or td.is_initialized():
        return
    from lightning_fabric import Fabric
    from lightning_fabric.strategies import DDPStrategy

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    fsdp = "fsdp" in str(cfg.trainer.get("strategy", ""))
    if fsdp and accelerator == "cpu":
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.strategy!r} with trainer.accelerator='cpu': FSDP shards over CUDA "
            "devices (and bf16 mixed precision needs CUDA); use trainer=ddp_cpu on CPU, or trainer=fsdp on GPUs"
        )
    fabric = Fabric(
        accelerator=accelerator,
        devices=cfg.trainer.devices,
        num_nodes=int(cfg.trainer.get("num_nodes", 1)),
        strategy=DDPStrategy(timeout=timeout()),
    )
    _LAUNCHED.set()
    signals.leave_on_sigterm()  # before any rank starts: from here a SIGTERM ends this rank at once
    procs = getattr(fabric.strategy.launcher, "procs", None)
    if procs is not None:  # the launcher's own list: children it starts are told of a SIGTERM first
        signals.CHILDREN = procs
    fabric.launch()


def launched() -> bool:
    """Whether this process is one of several (set before the process group exists, so a peer lost while it
    forms is reported as such)."""
    return _LAUNCHED.is_set()


def rank() -> int:
    return td.get_rank() if td.is_initialized() else 0


def size() -> int:
    return td.get_world_size() if td.is_initialized() else 1


def is_zero() -> bool:
    return rank() == 0


def barrier() -> None:
    """Every rank waits here for the others, polling, with no time limit while its peers live: rank 0 may be
    alone in a feature pass for hours. A SIGTERM or a dead peer ends the wait (`leave`), never a collective."""
    if size() == 1:
        return
    store = td.distributed_c10d._get_default_store()
    key = f"w2s/barrier/{next(_BARRIERS)}"
    try:
        _wait(store, key)
        # rank 0 holds the store: it leaves last, once every rank has seen the barrier complete (a rank still
        # polling when rank 0 went on and exited would read a closed store as a lost peer)
        store.add(key + "/seen", 1)
        if is_zero():
            _wait(store, key + "/seen", add=False)
    except (RuntimeError, OSError) as e:  # the store lives in rank 0: it died
        if is_peer_loss(e):
            signals.leave(PEER_LOST)
        raise


def _wait(store: Any, key: str, add: bool = True) -> None:
    """Poll `key` until every rank has counted itself in (adding this rank first, unless `add` is false)."""
    if add:
        store.add(key, 1)
    while store.add(key, 0) < size():
        signals.check_terminated()
        if any(p.poll() is not None for p in signals.CHILDREN):
            signals.leave(PEER_LOST)
        time.sleep(POLL_S)


def is_peer_loss(e: BaseException) -> bool:
    """Whether an exception says a peer process went away (a closed socket, a store or collective gone)."""
    text = f"{type(e).__name__} {e}".lower()
    words = ("connection closed", "connection reset", "broken pipe", "peer", "socket", "gloo", "nccl",
             "timed out", "timeout", "store", "connection refused", "end of file")  # fmt: skip
    return isinstance(e, td.DistError | ConnectionError) or any(w in text for w in words)


def broadcast(obj: T) -> T:
    """Rank 0's value of `obj` on every rank."""
    if size() == 1:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def shard(n: int) -> list[int]:
    """The row positions this rank predicts: every size()-th row, so no row is repeated or dropped."""
    return list(range(rank(), n, size()))


def gather_rows(n: int, predict: Callable[[list[int]], list[Any]]) -> list[Any]:
    """Run `predict` on this rank's shard of rows 0..n-1 and return all n results in row order, on every rank."""
    mine = shard(n)
    values = predict(mine)
    if size() == 1:
        return values
    parts: list[Any] = [None] * size()
    td.all_gather_object(parts, (mine, values))
    out: list[Any] = [None] * n
    for positions, vals in parts:
        for p, v in zip(positions, vals, strict=True):
            out[p] = v
    return out


def one_device(trainer_cfg: Any) -> dict[str, Any]:
    """Trainer settings that run this rank alone on its own device (its local GPU, or the CPU): prediction is
    sharded by row beforehand, so it needs no collective."""
    import torch

    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        return {"accelerator": "gpu", "devices": [local], "num_nodes": 1, "strategy": "auto"}
    return {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
