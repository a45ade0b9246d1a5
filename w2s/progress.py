"""Progress of the stages that take more than a few seconds: a bar on a terminal, a line every `every_s`
seconds in logs (SLURM, files), and one line when the stage is done (what, how many, seconds)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import pytorch_lightning as pl

from w2s.signals import check_terminated

log = logging.getLogger("w2s.progress")
T = TypeVar("T")


def track(
    items: Iterable[T], total: int, what: str, unit: str = "rows", every_s: float = 30.0
) -> Iterator[T]:
    """Yield `items` (batches), counting `total` rows; each item's row count is `len(item)` when it has one.

    On a terminal a tqdm bar; elsewhere a log line every `every_s` seconds. Always one closing line.
    """
    t0 = last = time.time()
    done = 0
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=what, unit=unit, leave=False, dynamic_ncols=True)
    try:
        for item in items:
            check_terminated()  # a safe point per batch: a SIGTERM a finalizer swallowed stops the loop here
            yield item
            n = len(item) if hasattr(item, "__len__") else 1
            done += n
            if bar is not None:
                bar.update(n)
            elif time.time() - last >= every_s:
                last = time.time()
                rate = done / max(last - t0, 1e-9)
                log.info("%s: %d/%d %s (%.1f %s/s)", what, done, total, unit, rate, unit)
    finally:
        if bar is not None:
            bar.close()
    done_line(what, done, unit, time.time() - t0)


def done_line(what: str, n: int, unit: str, seconds: float) -> None:
    """The one line a finished stage prints."""
    log.info("%s: %d %s in %.1fs", what, n, unit, seconds)


class StageProgress(pl.Callback):
    """Training progress of one stage, as `track` gives the other stages: a bar on a terminal, else a line
    every `every_s` seconds (stage, step/total, loss, elapsed); one closing line when the stage ends."""

    def __init__(self, what: str | None = None, every_s: float = 30.0):
        self.what, self.every_s = what or "train", every_s
        self.bar: Any = None
        self.t0 = self.last = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.what = getattr(module, "stage", None) or self.what  # a stage's module carries its role's name
        self.t0 = self.last = time.time()
        own_bar = trainer.progress_bar_callback is not None  # progress_bar=true: Lightning's, not a second
        if sys.stderr.isatty() and trainer.is_global_zero and not own_bar:
            from tqdm import tqdm

            total = int(trainer.estimated_stepping_batches)
            self.bar = tqdm(total=total, desc=self.what, unit="step", leave=False, dynamic_ncols=True)

    def _loss(self, trainer: pl.Trainer) -> float | None:
        loss = trainer.callback_metrics.get("train/loss")
        return None if loss is None else float(loss)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        loss = self._loss(trainer)
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif time.time() - self.last >= self.every_s and trainer.is_global_zero:
            self.last = time.time()
            total = int(trainer.estimated_stepping_batches)
            log.info("%s: step %d/%d, loss %s, %.0fs", self.what, trainer.global_step, total,
                     "n/a" if loss is None else f"{loss:.4f}", self.last - self.t0)  # fmt: skip

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if trainer.is_global_zero:
            loss = self._loss(trainer)
            log.info("%s: trained %d steps in %.1fs (last loss %s)", self.what, trainer.global_step,
                     time.time() - self.t0, "n/a" if loss is None else f"{loss:.4f}")  # fmt: skip

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exc: BaseException) -> None:
        if self.bar is not None:  # a diverged or killed stage leaves no half-drawn bar above the error line
            self.bar.close()
            self.bar = None


def quiet() -> None:
    """Silence per-file progress bars and tips of the libraries; our own log says what each stage did."""
    import os
    import warnings

    import datasets
    import transformers

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # library noise in every normal run, none of it actionable by a user of this project
    for message in (
        ".*does not have many workers.*",
        r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's pytree on torch >= 2.10
        ".*The `srun` command is available on your system but is not used.*",  # submitit, not srun, launches
        ".*custom batch sampler.*for prediction.*",  # our samplers return every row (w2s.data.loader)
    ):
        warnings.filterwarnings("ignore", message)
