"""The weak-to-strong experiment: task -> splits -> supervisor -> labels -> students -> results.

`run(cfg)` is what `train.py` calls; each step is a cached stage, so a second run that changes only the
student or the loss retrains nothing upstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from datasets import Dataset, DatasetDict, load_from_disk
from omegaconf import DictConfig, OmegaConf

from w2s import analysis, artifacts, fit, models
from w2s.config import CONF_DIR, model_config, validate
from w2s.launch import check_layout
from w2s.metrics import binary_metrics, pgr_table
from w2s.splits import make_splits, split_sizes
from w2s.tasks import fingerprint, load_task
from w2s.tracking import log_results

log = logging.getLogger(__name__)


def task_stage(cfg: DictConfig) -> tuple[DatasetDict, dict[str, Any], dict[str, Any]]:
    """Load, balance and split the task once per (task, split sizes, seed); stored as a DatasetDict."""
    chain = list(cfg.method.get("chain") or [])
    extra = 0 if cfg.method.get("reuse_transfer", False) else len(chain)
    sizes = split_sizes(cfg.split, extra)
    key = {"task": cfg.task, "sizes": sizes, "seed": int(cfg.seed), **fingerprint(cfg.task)}

    def build(out: Path) -> dict[str, Any]:
        ds, info = load_task(cfg.task, seed=int(cfg.seed))
        splits = make_splits(ds, sizes, int(cfg.seed))
        DatasetDict({"all": ds, **splits}).save_to_disk(str(out / "splits"))
        return {"info": info, "sizes": sizes}

    path = artifacts.cached(cfg.paths.artifact_root, "task", key, build, force=bool(cfg.force))
    meta = artifacts.manifest(path)["meta"]
    return load_from_disk(str(path / "splits")), meta, key


def _gt(ds: Dataset) -> np.ndarray:
    return np.asarray(ds["label"], dtype=np.float32)


def _train_key(
    cfg: DictConfig, model_cfg: Any, data_key: Any, split: str, labels_from: Any, loss: Any
) -> dict:
    return {
        "model": models.model_key(model_cfg),
        "train_mode": model_cfg.train_mode,
        "lr": model_cfg.lr,
        "batch_size": model_cfg.batch_size,
        "lora": model_cfg.get("lora"),
        "data": data_key,
        "split": split,
        "labels": labels_from,
        "loss": loss,
        "epochs": model_cfg.get("epochs"),
        "trainer": {
            k: cfg.trainer.get(k) for k in ("max_epochs", "max_steps", "val_check_interval", "precision")
        },
        "optim": cfg.optim,
        "early_stop": cfg.early_stop,
        "eval_points": cfg.analysis.get("eval_points"),
        "seed": int(cfg.seed),
    }


def labels_stage(
    cfg: DictConfig,
    model_cfg: Any,
    inputs: Any,
    collate: Any,
    trained: Path,
    splits: DatasetDict,
    names: list[str],
) -> tuple[Path, DatasetDict]:
    """The trained model's soft labels P(y=1) on the named splits, stored as a `datasets` DatasetDict."""

    def build(out: Path) -> dict[str, Any]:
        net = fit.load_trained(model_cfg, cfg.task.type, inputs, trained)
        parts = {}
        for name in names:
            rows = fit.examples(inputs, splits[name], [0.0] * len(splits[name]))
            idx, prob = fit.predict(net, fit.loader(rows, int(cfg.eval_batch_size), collate, shuffle=False))
            parts[name] = Dataset.from_dict({"idx": idx.tolist(), "prob": prob.tolist()})
        DatasetDict(parts).save_to_disk(str(out / "labels"))
        return {"splits": names}

    key = {"trained": trained.name, "splits": names}
    path = artifacts.cached(cfg.paths.artifact_root, "labels", key, build, force=bool(cfg.force))
    return path, load_from_disk(str(path / "labels"))


def _aligned(labels: Dataset, split: Dataset) -> np.ndarray:
    """Label probabilities in the row order of `split` (labels are stored sorted by idx)."""
    lookup = dict(zip(labels["idx"], labels["prob"], strict=True))
    return np.asarray([lookup[i] for i in split["idx"]], dtype=np.float32)


