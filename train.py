"""Run one weak-to-strong experiment: `python train.py task=... supervisor=... student=... loss=...`."""

import hydra
from omegaconf import DictConfig

from w2s.pipeline import quiet, run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet()
    results = run(cfg)
    return results["pgr"].get("acc")


if __name__ == "__main__":
    main()
