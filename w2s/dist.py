"""Several processes, one run: who builds, who writes, and how predictions come back in row order.

The processes come from Lightning's own launchers (its `train.py` subprocesses for `trainer.strategy=ddp`, or
torchrun / SLURM `srun`, which start them from outside); `launch(cfg)` starts them and sets up the process group
once, at the start of a run, so every later stage can meet at a barrier. Rank 0 builds the stages that do not
train (task, features, prompting) and writes every artifact, results.json and the loggers; training runs on all
ranks under the configured strategy; prediction is sharded over the ranks and gathered in row order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch.distributed as td

from w2s.errors import ConfigError

T = TypeVar("T")

#: How long ranks wait for rank 0 at a barrier (a feature pass over a large task can take hours on CPU).
BARRIER_TIMEOUT = timedelta(hours=6)
#: Environment variables that carry a process's global rank, by launcher: torchrun, SLURM srun, Lightning.
_RANK_VARS = ("RANK", "SLURM_PROCID")


def world_size(trainer_cfg: Any) -> int:
    """Processes a trainer config asks for: devices per node x nodes (1 for single-device strategies)."""
    devices = trainer_cfg.get("devices", 1)
    n = len(devices) if isinstance(devices, Sequence) and not isinstance(devices, str) else devices
    if isinstance(n, str):
        n = int(n) if n.strip().isdigit() else (len(n.split(",")) if "," in n else 1)
    n = 1 if n in (-1, None) else int(n)
    return n * int(trainer_cfg.get("num_nodes", 1) or 1)


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
    Fabric(
        accelerator=accelerator,
        devices=cfg.trainer.devices,
        num_nodes=int(cfg.trainer.get("num_nodes", 1)),
        strategy=DDPStrategy(timeout=BARRIER_TIMEOUT),
    ).launch()


def rank() -> int:
    return td.get_rank() if td.is_initialized() else 0


def size() -> int:
    return td.get_world_size() if td.is_initialized() else 1


def is_zero() -> bool:
    return rank() == 0


def barrier() -> None:
    if size() > 1:
        td.barrier()


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
