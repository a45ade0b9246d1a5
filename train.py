"""Run one weak-to-strong experiment: `python train.py task=... supervisor=... student=... loss=...`."""

import hydra
from omegaconf import DictConfig

from w2s.pipeline import quiet, run
from w2s.tracking import format_table, session


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet()
    with session(cfg):  # loggers finish on every exit path; a crash marks the W&B run failed
        results = run(cfg)
    print(format_table(results), flush=True)
    return results["pgr"].get("acc")


if __name__ == "__main__":
    main()