def _aligned_preds(artifact: Path, split: Dataset) -> np.ndarray:
    """A train stage's stored predictions on `split`, in the split's row order."""
    preds = fit.read_preds(artifact)["test"]
    lookup = dict(zip(preds["idx"].tolist(), preds["prob"].tolist(), strict=True))
    return np.asarray([lookup[i] for i in split["idx"]], dtype=np.float32)


def _agreement(student: Path, supervisor: Path, test: Dataset) -> dict[str, Any]:
    return analysis.agreement(_aligned_preds(student, test), _aligned_preds(supervisor, test), _gt(test))


def _easy_to_hard(
    cfg, student, splits, final_split, weak_art, stages, train, label, gt_loss, gt_val
) -> dict[str, Any]:
    """Appendix C: train the student on GT of the easy part of the transfer split, test on the hard part.

    Difficulty is a task column (e.g. puzzle `rating`, low = easy) or the supervisor's confidence |p - 0.5|
    (high = easy). The all-GT ceiling, the supervisor and the w2s student are scored on the same hard rows.
    """
    e2h = cfg.analysis.easy_to_hard
    by, q = e2h.by, float(e2h.get("quantile", 0.5))
    train_ds, test = splits[final_split], splits["test"]
    if by == "confidence":
        lab = label(cfg.supervisor, weak_art, final_split)
        train_score = np.abs(_aligned(lab[final_split], train_ds) - 0.5)
        test_score = np.abs(_aligned_preds(weak_art, test) - 0.5)
        low = False
    elif by in train_ds.column_names:
        train_score, test_score, low = np.asarray(train_ds[by]), np.asarray(test[by]), True
    else:
        cols = sorted(set(train_ds.column_names) - {"idx", "hash", "label"})
        raise ValueError(f"analysis.easy_to_hard.by={by!r}; choices: ['confidence', *{cols}]")
    easy = analysis.easy_mask(train_score, q, easy_is_low=low)
    hard_test = ~analysis.easy_mask(test_score, q, easy_is_low=low)
    rows = train_ds.select(np.flatnonzero(easy).tolist())
    art = train(
        student, f"{final_split}:easy({by},{q})", _gt(rows), "gt", gt_loss, gt_val, save=False, rows=rows
    )
    stages["easy"] = str(art)
    hard = test.select(np.flatnonzero(hard_test).tolist())
    out: dict[str, Any] = {"by": by, "quantile": q, "n_train_easy": len(rows), "n_test_hard": len(hard)}
    for role in ("easy", "weak", "w2s", "ceiling"):
        out[role] = binary_metrics(_aligned_preds(Path(stages[role]), hard), _gt(hard))
    return out


