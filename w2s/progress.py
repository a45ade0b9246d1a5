"""Progress of the stages that take more than a few seconds: a bar on a terminal, a line every `every_s`
seconds in logs (SLURM, files), and one line when the stage is done (what, how many, seconds)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from w2s.tracking import check_terminated

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
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
