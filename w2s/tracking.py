"""Run-level tracking: the final metrics and PGR to every configured Lightning logger (CSV always).

A run is wrapped in `session(cfg)`: loggers start before the first stage (so a crash still leaves a run that is
marked failed), receive the config and git SHA, and are finished on every exit path. Each training stage's
curve goes to them as it is evaluated (`StageCurves`, `log_curve_point`: `weak/val/acc`, `w2s/test_gt/acc`
against `weak/step`, `w2s/step`); `log_results` puts `test/pgr` and the role accuracies, every number of
results.json (`results/...`) and each stage's artifact hash (`artifacts/<stage>`) in the summary, and sends the
curves of stages reused from the cache. W&B runs offline unless an API key is configured (`wandb sync` uploads
later); `python -m w2s.dashboard` builds the project's workspace from the tags.
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from w2s import dist
from w2s.signals import sigterm_raises

log = logging.getLogger(__name__)

#: The loggers of the session in progress (None outside `session`): `log_results` writes to these.
_ACTIVE: list[Any] | None = None
#: Stages whose curve this session has sent (live or from the cache), so no point is sent twice.
_SENT: set[str] = set()


def wandb_offline() -> bool:
    """Offline unless WANDB_MODE says otherwise or an API key exists (env or ~/.netrc): never a login prompt."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun", "disabled")
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


if not OmegaConf.has_resolver("w2s_wandb_offline"):
    OmegaConf.register_new_resolver("w2s_wandb_offline", wandb_offline)

#: This process's id in its output folder's name: two runs started in the same second (or on two nodes with
#: the same pid) never share `outputs/<date>/<time>-<id>` (conf/train.yaml `hydra.run.dir`, `hydra.sweep.dir`).
RUN_ID = f"{os.getpid()}-{secrets.token_hex(3)}"

if not OmegaConf.has_resolver("w2s_run_id"):  # cached: Hydra copies the cache into every job of a sweep
    OmegaConf.register_new_resolver("w2s_run_id", lambda: RUN_ID, use_cache=True)


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """`test/<role>_<metric>`, its 95% interval `test/<role>_<metric>_lo` / `_hi` (results.json `ci`) and
    `test/pgr[_<metric>]`: the names dashboards group by."""
    out = {}
    for role in ("weak", "w2s", "ceiling", "direct", "noise"):
        for metric, value in (results.get(role) or {}).items():
            if value is not None:
                out[f"test/{role}_{metric}"] = value
    for role, intervals in (results.get("ci") or {}).items():
        for metric, (lo, hi) in intervals.items():
            out.update({f"test/{role}_{metric}_lo": lo, f"test/{role}_{metric}_hi": hi})
    for metric, value in (results.get("pgr") or {}).items():
        if value is not None:
            out["test/pgr" if metric == "acc" else f"test/pgr_{metric}"] = value
    return out


def _start(cfg: DictConfig) -> list[Any]:
    from w2s.models import git_sha

    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    params = {**OmegaConf.to_container(cfg, resolve=True), "git_sha": git_sha()}
    for lg in loggers:
        lg.log_hyperparams(params)
    return loggers


def _wandb_run(lg: Any) -> Any:
    """The W&B run behind a WandbLogger (None for other loggers)."""
    from pytorch_lightning.loggers import WandbLogger

    return lg.experiment if isinstance(lg, WandbLogger) else None


def _end(loggers: list[Any], status: str, exit_code: int) -> None:
    for lg in loggers:
        try:
            lg.finalize(status)
        finally:
            run = _wandb_run(lg)
            if run is not None:  # finish() with the exit code marks the run failed or finished
                run.finish(exit_code=exit_code)


@contextlib.contextmanager
def session(cfg: DictConfig) -> Iterator[list[Any]]:
    """Loggers for one run; a run that raises (or exits non-zero) is finalised as failed, never left open."""
    global _ACTIVE
    loggers = _start(cfg) if dist.env_rank() == 0 else []  # other ranks of a multi-process run log nothing
    _ACTIVE = loggers
    _SENT.clear()
    try:
        with sigterm_raises():
            yield loggers
    except BaseException as e:
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 1
        _end(loggers, "failed" if code else "success", code)
        raise
    else:
        _end(loggers, "success", 0)
    finally:
        _ACTIVE = None
        _SENT.clear()


