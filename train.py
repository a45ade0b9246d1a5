"""Run one weak-to-strong experiment: `python train.py task=... supervisor=... student=... loss=...`."""

import logging
import os
import signal
import sys


def _killed_while_starting(signum, frame):  # imports take seconds; nothing is written yet, so leave at once
    os.write(2, b"error: terminated by SIGTERM while starting\n")
    os._exit(143)


signal.signal(signal.SIGTERM, _killed_while_starting)  # also the handler again once `main` has returned
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a DDP rank starts with its parent's mask

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from w2s import dist, models, overrides, signals, tracking  # noqa: E402
from w2s.config import validate  # noqa: E402
from w2s.errors import UserError, storage_error  # noqa: E402
from w2s.module import NonFiniteLoss  # noqa: E402
from w2s.pipeline import run  # noqa: E402
from w2s.progress import quiet  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet()
    try:
        with signals.sigterm_raises():  # SIGTERM sets a flag and raises Terminated; safe points re-check it
            try:
                validate(cfg)  # before any logger starts: a bad value is one line, not a half-made W&B run
                dist.set_timeout(cfg.dist.timeout_min)
                models.set_cache_root(cfg.paths.model_cache)
                with tracking.session(cfg):  # loggers finish on every exit path; a crash marks W&B failed
                    results = run(cfg)
                signals.check_terminated()
            except UserError as e:  # a bad value the user typed or supplied: one line naming it, no traceback
                _fail(2, e)
            except NonFiniteLoss as e:  # diverged: the step and the batch's example ids, no traceback
                _fail(3, e)
            except Exception as e:
                if isinstance(e, OSError) and storage_error(e):  # full, read-only, over `ulimit -f`
                    _fail(2, storage_error(e))
                if dist.launched() and dist.is_peer_loss(e):  # a peer died or left: this one ends, one line
                    signals.leave(dist.PEER_LOST)
                raise
            if dist.is_zero():
                print(tracking.format_table(results), flush=True)
    except signals.Terminated:
        pass  # reported below, with every other way a SIGTERM can surface
    finally:
        # killed: 128 + SIGTERM, as a shell reports it, never a silent 0, whether the exception arrived, was
        # swallowed by a finalizer, or became Lightning's SystemExit without a code
        if signals.terminated():  # leave now: a library crashing in interpreter teardown must not change 143
            print(f"error: {signals.MESSAGE}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            logging.shutdown()
            os._exit(143)
    return results["pgr"].get("acc")


class JobFailed(Exception):
    """A multirun job that stopped on a clean error: Hydra records it as failed and runs the other jobs (a
    SystemExit in a joblib worker ends the whole sweep), then the sweep exits non-zero."""


def _fail(code: int, e: Exception) -> None:
    print(f"error: {e}", file=sys.stderr, flush=True)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise JobFailed(f"exit {code}: {e}") from None
    sys.exit(code)


def _exit(code: int) -> None:
    """Leave without the interpreter's teardown: it takes a second after torch and resets SIGTERM to its default
    action, so a SIGTERM landing there killed the process (-15) instead of exiting 143."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(143 if signal.SIGTERM in signal.sigpending() else code)


if __name__ == "__main__":
    try:  # Hydra's own errors (unknown group option, unparsable override, unwritable folder): one line, exit 2
        sys.argv[1:] = overrides.precheck(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        _exit(2)
    try:
        main()
    except SystemExit as e:  # sys.exit(2) / (3) above, Hydra's own exits (--help, a bad override)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        _exit(e.code if isinstance(e.code, int) else int(e.code is not None))
    _exit(0)