def _test_metrics(artifact: Path, test: Dataset) -> dict[str, float]:
    preds = fit.read_preds(artifact)["test"]
    return binary_metrics(preds["prob"], _gt(test)[np.argsort(test["idx"])])


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole experiment for one config; write and return `results.json`."""
    validate(cfg)
    check_layout(cfg)
    runner = RUNNERS.get(cfg.task.type)
    if runner is None:
        raise ValueError(f"task.type={cfg.task.type!r} has no runner; choices: {sorted(RUNNERS)}")
    return runner(cfg)


def run_scored(cfg: DictConfig) -> dict[str, Any]:
    """Classification and pairwise preference: soft labels P(y=1), metrics acc/AUROC (see `run`)."""
    t0 = time.time()
    gt_loss = OmegaConf.load(CONF_DIR / "loss" / "xent.yaml")  # supervisors and ceilings learn GT
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    splits, task_meta, data_key = task_stage(cfg)
    task_ds, kind = splits["all"], cfg.task.type
    # features depend on the rows' content only, so every seed's split reuses one feature cache
    content_key = {"rows": hashlib.sha256("".join(task_ds["hash"]).encode()).hexdigest()}
    chain_names = list(cfg.method.get("chain") or [])
    student, gft = cfg.student, {"enabled": False}
    if cfg.gen_finetune.enabled:  # the student (and so the ceiling) first learns the task's text (Sec. 5.2.2)
        from w2s.generative import gen_finetune_stage

        student, gft = gen_finetune_stage(cfg, cfg.student, splits, data_key)
    ladder = [cfg.supervisor, *[model_config(n) for n in chain_names], student]
    transfer = ["transfer"] + [
        "transfer" if cfg.method.get("reuse_transfer", False) else f"transfer{k}"
        for k in range(1, len(chain_names) + 1)
    ]
    gt_val = ("val", splits["val"], _gt(splits["val"]))
    oracle = [("oracle", splits["test"], _gt(splits["test"]))] if cfg.early_stop.mode == "oracle" else []
    tracked = [("test_gt", splits["test"], _gt(splits["test"]))] if cfg.early_stop.track_test else []
    inputs_cache: dict[str, Any] = {}

    def inputs_for(model_cfg: Any) -> Any:
        if model_cfg.name not in inputs_cache:
            inputs_cache[model_cfg.name] = fit.model_inputs(cfg, model_cfg, task_ds, content_key)
        return inputs_cache[model_cfg.name]

    def train(model_cfg, split, labels, labels_key, loss, val, save, rows=None, extra_vals=()):
        """One cached training stage; `rows` trains on a subset of `split` (named in `split`'s key)."""
        inputs, collate = inputs_for(model_cfg)
        key = _train_key(cfg, model_cfg, data_key, split, labels_key, loss)
        return fit.train_stage(
            cfg,
            kind,
            model_cfg,
            inputs,
            collate,
            (splits[split] if rows is None else rows, labels),
            [val, *oracle, *tracked, *extra_vals],
            loss,
            key,
            {"test": splits["test"]},
            save_weights=save,
        )

    def sup_on_test(art: Path) -> tuple:
        """A val set whose accuracy is agreement with a supervisor's test predictions, over training."""
        if not cfg.early_stop.track_test:
            return ()
        return (("test_weak", splits["test"], _aligned_preds(art, splits["test"])),)

    def label(model_cfg, trained, split):
        inputs, collate = inputs_for(model_cfg)
        _, lab = labels_stage(cfg, model_cfg, inputs, collate, trained, splits, [split, "val", "test"])
        return lab

    stages: dict[str, str] = {}
    agree: dict[str, Any] = {}
    # 1. the weak supervisor on ground truth of split A
    weak_art = train(cfg.supervisor, "weak", _gt(splits["weak"]), "gt", gt_loss, gt_val, save=True)
    stages["weak"] = str(weak_art)
    results: dict[str, Any] = {"weak": _test_metrics(weak_art, splits["test"])}
    # 2. walk the chain: each model labels a fresh transfer split for the next one
    prev_cfg, prev_art, chain_out = cfg.supervisor, weak_art, []
    for k, model_cfg in enumerate(ladder[1:]):
        is_student = k == len(ladder) - 2
        lab = label(prev_cfg, prev_art, transfer[k])
        weak_val = ("val", splits["val"], _aligned(lab["val"], splits["val"]))
        art = train(
            model_cfg,
            transfer[k],
            _aligned(lab[transfer[k]], splits[transfer[k]]),
            prev_art.name,
            cfg.loss,
            weak_val,
            save=not is_student,
            extra_vals=sup_on_test(prev_art),
        )
        agree[f"chain{k + 1}" if not is_student else "w2s"] = _agreement(art, prev_art, splits["test"])
        if not is_student:
            chain_out.append({"model": model_cfg.name, **_test_metrics(art, splits["test"])})
            stages[f"chain{k + 1}"] = str(art)
        prev_cfg, prev_art = model_cfg, art
    stages["w2s"] = str(prev_art)
    results["w2s"] = _test_metrics(prev_art, splits["test"])
    final_split = transfer[-1]
    # 3. the strong ceiling on ground truth
    ceiling_split = final_split if cfg.split.ceiling_on == "transfer" else "weak"
    ceil_art = train(student, ceiling_split, _gt(splits[ceiling_split]), "gt", gt_loss, gt_val, save=False)
    stages["ceiling"] = str(ceil_art)
    results["ceiling"] = _test_metrics(ceil_art, splits["test"])
    if chain_names:
        results["chain"] = chain_out
        lab = label(cfg.supervisor, weak_art, final_split)
        weak_val = ("val", splits["val"], _aligned(lab["val"], splits["val"]))
        direct = train(
            student,
            final_split,
            _aligned(lab[final_split], splits[final_split]),
            weak_art.name,
            cfg.loss,
            weak_val,
            save=False,
            extra_vals=sup_on_test(weak_art),
        )
        agree["direct"] = _agreement(direct, weak_art, splits["test"])
        stages["direct"] = str(direct)
        results["direct"] = _test_metrics(direct, splits["test"])
        results["pgr_direct"] = pgr_table(results["weak"], results["direct"], results["ceiling"], cfg.pgr_eps)
    results["pgr"] = pgr_table(results["weak"], results["w2s"], results["ceiling"], cfg.pgr_eps)
    an = cfg.analysis
    if an.get("noise_control"):
        # Appendix E: the same error rate and confidences as the weak labels, errors on random rows
        lab = label(cfg.supervisor, weak_art, final_split)
        seed = int(cfg.seed)
        noisy = analysis.random_noise_labels(
            _aligned(lab[final_split], splits[final_split]), _gt(splits[final_split]), seed
        )
        noisy_val = analysis.random_noise_labels(
            _aligned(lab["val"], splits["val"]), _gt(splits["val"]), seed + 1
        )
        art = train(
            student,
            final_split,
            noisy,
            {"random_noise_of": weak_art.name, "seed": seed},
            cfg.loss,
            ("val", splits["val"], noisy_val),
            save=False,
        )
        stages["noise"] = str(art)
        results["noise"] = _test_metrics(art, splits["test"])
        results["pgr_noise"] = pgr_table(results["weak"], results["noise"], results["ceiling"], cfg.pgr_eps)
        results["noise_error_rate"] = float(((noisy > 0.5) != (_gt(splits[final_split]) > 0.5)).mean())
    if an.get("easy_to_hard") and an.easy_to_hard.get("by"):
        results["easy_to_hard"] = _easy_to_hard(
            cfg, student, splits, final_split, weak_art, stages, train, label, gt_loss, gt_val
        )
    if an.get("prompting") and an.prompting.get("enabled"):
        from w2s.prompting import prompting_stage

        lab = label(cfg.supervisor, weak_art, "transfer")
        weak_transfer = _aligned(lab["transfer"], splits["transfer"])
        results["prompting"] = prompting_stage(cfg, splits, weak_transfer, data_key, weak_art.name)
    if an.get("agreement", True):
        results["agreement"] = agree
    results.update(gen_finetune=gft, task_info=task_meta["info"])
    return finish(cfg, results, splits, stages, cfg.early_stop.metric, ceiling_split, ladder, t0)


def finish(
    cfg: DictConfig,
    results: dict[str, Any],
    splits: DatasetDict,
    stages: dict[str, str],
    select_metric: str,
    ceiling_split: str,
    ladder: list[Any],
    t0: float,
    tie_break: str | None = None,
) -> dict[str, Any]:
    """Add what every run records (names, split sizes, stages, their curves and stopping points, config, git
    SHA, versions, model provenance), write `results.json` atomically into the run's output folder, send
    metrics to the loggers. `select_metric` is the validation metric that selected checkpoints."""
    chain_names = list(cfg.method.get("chain") or [])
    curves = {name: json.loads((Path(p) / "curve.json").read_text()) for name, p in stages.items()}
    tie = f"val/{tie_break}" if tie_break else None
    results["stopping"] = {
        name: analysis.stopping(c, f"val/{select_metric}", tie_break=tie) for name, c in curves.items()
    }
    results.update(
        task=cfg.task.name,
        supervisor=cfg.supervisor.name,
        student=cfg.student.name,
        loss=cfg.loss.get("name", cfg.loss["_target_"].rsplit(".", 1)[-1]),
        method=cfg.method.name,
        seed=int(cfg.seed),
        early_stop=cfg.early_stop.mode,
        ceiling_on=ceiling_split,
        splits={name: len(splits[name]) for name in splits if name != "all"},
        stages=stages,
        curves=curves,
        config=OmegaConf.to_container(cfg, resolve=True),
        git_sha=models.git_sha(),
        versions=artifacts.versions(),
        models={
            r: models.provenance(m)
            for r, m in zip(["supervisor", *chain_names, "student"], ladder, strict=True)
        },
        seconds=round(time.time() - t0, 1),
    )
    out = Path(cfg.paths.output_dir)
    artifacts.atomic_write_text(out / "results.json", artifacts.to_json(results))
    log.info("results written to %s", out / "results.json")
    log_results(cfg, results)
    return results


def _run_generative(cfg: DictConfig) -> dict[str, Any]:
    from w2s.generative import run_generative

    return run_generative(cfg)


#: One runner per task kind: scored kinds share the soft-label pipeline; generation has its own.
RUNNERS = {"classify": run_scored, "pairwise": run_scored, "generate": _run_generative}
