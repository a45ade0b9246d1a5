"""GPU check (issue 15), run by `scripts/gpu_check.sh`: three parts, each a subcommand writing JSON into --out.

- `throughput`: bf16 full finetuning of a Qwen2.5-0.5B-shaped decoder with random weights
  (`conf/model/qwen2.5-0.5b-random.yaml`) through w2s (`Classifier` in a `W2SModule`, `fit.make_module` +
  `fit.make_trainer` with the `trainer=gpu` settings) against a bare loop (same network, AdamW, autocast bf16),
  on the same fixed-length token batches: tokens/s, their ratio, MFU and peak CUDA memory of each.
- `ladder`: one weak-to-strong run `python train.py experiment=tiny trainer=gpu ...` on one GPU: its
  weak / w2s / ceiling / PGR and its wall time.
- `report`: both parts (and each part's exit status) in `gpu_check.json` and a printed table.

`--smoke` (what the test runs): the same code on CPU with a tiny Qwen2-shaped model and a few steps.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen2.5-0.5b-random"
#: Dense bf16 peak FLOP/s by device name (NVIDIA data sheets, without sparsity); first match wins, so the
#: PCIe and NVL variants come before the SXM name they contain. `W2S_PEAK_TFLOPS` overrides the lookup.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
]
#: The real run and the smoke run differ only in these sizes (model dims are Hydra overrides of the config).
SIZES = {
    "full": {"batch": 8, "length": 512, "warmup": 10, "steps": 100, "overrides": []},
    "smoke": {
        "batch": 2,
        "length": 32,
        "warmup": 1,
        "steps": 3,
        "overrides": [
            "student.source.name=smoke",
            "student.source.hidden_size=32",
            "student.source.num_hidden_layers=2",
            "student.source.num_attention_heads=2",
            "student.source.num_key_value_heads=1",
            "student.source.intermediate_size=64",
            "student.source.vocab_size=512",
            "student.max_length=32",
        ],
    },
}
#: The ladder's extra overrides in smoke mode: CPU, fewer rows, shorter inputs (the tiny student is smaller
#: than the supervisor, hence allow_smaller_student).
LADDER_SMOKE = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "split.weak=32",
    "split.transfer=32",
    "split.val=16",
    "split.test=32",
    "task.loader.limit=200",
    "supervisor.max_length=32",
    "allow_smaller_student=true",
]


def peak_flops(name: str) -> tuple[float | None, str]:
    """Dense bf16 peak of the named device and where the figure came from."""
    if os.environ.get("W2S_PEAK_TFLOPS"):
        return float(os.environ["W2S_PEAK_TFLOPS"]) * 1e12, "W2S_PEAK_TFLOPS"
    for key, flops in PEAK_BF16:
        if key in name:
            return flops, f"{key} dense bf16 data-sheet figure"
    return None, f"unknown device {name!r}: set W2S_PEAK_TFLOPS for MFU"


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def token_batches(n: int, batch: int, length: int, vocab: int) -> list[dict[str, Any]]:
    """`n` fixed-length batches of random token ids with one-hot labels, as the scored DataModule yields them."""
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        ids = torch.randint(0, vocab, (batch, length), generator=g)
        label = torch.randint(0, 2, (batch,), generator=g)
        out.append(
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "target": torch.nn.functional.one_hot(label, 2).float(),
                "idx": torch.arange(i * batch, (i + 1) * batch),
            }
        )
    return out


def network(model_cfg: Any) -> Any:
    """The scored network of `train_mode: full`, seeded so both sides start from the same weights."""
    import torch

    from w2s import networks

    torch.manual_seed(0)
    return networks.Classifier(networks.HFText(model_cfg), n_out=2)


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(cfg: Any, data: list[dict[str, Any]], device: Any, warmup: int) -> dict[str, Any]:
    """The hand-written loop: AdamW with the module's settings, bf16 autocast, the run's GT loss."""
    import torch
    from hydra.utils import instantiate

    net = network(cfg.student).to(device).train()
    loss_fn = instantiate(cfg.gt_loss)
    opt = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad],
        lr=float(cfg.student.lr),
        weight_decay=float(cfg.optim.weight_decay),
        betas=tuple(cfg.optim.betas),
    )  # the settings of conf/optim/adamw.yaml, written out: the bare loop owes nothing to the framework
    losses, t0 = [], time.perf_counter()
    for i, batch in enumerate(data):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = net(batch)
            loss = loss_fn(logits, batch["target"].to(logits.dtype), i / len(data))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i in (0, len(data) - 1):
            losses.append(float(loss.detach()))
    sync(device)
    return {"seconds": time.perf_counter() - t0, "loss_first": losses[0], "loss_last": losses[-1]}


def framework(cfg: Any, data: list[dict[str, Any]], device: Any, warmup: int, out: Path) -> dict[str, Any]:
    """w2s's own path: the network in a W2SModule (`fit.make_module`) fitted by `fit.make_trainer`'s Trainer
    with the composed `trainer` settings, validation off, timed by a callback from step `warmup` on."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from w2s.fit import make_module, make_trainer
    from w2s.module import W2SModule

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                sync(device)
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx in (0, len(data) - 1):
                self.losses.append(float(outputs["loss"]))
            if batch_idx == len(data) - 1:
                sync(device)
                self.t1 = time.perf_counter()

    module = make_module(W2SModule, cfg, cfg.student, network(cfg.student), cfg.gt_loss, ["val"], "student")
    kwargs = {"max_epochs": 1, "max_steps": len(data), "limit_val_batches": 0, "num_sanity_val_steps": 0}
    timer = StepTimer()
    trainer = make_trainer(cfg, out, callbacks=[timer], **kwargs)
    module.model.train()
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    return {"seconds": timer.t1 - timer.t0, "loss_first": timer.losses[0], "loss_last": timer.losses[-1]}


