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
import secrets
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: The loggers of the session in progress (None outside `session`): `log_results` writes to these.
_ACTIVE: list[Any] | None = None


class Terminated(BaseException):
    """SIGTERM (scancel, a pre-empting scheduler, `kill`) during a run.

    Lightning's own handler only sets a flag and then leaves `fit` through a `SystemExit` without a code: the
    process exited 0 with no results, which launchers read as success. This stops at once instead (stages write
    atomically, so finished stages stay cached for a rerun) and `train.py` exits 143. A `BaseException`, like
    `KeyboardInterrupt`, so a library's broad `except Exception` cannot swallow it.
    """


MESSAGE = "terminated by SIGTERM; finished stages are cached: rerun the same command to resume"
#: Set by the SIGTERM handler and never cleared: an exception raised inside a finalizer (`__del__`) or a
#: library's `except` is lost, so every safe point (`check_terminated`) and `train.py`'s exit re-read this.
_TERMINATED = threading.Event()


def terminated() -> bool:
    """Whether SIGTERM arrived in this process (even if the exception it raised was swallowed)."""
    return _TERMINATED.is_set()


def check_terminated() -> None:
    """A safe point: stop here if SIGTERM arrived and its exception was lost on the way."""
    if _TERMINATED.is_set():
        raise Terminated(MESSAGE)


def _on_sigterm(signum: int, frame: Any) -> None:
    first = not _TERMINATED.is_set()
    _TERMINATED.set()
    if first:  # a second SIGTERM while the first unwinds only re-sets the flag
        raise Terminated(MESSAGE)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM sets the flag and raises `Terminated` where the main thread is; the previous handler after."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # Lightning's handler calls this one too
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopOnSigterm(pl.Callback):
    """A Lightning safe point per batch: a SIGTERM whose exception a finalizer swallowed still stops `fit`,
    `validate` and `predict` at the next batch (Lightning's own flag would leave through exit 0)."""

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        check_terminated()

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        check_terminated()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        check_terminated()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        check_terminated()

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        check_terminated()


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
    loggers = _start(cfg)
    _ACTIVE = loggers
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
