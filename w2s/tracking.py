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


def format_table(results: dict[str, Any]) -> str:
    """The three test metrics and PGR as a small text table (what `make demo` prints)."""
    rows = [
        ("weak", results["weak"]),
        ("weak-to-strong", results["w2s"]),
        ("strong ceiling", results["ceiling"]),
    ]
    if "direct" in results:
        rows.insert(2, ("direct (no chain)", results["direct"]))
    fmt = lambda v: "  null" if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [
        f"{results['task']}: {results['supervisor']} -> {results['student']}, loss={results['loss']}, "
        f"seed={results['seed']}",
        f"{'':20s}{'acc':>8s}{'auroc':>8s}",
    ]
    lines += [f"{name:20s}{fmt(m['acc']):>8s}{fmt(m['auroc']):>8s}" for name, m in rows]
    lines.append(f"{'PGR':20s}{fmt(results['pgr'].get('acc')):>8s}{fmt(results['pgr'].get('auroc')):>8s}")
    return "\n".join(lines)
