"""Speed and memory figures, measured side by side in one run: `python -m w2s.bench [--quick] [--json PATH]`.

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

from w2s import artifacts, models
from w2s.config import CONF_DIR, model_config
from w2s.data import BucketSampler, Collate, Examples, loader, padding_fraction

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
    return models.Classifier(models.load_backbone(model_config(model_name)), "mean", n_out=2)


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
    batches = loader(rows_, batch_size, Collate(pad_id=pad), shuffle=True, seed=0)
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
    """Examples/s of the labels stage's path (`w2s.module.predict` over our loader) against `naive_labels`."""
    from w2s.module import predict

    texts, _ = movie_texts("rotten_tomatoes")
    ids, pad = token_ids(model_name, texts[:rows], MAX_LENGTH)
    net = classifier(model_name)
    batches = loader(Examples(ids, [0.0] * len(ids), list(range(len(ids)))), eval_batch, Collate(pad), False)
    t0 = time.perf_counter()
    _, ours = predict(net, batches)
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

    since = time.time()
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
                run(_compose([*overrides, f"force={str(force).lower()}"], root))
    built = artifacts.builds(root / "artifacts", since)
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
                for batch in loader(rows_, 64, Collate(pad), shuffle=False):
                    net.features(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        else:  # full finetuning at the model's batch size: three optimizer steps
            from w2s.losses import XEnt

            opt = torch.optim.AdamW(net.parameters(), lr=1e-5)
            for step, batch in enumerate(loader(rows_, int(cfg.batch_size), Collate(pad), shuffle=True)):
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
    cmd = [sys.executable, "-m", "w2s.bench", "--stage", stage, "--model", model_name, "--rows", str(rows)]
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
