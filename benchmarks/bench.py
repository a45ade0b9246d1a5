"""Speed and memory figures, side by side in one run: `python -m benchmarks.bench [--quick] [--json PATH]`.

Run from the repository root (`make bench`); it lives outside the `w2s` package, which never imports it.

Prints five figures (docs/RESULTS.md keeps a copy): framework overhead of one Lightning epoch against a bare
PyTorch loop, padding waste of length-bucketed against random batches, label-generation throughput against a
naive loop, how many supervisor trainings and label generations a sweep really runs, and peak memory per stage.
`--quick` uses tiny random models and small data (the test runs it); no figure here is asserted on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2s import artifacts, models, networks
from w2s import features as feat
from w2s.config import CONF_DIR, model_config
from w2s.data import BucketSampler, Examples, TextCollate, loader, padding_fraction

QUICK = {
    "model": "tiny-bert",
    "overhead_rows": 256,
    "limit": 400,
    "label_rows": 256,
    "naive_batch": 128,
    "sweep": {
        "tasks": ["rotten_tomatoes", "imdb"],
        "students": ["tiny-bert-large"],
        "losses": ["xent", "conf"],
    },
    "memory_models": ["tiny-bert"],
    "memory_stages": ["features"],
    "memory_rows": 64,
    "repeats": 1,
    "feature_model": "tiny-bert",
    "feature_rows": 128,
    "peer_train_rows": 64,
    "peer_label_rows": 128,
}
FULL = {
    "model": "minilm-l6",
    "overhead_rows": 480,
    "limit": None,
    "label_rows": 1000,
    "naive_batch": 256,
    "sweep": {
        "tasks": ["rotten_tomatoes", "imdb"],
        "students": ["tiny-bert-large", "tiny-llama"],
        "losses": ["xent", "conf"],
    },
    "memory_models": ["minilm-l6", "mpnet-base", "smollm2-135m"],
    "memory_stages": ["load", "features", "train_full"],
    "memory_rows": 256,
    "repeats": 3,
    "feature_model": "mpnet-base",
    "feature_rows": 500,
    "peer_train_rows": 480,
    "peer_label_rows": 1000,
}
MAX_LENGTH = 128  # overhead and label figures: same truncation for both sides


def movie_texts(source: str, limit: int | None = None) -> tuple[list[str], list[int]]:
    from w2s.tasks.movies import load_movie_reviews

    ds = load_movie_reviews(source, limit=limit)
    return list(ds["text"]), list(ds["label"])


def token_ids(model_name: str, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    tok = models.load_tokenizer(model_config(model_name))
    ids = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    return ids, tok.pad_token_id


def classifier(model_name: str) -> torch.nn.Module:
    """Backbone + 2-way head, fully trainable (the `full` train mode), seeded so both sides start equal."""
    torch.manual_seed(0)
    return networks.Classifier(networks.HFText(model_config(model_name)), n_out=2)


def _ids(padded: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": padded[0], "attention_mask": padded[1]}


class Batches(torch.utils.data.Sampler):
    """Precomputed batches of row positions as a batch sampler (Lightning wraps samplers, not lists)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def predict(net: torch.nn.Module, batches: Any) -> np.ndarray:
    """P(class 1) per row through the labels stage's own path: `Trainer.predict` on `W2SModule.predict_step`."""
    import pytorch_lightning as pl

    from w2s.module import W2SModule

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    outs = trainer.predict(W2SModule(net), dataloaders=batches)
    idx = torch.cat([o["idx"] for o in outs]).numpy()
    prob = torch.cat([o["out"][:, 1] for o in outs]).numpy()
    return prob[np.argsort(idx)]


# --- 1. framework overhead ------------------------------------------------------------------------------------


