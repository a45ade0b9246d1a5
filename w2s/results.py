"""What every run records, written once: `results.json` in the run's output folder, and the loggers' summary."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from w2s import artifacts, dist, models
from w2s.tracking import log_results

log = logging.getLogger(__name__)


def write_results(
    cfg: DictConfig,
    results: dict[str, Any],
    kind: Any,
    stages: dict[str, Any],
    ceiling_on: str,
    ladder: list[Any],
    t0: float,
) -> dict[str, Any]:
    """Add names, split sizes, stage folders, config, git SHA, versions and model provenance to `results`,
    write `results.json` atomically into the run's output folder and send the metrics to the loggers."""
    roles = ["supervisor", *[f"chain{k}" for k in range(1, len(ladder) - 1)], "student"]
    results.update(
        task=cfg.task.name,
        supervisor=cfg.supervisor.name,
        student=cfg.student.name,
        loss=cfg.loss.get("name", cfg.loss["_target_"].rsplit(".", 1)[-1]),
        method=cfg.method.name,
        seed=int(cfg.seed),
        processes=dist.size(),
        early_stop=cfg.early_stop.mode,
        ceiling_on=ceiling_on,
        splits={name: len(part) for name, part in kind.data.splits.items() if name != "all"},
        stages={name: str(s.path) for name, s in stages.items()},
        precision={
            name: {"training": str(cfg.trainer.precision), "features": kind.feature_precision(s.model)}
            for name, s in stages.items()
        },
        config=OmegaConf.to_container(cfg, resolve=True),
        git_sha=models.git_sha(),
        versions=artifacts.versions(),
        models={r: models.provenance(m) for r, m in zip(roles, ladder, strict=True)},
        seconds=round(time.time() - t0, 1),
    )
    if dist.is_zero():  # one results.json and one logged run, however many processes trained
        out = Path(cfg.paths.output_dir)
        artifacts.atomic_write_text(out / "results.json", artifacts.to_json(results))
        log.info("results written to %s", out / "results.json")
        log_results(cfg, results)
    return results
