"""CIFAR-10 probe of one image model: accuracy of a logistic-regression probe on frozen pooled features (or of a
small CNN trained from scratch), feature throughput and peak RSS, as one JSON line.

    OMP_NUM_THREADS=2 python scripts/vision_probe.py --model lite0 --resolution 224 --precision bf16

Seeded: 1,000 train / 500 test images, balanced (BIG-bench's CIFAR-10 test set, offline). Run one model per
process so the peak RSS is that model's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from w2s.tasks.images import decode, load_cifar10
from w2s.vision import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageModel,
    efficientnet_lite,
    pixel_probe,
    preprocess,
    small_cnn,
)

BUILD = {
    "lite0": lambda: efficientnet_lite(0),
    "lite1": lambda: efficientnet_lite(1),
    "lite2": lambda: efficientnet_lite(2),
    "pixel": lambda: pixel_probe(8),
    "pixel16": lambda: pixel_probe(16),
    "cnn": lambda: small_cnn(32),
}


def split(seed: int, n_train: int, n_test: int):
    """Decoded images and labels of a balanced train and test split."""
    ds = load_cifar10(limit=n_train + n_test, seed=seed)
    labels = np.asarray(ds["label"])
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train += idx[: n_train // 10].tolist()
        test += idx[n_train // 10 : (n_train + n_test) // 10].tolist()
    images = [decode(b) for b in ds["image"]]
    y = torch.tensor(labels)
    return [images[i] for i in train], y[train], [images[i] for i in test], y[test]


def features(model: ImageModel, images, resolution: int, precision: str, batch: int = 50) -> torch.Tensor:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    out = []
    with torch.inference_mode(), ctx:
        for i in range(0, len(images), batch):
            x = preprocess(images[i : i + batch], resolution, model.mean, model.std)
            out.append(model.features(x).float())
    return torch.cat(out)


def logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS with an L2 penalty on the weights."""
    head = torch.nn.Linear(x.shape[1], 10)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def probe(xtr, ytr, xte, yte) -> tuple[float, float]:
    """Test accuracy with the L2 strength chosen on a held-out fifth of train, then refit on all of train."""
    mu, sd = xtr.mean(0), xtr.std(0).clamp(min=1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    cut = len(xtr) * 4 // 5
    perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))
    fit, held = perm[:cut], perm[cut:]
    scores = {}
    for l2 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        head = logistic(xtr[fit], ytr[fit], l2)
        scores[l2] = (head(xtr[held]).argmax(1) == ytr[held]).float().mean().item()
    best = max(scores, key=scores.get)
    with torch.no_grad():
        acc = (logistic(xtr, ytr, best)(xte).argmax(1) == yte).float().mean().item()
    return acc, best


def train_cnn(model: ImageModel, xtr, ytr, xte, yte, epochs: int) -> float:
    """Train the CNN and a linear head from scratch (Adam, random crops and flips); test accuracy."""
    head = torch.nn.Linear(model.dim, 10)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=5e-4)
    steps = epochs * ((len(xtr) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xtr), generator=g).split(64):
            x = F.pad(xtr[idx], (4, 4, 4, 4), mode="reflect")
            i, j = torch.randint(0, 9, (2,), generator=g).tolist()
            x = x[:, :, i : i + 32, j : j + 32]
            if torch.rand(1, generator=g).item() < 0.5:
                x = x.flip(3)
            loss = F.cross_entropy(head(model.features(x)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        return (head(model.features(xte)).argmax(1) == yte).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(BUILD), required=True)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument(
        "--norm", choices=["model", "imagenet"], default="model", help="the model's own, or ImageNet's"
    )
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=15, help="small CNN only")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    tr, ytr, te, yte = split(a.seed, a.train, a.test)
    model = BUILD[a.model]().eval()
    if a.norm == "imagenet":
        model.mean, model.std = IMAGENET_MEAN, IMAGENET_STD
    row = {"model": a.model, "resolution": a.resolution, "precision": a.precision, "norm": a.norm}
    start, cpu = time.perf_counter(), time.process_time()
    if a.model == "cnn":
        xtr = preprocess(tr, a.resolution, model.mean, model.std)
        xte = preprocess(te, a.resolution, model.mean, model.std)
        row["acc"] = train_cnn(model, xtr, ytr, xte, yte, a.epochs)
        row["train_s"] = round(time.perf_counter() - start, 1)
        start, cpu = time.perf_counter(), time.process_time()
        features(model, tr + te, a.resolution, a.precision)
    else:
        f = features(model, tr + te, a.resolution, a.precision)
    row["img_per_s"] = round((len(tr) + len(te)) / (time.perf_counter() - start), 1)
    row["cpu_ms_per_img"] = round(1000 * (time.process_time() - cpu) / (len(tr) + len(te)), 1)
    if a.model != "cnn":
        row["acc"], row["l2"] = probe(f[: len(tr)], ytr, f[len(tr) :], yte)
    row["acc"] = round(row["acc"], 4)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    row["threads"] = torch.get_num_threads()
    row["load1"] = round(os.getloadavg()[0], 2)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
