"""W&B holds what results.json holds: stage curves as they train, every result number, artifact hashes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from test_report import _inspect, _train
from torch.utils.data import DataLoader, TensorDataset

from w2s import tracking


class _Curved(pl.LightningModule):
    """A module that, like W2SModule, appends one point to `curve` at every evaluation."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)
        self.curve: list[dict[str, float]] = []

    def training_step(self, batch, batch_idx):
        return self.lin(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.curve.append({"step": float(self.global_step), "val/acc": 0.5 + 0.1 * len(self.curve)})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_stage_curves_go_to_the_session_as_they_train_and_once(cfg_factory, tmp_path):
    cfg = cfg_factory("experiment=tiny", "logger=csv")
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    module = _Curved()
    with tracking.session(cfg) as loggers:
        trainer = pl.Trainer(max_epochs=3, callbacks=[tracking.StageCurves("weak")], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        trainer.fit(module, data, data)
        loggers[0].save()
        live = pd.read_csv(Path(loggers[0].log_dir) / "metrics.csv")
        assert live["weak/val/acc"].dropna().tolist() == pytest.approx([0.5, 0.6, 0.7])  # before results
        assert live.dropna(subset=["weak/val/acc"])["step"].tolist() == [2, 4, 6]
        # results: the live stage is not sent again; a stage reused from the cache is
        cached_curve = [{"step": 10.0, "val/acc": 0.9}]
        tracking.log_results(
            cfg, {"curves": {"weak": module.curve, "w2s": cached_curve}, "weak": {"acc": 0.6}}
        )
    rows = pd.read_csv(Path(loggers[0].log_dir) / "metrics.csv")
    assert len(rows["weak/val/acc"].dropna()) == 3
    assert rows["w2s/val/acc"].dropna().tolist() == [0.9] and rows["test/weak_acc"].dropna().tolist() == [0.6]


def _leaves(node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{path}/{i}")
    elif node is not None:
        yield path, node


@pytest.mark.skipif(shutil.which("wandb") is None, reason="the wandb CLI comes with the wandb package")
def test_offline_wandb_run_holds_every_result_number_and_the_curves(tmp_path):
    proc = _train(
        tmp_path, "method=bootstrap", "chain1=tiny-bert", "split.transfer=60", "analysis.noise_control=true",
        "analysis.easy_to_hard.by=confidence", "early_stop.track_test=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (run_dir,) = list((tmp_path / "run").glob("wandb/offline-run-*"))
    summary = _inspect(run_dir)["summary"]
    expected = {
        k: v for key in results if key not in ("config", "curves") for k, v in _leaves(results[key], f"results/{key}")
    }  # fmt: skip
    for part in ("agreement/w2s/all", "stopping/w2s/selected", "pgr_direct/auroc", "chain/0/acc", "noise/acc",
                 "easy_to_hard/n_test_hard", "easy_to_hard/w2s/acc", "splits/transfer1"):  # fmt: skip
        assert any(k.startswith(f"results/{part}") for k in expected), part
    missing = [k for k in expected if k not in summary]
    assert not missing, missing
    for key, value in expected.items():
        assert summary[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    for stage, path in results["stages"].items():
        assert summary[f"artifacts/{stage}"] == f"train/{Path(path).name}"  # the content hash
    # the curves: every evaluation point of every stage, against that stage's own step
    out = _inspect_records(run_dir)
    history = [r["history"]["item"] for r in out if r.get("type") == "history"]
    assert set(results["curves"]) == {"weak", "chain1", "w2s", "ceiling", "direct", "noise", "easy"}
    for stage, curve in results["curves"].items():
        logged = {int(h[f"{stage}/step"]): h for h in history if f"{stage}/step" in h}
        assert sorted(logged) == sorted(int(p["step"]) for p in curve), stage
        for point in curve:
            for name, value in point.items():
                if name != "step" and value is not None and not math.isnan(value):
                    assert logged[int(point["step"])][f"{stage}/{name}"] == pytest.approx(value)


def _inspect_records(run_dir: Path) -> list[dict]:
    import subprocess

    out = subprocess.run(["wandb", "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