def _send_point(loggers: list[Any], stage: str, point: dict[str, Any]) -> None:
    step = int(point.get("step", 0))
    metrics = {f"{stage}/{k}": float(v) for k, v in point.items() if k != "step" and v is not None}
    first = stage not in _SENT
    _SENT.add(stage)
    for lg in loggers:
        run = _wandb_run(lg)
        if run is None:
            lg.log_metrics(metrics, step=step)
            continue
        if first:  # each stage its own x axis: stages restart at step 0 and W&B's own step only grows
            run.define_metric(f"{stage}/step")
            run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
        run.log({f"{stage}/step": step, **metrics})


def log_curve_point(stage: str, point: dict[str, Any]) -> None:
    """One evaluation point of a stage's curve (`{"step": 40, "val/acc": 0.7, ...}`, as in curve.json) to the
    session's loggers, named `<stage>/val/acc` against `<stage>/step`; outside a session it goes nowhere."""
    if _ACTIVE is not None:
        _send_point(_ACTIVE, stage, point)


class StageCurves(pl.Callback):
    """Sends each new point of the module's `curve` (appended at every evaluation) as the stage trains, named by
    `stage` (default: the module's own `stage`, the role it trains)."""

    def __init__(self, stage: str | None = None):
        self.stage, self.sent = stage, 0

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        curve = getattr(module, "curve", None) or []
        if trainer.sanity_checking or not trainer.is_global_zero or len(curve) <= self.sent:
            return
        stage = self.stage or getattr(module, "stage", None) or "train"
        for point in curve[self.sent :]:
            log_curve_point(stage, point)
        self.sent = len(curve)


def flat_results(results: dict[str, Any], prefix: str = "results") -> dict[str, Any]:
    """Every value of results.json but the config (W&B holds it) and the curves (history), keyed by path:
    `results/agreement/w2s/all`, `results/chain/0/acc`, `results/stopping/w2s/selected`."""

    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}/{k}")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}/{i}")
        elif node is not None and not (isinstance(node, float) and node != node):
            yield path, node

    skip = ("config", "curves")
    return dict(kv for k, v in results.items() if k not in skip for kv in walk(v, f"{prefix}/{k}"))


def artifact_refs(results: dict[str, Any]) -> dict[str, str]:
    """`artifacts/<stage>`: `<kind>/<hash>` of each stage's content-addressed artifact (w2s.artifacts)."""
    return {
        f"artifacts/{name}": "/".join(Path(p).parts[-2:]) for name, p in (results.get("stages") or {}).items()
    }


def log_results(cfg: DictConfig, results: dict[str, Any]) -> None:
    """Final metrics, the full results and artifact hashes to the session's loggers (or, outside a session, to
    loggers made and closed here); curves of stages that did not train in this session (cached) go too."""
    if _ACTIVE is not None:
        _send(_ACTIVE, results)
        return
    with session(cfg) as loggers:
        _send(loggers, results)


def _send(loggers: list[Any], results: dict[str, Any]) -> None:
    for stage, curve in (results.get("curves") or {}).items():
        if stage not in _SENT:
            for point in curve:
                _send_point(loggers, stage, point)
    metrics = flat_metrics(results)
    for lg in loggers:
        lg.log_metrics(metrics)
        run = _wandb_run(lg)
        if run is not None:
            run.summary.update({**metrics, **flat_results(results), **artifact_refs(results)})


def format_table(results: dict[str, Any]) -> str:
    """The test metrics of each role and PGR as a small text table (what `make demo` prints)."""
    rows = [
        ("weak", results["weak"]),
        ("weak-to-strong", results["w2s"]),
        ("strong ceiling", results["ceiling"]),
    ]
    if "direct" in results:
        rows.insert(2, ("direct (no chain)", results["direct"]))
    metrics = [m for m in ("acc", "auroc", "legal") if m in results["weak"]]
    fmt = lambda v: "  null" if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [
        f"{results['task']}: {results['supervisor']} -> {results['student']}, loss={results['loss']}, "
        f"seed={results['seed']}",
        f"{'':20s}" + "".join(f"{m:>8s}" for m in metrics),
    ]
    lines += [f"{name:20s}" + "".join(f"{fmt(m.get(k)):>8s}" for k in metrics) for name, m in rows]
    lines.append(f"{'PGR':20s}" + "".join(f"{fmt(results['pgr'].get(k)):>8s}" for k in metrics))
    return "\n".join(lines)
