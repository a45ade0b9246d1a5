"""Stage functions: model inputs (tokens or cached features), training a model, predicting with it.

Every function here is keyed and cached through `w2s.artifacts.cached`, so a stage whose config is unchanged
is loaded, never recomputed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from datasets import Dataset
from hydra.utils import instantiate
from omegaconf import OmegaConf

from w2s import models
from w2s.artifacts import cached
from w2s.data import Collate, Examples, W2SDataModule, loader
from w2s.features import features, tokenize
from w2s.module import KeepBest, W2SModule, predict, trainable_state

log = logging.getLogger(__name__)

#: Logit count of the head per task kind: two classes, or one score per candidate (pairwise).
N_OUT = {"classify": 2, "pairwise": 1}


def model_inputs(cfg: Any, model_cfg: Any, task_ds: Dataset, data_key: Any) -> tuple[list[Any], Collate]:
    """Per-row inputs of `task_ds` for this model: cached features (probe) or token ids (full, LoRA)."""
    if model_cfg.train_mode == "probe":
        feats = features(cfg, model_cfg, cfg.task, task_ds, range(len(task_ds)))
        return list(feats), Collate()
    ids, tok = tokenize(model_cfg, cfg.task, task_ds)
    return ids, Collate(pad_id=tok.pad_token_id)


def build_network(
    model_cfg: Any, kind: str, inputs: list[Any], head_init: torch.Tensor | None = None
) -> torch.nn.Module:
    """The trainable network of one train mode; `head_init` [D] seeds a one-score (reward) head."""
    n_out = N_OUT[kind]
    builders = {
        "probe": lambda: models.Head(inputs[0].shape[-1], n_out),
        "full": lambda: models.Classifier(models.load_backbone(model_cfg), model_cfg.pooling, n_out),
        "lora": lambda: models.add_lora(
            models.Classifier(models.load_backbone(model_cfg), model_cfg.pooling, n_out), model_cfg
        ),
    }
    if model_cfg.train_mode not in builders:
        raise ValueError(f"train_mode {model_cfg.train_mode!r} unknown; choices: {sorted(builders)}")
    net = builders[model_cfg.train_mode]()
    for m in net.modules():  # the Classifier may sit inside a LoRA wrapper
        if isinstance(m, models.Classifier):
            m.layer = model_cfg.get("layer")
    if model_cfg.train_mode == "lora":
        for p in net.head.parameters():
            p.requires_grad_(True)
    if head_init is not None:
        with torch.no_grad():
            net.head.weight.copy_(head_init.reshape(1, -1))
            net.head.bias.zero_()
    return net


def reward_head_init(task_cfg: Any, model_cfg: Any, kind: str) -> torch.Tensor | None:
    """Pairwise tasks on a decoder: the unembedding row of `task.reward_init_token` (the paper's reward head
    init); encoders, other kinds, or a null token keep the zero init."""
    token = task_cfg.get("reward_init_token", " Yes")
    if kind != "pairwise" or model_cfg.get("arch") != "decoder" or token is None:
        return None
    return models.unembedding_row(model_cfg, token)


def eval_schedule(trainer_kwargs: dict[str, Any], n_train: int, batch_size: int, points: int | None) -> dict:
    """Trainer settings that evaluate `points` times over the whole run (None: Lightning's own schedule).

    Overfitting to weak labels often happens within the first epoch (Section 5.1.1), so the curve needs
    evaluations between epoch ends: a step interval counted across epochs.
    """
    if not points:
        return {}
    per_epoch = max(1, -(-n_train // batch_size))
    max_steps = int(trainer_kwargs.get("max_steps") or -1)
    total = max_steps if max_steps > 0 else per_epoch * int(trainer_kwargs.get("max_epochs") or 1)
    interval = max(1, total // int(points))
    if interval <= per_epoch:
        return {"val_check_interval": interval, "check_val_every_n_epoch": 1}
    return {"val_check_interval": interval, "check_val_every_n_epoch": None}


def examples(inputs: list[Any], split: Dataset, prob1: Any) -> Examples:
    idx = split["idx"]
    return Examples([inputs[i] for i in idx], prob1, idx)


def make_module(
    cls: type, cfg: Any, model_cfg: Any, net: torch.nn.Module, loss_cfg: Any, val_names: list[str]
):
    """A W2SModule (or subclass) with the model's lr and the run's optimiser settings."""
    return cls(
        net,
        instantiate(loss_cfg),
        lr=float(model_cfg.lr),
        weight_decay=float(cfg.optim.weight_decay),
        warmup_steps=int(cfg.optim.warmup_steps),
        schedule=cfg.optim.schedule,
        betas=tuple(cfg.optim.betas),
        val_names=val_names,
    )


def make_trainer(
    cfg: Any, trainer_kwargs: dict[str, Any], out: Path, callbacks: list[Any] = ()
) -> pl.Trainer:
    """A Trainer for one stage: no logger or checkpoint files (stages keep what they need themselves)."""
    return pl.Trainer(
        **trainer_kwargs,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=bool(cfg.progress_bar),
        enable_model_summary=False,
        default_root_dir=str(out),
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
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if model_cfg.get("epochs"):  # per-model override: linear probes are cheap and want more passes
        trainer_kwargs["max_epochs"] = int(model_cfg.epochs)
    bs = int(model_cfg.batch_size)
    trainer_kwargs.update(eval_schedule(trainer_kwargs, n_train, bs, cfg.analysis.get("eval_points")))
    trainer = make_trainer(cfg, trainer_kwargs, out, callbacks=[keep])
    module.model.train()  # from_pretrained returns eval mode and Lightning keeps it: finetune with dropout on
    trainer.fit(module, **fit_args)
    if select != "final":
        keep.restore(module.model)
    return keep, trainer


def train_stage(
    cfg: Any,
    kind: str,
    model_cfg: Any,
    inputs: list[Any],
    collate: Collate,
    train: tuple[Dataset, Any],
    vals: list[tuple[str, Dataset, Any]],
    loss_cfg: Any,
    key: dict[str, Any],
    predict_on: dict[str, Dataset],
    save_weights: bool,
) -> Path:
    """Train a model on `train` (rows, P(class 1) targets), select by `vals[0]`, predict on `predict_on`.

    The artifact holds `preds.json` ({split: {idx, prob}}), `curve.json` (validation metrics over training),
    `meta.json` (the selected step and mode) and, when asked, `state.pt` (the trained weights).
    """
    select = cfg.early_stop.mode

    def build(out: Path) -> dict[str, Any]:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        net = build_network(model_cfg, kind, inputs, reward_head_init(cfg.task, model_cfg, kind))
        train_rows = examples(inputs, *train)
        val_rows = [examples(inputs, ds, p) for _, ds, p in vals]
        bs = int(model_cfg.batch_size)
        dm = W2SDataModule(train_rows, val_rows, collate, bs, int(cfg.eval_batch_size), seed=int(cfg.seed))
        module = make_module(W2SModule, cfg, model_cfg, net, loss_cfg, [name for name, _, _ in vals])
        keep, trainer = fit_selected(
            cfg, model_cfg, module, cfg.early_stop.metric, len(train_rows), out, datamodule=dm
        )
        preds = {}
        for name, ds in predict_on.items():
            rows = examples(inputs, ds, [0.0] * len(ds))
            i, p = predict(net, loader(rows, int(cfg.eval_batch_size), collate, shuffle=False))
            preds[name] = {"idx": i.tolist(), "prob": p.tolist()}
        return write_stage(out, preds, module, keep, trainer, select, save_weights)

    return cached(cfg.paths.artifact_root, "train", key, build, force=bool(cfg.force))


def write_stage(
    out: Path, preds: dict, module: W2SModule, keep: KeepBest, trainer: pl.Trainer, select: str, save: bool
) -> dict[str, Any]:
    """A train stage's files: preds.json, curve.json, meta.json (the kept step) and, when `save`, state.pt."""
    (out / "preds.json").write_text(json.dumps(preds))
    (out / "curve.json").write_text(json.dumps(module.curve))
    meta = {"select": select, "best_step": keep.best_step, "best": keep.best, "steps": trainer.global_step}
    (out / "meta.json").write_text(json.dumps(meta))
    if save:
        torch.save(trainable_state(module.model), out / "state.pt")
    return meta


def load_trained(model_cfg: Any, kind: str, inputs: list[Any], artifact: Path) -> torch.nn.Module:
    """Rebuild a network and load the weights a train stage saved."""
    net = build_network(model_cfg, kind, inputs)
    net.load_state_dict(torch.load(artifact / "state.pt"), strict=False)
    return net


def read_preds(artifact: Path) -> dict[str, dict[str, np.ndarray]]:
    raw = json.loads((artifact / "preds.json").read_text())
    return {k: {"idx": np.asarray(v["idx"]), "prob": np.asarray(v["prob"])} for k, v in raw.items()}