def bare_epoch(net: torch.nn.Module, batches: Any, lr: float) -> float:
    """One epoch of the same optimizer, schedule and loss as W2SModule, without Lightning; seconds."""
    from w2s.losses import XEnt

    loss_fn, steps = XEnt(), len(batches)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps))))
    # modules keep the mode they were loaded in, as under Lightning (which preserves them): pretrained
    # backbones load in eval mode, so dropout is off on both sides
    t0 = time.perf_counter()
    for step, batch in enumerate(batches):
        loss = loss_fn(net(batch), batch["target"], step / steps)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss {loss.item()} at step {step}")
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def lightning_epoch(net: torch.nn.Module, batches: Any, lr: float) -> float:
    """One epoch through W2SModule and a Trainer set as `conf/trainer/default.yaml`, validation off; seconds."""
    import pytorch_lightning as pl

    from w2s.losses import XEnt
    from w2s.module import W2SModule

    module = W2SModule(net, XEnt(), lr=lr)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        precision="32-true",
        logger=False,
        log_every_n_steps=10,
        deterministic=True,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=batches)
    return time.perf_counter() - t0


def overhead(model_name: str, rows: int, batch_size: int = 16, repeats: int = 1) -> dict[str, Any]:
    """Best-of-`repeats` epoch time of each side, alternating which runs first; ratio = Lightning / bare."""
    from w2s.progress import quiet

    quiet()
    texts, labels = movie_texts("rotten_tomatoes")
    ids, pad = token_ids(model_name, texts[:rows], MAX_LENGTH)
    rows_ = Examples(ids, labels[:rows], list(range(len(ids))))
    batches = loader(rows_, batch_size, TextCollate(pad_id=pad), shuffle=True, seed=0)
    times: dict[str, list[float]] = {"bare": [], "lightning": []}
    sides = {"bare": bare_epoch, "lightning": lightning_epoch}
    for r in range(repeats):
        order = ["bare", "lightning"] if r % 2 == 0 else ["lightning", "bare"]
        for side in order:
            times[side].append(sides[side](classifier(model_name), batches, lr=1e-4))
    bare, light = min(times["bare"]), min(times["lightning"])
    return {
        "model": model_name,
        "rows": len(ids),
        "batch_size": batch_size,
        "steps": len(batches),
        "bare_s": round(bare, 3),
        "lightning_s": round(light, 3),
        "ratio": round(light / bare, 3),
        "all_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }


# --- 2. padding waste -------------------------------------------------------------------------------------------


def padding(model_name: str, limit: int | None, batch_size: int = 32) -> dict[str, dict[str, float]]:
    """Padded fraction of one epoch's token positions: bucketed (training and inference order) vs random."""
    max_length = int(model_config(model_name).max_length)
    out = {}
    for source in ("rotten_tomatoes", "imdb"):
        texts, _ = movie_texts(source, limit)
        ids, _ = token_ids(model_name, texts, max_length)
        lengths = [len(x) for x in ids]
        rng = np.random.default_rng(0)
        random = [b.tolist() for b in np.array_split(rng.permutation(len(ids)), -(-len(ids) // batch_size))]
        out[source] = {
            "rows": len(ids),
            "mean_tokens": round(float(np.mean(lengths)), 1),
            "random": round(padding_fraction(lengths, random), 4),
            "bucketed_train": round(
                padding_fraction(lengths, BucketSampler(lengths, batch_size, shuffle=True).batches()), 4
            ),
            "bucketed_eval": round(
                padding_fraction(lengths, BucketSampler(lengths, batch_size, shuffle=False).batches()), 4
            ),
        }
    return out


# --- 3. label generation ----------------------------------------------------------------------------------------


def naive_labels(net: torch.nn.Module, ids: list[list[int]], pad: int, batch_size: int) -> np.ndarray:
    """The hand-written baseline: eval, no_grad, rows sorted by length, one large batch at a time."""
    order = np.argsort([-len(x) for x in ids], kind="stable")
    prob = np.empty(len(ids), dtype=np.float32)
    net.eval()
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            part = order[s : s + batch_size]
            width = len(ids[part[0]])
            x = torch.full((len(part), width), pad, dtype=torch.long)
            m = torch.zeros_like(x)
            for j, i in enumerate(part):
                x[j, : len(ids[i])], m[j, : len(ids[i])] = torch.tensor(ids[i]), 1
            logits = net({"input_ids": x, "attention_mask": m})
            prob[part] = torch.softmax(logits.float(), -1)[:, 1].numpy()
    return prob


def label_speed(model_name: str, rows: int, naive_batch: int, eval_batch: int = 64) -> dict[str, Any]:
    """Examples/s of the labels stage's path (`Trainer.predict` over our loader) against `naive_labels`."""
    texts, _ = movie_texts("rotten_tomatoes")
    ids, pad = token_ids(model_name, texts[:rows], MAX_LENGTH)
    net = classifier(model_name)
    batches = loader(
        Examples(ids, [0.0] * len(ids), list(range(len(ids)))), eval_batch, TextCollate(pad), False
    )
    t0 = time.perf_counter()
    ours = predict(net, batches)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = naive_labels(net, ids, pad, naive_batch)
    t_naive = time.perf_counter() - t0
    return {
        "model": model_name,
        "rows": len(ids),
        "ours_eval_batch": eval_batch,
        "naive_batch": naive_batch,
        "ours_per_s": round(len(ids) / t_ours, 1),
        "naive_per_s": round(len(ids) / t_naive, 1),
        "ratio": round(t_naive / t_ours, 3),
        "max_abs_diff": float(np.abs(ours - naive).max()),
    }


# --- 3b. the frozen feature pass: fp32 as before, the exact fast fp32 path, the chosen precision ----------------


def _timed_pass(net: torch.nn.Module, ctx: Any, ids: list[list[int]], pad_id: int, batches: Any) -> Any:
    """Pooled features of `ids` (float32, in row order) and the seconds the pass took."""
    from w2s.data import pad

    t0 = time.perf_counter()
    with torch.inference_mode(), ctx:
        parts = [
            (b, net.features(_ids(pad([ids[i] for i in b], pad_id, left=False))).float()) for b in batches
        ]
    seconds = time.perf_counter() - t0
    out = torch.empty(len(ids), parts[0][1].shape[-1])
    for b, f in parts:
        out[b] = f
    return out, seconds


def feature_pass(model_name: str, rows: int, max_tokens: int = 1024) -> dict[str, Any]:
    """Sentences/s of the probes' frozen pass over RT rows: fp32 at a fixed batch of 64 (the pass before issue
    19), fp32 in token batches, and the precision `features.precision: auto` picks here (token batches)."""
    from w2s.data import token_batches

    cfg = model_config(model_name)
    texts, _ = movie_texts("rotten_tomatoes")
    ids, pad_id = token_ids(model_name, texts[:rows], int(cfg.max_length))
    lengths = [len(x) for x in ids]
    chosen = "bf16" if feat.native_bf16(torch.device("cpu")) else "fp32"
    fixed = BucketSampler(lengths, 64, shuffle=False).batches()
    budget = token_batches(lengths, max_tokens)
    feats, secs = {}, {}
    net = networks.HFText(cfg).eval()
    for side, precision, batches in (
        ("fp32_batch64", "fp32", fixed),
        ("fp32", "fp32", budget),
        (chosen, chosen, budget),
    ):
        feats[side], secs[side] = _timed_pass(
            *feat.frozen(net, precision, torch.device("cpu")), ids, pad_id, batches
        )
    cos = torch.nn.functional.cosine_similarity(feats[chosen], feats["fp32"], dim=-1)
    return {
        "model": model_name,
        "rows": len(ids),
        "chosen": chosen,
        "per_s": {k: round(len(ids) / v, 1) for k, v in secs.items()},
        "ratio": round(secs["fp32"] / secs[chosen], 2),
        "ratio_vs_batch64": round(secs["fp32_batch64"] / secs[chosen], 2),
        "padding": {
            "batch64": round(padding_fraction(lengths, fixed), 4),
            "token_budget": round(padding_fraction(lengths, budget), 4),
        },
        "min_cosine": round(float(cos.min()), 6),
        "fp32_token_vs_batch64_max_abs_diff": float((feats["fp32"] - feats["fp32_batch64"]).abs().max()),
    }


# --- 3c. the peers: what users would pick instead, on the same work --------------------------------------------


class _HFWrap(torch.nn.Module):
    """Our classifier with the HF Trainer's calling convention (keyword tensors in, loss and logits out)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: Any = None) -> dict:
        logits = self.net({"input_ids": input_ids, "attention_mask": attention_mask})
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def hf_trainer(model_name: str, ids: list[list[int]], labels: list[int], batch: int, grouped: bool) -> Any:
    """A `transformers.Trainer` with the same optimizer, lr and schedule as ours; `grouped` = group_by_length."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    tok = models.load_tokenizer(model_config(model_name))
    rows = [
        {"input_ids": x, "attention_mask": [1] * len(x), "labels": y}
        for x, y in zip(ids, labels, strict=True)
    ]
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="w2s-bench-hf-"),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=64,
        num_train_epochs=1,
        learning_rate=1e-4,
        lr_scheduler_type="cosine",
        optim="adamw_torch",
        weight_decay=0.0,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if grouped else "random",
        seed=0,
    )
    trainer = Trainer(
        model=_HFWrap(classifier(model_name)),
        args=args,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=DataCollatorWithPadding(tok),
    )
    trainer.remove_callback(PrinterCallback)  # its per-run metrics line; ours prints the figures
    return trainer


def openai_epoch(
    net: torch.nn.Module, ids: list[list[int]], labels: list[int], pad_id: int, batch: int
) -> float:
    """openai/weak-to-strong's loop style: shuffled rows, each minibatch padded to its own longest row; seconds."""
    from w2s.data import pad

    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    steps = -(-len(ids) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps))))
    order = np.random.default_rng(0).permutation(len(ids))
    t0 = time.perf_counter()
    for s in range(0, len(ids), batch):
        part = order[s : s + batch].tolist()
        x, m = pad([ids[i] for i in part], pad_id, left=False)
        logits = net({"input_ids": x, "attention_mask": m})
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([labels[i] for i in part]))
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def openai_labels(net: torch.nn.Module, ids: list[list[int]], pad_id: int, batch: int = 64) -> float:
    """openai-style inference: rows in dataset order, each batch padded to its own longest row; seconds."""
    from w2s.data import pad

    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(ids), batch):
            x, m = pad(ids[s : s + batch], pad_id, left=False)
            torch.softmax(net({"input_ids": x, "attention_mask": m}).float(), -1)
    return time.perf_counter() - t0


