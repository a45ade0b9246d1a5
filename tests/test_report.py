"""The report reads results.json files (and lists jobs without one); W&B runs offline and is read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from w2s.metrics import pgr_table
from w2s.plots import plot_curves
from w2s.report import collect, main, write_report

PNG = b"\x89PNG\r\n\x1a\n"
SIZES = {"sup-s": 1e7, "sup-m": 5e7, "stu-m": 1e8, "stu-l": 1e9}


def _job(
    root: Path,
    n: int,
    task: str,
    sup: str,
    stu: str,
    loss: str,
    seed: int,
    weak: float,
    w2s: float,
    ceil: float,
):
    job = root / str(n)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (job / ".hydra" / "overrides.yaml").write_text(f"- task={task}\n- seed={seed}\n")
    res = {
        "task": task, "supervisor": sup, "student": stu, "loss": loss, "method": "naive", "seed": seed,
        "weak": {"acc": weak}, "w2s": {"acc": w2s}, "ceiling": {"acc": ceil},
        "pgr": {"acc": (w2s - weak) / (ceil - weak)}, "ci": {"w2s": {"acc": [w2s - 0.05, w2s + 0.04]}},
        "config": {"supervisor": {"params": SIZES[sup]}, "student": {"params": SIZES[stu]}},
        "curves": {"w2s": [{"step": s, "test_gt/acc": w2s + 0.01 * (s == 2), "test_weak/acc": 0.8} for s in (1, 2, 3)]},
    }  # fmt: skip
    (job / "results.json").write_text(json.dumps(res))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun" / "day" / "time"
    n = 0
    for task in ("sciq", "boolq"):
        for sup in ("sup-s", "sup-m"):
            for stu in ("stu-m", "stu-l"):
                for seed in (0, 1):
                    base = 0.6 if sup == "sup-s" else 0.65
                    ceil = 0.8 if stu == "stu-m" else 0.9
                    w2s = base + (0.5 + 0.1 * seed) * (ceil - base) + (0.02 if task == "boolq" else 0)
                    _job(root, n, task, sup, stu, "xent", seed, base, w2s, ceil)
                    n += 1
    crashed = root / str(n)
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (crashed / ".hydra" / "overrides.yaml").write_text("- task=sciq\n- seed=2\n")
    (crashed / "train.log").write_text(
        "starting\nValueError: loss is nan at step 3; batch example ids [4, 9]\n"
    )
    return root


def test_table_means_spread_and_medians_by_hand(sweep, tmp_path):
    rep = write_report(sweep, tmp_path / "out")
    assert rep["runs"] == 16
    s = rep["summary"].set_index(["task", "supervisor", "student"])
    cell = s.loc[("sciq", "sup-s", "stu-l")]
    # seeds 0 and 1: w2s = 0.6 + 0.5 * 0.3 and 0.6 + 0.6 * 0.3 -> mean 0.765, std |0.03| / sqrt(2)
    assert cell["w2s_acc_mean"] == pytest.approx(0.765)
    assert cell["w2s_acc_std"] == pytest.approx(0.03 / 2**0.5)
    assert cell["pgr_acc_mean"] == pytest.approx(0.55) and cell["n"] == 2
    # the runs' 95% test-set intervals, averaged over seeds, beside the seed spread
    assert cell["w2s_acc_lo"] == pytest.approx(0.715) and cell["w2s_acc_hi"] == pytest.approx(0.805)
    assert "0.765 ± 0.021 [0.715, 0.805]" in (tmp_path / "out" / "report.md").read_text()
    med = rep["medians"].set_index(["supervisor", "student"]).loc[("sup-s", "stu-l")]
    # boolq's w2s is 0.02 higher: the median of two tasks is their mean
    assert med["w2s_acc_mean"] == pytest.approx(0.765 + 0.01) and med["tasks"] == 2
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert len(table) == 8 and set(table["loss"]) == {"xent"}
    for png in rep["pngs"]:
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert {p.name for p in rep["pngs"]} == {"accuracy_xent.png", "pgr.png", "curves.png"}


def test_failed_jobs_are_listed_with_their_error(sweep, tmp_path, capsys):
    _, _, missing = collect(sweep)
    assert len(missing) == 1
    assert missing[0]["overrides"] == "task=sciq seed=2"
    assert "loss is nan at step 3" in missing[0]["reason"]
    assert main([str(sweep), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr()
    assert "Failed or missing runs: 1" in out.out and "MISSING" in out.err
    assert "loss is nan" in (tmp_path / "o" / "report.md").read_text()


def test_bad_sweep_folder_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_curves_of_one_evaluation_point_are_drawn(tmp_path):
    import matplotlib.image as mpimg

    curves = [{"task": "t", "supervisor": "s", "student": "u", "loss": "xent", "seed": 0,
               "curve": [{"step": 5, "test_gt/acc": 0.7, "test_weak/acc": 0.8}]}]  # fmt: skip
    img = mpimg.imread(plot_curves(curves, tmp_path))[..., :3]
    blue = np.abs(img - np.array([31, 119, 180]) / 255).sum(-1) < 0.15  # tab10's first colour: xent
    assert blue.sum() > 20  # a lone point is a marker; a line without markers draws nothing


def test_mean_pgr_over_seeds_with_a_null_one_shows_its_n(tmp_path):
    root = tmp_path / "sweep"
    for seed, ceil in ((0, 0.8), (1, 0.605)):  # seed 1: ceiling - weak < pgr_eps, PGR null
        _job(root, seed, "sciq", "sup-s", "stu-m", "xent", seed, 0.6, 0.7, ceil)
        path = root / str(seed) / "results.json"
        res = json.loads(path.read_text())
        res["pgr"]["acc"] = None if seed else res["pgr"]["acc"]
        path.write_text(json.dumps(res))
    rep = write_report(root, tmp_path / "out")
    row = rep["summary"].iloc[0]
    assert row["n"] == 2 and row["pgr_acc_n"] == 1 and row["pgr_acc_mean"] == pytest.approx(0.5)
    line = next(ln for ln in (tmp_path / "out" / "report.md").read_text().splitlines() if "| sciq |" in ln)
    assert "0.500 (n=1; 1 null)" in line


def test_report_and_results_json_agree_on_pgr_when_the_ceiling_is_below_weak(tmp_path, capsys):
    """One rule: a seed whose ceiling is below its weak model has PGR null in results.json (metrics.pgr at the
    run's pgr_eps), and null in every table of the report, seed and cell alike (not -0.5 from |gap|)."""
    root = tmp_path / "sweep"
    cases = [  # task, seed, weak, w2s, ceiling, the run's own pgr_eps
        ("below", 0, 0.70, 0.65, 0.60, 0.01),  # ceiling 0.1 below weak: |gap| is large, PGR null
        ("below", 1, 0.70, 0.66, 0.62, 0.01),
        ("wide", 0, 0.60, 0.70, 0.80, 0.01),
        ("wide", 1, 0.60, 0.72, 0.80, 0.25),  # this run's threshold is 0.25: its gap of 0.2 gives null
    ]
    for n, (task, seed, weak, w2s, ceil, eps) in enumerate(cases):
        _job(root, n, task, "sup-s", "stu-m", "xent", seed, weak, w2s, ceil)
        path = root / str(n) / "results.json"
        res = json.loads(path.read_text())
        res["config"]["pgr_eps"] = eps
        res["pgr"] = pgr_table(res["weak"], res["w2s"], res["ceiling"], eps)  # as pipeline.run writes it
        path.write_text(json.dumps(res))
    rep = write_report(root, tmp_path / "out", min_gap=0.0)
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    for path, value in zip(runs["path"], runs["pgr_acc"], strict=True):
        written = json.loads((Path(path) / "results.json").read_text())["pgr"]["acc"]
        assert value == pytest.approx(written) if written is not None else np.isnan(value)
    assert runs["pgr_acc"].notna().sum() == 1  # wide seed 0 only: (0.70 - 0.60) / 0.2
    cells = rep["task_pgr"].set_index("task")
    assert np.isnan(cells.loc["below", "pgr"]) and np.isnan(cells.loc["below", "pgr_seed_std"])
    assert np.isnan(cells.loc["wide", "pgr"])  # a cell takes its strictest run's pgr_eps: 0.2 < 0.25
    summary = rep["summary"].set_index("task")
    assert np.isnan(summary.loc["below", "pgr_acc_mean"]) and summary.loc["below", "pgr_acc_n"] == 0
    below = next(ln for ln in (tmp_path / "out" / "figure3.md").read_text().splitlines() if "| below |" in ln)
    assert "| -0.090 |" in below and "| (null, apart) |" in below
    assert main([str(root), "--out", str(tmp_path / "loose"), "--pgr-eps", "0.05"]) == 0  # an override
    loose = pd.read_csv(tmp_path / "loose" / "task_pgr.csv").set_index("task")
    assert loose.loc["wide", "pgr"] == pytest.approx((0.71 - 0.60) / 0.2)
    assert np.isnan(loose.loc["below", "pgr"])


def _inspect(run_dir: Path) -> dict:
    out = subprocess.run(
        ["wandb", "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def _train(tmp_path: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "train.py"), "experiment=tiny", "logger=wandb",
           f"paths.artifact_root={tmp_path / 'artifacts'}", f"hydra.run.dir={tmp_path / 'run'}", *overrides]  # fmt: skip
    full_env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "PYTHONPATH": f"{root}:{root / 'tests'}",
        **(env or {}),
    }
    full_env.pop("WANDB_API_KEY", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=full_env, cwd=tmp_path)


@pytest.mark.skipif(shutil.which("wandb") is None, reason="the wandb CLI comes with the wandb package")
def test_wandb_offline_run_reads_back_with_pgr_config_and_tags(tmp_path):
    proc = _train(tmp_path, "seed=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    runs = list((tmp_path / "run").glob("wandb/offline-run-*"))
    assert len(runs) == 1
    rec = _inspect(runs[0])
    assert rec["state"] == "finished" and rec["exit_code"] == 0
    assert rec["name"] == "rotten_tomatoes.tiny-bert-tiny-bert-large.xent.naive.s1"
    assert "loss=xent" in rec["tags"] and "student=tiny-bert-large" in rec["tags"]
    assert rec["config"]["seed"] == 1 and rec["config"]["student"]["name"] == "tiny-bert-large"
    assert "git_sha" in rec["config"]
    summary = rec["summary"]
    assert summary["test/w2s_acc"] == pytest.approx(results["w2s"]["acc"])
    assert summary["test/ceiling_acc"] == pytest.approx(results["ceiling"]["acc"])
    if results["pgr"]["acc"] is not None:
        assert summary["test/pgr"] == pytest.approx(results["pgr"]["acc"])
    assert (tmp_path / "run" / "csv").is_dir()  # CSV is always on


@pytest.mark.skipif(shutil.which("wandb") is None, reason="the wandb CLI comes with the wandb package")
def test_crashed_run_is_marked_failed(tmp_path):
    # the student's loss is NaN: the run stops mid-training (after the supervisor stage)
    proc = _train(tmp_path, "loss._target_=nan_loss.NanLoss", "~loss.hard", "allowed_targets=[nan_loss.]")
    assert proc.returncode != 0
    runs = list((tmp_path / "run").glob("wandb/offline-run-*"))
    assert len(runs) == 1
    rec = _inspect(runs[0])
    assert rec["state"] == "failed" and rec["exit_code"] != 0


def test_bootstrap_direct_and_generative_finetuning_are_kept_apart(tmp_path):
    root = tmp_path / "sweep"
    for n, (method, gft, direct) in enumerate(
        [("bootstrap", False, 0.7), ("naive", False, None), ("naive", True, None)]
    ):
        _job(root, n, "chess", "sup-s", "stu-m", "xent", 0, 0.6, 0.72, 0.8)
        path = root / str(n) / "results.json"
        res = json.loads(path.read_text())
        res.update(method=method, gen_finetune={"enabled": gft})
        if direct is not None:
            res["direct"] = {"acc": direct}
        path.write_text(json.dumps(res))
    df, _, _ = collect(root)
    assert sorted(df["method"]) == ["bootstrap", "naive", "naive+gft"]  # never pooled into one cell
    out = write_report(root)
    table = (Path(out["out"]) / "report.md").read_text()
    boot = next(line for line in table.splitlines() if "| bootstrap |" in line)
    naive = next(line for line in table.splitlines() if "| naive |" in line)
    assert boot.split("|")[-3].strip() == "0.700" and naive.split("|")[-3].strip() == "-"
