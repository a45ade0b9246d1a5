"""Shared fixtures: a composed config with every output under tmp_path, and a private model cache."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from w2s import artifacts
from w2s.config import CONF_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


def make_cfg(tmp_path: Path, overrides: list[str] | None = None) -> DictConfig:
    """Compose `train.yaml` like the command line would, with outputs and artifacts in tmp_path."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides or []))
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.artifact_root = str(tmp_path / "artifacts")
        cfg.paths.log_dir = str(tmp_path / "logs")
    return cfg


def built(root: str | Path, since: float) -> Counter:
    """Artifacts built (not reused) under `root` since `since`, counted by kind, whichever process built them."""
    return Counter(kind for kind, _ in artifacts.builds(root, since))


@pytest.fixture
def cfg_factory(tmp_path: Path):
    return lambda *overrides: make_cfg(tmp_path, list(overrides))


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Tiny models are built once per session into a private cache (real offline models stay shared)."""
    if "W2S_MODEL_CACHE" not in os.environ:
        os.environ["W2S_MODEL_CACHE"] = str(tmp_path_factory.mktemp("models"))
    yield