def peers(model_name: str, train_rows: int, label_rows: int, batch: int = 16) -> dict[str, Any]:
    """Seconds of the HF Trainer (with and without group_by_length) and openai's loop style against our bare
    loop, for one training epoch (full finetuning, batch 16) and for label generation; ratio = peer / ours."""
    from w2s.data import token_batches

    texts, labels = movie_texts("rotten_tomatoes")
    ids, pad_id = token_ids(model_name, texts[: max(train_rows, label_rows)], MAX_LENGTH)
    tr_ids, tr_y = ids[:train_rows], labels[:train_rows]
    rows_ = Examples(tr_ids, tr_y, list(range(len(tr_ids))))
    train = {
        "ours": bare_epoch(classifier(model_name), loader(rows_, batch, TextCollate(pad_id), True), lr=1e-4)
    }
    for grouped in (False, True):
        trainer = hf_trainer(model_name, tr_ids, tr_y, batch, grouped)
        t0 = time.perf_counter()
        trainer.train()
        train["hf_grouped" if grouped else "hf"] = time.perf_counter() - t0
    train["openai"] = openai_epoch(classifier(model_name), tr_ids, tr_y, pad_id, batch)

    lab_ids = ids[:label_rows]
    net = classifier(model_name).eval()
    lab_rows = Examples(lab_ids, [0.0] * len(lab_ids), list(range(len(lab_ids))))
    batches = torch.utils.data.DataLoader(
        lab_rows,
        batch_sampler=Batches(token_batches(lab_rows.lengths(), 1024)),
        collate_fn=TextCollate(pad_id),
    )
    t0 = time.perf_counter()
    predict(net, batches)
    label = {"ours": time.perf_counter() - t0}
    for grouped in (False, True):
        trainer = hf_trainer(model_name, lab_ids, [0] * len(lab_ids), batch, grouped)
        trainer.model = _HFWrap(net)
        t0 = time.perf_counter()
        trainer.predict(trainer.eval_dataset)
        label["hf_grouped" if grouped else "hf"] = time.perf_counter() - t0
    label["openai"] = openai_labels(net, lab_ids, pad_id)
    ratio = {
        stage: {k: round(v / d["ours"], 2) for k, v in d.items() if k != "ours"}
        for stage, d in (("train", train), ("labels", label))
    }
    return {
        "model": model_name,
        "train_rows": len(tr_ids),
        "label_rows": len(lab_ids),
        "seconds": {
            s: {k: round(v, 2) for k, v in d.items()} for s, d in (("train", train), ("labels", label))
        },
        "ratio": ratio,
    }


