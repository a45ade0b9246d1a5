"""Run-level tracking: the final metrics and PGR to every configured Lightning logger (CSV always).

A run is wrapped in `session(cfg)`: loggers start before the first stage (so a crash still leaves a run that is
marked failed), receive the config and git SHA, get `test/pgr` and the three accuracies in their summary, and are
finished on every exit path. W&B runs offline unless an API key is configured (`wandb sync` uploads later).
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from w2s import dist

log = logging.getLogger(__name__)

#: The loggers of the session in progress (None outside `session`): `log_results` writes to these.
_ACTIVE: list[Any] | None = None


class Terminated(Exception):
    """SIGTERM (scancel, a pre-empting scheduler, `kill`) during a run.

    Lightning's own handler only sets a flag and then leaves `fit` through a `SystemExit` without a code: the
    process exited 0 with no results, which launchers read as success. This stops at once instead (stages write
    atomically, so finished stages stay cached for a rerun) and `train.py` exits 143.
    """


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("terminated by SIGTERM; finished stages are cached: rerun the same command to resume")


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # Lightning's handler calls this one too
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """`test/<role>_<metric>` and `test/pgr[_<metric>]`: the names dashboards group by."""
    out = {}
    for role in ("weak", "w2s", "ceiling", "direct", "noise"):
        for metric, value in (results.get(role) or {}).items():
            if value is not None:
                out[f"test/{role}_{metric}"] = value
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
    try:
        with _sigterm_raises():
            yield loggers
    except BaseException as e:
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 1
        _end(loggers, "failed" if code else "success", code)
        raise
    else:
        _end(loggers, "success", 0)
    finally:
        _ACTIVE = None


def log_results(cfg: DictConfig, results: dict[str, Any]) -> None:
    """Final metrics to the session's loggers (or, outside a session, to loggers made and closed here)."""
    metrics = flat_metrics(results)
    if _ACTIVE is not None:
        _send(_ACTIVE, metrics)
        return
    with session(cfg) as loggers:
        _send(loggers, metrics)


def _send(loggers: list[Any], metrics: dict[str, float]) -> None:
    for lg in loggers:
        lg.log_metrics(metrics)
        run = _wandb_run(lg)
        if run is not None:
            run.summary.update(metrics)


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
