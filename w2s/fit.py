"""The two model stages of every kind: training (`train_stage`) and labelling (`label_stage`), and the Lightning
plumbing they share (module, trainer, checkpoint selection, evaluation schedule).

Both are keyed and cached through `w2s.artifacts.cached`, so a stage whose config is unchanged is loaded,
never recomputed. What differs between task kinds comes from the `kind` argument (`w2s.kinds`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from datasets import Dataset
from hydra.utils import instantiate

from w2s import dist, models
from w2s.artifacts import cached
from w2s.data import LabelSource, WeakLabelDataModule, write_labels
from w2s.module import KeepBest, W2SModule, trainable_state
from w2s.signals import StopOnSigterm

if TYPE_CHECKING:  # the kinds build on this module (their stages run here): a type, not an import at run time
    from w2s.kinds.base import Kind, Labels

log = logging.getLogger(__name__)


def eval_schedule(trainer_cfg: Any, n_train: int, batch_size: int, points: int | None) -> dict:
    """Trainer settings that evaluate `points` times over the whole run (None: Lightning's own schedule).

    Overfitting to weak labels often happens within the first epoch (Section 5.1.1), so the curve needs
    evaluations between epoch ends: a step interval counted across epochs.
    """
    if not points:
        return {}
    per_epoch = max(1, -(-n_train // batch_size))
    max_steps = int(trainer_cfg.get("max_steps") or -1)
    total = max_steps if max_steps > 0 else per_epoch * int(trainer_cfg.get("max_epochs") or 1)
    interval = max(1, total // int(points))
    if interval <= per_epoch:
        return {"val_check_interval": interval, "check_val_every_n_epoch": 1}
    return {"val_check_interval": interval, "check_val_every_n_epoch": None}


def make_module(
    cls: type, cfg: Any, model_cfg: Any, net: torch.nn.Module, loss_cfg: Any, val_names: list[str], stage: str
) -> W2SModule:
    """A W2SModule (or subclass) with the model's lr, the run's optimizer and schedule (`conf/optim`,
    `conf/scheduler`, `_partial_` targets), named by the stage it trains (progress and curves read the name)."""
    module = cls(
        net,
        instantiate(loss_cfg),
        lr=float(model_cfg.lr),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.scheduler),
        val_names=val_names,
    )
    module.stage = stage
    return module


def block_classes(net: torch.nn.Module) -> set[type]:
    """The transformer block classes of a network (what Hugging Face models name in `_no_split_modules`):
    FSDP wraps each in its own shard unit, and activation checkpointing recomputes them."""
    names = {n for m in net.modules() for n in (getattr(m, "_no_split_modules", None) or [])}
    return {type(m) for m in net.modules() if type(m).__name__ in names}


def strategy_for(cfg: Any, model_cfg: Any, net: torch.nn.Module) -> Any:
    """`trainer.strategy` as given, except DDP, which tolerates parameters a head leaves unused, and FSDP, which gets its auto-wrap policy (one unit per transformer
    block), activation checkpointing when the model config sets `gradient_checkpointing`, and full state
    dicts (gathered on rank 0) for the stage's weights."""
    name = str(cfg.trainer.get("strategy", "auto"))
    if name == "ddp":  # encoders carry parts a mean-pooled head never uses (BERT's pooler): DDP must know
        from pytorch_lightning.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True, timeout=dist.timeout())
    if "fsdp" not in name:
        return name
    from pytorch_lightning.strategies import FSDPStrategy

    blocks = block_classes(net)
    return FSDPStrategy(
        auto_wrap_policy=blocks or None,
        activation_checkpointing_policy=blocks if model_cfg.get("gradient_checkpointing") else None,
        state_dict_type="full",
        timeout=dist.timeout(),
    )


