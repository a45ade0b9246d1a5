"""What a SLURM launcher must request for a Lightning trainer, and a check that the two agree.

Lightning on SLURM expects one task per device (`--ntasks-per-node == trainer.devices`,
`--nodes == trainer.num_nodes`) and fails late, inside the job, when they differ. `check_layout` fails
early, at the start of `run(cfg)`, with a message naming both sides.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from w2s import dist
from w2s.errors import ConfigError

log = logging.getLogger(__name__)

# Strategies that start their own worker processes: under SLURM every task would start them again.
_SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")
_GPU_ACCELERATORS = ("gpu", "cuda")


def _device_count(devices: Any) -> int:
    """Number of devices a trainer asks for (`dist.device_count`); SLURM needs a count, so "auto"/-1 are refused."""
    n = dist.device_count(devices)
    if n is None:
        raise ConfigError(
            f"trainer.devices={devices!r} cannot size a SLURM job; choices: a positive integer or a list of "
            'device indices in the trainer preset you sweep on SLURM ("auto" and -1 are only for local runs)'
        )
    return n


def trainer_slurm_layout(trainer_cfg: Mapping[str, Any]) -> dict[str, int]:
    """The `tasks_per_node`, `gpus_per_node`, `nodes` a SLURM launcher must request for this trainer.

    On CPU, Lightning reads devices="auto" as 1; elsewhere "auto" has no count and is refused.
    """
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    devices = trainer_cfg.get("devices", 1)
    if accelerator == "cpu" and str(devices) in ("auto", "-1"):
        devices = 1
    devices = _device_count(devices)
    nodes = int(trainer_cfg.get("num_nodes", 1))
    gpus = devices if accelerator in _GPU_ACCELERATORS or accelerator == "auto" else 0
    return {"tasks_per_node": devices, "gpus_per_node": gpus, "nodes": nodes}


def _is_slurm_launcher(launcher_cfg: Mapping[str, Any]) -> bool:
    return str(launcher_cfg.get("_target_", "")).endswith("SlurmLauncher")


def layout_problems(trainer_cfg: Mapping[str, Any], launcher_cfg: Mapping[str, Any]) -> list[str]:
    """Every way the launcher's request disagrees with the trainer (empty when they agree)."""
    if not _is_slurm_launcher(launcher_cfg):
        return []
    gpus = int(launcher_cfg.get("gpus_per_node") or 0)
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if gpus == 0 and accelerator == "auto":  # no GPU in the job: Lightning's "auto" becomes the CPU
        trainer_cfg = {**trainer_cfg, "accelerator": "cpu"}
        accelerator = "cpu"
    want = trainer_slurm_layout(trainer_cfg)
    problems = []
    for key in ("tasks_per_node", "nodes"):
        got = launcher_cfg.get(key)
        if got is None or int(got) != want[key]:
            problems.append(f"hydra.launcher.{key}={got!r} but the trainer needs {want[key]}")
    if gpus != want["gpus_per_node"]:
        problems.append(
            f"hydra.launcher.gpus_per_node={gpus} but trainer.accelerator={accelerator!r} with "
            f"devices={trainer_cfg.get('devices')!r} needs {want['gpus_per_node']}"
        )
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if want["tasks_per_node"] * want["nodes"] > 1 and strategy.startswith(_SPAWNING_STRATEGIES):
        problems.append(
            f"trainer.strategy={strategy!r} spawns its own processes; on SLURM each task is one process: "
            "use strategy=ddp (or auto)"
        )
    return problems


def check_layout(cfg: Mapping[str, Any], launcher_cfg: Mapping[str, Any] | None = None) -> None:
    """Raise a one-line ConfigError when the SLURM launcher's layout disagrees with `cfg.trainer`.

    `launcher_cfg` defaults to the running Hydra app's `hydra.launcher` (absent outside Hydra: no check).
    Only submitit SLURM launchers are checked; local launchers run one process per job.
    """
    if launcher_cfg is None:
        launcher_cfg = _running_launcher()
        if launcher_cfg is None:
            return
    problems = layout_problems(cfg["trainer"], launcher_cfg)
    if problems:
        raise ConfigError(
            "SLURM launcher and trainer disagree (Lightning would fail inside the job): "
            + "; ".join(problems)
            + ". Set trainer.devices/num_nodes in a GPU trainer preset; hydra/launcher=slurm follows them."
        )


def _running_launcher() -> Mapping[str, Any] | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().launcher


def accounting_problem(timeout_s: float = 30) -> str | None:
    """Why `sacct` cannot answer here, or None when it works.

    submitit learns a job's fate from `sacct`; without accounting a task killed hard (SIGKILL, OOM) stays
    UNKNOWN and `job.results()` waits forever. With it the failure is reported in about 20 s.
    """
    cmd = ["sacct", "--noheader", "-X", "-S", "now-1minutes", "-o", "JobID"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return "sacct is not installed"
    except subprocess.TimeoutExpired:
        return f"sacct did not answer within {timeout_s:.0f}s"
    if out.returncode != 0:
        return f"sacct failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()}"
    return None


class AccountingCheck(Callback):
    """Hydra callback: refuse to start a SLURM sweep whose jobs could hang unseen (no `sacct`).

    Add to train.yaml: `hydra: {callbacks: {accounting_check: {_target_: w2s.launch.AccountingCheck}}}`.
    Local launchers are not affected. `required=false` logs a warning instead of raising.
    """

    def __init__(self, required: bool = True) -> None:
        self.required = required

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_slurm_launcher(config.hydra.launcher):
            return
        problem = accounting_problem()
        if problem is None:
            return
        message = (
            f"SLURM accounting is unavailable ({problem}): a job killed hard would leave this sweep waiting "
            "forever. Run slurmdbd (scripts/slurm_cluster.sh does), or set "
            "hydra.callbacks.accounting_check.required=false to go on anyway."
        )
        if self.required:
            raise RuntimeError(message)
        log.warning(message)
