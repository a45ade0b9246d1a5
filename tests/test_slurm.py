"""Sweep launching: launcher configs (always) and real multiruns on the local SLURM cluster (`-m slurm`).

The SLURM tests need `scripts/slurm_cluster.sh start` and W2S_SLURM=1. They skip when W2S_SLURM is unset
and FAIL when it is set but the cluster is down, so CI cannot pass them by accident.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
from omegaconf import OmegaConf

from w2s.launch import AccountingCheck, check_layout, layout_problems, trainer_slurm_layout

REPO = Path(__file__).resolve().parents[1]
LAUNCHER_DIR = REPO / "conf" / "hydra" / "launcher"
# The base config each of our launcher files extends, and the keys that base accepts.
BASES = {"submitit_slurm": SlurmQueueConf, "submitit_local": LocalQueueConf, "joblib": JobLibLauncherConf}
LAUNCHERS = sorted(p.stem for p in LAUNCHER_DIR.glob("*.yaml"))
# A bound on every multirun: a hang must fail the test, not stall CI.
SWEEP_TIMEOUT_S = 120

GPU_TRAINER = {"accelerator": "gpu", "devices": 2, "num_nodes": 1, "strategy": "ddp"}
# What conf/trainer/default.yaml looks like; AUTO_TRAINER's "auto" devices cannot size a SLURM job.
CPU_TRAINER = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
AUTO_TRAINER = {"accelerator": "auto", "devices": "auto", "num_nodes": 1, "strategy": "auto"}


# ---------------------------------------------------------------- config tests (no cluster needed)


def _write_app(root: Path, trainer: dict | None = None) -> Path:
    """A stand-in for train.py: same decorator shape, reads our launcher configs via the search path."""
    (root / "conf").mkdir(parents=True, exist_ok=True)
    app_cfg = {
        "defaults": ["_self_", {"optional local": "default"}],
        "mode": "ok",
        "x": 0,
        "trainer": trainer or CPU_TRAINER,
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
        "hydra": {
            "searchpath": [f"file://{REPO / 'conf'}"],
            "callbacks": {"accounting_check": {"_target_": "w2s.launch.AccountingCheck"}},
        },
    }
    (root / "conf" / "app.yaml").write_text(yaml.safe_dump(app_cfg, sort_keys=False))
    (root / "app.py").write_text(
        textwrap.dedent(
            """
            import json, os
            from pathlib import Path

            import hydra

            from w2s.launch import check_layout


            @hydra.main(version_base="1.3", config_path="conf", config_name="app")
            def main(cfg):
                check_layout(cfg)
                out = Path(cfg.paths.output_dir)
                if cfg.mode == "raise":
                    raise RuntimeError(f"stand-in job {cfg.x} failed on purpose")
                if cfg.mode == "kill":
                    os.kill(os.getpid(), 9)
                env = {k: os.environ.get(k) for k in
                       ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "WANDB_MODE")}
                (out / "results.json").write_text(json.dumps({"x": cfg.x, "env": env}))


            if __name__ == "__main__":
                main()
            """
        )
    )
    return root


def _compose(app_root: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(app_root / "conf"), version_base="1.3"):
        return compose("app", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_file_extends_a_known_base_with_accepted_keys(name: str) -> None:
    raw = yaml.safe_load((LAUNCHER_DIR / f"{name}.yaml").read_text())
    bases = [d for d in raw.get("defaults", []) if d != "_self_"]
    assert len(bases) == 1 and bases[0] in BASES, f"{name}.yaml must extend one of {sorted(BASES)}: {bases}"
    accepted = {f.name for f in dataclasses.fields(BASES[bases[0]])}
    unknown = set(raw) - accepted - {"defaults"}
    assert not unknown, f"{name}.yaml has keys {sorted(unknown)} that {bases[0]} does not accept"


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_composes_and_resolves(name: str, tmp_path: Path) -> None:
    app = _write_app(tmp_path, trainer=GPU_TRAINER if name == "slurm" else CPU_TRAINER)
    cfg = _compose(app, [f"hydra/launcher={name}"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].startswith("hydra_plugins.")
    assert layout_problems(cfg.trainer, launcher) == []


def test_gpu_preset_follows_trainer_and_local_overrides(tmp_path: Path) -> None:
    app = _write_app(tmp_path, trainer={**GPU_TRAINER, "devices": 4, "num_nodes": 2})
    cfg = _compose(app, ["hydra/launcher=slurm"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 2)
    assert launcher["partition"] is None and launcher["timeout_min"] == 240  # defaults without conf/local
    assert any("WANDB_MODE=offline" in line for line in launcher["setup"])

    (app / "conf" / "local").mkdir()
    shutil.copy(REPO / "conf" / "local" / "default.yaml.example", app / "conf" / "local" / "default.yaml")
    cfg = _compose(app, ["hydra/launcher=slurm"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["partition"], launcher["account"]) == ("gpu", "my-project")
    assert "source ~/venvs/w2s/bin/activate" in launcher["setup"]
    assert any(line.startswith('case "True"') for line in launcher["setup"])  # hf_offline: true
    check_layout(cfg, launcher)


def test_check_layout_names_the_disagreement(tmp_path: Path) -> None:
    app = _write_app(tmp_path, trainer=GPU_TRAINER)
    cfg = _compose(app, ["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=1"])
    with pytest.raises(ValueError, match=r"tasks_per_node=1 but the trainer needs 2"):
        check_layout(cfg, cfg.hydra.launcher)
    spawn = {**GPU_TRAINER, "strategy": "ddp_spawn"}
    assert any("ddp_spawn" in p for p in layout_problems(spawn, trainer_slurm_layout(spawn) | _SLURM))
    cpu = {"accelerator": "cpu", "devices": 1, "num_nodes": 1}
    assert any(
        "gpus_per_node=1" in p
        for p in layout_problems(cpu, {**_SLURM, "tasks_per_node": 1, "nodes": 1, "gpus_per_node": 1})
    )
    # Local launchers are not SLURM: nothing to check.
    assert layout_problems(GPU_TRAINER, {"_target_": "x.JoblibLauncher"}) == []


_SLURM = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}


@pytest.mark.parametrize("devices", ["auto", -1])
def test_layout_refuses_uncountable_devices(devices) -> None:
    with pytest.raises(ValueError, match=r"trainer.devices=.*positive integer"):
        trainer_slurm_layout({"devices": devices})


def test_layout_counts_device_lists() -> None:
    assert trainer_slurm_layout({"devices": [0, 1, 2], "accelerator": "cuda"}) == {
        "tasks_per_node": 3,
        "gpus_per_node": 3,
        "nodes": 1,
    }
    assert trainer_slurm_layout({"devices": "2", "accelerator": "cpu", "num_nodes": 3})["gpus_per_node"] == 0


def _fake_sacct(tmp_path: Path, monkeypatch, body: str) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sacct").write_text(f"#!/bin/sh\n{body}\n")
    (tmp_path / "bin" / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")


def test_accounting_check_refuses_a_slurm_sweep_without_sacct(tmp_path: Path, monkeypatch) -> None:
    _fake_sacct(tmp_path, monkeypatch, "echo 'Slurm accounting storage is disabled' >&2; exit 1")
    slurm_sweep = OmegaConf.create({"hydra": {"launcher": _SLURM}})
    with pytest.raises(RuntimeError, match=r"accounting is unavailable .*storage is disabled"):
        AccountingCheck().on_multirun_start(slurm_sweep)
    AccountingCheck(required=False).on_multirun_start(slurm_sweep)  # warns only
    AccountingCheck().on_multirun_start(OmegaConf.create({"hydra": {"launcher": {"_target_": "x.Joblib"}}}))


def test_accounting_check_passes_when_sacct_answers(tmp_path: Path, monkeypatch) -> None:
    _fake_sacct(tmp_path, monkeypatch, "exit 0")
    AccountingCheck().on_multirun_start(OmegaConf.create({"hydra": {"launcher": _SLURM}}))


# ---------------------------------------------------------------- real cluster


@pytest.fixture(scope="module")
def cluster() -> None:
    if os.environ.get("W2S_SLURM") != "1":
        pytest.skip("W2S_SLURM is not 1: start scripts/slurm_cluster.sh and export W2S_SLURM=1 to run")
    if shutil.which("sinfo") is None:
        pytest.fail("W2S_SLURM=1 but sinfo is not installed (scripts/apt-packages.txt)")
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or out.stdout.split()[:1] not in (["idle"], ["mixed"], ["allocated"]):
        pytest.fail(f"W2S_SLURM=1 but the cluster is not up: sinfo -> {out.stdout!r} {out.stderr!r}")


def _multirun(app: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the stand-in app as a SLURM multirun; a hang past SWEEP_TIMEOUT_S fails the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SLURM_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "app.py", "-m", "hydra/launcher=slurm_cpu", f"hydra.sweep.dir={app / 'multirun'}",
           "hydra.launcher.timeout_min=5", *overrides]  # fmt: skip
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"multirun {overrides} hung for more than {SWEEP_TIMEOUT_S}s:\n{err.stderr}")
    return proc, time.monotonic() - start


def _results(app: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((app / "multirun").glob("*/results.json"))]


@pytest.mark.slurm
def test_sweep_runs_every_job_as_a_slurm_array_task(cluster, tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    proc, secs = _multirun(app, "x=1,2,3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _results(app)
    assert sorted(r["x"] for r in results) == [1, 2, 3]
    envs = [r["env"] for r in results]
    assert all(e["SLURM_JOB_ID"] for e in envs)
    assert len({e["SLURM_ARRAY_JOB_ID"] for e in envs}) == 1  # one job array for the sweep
    assert sorted(e["SLURM_ARRAY_TASK_ID"] for e in envs) == ["0", "1", "2"]
    assert all(e["WANDB_MODE"] == "offline" for e in envs)  # setup line: no WANDB_API_KEY -> offline
    print(f"3-job SLURM multirun took {secs:.1f}s")


@pytest.mark.slurm
def test_a_raising_job_fails_the_sweep_and_the_rest_still_write(cluster, tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    proc, _ = _multirun(app, "mode=ok,raise", "x=7")
    assert proc.returncode != 0
    assert "stand-in job 7 failed on purpose" in proc.stderr
    assert [r["x"] for r in _results(app)] == [7]  # the job that succeeded wrote its results


@pytest.mark.slurm
def test_a_killed_job_is_reported_not_waited_on_forever(cluster, tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    proc, secs = _multirun(app, "mode=kill")
    assert proc.returncode != 0
    assert "UncompletedJobError" in proc.stderr and "FAILED" in proc.stderr, proc.stderr[-3000:]
    print(f"SIGKILLed job reported after {secs:.1f}s")


def test_gpu_preset_does_not_resolve_with_auto_devices(tmp_path: Path) -> None:
    """Documented: hydra/launcher=slurm needs an integer trainer.devices (a GPU preset), not "auto"."""
    cfg = _compose(_write_app(tmp_path, trainer=AUTO_TRAINER), ["hydra/launcher=slurm"])
    with pytest.raises(Exception, match=r"'auto'.*could not be converted to Integer"):
        OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.mark.slurm
def test_ddp_jobs_run_two_tasks_per_node_and_write_one_result_each(cluster, tmp_path: Path) -> None:
    """The real train.py: each sweep job is 2 SLURM tasks (srun), which Lightning joins as 2 DDP ranks (gloo)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SLURM_"))}
    env.update(PYTHONPATH=str(REPO), W2S_ARTIFACTS=str(tmp_path / "artifacts"), OMP_NUM_THREADS="1")
    sweep = tmp_path / "multirun"
    cmd = [sys.executable, "train.py", "-m", "hydra/launcher=slurm_cpu", "trainer=ddp_cpu", "experiment=tiny",
           "logger=csv", "seed=0,1", f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=15",
           "hydra.launcher.mem_gb=3"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 2
    for job in jobs:
        assert [p.name for p in job.glob("**/results.json")] == ["results.json"]
        res = json.loads((job / "results.json").read_text())
        assert res["processes"] == 2 and set(res["w2s"]) == {"acc", "auroc"}  # two ranks trained it
