"""Shared fixtures: a composed config with every output under tmp_path, and a private model cache."""

from __future__ import annotations

import os
import zipfile
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


def zip_maker(payload: bytes):
    """A stand-in for an offline model package's zip: a config and a weight file holding `payload`."""

    def make(out: Path) -> None:
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("m/config.json", "{}")
            z.writestr("m/model.safetensors", payload)

    return make


@pytest.fixture
def cfg_factory(tmp_path: Path):
    return lambda *overrides: make_cfg(tmp_path, list(overrides))


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Tiny models are built once per session into a private cache (real offline models stay shared)."""
    if "W2S_MODEL_CACHE" not in os.environ:
        os.environ["W2S_MODEL_CACHE"] = str(tmp_path_factory.mktemp("models"))
    yield


@pytest.fixture
def fake_bigbench(tmp_path_factory, monkeypatch) -> Path:
    """A bigbench sdist holding only tests/fixtures/bigbench (upstream task.json schema), installed in a
    private $W2S_CACHE with its checksum accepted: the loaders run their real unpack-and-check path."""
    import hashlib
    import tarfile

    import w2s.tasks.bigbench as bb

    root = tmp_path_factory.mktemp("w2s_cache")
    cache = root / "bigbench"
    cache.mkdir()
    fixtures = Path(__file__).resolve().parent / "fixtures" / "bigbench"
    with tarfile.open(cache / bb.SDIST, "w:gz") as tar:
        for f in sorted(fixtures.rglob("*.json")):
            tar.add(f, arcname=bb.TASKS_IN_SDIST + f.relative_to(fixtures).as_posix())
    monkeypatch.setenv("W2S_CACHE", str(root))
    monkeypatch.setattr(bb, "SDIST_SHA256", hashlib.sha256((cache / bb.SDIST).read_bytes()).hexdigest())
    return cache
