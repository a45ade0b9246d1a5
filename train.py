"""Run one weak-to-strong experiment: `python train.py task=... supervisor=... student=... loss=...`."""

import sys

import hydra
from omegaconf import DictConfig

from w2s import dist
from w2s.config import validate
from w2s.errors import UserError
from w2s.module import NonFiniteLoss
from w2s.pipeline import run
from w2s.progress import quiet
from w2s.tracking import Terminated, format_table, session


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet()
    try:
        validate(cfg)  # before any logger starts: a bad value is one line, not a half-made W&B run
        with session(cfg):  # loggers finish on every exit path; a crash marks the W&B run failed
            results = run(cfg)
    except UserError as e:  # a bad value the user typed or supplied: one line naming it, no traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except NonFiniteLoss as e:  # diverged: the step and the batch's example ids, no traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    except Terminated as e:  # killed: 128 + SIGTERM, as a shell reports it, never a silent 0
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(143)
    if dist.is_zero():
        print(format_table(results), flush=True)
    return results["pgr"].get("acc")


if __name__ == "__main__":
    main()
