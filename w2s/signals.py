"""SIGTERM (scancel, a pre-empting scheduler, `kill`): a flag that is never lost, and safe points that read it.

A leaf module (no w2s imports), so every layer can offer a safe point: the artifact cache between stages,
progress loops per batch, a Lightning callback per step, and `train.py`'s exit, which turns any ending into
exit code 143 while the flag is set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch.distributed as td


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


#: Processes this one started (rank 0's Lightning launcher in a local DDP run): told of a SIGTERM first.
CHILDREN: list[Any] = []


def multi_process() -> bool:
    return td.is_available() and td.is_initialized() and td.get_world_size() > 1


def leave(message: str, code: int = 143) -> None:
    """End this process now with one `error:` line: a SIGTERM or a lost peer in a multi-process run. No
    collective and no teardown (either could wait forever on a peer that is gone or leaving too); finished
    stages are already in place (atomic renames) and a killed build's temp dir is swept by the next run."""
    for p in CHILDREN:
        with contextlib.suppress(OSError):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    rank = td.get_rank() if td.is_available() and td.is_initialized() else 0
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os.write(2, f"error: {f'[rank {rank}] ' if rank else ''}{message}\n".encode())
    os._exit(code)


def leave_on_sigterm() -> None:
    """Several processes: from now on SIGTERM is taken by a thread that leaves at once (`leave`). A handler
    runs only in the main thread between bytecodes, so one rank blocked in a C++ store wait or collective
    never ran it (and Lightning's own handler broadcasts from rank 0, a collective that deadlocked against a
    rank in all_reduce); blocked in the main thread, SIGTERM reaches neither."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        signal.sigwait({signal.SIGTERM})
        _TERMINATED.set()
        leave(MESSAGE)

    threading.Thread(target=wait, daemon=True, name="w2s-sigterm").start()


def _on_sigterm(signum: int, frame: Any) -> None:
    first = not _TERMINATED.is_set()
    _TERMINATED.set()
    if first:  # a second SIGTERM while the first unwinds only re-sets the flag
        raise Terminated(MESSAGE)


def _quiet_lost_sigterm(previous: Any) -> Any:
    """An unraisable hook: a `Terminated` raised inside a finalizer or a weakref callback (which Python prints
    as "Exception ignored in ... Traceback") says nothing, since the flag stays set and the next safe point
    stops with one line; anything else goes to `previous`."""

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Terminated):
            previous(unraisable)

    return hook


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM sets the flag and raises `Terminated` where the main thread is; the previous handler after."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # Lightning's handler calls this one too
    previous_hook, sys.unraisablehook = sys.unraisablehook, _quiet_lost_sigterm(sys.unraisablehook)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


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