# --- 4. sweep reuse ---------------------------------------------------------------------------------------------


def _compose(overrides: list[str], root: Path) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "run")
        cfg.paths.artifact_root = str(root / "artifacts")
        cfg.paths.log_dir = str(root / "logs")
    return cfg


def sweep_counts(tasks: list[str], students: list[str], losses: list[str], force: bool, root: Path) -> dict:
    """Run the grid on tiny models; count supervisor trainings and label generations really executed."""
    from w2s.pipeline import run

    built: list[tuple[str, Any]] = []
    t0 = time.perf_counter()
    for task in tasks:
        for student in students:
            for loss in losses:
                overrides = [
                    "experiment=tiny",
                    "logger=none",
                    f"task={task}",
                    f"student={student}",
                    f"loss={loss}",
                ]
                since = time.time()  # per run: a forced rebuild replaces the same folder
                run(_compose([*overrides, f"force={str(force).lower()}"], root))
                built += artifacts.builds(root / "artifacts", since)
    return {
        "runs": len(tasks) * len(students) * len(losses),
        "supervisor_trainings": sum(k == "train" and key["split"] == "weak" for k, key in built),
        "label_generations": sum(k == "labels" for k, _ in built),
        "trainings": sum(k == "train" for k, _ in built),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def sweep(tasks: list[str], students: list[str], losses: list[str]) -> dict[str, Any]:
    """The same grid with reuse (fresh artifact root) and without (force=true); T per supervisor is the target."""
    import logging

    logging.getLogger("w2s").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        reuse = sweep_counts(tasks, students, losses, False, Path(a))
        again = sweep_counts(tasks, students, losses, True, Path(b))
    return {
        "grid": {"T": len(tasks), "S": len(students), "L": len(losses)},
        "reuse": reuse,
        "no_reuse": again,
        "seconds_saved": round(again["seconds"] - reuse["seconds"], 2),
    }


# --- 5. peak memory per stage -----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM restarts at exec; ru_maxrss can carry the forking parent's."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def stage_memory(model_name: str, stage: str, rows: int) -> dict[str, Any]:
    """Run one stage in this process and return its peak RSS (and CUDA) in MB: called in a fresh subprocess."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if stage == "features" or stage == "train_full":
        cfg = model_config(model_name)
        texts, labels = movie_texts("rotten_tomatoes")
        ids, pad = token_ids(model_name, texts[:rows], int(cfg.max_length))
        net = classifier(model_name).to(device)
        rows_ = Examples(ids, labels[: len(ids)], list(range(len(ids))))
        if stage == "features":  # the probe inputs: one frozen forward pass over every row
            with torch.inference_mode():
                net.eval()
                for batch in loader(rows_, 64, TextCollate(pad), shuffle=False):
                    net.body.features({k: batch[k].to(device) for k in ("input_ids", "attention_mask")})
        else:  # full finetuning at the model's batch size: three optimizer steps
            from w2s.losses import XEnt

            opt = torch.optim.AdamW(net.parameters(), lr=1e-5)
            for step, batch in enumerate(loader(rows_, int(cfg.batch_size), TextCollate(pad), shuffle=True)):
                if step == 3:
                    break
                batch = {k: v.to(device) for k, v in batch.items()}
                XEnt()(net(batch), batch["target"], 0.0).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
    elif stage == "load":
        models.load_backbone(model_config(model_name))
    elif stage != "baseline":
        raise ValueError(f"stage {stage!r} unknown; choices: ['baseline', 'features', 'load', 'train_full']")
    out = {"rss_mb": peak_rss_mb()}
    if torch.cuda.is_available():
        out["cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _child(model_name: str, stage: str, rows: int) -> dict[str, Any]:
    args = ["--stage", stage, "--model", model_name, "--rows", str(rows)]
    cmd = [sys.executable, "-m", "benchmarks.bench", *args]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {
            "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"
        }
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": round(time.perf_counter() - t0, 1)}


def memory(model_names: list[str], rows: int, stages: list[str]) -> dict[str, Any]:
    """Peak memory of each stage in its own process (ru_maxrss is per process and never goes down)."""
    out: dict[str, Any] = {"baseline": _child(model_names[0], "baseline", rows)}
    for name in model_names:
        try:
            models.resolve(model_config(name))  # assemble/convert once, outside the measured processes
        except models.ModelError as e:
            out[name] = {"resolve": {"error": str(e)}}
            continue
        out[name] = {stage: _child(name, stage, rows) for stage in stages}
    return out


# --- the report -------------------------------------------------------------------------------------------------


def run(quick: bool = False, threads: int = 1) -> dict[str, Any]:
    """Every figure, as a dict (also printed by `main`).

    `threads` torch threads here and in the memory subprocesses: on a shared 2-core machine two threads that
    compete with other jobs run 2-5x slower than one (OpenMP threads wait on each other), which swamps the
    differences measured here.
    """
    p = QUICK if quick else FULL
    before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        return _measure(p, quick)
    finally:
        torch.set_num_threads(before[0])
        if before[1] is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = before[1]


def _measure(p: dict[str, Any], quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"quick": quick, "torch_threads": torch.get_num_threads()}
    steps = [
        ("overhead", lambda: overhead(p["model"], p["overhead_rows"], repeats=p["repeats"])),
        ("padding", lambda: padding("tiny-bert" if quick else "minilm-l6", p["limit"])),
        ("labels", lambda: label_speed(p["model"], p["label_rows"], p["naive_batch"])),
        ("features", lambda: feature_pass(p["feature_model"], p["feature_rows"])),
        ("peers", lambda: peers(p["model"], p["peer_train_rows"], p["peer_label_rows"])),
        ("sweep", lambda: sweep(**p["sweep"])),
        ("memory", lambda: memory(p["memory_models"], p["memory_rows"], p["memory_stages"])),
    ]
    for name, step in steps:
        t0 = time.perf_counter()
        figures[name] = step()
        print(f"[{name}: {time.perf_counter() - t0:.0f}s] {json.dumps(figures[name])}", flush=True)
    return figures


def format_report(f: dict[str, Any]) -> str:
    """The figures as the lines docs/RESULTS.md shows."""
    o, lab, sw = f["overhead"], f["labels"], f["sweep"]
    lines = [
        f"framework overhead ({o['model']}, {o['rows']} rows, batch {o['batch_size']}, {o['steps']} steps): "
        f"bare {o['bare_s']:.2f}s, Lightning {o['lightning_s']:.2f}s, ratio {o['ratio']:.3f} (target <= 1.05)",
    ]
    for src, pad in f["padding"].items():
        lines.append(
            f"padding {src} ({pad['rows']} rows, mean {pad['mean_tokens']} tokens, batch 32): random "
            f"{pad['random']:.1%}, bucketed train {pad['bucketed_train']:.1%}, bucketed eval "
            f"{pad['bucketed_eval']:.1%} (target < 10%)"
        )
    lines.append(
        f"label generation ({lab['model']}, {lab['rows']} rows): ours {lab['ours_per_s']:.0f} ex/s (batch "
        f"{lab['ours_eval_batch']}), naive {lab['naive_per_s']:.0f} ex/s (batch {lab['naive_batch']}), "
        f"ours/naive speed {lab['ratio']:.2f}"
    )
    fp, pe = f["features"], f["peers"]
    lines.append(
        f"feature pass ({fp['model']}, {fp['rows']} rows): fp32 {fp['per_s']['fp32']:.1f}/s (token batches; "
        f"{fp['per_s']['fp32_batch64']:.1f}/s at batch 64), {fp['chosen']} "
        f"{fp['per_s'][fp['chosen']]:.1f}/s, {fp['chosen']}/fp32 speed {fp['ratio']:.2f} "
        f"({fp['ratio_vs_batch64']:.2f} vs batch 64); min cosine to fp32 {fp['min_cosine']:.5f}; padding "
        f"{fp['padding']['batch64']:.1%} at batch 64, {fp['padding']['token_budget']:.1%} in token batches"
    )
    rt, rl = pe["ratio"]["train"], pe["ratio"]["labels"]
    lines.append(
        f"peers ({pe['model']}; time / our bare loop): training {pe['train_rows']} rows: HF Trainer {rt['hf']:.2f}, "
        f"with group_by_length {rt['hf_grouped']:.2f}, openai-style {rt['openai']:.2f}; labels {pe['label_rows']} "
        f"rows: HF Trainer {rl['hf']:.2f}, with group_by_length {rl['hf_grouped']:.2f}, openai-style "
        f"{rl['openai']:.2f}"
    )
    g = sw["grid"]
    lines.append(
        f"sweep T={g['T']} x S={g['S']} x L={g['L']} ({sw['reuse']['runs']} runs): supervisor trainings "
        f"{sw['reuse']['supervisor_trainings']} with reuse vs {sw['no_reuse']['supervisor_trainings']} without, "
        f"label generations {sw['reuse']['label_generations']} vs {sw['no_reuse']['label_generations']}, "
        f"all trainings {sw['reuse']['trainings']} vs {sw['no_reuse']['trainings']}; "
        f"{sw['reuse']['seconds']:.1f}s vs {sw['no_reuse']['seconds']:.1f}s (saved {sw['seconds_saved']:.1f}s)"
    )
    mem = f["memory"]
    lines.append(f"peak RSS of an import-only process: {mem['baseline'].get('rss_mb')} MB")
    for name, stages in mem.items():
        if name == "baseline":
            continue
        parts = [
            f"{stage} {m['rss_mb']:.0f} MB" + (f" (CUDA {m['cuda_mb']:.0f} MB)" if "cuda_mb" in m else "")
            if "rss_mb" in m
            else f"{stage} failed: {m['error']}"
            for stage, m in stages.items()
        ]
        lines.append(f"peak RSS {name}: " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny models and small data (seconds, for tests)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: fair on a shared machine)"
    )
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: one memory measurement in a fresh process
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
        print(json.dumps(stage_memory(args.model, args.stage, args.rows)), flush=True)
        return
    figures = run(quick=args.quick, threads=args.threads)
    print("\n" + format_report(figures), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
