"""What a newcomer sees: progress lines for training stages, no library warnings, files the group can read."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from w2s.artifacts import atomic_write_text
from w2s.progress import StageProgress

ROOT = Path(__file__).resolve().parents[1]


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_stage_progress_logs_step_total_loss_and_a_closing_line(caplog):
    data = TensorDataset(torch.randn(12, 2), torch.randn(12))
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[StageProgress("weak", every_s=0.0)], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="w2s.progress"):
        trainer.fit(_Tiny(), DataLoader(data, batch_size=4))
    lines = [r.getMessage() for r in caplog.records if r.name == "w2s.progress"]
    periodic = [ln for ln in lines if ln.startswith("weak: step ")]
    assert periodic and periodic[-1].startswith("weak: step 6/6, loss ")  # 12 rows / 4 per batch * 2 epochs
    assert lines[-1].startswith("weak: trained 6 steps in ") and "last loss" in lines[-1]


def test_atomic_write_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640  # mkstemp alone gives 0600


def test_tiny_run_prints_no_warning_logs_stages_and_writes_0644(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "experiment=tiny", f"hydra.run.dir={tmp_path / 'run'}",
           f"paths.artifact_root={tmp_path / 'art'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$@"', "sh", *cmd],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    noise = [ln for ln in out.splitlines() if "Warning" in ln or "deprecated" in ln or "HINT:" in ln]
    assert not noise, noise
    for stage in ("weak", "w2s", "ceiling"):  # one closing line per training stage, named by its role
        assert out.count(f"[w2s.progress][INFO] - {stage}: trained ") == 1
    for name in ("results.json", ".hydra/config.yaml"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name


def test_help_offers_no_template_as_a_choice():
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=True).stdout  # fmt: skip
    groups = out.split("== Config groups (group=option) ==")[1].split("== Config ==")[0]
    assert "logger: csv, none, wandb" in groups
    assert "example" not in groups  # the per-machine template is copied, never chosen
    assert (ROOT / "conf" / "local" / "default.yaml.example").is_file()
