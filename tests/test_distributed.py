"""Several processes, one run: DDP on CPU (gloo) through the whole ladder, started by Lightning's own launcher.

Each test runs `train.py` in subprocesses (Lightning re-runs the script for rank 1), so what is checked is
what a user gets: one results.json, each artifact built once, labels equal to a one-process run's row for row.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import built
from datasets import load_from_disk

from w2s import artifacts, dist

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=tiny", "logger=csv", "analysis.noise_control=true"]
DDP = ["trainer.strategy=ddp", "trainer.devices=2"]  # experiment=tiny's trainer (fast, CPU) on two processes


def _train(args: list[str], tmp: Path, name: str) -> tuple[Path, str]:
    """Run train.py to the end; returns its output folder and its output."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "W2S_ARTIFACTS": str(tmp / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }
    out = tmp / name
    proc = subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout + proc.stderr


def _labels(root: Path) -> dict[tuple, dict]:
    """Every label artifact's rows and values, by what produced it (model and splits, or derived)."""
    out = {}
    for d in (root / "labels").glob("*/labels"):
        meta = artifacts.manifest(d.parent)["meta"]
        parts = load_from_disk(str(d))
        name = ("derived" if "derived" in meta else meta["model"], tuple(meta["splits"]))
        out[name] = {n: (list(p["idx"]), [float(v) for v in p["label"]]) for n, p in parts.items()}
    return out


@pytest.mark.slow
def test_ddp_on_cpu_runs_the_ladder_once_and_labels_like_one_process(tmp_path):
    one = tmp_path / "one"
    t = time.time()
    out1, _ = _train(TINY, one, "run")
    single = built(one / "artifacts", t)
    two = tmp_path / "two"
    t = time.time()
    out2, log = _train([*TINY, *DDP], two, "run")
    assert "train_ddp_process_1.log" in [p.name for p in out2.iterdir()]  # rank 1 ran, Lightning-launched
    # every artifact was built exactly once across the two ranks: the same stages a single process builds
    assert built(two / "artifacts", t) == single
    assert list(out2.glob("**/results.json")) == [out2 / "results.json"]
    res1 = json.loads((out1 / "results.json").read_text())
    res2 = json.loads((out2 / "results.json").read_text())
    assert res2["processes"] == 2 and res1["processes"] == 1
    for role in ("weak", "w2s", "ceiling", "noise"):
        assert set(res2[role]) == {"acc", "auroc"}
    assert res2["splits"] == res1["splits"] and "Traceback" not in log
    # labels of the one-process supervisor, generated again by two ranks (sharded, gathered in row order):
    # equal row for row to the one-process labels, no row repeated or dropped
    expected = _labels(one / "artifacts")
    for d in (one / "artifacts" / "labels").iterdir():
        if d.is_dir():
            shutil.rmtree(d)
    t = time.time()
    _train([*TINY, *DDP], one, "relabel")
    assert set(built(one / "artifacts", t)) == {"labels"}  # nothing else recomputed: training stages reused
    again = _labels(one / "artifacts")
    assert set(again) == set(expected)
    for name, parts in expected.items():
        assert set(again[name]) == set(parts)
        for split, (idx, values) in parts.items():
            assert again[name][split][0] == idx  # the same rows, in the same order, each once
            assert again[name][split][1] == pytest.approx(values, abs=1e-5)  # batches differ, not the model


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    for var in ("RANK", "SLURM_PROCID", "SLURM_NTASKS", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert dist.env_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dist.env_rank() == 1  # Lightning's own train.py subprocess
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert dist.env_rank() == 1  # one SLURM task (an allocation, not srun): SLURM_PROCID is no rank
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert dist.env_rank() == 3  # srun with 4 tasks
    assert dist.world_size({"devices": 2, "num_nodes": 3}) == 6
    assert dist.world_size({"devices": "0,1", "num_nodes": 1}) == 2
    assert dist.world_size({"devices": "auto"}) == 1


def test_sharded_prediction_gathers_every_row_once_in_order():
    # one process: the shard is everything; the gather returns predictions in row order
    assert dist.shard(5) == [0, 1, 2, 3, 4]
    assert dist.gather_rows(5, lambda rows: [r * 10 for r in rows]) == [0, 10, 20, 30, 40]


def test_training_batches_are_shared_out_over_ranks_evenly():
    from w2s.data import BucketSampler

    lengths = list(range(1, 38))
    whole = BucketSampler(lengths, 4, shuffle=True, seed=3).batches()
    parts = [list(BucketSampler(lengths, 4, shuffle=True, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == -(-len(whole) // 2)  # equal steps: DDP synchronises each
    seen = [i for p in parts for b in p for i in b]
    assert set(seen) == set(range(len(lengths)))  # every row trained on (one batch repeats to even out)


def test_fsdp_on_cpu_is_refused_with_the_reason(cfg_factory):
    from w2s.config import ConfigError

    cfg = cfg_factory("experiment=tiny", "trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2")
    with pytest.raises(ConfigError, match="FSDP shards over CUDA"):
        dist.launch(cfg)
