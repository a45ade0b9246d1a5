"""BIG-bench JSON tasks from the bigbench sdist: unpacking, checks, the MC conversion, and the task configs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import w2s.tasks.bigbench as bb
from w2s.errors import TaskError
from w2s.tasks import load_task

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bigbench"


def test_missing_sdist_names_the_install_command(tmp_path):
    with pytest.raises(TaskError, match="make install-offline"):
        bb.task_dir("social_iqa", tmp_path)


def test_bad_checksum_is_refused(fake_bigbench, monkeypatch):
    monkeypatch.setattr(bb, "SDIST_SHA256", "0" * 64)
    with pytest.raises(TaskError, match="does not match sha256"):
        bb.task_dir("social_iqa")
    assert not (fake_bigbench / "task_json").exists()


def test_unpacks_every_task_json_once_and_nothing_else(fake_bigbench, monkeypatch, tmp_path):
    program = tmp_path / "task.py"  # a Python task's program: never unpacked
    program.write_text("print('no')\n")
    sdist = fake_bigbench / bb.SDIST
    with tarfile.open(sdist) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    with tarfile.open(sdist, "w:gz") as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data))
        tar.add(program, arcname=bb.TASKS_IN_SDIST + "python_task/task.py")
    monkeypatch.setattr(bb, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    folder = bb.task_dir("logical_deduction")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.json")) == [
        "five_objects/task.json",
        "task.json",
        "three_objects/task.json",
    ]
    every = bb.unpack()
    assert sorted(p.relative_to(every).as_posix() for p in every.rglob("*") if p.is_file()) == sorted(
        p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("task.json")
    )
    umask = os.umask(0)
    os.umask(umask)
    assert every.stat().st_mode & 0o777 == 0o777 & ~umask  # as the umask says, not mkdtemp's 0700
    monkeypatch.setattr(bb.tarfile, "open", None)  # one pass: later tasks never reopen the sdist
    assert bb.task_dir("social_iqa").is_dir()
    for task in ("nope", "python_task"):
        with pytest.raises(TaskError, match=f"no JSON task '{task}'"):
            bb.task_dir(task)
    assert not any(p.name.startswith(".tmp") for p in fake_bigbench.iterdir())


def test_mc_examples_dedup_and_subtasks(fake_bigbench):
    raw = [
        ex
        for sub in ("three_objects", "five_objects")
        for ex in json.loads((FIXTURES / "logical_deduction" / sub / "task.json").read_text())["examples"]
    ]
    examples = bb.mc_examples("logical_deduction")
    assert len(examples) == len(raw)
    three = bb.mc_examples("logical_deduction", ["three_objects"])
    assert len(three) == 6 and all(len(e["wrong"]) == 2 for e in three)
    with pytest.raises(TaskError, match="choices"):
        bb.mc_examples("logical_deduction", ["four_objects"])


def test_load_bigbench_is_the_balanced_mc_conversion(fake_bigbench):
    raw = json.loads((FIXTURES / "social_iqa" / "task.json").read_text())["examples"]
    right = {ex["input"].strip(): next(k for k, v in ex["target_scores"].items() if v == 1) for ex in raw}
    ds = bb.load_bigbench("social_iqa", seed=0)
    assert sum(ds["label"]) * 2 == len(ds) and len(ds) >= 20
    for row in ds:
        assert row["text"] == f"{row['question']}\nAnswer: {row['answer']}"
        assert row["label"] == int(row["answer"] == right[row["question"]])
    other = bb.load_bigbench("social_iqa", seed=1)
    assert other["label"] != ds["label"] or other["answer"] != ds["answer"]
    small = bb.load_bigbench("social_iqa", limit=10)
    assert len(small) == 10 and sum(small["label"]) == 5
    assert set(small["text"]) <= set(ds["text"])


def test_task_configs_load_through_load_task(fake_bigbench):
    cfg = OmegaConf.load(CONF / "bb_social_iqa.yaml")
    ds, info = load_task(cfg, seed=3)
    assert info["duplicates_dropped"] == 0 and info["before_0"] == info["before_1"] == len(ds) // 2
    again, _ = load_task(cfg, seed=4)  # the run seed does not change the rows: one feature cache
    assert ds["hash"] == again["hash"]


def test_every_bigbench_config_points_at_a_json_task():
    """One config per qualifying task, named bb_<task>, each a classify task read by load_bigbench."""
    names = sorted(p.stem for p in CONF.glob("bb_*.yaml"))
    assert len(names) >= 10
    for name in names:
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        assert cfg.name == name and cfg.type == "classify"
        assert cfg.loader._target_ == "w2s.tasks.bigbench.load_bigbench"
        assert name == f"bb_{cfg.loader.task}"


def test_list_sizes_audit_covers_every_kind(fake_bigbench, tmp_path, capsys):
    """`--list --sizes --audit` on one task of each kind (generate, pairwise, classify) exits 0; a generate
    task has no label to audit, a pairwise one is audited on second-minus-first features."""
    from w2s.tasks.__main__ import main

    conf = tmp_path / "task"
    conf.mkdir()
    for name in ("checkmate_in_one", "hhh_alignment", "bb_social_iqa"):
        (conf / f"{name}.yaml").write_text((CONF / f"{name}.yaml").read_text())
    assert main(["--list", "--sizes", "--audit", "--conf-dir", str(conf)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["checkmate_in_one"].endswith("n/a (no label)")
    assert "bigbench:social_iqa" in rows["bb_social_iqa"] and "error" not in rows["bb_social_iqa"]
    assert "error" not in rows["hhh_alignment"] and rows["hhh_alignment"].split()[-1] != "20"  # audited
    assert " 12 " in rows["checkmate_in_one"] and " 20 " in rows["hhh_alignment"]


def test_a_warm_listing_loads_no_task_and_an_edit_reloads_it(fake_bigbench, tmp_path, capsys, monkeypatch):
    import w2s.tasks.__main__ as catalogue

    conf = tmp_path / "task"
    conf.mkdir()
    (conf / "bb_social_iqa.yaml").write_text((CONF / "bb_social_iqa.yaml").read_text())
    assert catalogue.main(["--list", "--sizes", "--conf-dir", str(conf)]) == 0
    first = capsys.readouterr().out
    loads = []
    real = catalogue.size_and_audit
    monkeypatch.setattr(
        catalogue, "size_and_audit", lambda cfg, audit: loads.append(cfg.name) or real(cfg, audit)
    )
    assert catalogue.main(["--list", "--sizes", "--conf-dir", str(conf)]) == 0
    assert capsys.readouterr().out == first and loads == []  # warm: the size comes from task_sizes.json
    (conf / "bb_social_iqa.yaml").write_text((CONF / "bb_social_iqa.yaml").read_text() + "balance: false\n")
    catalogue.main(["--list", "--sizes", "--conf-dir", str(conf)])
    assert loads == ["bb_social_iqa"]  # another config is another key