def throughput(out: Path, smoke: bool) -> dict[str, Any]:
    import torch

    from w2s import models
    from w2s.progress import quiet

    quiet()
    size = SIZES["smoke" if smoke else "full"]
    device = torch.device("cpu" if smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "throughput: no CUDA device (torch.cuda.is_available() is False); --smoke runs on CPU"
        )
    trainer = ["trainer.accelerator=cpu"] if smoke else []
    cfg = compose([f"student={MODEL}", "trainer=gpu", *trainer, *size["overrides"]])
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    peak, peak_from = peak_flops(name) if device.type == "cuda" else (None, "cpu: no MFU")
    times = {"start": round(time.perf_counter() - T_START, 1)}
    t = time.perf_counter()
    models.resolve(cfg.student)  # builds the random model once (cached by its settings)
    times["build"] = round(time.perf_counter() - t, 1)
    probe = network(cfg.student)
    params = sum(p.numel() for p in probe.parameters())
    embed = probe.body.backbone.get_input_embeddings().weight.numel()
    vocab, layers = probe.body.backbone.config.vocab_size, probe.body.backbone.config.num_hidden_layers
    hidden = probe.body.backbone.config.hidden_size
    del probe
    data = token_batches(size["warmup"] + size["steps"], size["batch"], size["length"], vocab)
    tokens = size["steps"] * size["batch"] * size["length"]
    # 6N per token (params in matmuls: no embedding lookup, no LM head in a classifier) + attention scores
    model_flops = 6 * (params - embed) + 12 * layers * hidden * size["length"]
    sides: dict[str, Any] = {}
    for side in ("bare", "framework"):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        if side == "bare":
            run = bare(cfg, data, device, size["warmup"])
        else:
            run = framework(cfg, data, device, size["warmup"], out / "lightning")
        times[side] = round(time.perf_counter() - t, 1)
        tps = tokens / run["seconds"]
        sides[side] = {
            "tokens_per_s": round(tps, 1),
            "step_ms": round(1000 * run["seconds"] / size["steps"], 2),
            "mfu": round(6 * params * tps / peak, 4) if peak else None,
            "mfu_model_flops": round(model_flops * tps / peak, 4) if peak else None,
            "max_memory_gib": (
                round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None
            ),
            "loss_first": round(run["loss_first"], 5),
            "loss_last": round(run["loss_last"], 5),
        }
    times["total"] = round(time.perf_counter() - T_START, 1)
    return {
        "model": MODEL,
        "smoke": smoke,
        "device": name,
        "peak_flops": peak,
        "peak_from": peak_from,
        "precision": "bf16 weights, bf16 autocast (trainer precision bf16-mixed)",
        "params": params,
        "params_embedding": embed,
        "batch": size["batch"],
        "length": size["length"],
        "warmup_steps": size["warmup"],
        "steps": size["steps"],
        **sides,
        "ratio_tokens_per_s": round(sides["framework"]["tokens_per_s"] / sides["bare"]["tokens_per_s"], 3),
        "seconds": times,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def ladder(out: Path, smoke: bool, work: Path) -> dict[str, Any]:
    """`train.py` in a subprocess, as a user runs it; artifacts in `work` (the 2 GB student weights stay out
    of --out)."""
    size = SIZES["smoke" if smoke else "full"]
    args = ["experiment=tiny", "trainer=gpu", "supervisor=tiny-llama", f"student={MODEL}", "logger=none"]
    args += [*size["overrides"], *LADDER_SMOKE] if smoke else []
    args += [f"paths.artifact_root={work / 'artifacts'}", f"hydra.run.dir={out / 'ladder_run'}"]
    cmd = [sys.executable, "train.py", *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    res: dict[str, Any] = {
        "command": "python " + " ".join(cmd[1:]),
        "rc": proc.returncode,
        "wall_s": round(wall, 1),
    }
    results = out / "ladder_run" / "results.json"
    if proc.returncode == 0 and results.exists():
        r = json.loads(results.read_text())
        res.update({k: r[k] for k in ("weak", "w2s", "ceiling", "pgr", "splits", "seconds")})
        res["trainer"] = r["config"]["trainer"]
    else:
        res["stderr_tail"] = proc.stderr[-3000:]
        print(proc.stderr[-3000:], file=sys.stderr)  # the part's log, which gpu_check.sh shows on failure
    return res


def table(figures: dict[str, Any]) -> str:
    """The check's figures as text: one row per side, then the ladder."""
    lines = []
    tp = figures.get("throughput")
    if tp:
        lines.append(
            f"throughput: {tp['model']} ({tp['params'] / 1e6:.3g}M params), batch {tp['batch']} x {tp['length']} "
            f"tokens, {tp['steps']} steps after {tp['warmup_steps']} warm-up, on {tp['device']}"
        )
        lines.append(f"peak assumed: {tp['peak_flops']} FLOP/s ({tp['peak_from']})")
        lines.append(
            f"{'':12s}{'tokens/s':>12s}{'step ms':>10s}{'MFU 6N':>9s}{'MFU model':>11s}{'peak GiB':>10s}"
        )
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        for side in ("bare", "framework"):
            s = tp[side]
            lines.append(
                f"{side:12s}{s['tokens_per_s']:12.0f}{s['step_ms']:10.1f}{fmt(s['mfu'], '.3f'):>9s}"
                f"{fmt(s['mfu_model_flops'], '.3f'):>11s}{fmt(s['max_memory_gib'], '.2f'):>10s}"
            )
        lines.append(
            f"framework / bare tokens/s: {tp['ratio_tokens_per_s']:.3f}; seconds per part {tp['seconds']}"
        )
    ld = figures.get("ladder")
    if ld:
        lines.append(f"ladder: {ld['command']}")
        if "pgr" in ld:
            fmt2 = lambda v: "null" if v is None else f"{v:.3f}"  # noqa: E731
            for role in ("weak", "w2s", "ceiling", "pgr"):
                lines.append(
                    f"  {role:8s} acc {fmt2(ld[role].get('acc'))}  auroc {fmt2(ld[role].get('auroc'))}"
                )
        lines.append(f"  exit {ld['rc']}, wall {ld['wall_s']} s")
    for part, rc in figures.get("status", {}).items():
        if rc != 0:
            lines.append(f"{part}: FAILED (exit {rc}{', timed out' if rc in (124, 137) else ''})")
    return "\n".join(lines)


def report(out: Path, status: dict[str, int]) -> dict[str, Any]:
    figures: dict[str, Any] = {"status": status}
    for part in ("throughput", "ladder"):
        f = out / f"{part}.json"
        if f.exists():
            figures[part] = json.loads(f.read_text())
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["throughput", "ladder", "report"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke", action="store_true", help="tiny model, few steps, on CPU")
    p.add_argument("--work", type=Path, help="ladder artifacts (default: --out/work)")
    p.add_argument("--status", nargs="*", default=[], help="report: PART=EXIT_CODE of each part")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.part == "report":
        figures = report(a.out, {k: int(v) for k, v in (s.split("=") for s in a.status)})
        (a.out / "gpu_check.json").write_text(json.dumps(figures, indent=1))
        print(table(figures), flush=True)
        return
    res = (
        throughput(a.out, a.smoke)
        if a.part == "throughput"
        else ladder(a.out, a.smoke, a.work or a.out / "work")
    )
    tmp = a.out / f".{a.part}.json.tmp"
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, a.out / f"{a.part}.json")
    print(table({a.part: res}), flush=True)
    if a.part == "ladder" and res["rc"] != 0:
        sys.exit(res["rc"])


if __name__ == "__main__":
    main()
