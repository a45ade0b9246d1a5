"""The weak-to-strong ladder, once for every kind of task: task -> splits -> supervisor -> labels -> students.

`run(cfg)` is what `train.py` calls. The supervisor learns ground truth of split A; each model of the chain
labels a fresh transfer split for the next; the student learns the last labels (through the cleaning stage,
`w2s.clean`, when `clean` is set); each `method=s2s` round trains a fresh student on the previous one's
labels; the ceiling learns ground truth; beside a chain, the direct supervisor -> student run. What differs
between task kinds comes from a `w2s.kinds` class; the analyses of Section 5 run afterwards as hooks
(`w2s.hooks`). Every step is a cached stage, so a second run that changes only the student or the loss
retrains nothing upstream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from datasets import DatasetDict, load_from_disk
from omegaconf import DictConfig

from w2s import artifacts, clean, dist, hooks, models
from w2s.config import chain_models, extra_transfers, transfer_splits, validate
from w2s.data import LabelSource
from w2s.fit import label_stage, train_key, train_stage
from w2s.generative import gen_finetune_stage
from w2s.kinds import Kind, TaskData, kind_class
from w2s.launch import check_layout
from w2s.metrics import pgr_table
from w2s.results import write_results
from w2s.splits import is_fraction, make_splits, resolve_sizes, split_sizes
from w2s.tasks import balance_note, fingerprint, load_task


def task_stage(cfg: DictConfig) -> TaskData:
    """Load, balance and split the task once per (task, its files' content, split sizes, seed)."""
    sizes = split_sizes(cfg.split, extra_transfers(cfg))
    loaded = None
    if any(is_fraction(v) for v in sizes.values()):  # fractions key by the counts they resolve to
        loaded = load_task(cfg.task, int(cfg.seed), kind_class(cfg.task.type))
        sizes = resolve_sizes(sizes, len(loaded[0]), balance_note(loaded[1]))
    key = {"task": cfg.task, "sizes": sizes, "seed": int(cfg.seed), **fingerprint(cfg.task)}

    def build(out: Path) -> dict[str, Any]:
        ds, info = loaded or load_task(cfg.task, int(cfg.seed), kind_class(cfg.task.type))
        splits = make_splits(ds, sizes, int(cfg.seed), balance_note(info))
        DatasetDict({"all": ds, **splits}).save_to_disk(str(out / "splits"))
        return {"info": info, "sizes": sizes}

    path = artifacts.cached(cfg.paths.artifact_root, "task", key, build, force=bool(cfg.force))
    meta = artifacts.manifest(path)["meta"]
    return TaskData(load_from_disk(str(path / "splits")), str(path / "splits"), meta["info"], key)


@dataclass
class Stage:
    """One trained model of the run: its role, model config, artifact, and the stage whose labels it learned
    (None for ground truth)."""

    name: str
    model: Any
    path: Path
    split: str
    supervisor: Stage | None = None

    def test_preds(self) -> list[Any]:
        """Its test predictions in the test split's row order."""
        return LabelSource(str(self.path / "preds"), "test").values()


@dataclass
class Ladder:
    """The run's stages and how to make more: `train` on a label source, `label` a split with a stage."""

    cfg: DictConfig
    kind: Kind
    stages: dict[str, Stage] = field(default_factory=dict)
    cleaned: dict[str, Any] | None = None  # what the cleaning stage did (results.json `clean`)

    @property
    def data(self) -> TaskData:
        return self.kind.data

    def gt(self, split: str) -> LabelSource:
        """Ground truth is one more label source: the task's own column of the split."""
        return LabelSource(self.data.path, split, self.kind.gt_column)

    def train(
        self,
        name: str,
        model_cfg: Any,
        split: str,
        labels: LabelSource,
        labels_from: Any,
        loss: Any,
        val: LabelSource,
        save: bool = False,
        supervisor: Stage | None = None,
    ) -> Stage:
        """Train `model_cfg` on `labels`, select by `val`; analyses' validation sets ride along."""
        cfg = self.cfg
        vals = [("val", val)]
        if cfg.early_stop.mode == "oracle":
            vals.append(("oracle", self.gt("test")))
        if cfg.early_stop.track_test:
            vals.append(("test_gt", self.gt("test")))
            if supervisor is not None:  # agreement with the supervisor's test predictions over training
                vals.append(("test_weak", LabelSource(str(supervisor.path / "preds"), "test")))
        key = train_key(cfg, self.kind, model_cfg, split, labels_from, loss)
        path = train_stage(cfg, self.kind, model_cfg, labels, vals, loss, key, save_weights=save, stage=name)
        self.stages[name] = Stage(name, model_cfg, path, split, supervisor)
        return self.stages[name]

    def label(self, stage: Stage, split: str) -> str:
        """The folder of `stage`'s labels for `split` and `val` (a DatasetDict)."""
        return str(label_stage(self.cfg, self.kind, stage.model, stage.path, [split, "val"]))

    def learn_from(
        self,
        name: str,
        model_cfg: Any,
        sup: Stage,
        split: str,
        save: bool,
        cleaner: clean.Method | None = None,
    ) -> Stage:
        """A student step: `model_cfg` learns `sup`'s labels of `split` with the run's loss and selects its
        checkpoint by `sup`'s labels of val. With a `cleaner`, the labels of `split` go through the cleaning
        stage first (on `model_cfg`'s untrained features) and the student learns what it kept; val stays
        weak."""
        lab = self.label(sup, split)
        train, labels_from = LabelSource(lab, split), sup.path.name
        if cleaner is not None:
            path = clean.clean_stage(self.cfg, self.kind, cleaner, model_cfg, lab, split)
            train, labels_from = LabelSource(str(path / "labels"), split), path.name
            self.cleaned = {**artifacts.manifest(path)["meta"], "artifact": str(path)}
        return self.train(
            name, model_cfg, split, train, labels_from, self.cfg.loss, LabelSource(lab, "val"), save=save,
            supervisor=sup,
        )  # fmt: skip


def start(cfg: DictConfig) -> None:
    """Check the config, then start (or join) the run's processes before any stage. With several, rank 0
    assembles every role's model (offline files, random models) before any rank loads one: two ranks building
    the same folder at once had one load it half-replaced."""
    validate(cfg)
    check_layout(cfg)
    dist.launch(cfg)
    if dist.size() > 1:
        if dist.is_zero():
            for model_cfg in (cfg.supervisor, *chain_models(cfg), cfg.student):
                models.resolve(model_cfg)
        dist.barrier()


def scores(cfg: DictConfig, ladder: Ladder, chain: list[Any], rounds: int) -> dict[str, Any]:
    """Test metrics of every role the ladder trained and their PGR: weak, w2s and ceiling, the chain's steps and
    the direct run beside a chain, the s2s rounds; and what the cleaning stage did."""
    kind = ladder.kind
    score = {name: kind.score(s.test_preds()) for name, s in ladder.stages.items()}
    results: dict[str, Any] = {role: score[role] for role in ("weak", "w2s", "ceiling")}
    gap = partial(pgr_table, results["weak"], ceiling=results["ceiling"], eps=cfg.pgr_eps)
    if chain:
        results["chain"] = [{"model": m.name, **score[f"chain{k + 1}"]} for k, m in enumerate(chain)]
        results["direct"] = score["direct"]
        results["pgr_direct"] = gap(score["direct"])
    if rounds:
        s2s = [score[f"s2s{r}"] for r in range(1, rounds + 1)]
        results["s2s"] = [{"round": r, **m} for r, m in enumerate(s2s, 1)]
        results["pgr_s2s"] = [gap(m) for m in s2s]
    results["pgr"] = gap(results["w2s"])
    results["clean"] = ladder.cleaned
    return results


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole experiment for one config; write and return `results.json`."""
    t0 = time.time()
    start(cfg)
    kind_cls = kind_class(cfg.task.type)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    data = task_stage(cfg)
    active = hooks.active(cfg)
    for hook in active:  # every analysis error is one line before any training
        hook.check(cfg, data)
    kind = kind_cls(cfg, data)
    cleaner = clean.configured(cfg, kind)  # a bad clean setting, or a kind without features: one line, here
    ladder = Ladder(cfg, kind)
    student, gft = cfg.student, {"enabled": False}
    if cfg.gen_finetune.enabled:  # the student (and so the ceiling) first learns the task's text (Sec. 5.2.2)
        student, gft = gen_finetune_stage(cfg, cfg.student, data.splits, data.key)
    chain = chain_models(cfg)
    transfer = transfer_splits(cfg)
    rounds = int(cfg.method.get("iters", 0))  # method=s2s: strong-to-strong rounds after the w2s student

    # 1. the weak supervisor on ground truth of split A
    gt_val = ladder.gt("val")
    weak = ladder.train(
        "weak", cfg.supervisor, "weak", ladder.gt("weak"), "gt", cfg.gt_loss, gt_val, save=True
    )
    # 2. the chain: each model labels a fresh transfer split for the next; the student learns the last labels,
    #    through the cleaning stage when `clean` is set; then each s2s round learns the previous one's labels
    prev = weak
    for k, model_cfg in enumerate(chain):
        prev = ladder.learn_from(f"chain{k + 1}", model_cfg, prev, transfer[k], save=True)
    final = transfer[-1]
    prev = ladder.learn_from("w2s", student, prev, final, save=rounds > 0, cleaner=cleaner)
    for r in range(1, rounds + 1):
        prev = ladder.learn_from(f"s2s{r}", student, prev, final, save=r < rounds)
    # 3. the strong ceiling on ground truth
    ceiling_on = final if cfg.split.ceiling_on == "transfer" else "weak"
    ladder.train("ceiling", student, ceiling_on, ladder.gt(ceiling_on), "gt", cfg.gt_loss, gt_val)
    if chain:  # the direct supervisor -> student run on the chain's final split, for comparison
        ladder.learn_from("direct", student, weak, final, save=False)
    results = scores(cfg, ladder, chain, rounds)
    ctx = hooks.Context(cfg, kind, ladder, results, student, final)
    for hook in active:
        results.update(hook.run(ctx))
    # 95% intervals of every stage's test metrics (Wilson, bootstrap AUROC); beside the metrics, so pgr_table
    # and every reader of a role's metrics see only the metrics
    results["ci"] = {name: kind.intervals(s.test_preds()) for name, s in ladder.stages.items()}
    results.update(gen_finetune=gft, task_info={**data.info, **kind.info()}, selected_by=kind.select)
    results = write_results(
        cfg, results, kind, ladder.stages, ceiling_on, [cfg.supervisor, *chain, student], t0
    )
    dist.barrier()  # every rank ends together: rank 0, which holds the process group's store, leaves last
    return results