def make_trainer(cfg: Any, out: Path, callbacks: list[Any] = (), **overrides: Any) -> pl.Trainer:
    """The Trainer of `conf/trainer` (`_target_`) with the run's callbacks (`conf/callbacks`) for one stage, and
    no logger or checkpoint files (stages keep what they need themselves); `overrides` replace trainer keys.

    Batches are shared out over the ranks by `w2s.data.loader` (length buckets a distributed sampler would
    break), so Lightning's own distributed sampler stays off.
    """
    extra = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    return instantiate(
        cfg.trainer,
        **overrides,
        callbacks=[*callbacks, *extra, StopOnSigterm()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=bool(cfg.progress_bar),
        enable_model_summary=False,
        default_root_dir=str(out),
        use_distributed_sampler=False,
    )


def fit_selected(
    cfg: Any,
    model_cfg: Any,
    module: W2SModule,
    metric: str,
    n_train: int,
    out: Path,
    tie_break: str | None = None,
    **fit_args: Any,
) -> tuple[KeepBest, pl.Trainer]:
    """Fit with the run's trainer settings and restore the weights selected by `early_stop.mode`:
    the best `<val set 0>/metric` (weak), the best `oracle/metric` (GT test, cheating), or the last (final);
    equal values are ordered by the same set's `tie_break` metric when given."""
    select = cfg.early_stop.mode
    sel_set = "oracle" if select == "oracle" else module.val_names[0]
    keep = KeepBest(f"{sel_set}/{metric}", tie_break=f"{sel_set}/{tie_break}" if tie_break else None)
    overrides: dict[str, Any] = {}
    if model_cfg.get("epochs"):  # per-model override: linear probes are cheap and want more passes
        overrides["max_epochs"] = int(model_cfg.epochs)
    bs = int(model_cfg.batch_size)
    points = cfg.analysis.get("eval_points")
    overrides.update(eval_schedule({**cfg.trainer, **overrides}, n_train, bs, points))
    strategy = strategy_for(cfg, model_cfg, module.model)
    if model_cfg.get("gradient_checkpointing") and isinstance(
        strategy, str
    ):  # FSDP checkpoints per block itself
        for m in module.model.modules():
            if hasattr(m, "gradient_checkpointing_enable") and hasattr(m, "config"):
                m.gradient_checkpointing_enable()
                break
    trainer = make_trainer(cfg, out, callbacks=[keep], strategy=strategy, **overrides)
    module.model.train()  # from_pretrained returns eval mode and Lightning keeps it: finetune with dropout on
    trainer.fit(module, **fit_args)
    if keep.gathered:  # FSDP: rank 0 holds the gathered weights; every rank reads them for a plain copy
        keep.state = _share_state(keep.state if select != "final" else keep.final_state, out)
    elif select != "final":
        keep.restore(module.model)
    return keep, trainer


def _share_state(state: dict[str, torch.Tensor] | None, out: Path) -> dict[str, torch.Tensor]:
    """Rank 0's gathered weights on every rank, through a file in its (shared) stage folder."""
    path = dist.broadcast(str(out / "selected.pt") if dist.is_zero() else None)
    if dist.is_zero():
        torch.save(state, path)
    dist.barrier()
    loaded = torch.load(path, weights_only=True)
    dist.barrier()
    if dist.is_zero():
        Path(path).unlink()
    return loaded


def train_key(cfg: Any, kind: Kind, model_cfg: Any, split: str, labels_from: Any, loss: Any) -> dict:
    """What determines a train stage's weights and predictions: the model and its settings, the data, the
    split, where its labels came from, the loss, the trainer and selection settings, the seed."""
    return {
        "model": models.model_key(model_cfg),
        "train_mode": model_cfg.train_mode,
        "lr": model_cfg.lr,
        "batch_size": model_cfg.batch_size,
        "lora": model_cfg.get("lora"),
        "data": kind.data.key,
        "split": split,
        "labels": labels_from,
        "loss": loss,
        "epochs": model_cfg.get("epochs"),
        "trainer": {
            k: cfg.trainer.get(k) for k in ("max_epochs", "max_steps", "val_check_interval", "precision")
        },
        "optim": cfg.optim,
        "scheduler": cfg.scheduler,
        "early_stop": cfg.early_stop,
        "eval_points": cfg.analysis.get("eval_points"),
        "seed": int(cfg.seed),
        **kind.key(),
        **({"features": p} if (p := kind.feature_precision(model_cfg)) else {}),
    }


def train_stage(
    cfg: Any,
    kind: Kind,
    model_cfg: Any,
    train: LabelSource,
    vals: list[tuple[str, LabelSource]],
    loss_cfg: Any,
    key: dict[str, Any],
    save_weights: bool,
    stage: str = "train",
) -> Path:
    """Train on `train` (a split joined to its labels by the DataModule), select by `vals[0]`, predict test.

    The artifact holds `preds/` (test predictions in the label format, a weak source for analyses),
    `curve.json` (validation metrics over training), `meta.json` (the selected step and mode, whether weights
    were kept) and, when `save_weights`, `state.pt` (the trainable weights). A reuse that needs the weights
    rebuilds an artifact stored without them.
    """
    select = cfg.early_stop.mode

    def build(out: Path) -> dict[str, Any]:
        kind.prepare(
            model_cfg
        )  # inputs first: building a backbone draws random numbers the seed must not see
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        net = kind.network(model_cfg)
        dm = WeakLabelDataModule(
            kind.data.path,
            train,
            [src for _, src in vals],
            kind.examples(model_cfg, net),
            kind.collate(model_cfg),
            int(model_cfg.batch_size),
            int(cfg.eval_batch_size),
            seed=int(cfg.seed),
        )
        dm.setup("fit")
        names = [name for name, _ in vals]
        module = make_module(kind.module_cls, cfg, model_cfg, net, loss_cfg, names, stage)
        keep, trainer = fit_selected(
            cfg, model_cfg, module, kind.select, len(dm.train_rows), out, kind.tie_break, datamodule=dm
        )
        if keep.gathered:  # the sharded network cannot predict alone: a plain copy with the kept weights
            net = kind.network(model_cfg)
            keep.restore(net)
        test = kind.data.splits["test"]
        preds = predict_rows(cfg, kind, model_cfg, net, test)
        write_labels(str(out / "preds"), {"test": (test["idx"], preds)})
        return write_stage(out, net, module, keep, trainer, select, save_weights)

    needs = ("state.pt",) if save_weights else ()
    root = cfg.paths.artifact_root
    return cached(root, "train", key, build, force=bool(cfg.force), requires=needs, collective=True)


def predict_rows(cfg: Any, kind: Kind, model_cfg: Any, net: torch.nn.Module, rows: Dataset) -> Labels:
    """The kind's labels for every row of `rows`, in its order: each rank predicts its shard through Lightning
    (`Trainer.predict` on the kind's `predict_step`, one device per rank) and the shards are gathered."""

    def mine(positions: list[int]) -> Labels:
        part = rows.select(positions)
        batches = kind.predict_batches(model_cfg, net, part)
        trainer = make_trainer(cfg, Path(cfg.paths.output_dir), **dist.one_device(cfg.trainer))
        at: dict[int, Any] = {}
        for out in trainer.predict(kind.module_cls(net), dataloaders=batches) or []:
            at.update(zip(out["idx"].tolist(), kind.decode(model_cfg, out["out"]), strict=True))
        return [at[i] for i in part["idx"]]

    return dist.gather_rows(len(rows), mine)


def label_stage(cfg: Any, kind: Kind, model_cfg: Any, trained: Path, names: list[str]) -> Path:
    """A trained model's labels on the named splits (greedy answers, or P(class 1)): the weak labels.

    Stored as a DatasetDict (`idx`, `label`) that `LabelSource` reads; the manifest records which model,
    train stage and splits produced it.
    """

    def build(out: Path) -> dict[str, Any]:
        net = kind.load_trained(model_cfg, trained)
        splits = kind.data.splits
        parts = {n: (splits[n]["idx"], predict_rows(cfg, kind, model_cfg, net, splits[n])) for n in names}
        write_labels(str(out / "labels"), parts)
        return {"model": model_cfg.name, "stage": trained.name, "splits": names, "kind": cfg.task.type}

    key = {"trained": trained.name, "splits": names, **kind.key()}
    root = cfg.paths.artifact_root
    return cached(root, "labels", key, build, force=bool(cfg.force), collective=True) / "labels"


def write_stage(
    out: Path,
    net: torch.nn.Module,
    module: W2SModule,
    keep: KeepBest,
    trainer: pl.Trainer,
    select: str,
    save: bool,
) -> dict[str, Any]:
    """A train stage's files beside its predictions: curve.json, meta.json (the kept step) and, when `save`,
    state.pt."""
    (out / "curve.json").write_text(json.dumps(module.curve))
    meta = {
        "select": select,
        "best_step": keep.best_step,
        "best": keep.best,
        "steps": trainer.global_step,
        "saved_weights": save,
    }
    (out / "meta.json").write_text(json.dumps(meta))
    if save and dist.is_zero():
        torch.save(trainable_state(net), out / "state.pt")
    return meta
