"""Run-level logging: the final metrics and PGR to every configured Lightning logger (CSV always)."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """`test/<role>_<metric>` and `test/pgr[_<metric>]`: the names dashboards group by."""
    out = {}
    for role in ("weak", "w2s", "ceiling", "direct"):
        for metric, value in (results.get(role) or {}).items():
            out[f"test/{role}_{metric}"] = value
    for metric, value in (results.get("pgr") or {}).items():
        if value is not None:
            out["test/pgr" if metric == "acc" else f"test/pgr_{metric}"] = value
    return out


def log_results(cfg: DictConfig, results: dict[str, Any]) -> None:
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_metrics(flat_metrics(results))
        lg.finalize("success")
