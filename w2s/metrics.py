"""Test metrics (torchmetrics, and a rank AUROC in numpy for intervals), their intervals and the performance gap
recovered."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torchmetrics.functional.classification import binary_accuracy, binary_auroc

log = logging.getLogger(__name__)


def binary_metrics(prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Accuracy at 0.5 and AUROC, both on P(class 1) (AUROC on probabilities, not raw logits)."""
    p = torch.as_tensor(np.asarray(prob), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(label), dtype=torch.long)
    out = {"acc": float(binary_accuracy(p, y))}
    out["auroc"] = float(binary_auroc(p, y)) if 0 < int(y.sum()) < len(y) else float("nan")
    return out


def class_metrics(prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Accuracy by argmax and macro one-vs-rest AUROC of `prob` [N, C] (NaN if a class has no row); equals
    `binary_metrics(prob[:, 1], label)` when C = 2."""
    p, y = np.asarray(prob, dtype=np.float64), np.asarray(label)
    return {"acc": float((p.argmax(-1) == y).mean()), "auroc": float(_auroc(p, y, np.ones((1, len(y))))[0])}


def scores(prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Accuracy and AUROC of class probabilities [N, C] against classes [N], for every scored kind and for
    validation: torchmetrics' binary metrics on P(class 1) when C = 2, else `class_metrics`."""
    p = np.asarray(prob, dtype=np.float32)
    return binary_metrics(p[:, 1], label) if p.shape[-1] == 2 else class_metrics(p, label)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for an accuracy of k right out of n (stays inside [0, 1], sound near 0 and 1)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def bootstrap_auroc(
    prob: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of AUROC over `n_boot` resamples of the rows (seeded). `prob` is P(class 1) [N] or
    [N, C] (macro one-vs-rest). A resample missing a class (no AUROC) is left out of the percentiles; NaN if
    every one is."""
    p, y = np.asarray(prob, dtype=np.float64), np.asarray(label)
    n = len(y)
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.bincount((draws + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
    auc = _auroc(p, y, counts.reshape(n_boot, n).astype(np.float64))
    auc = auc[~np.isnan(auc)]
    if len(auc) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(auc, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _auroc(prob: np.ndarray, label: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """AUROC once per row of `weight` [B, N] (each row's multiplicities, a bootstrap resample): P(class 1) [N]
    against label 1, or the macro mean over columns of [N, C] one-vs-rest. NaN where a class is missing."""
    if prob.ndim == 1:
        return _rank_auroc(prob, label == 1, weight)
    return np.mean([_rank_auroc(prob[:, c], label == c, weight) for c in range(prob.shape[1])], axis=0)


def _rank_auroc(score: np.ndarray, positive: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The Mann-Whitney statistic with weighted rows: the share of (positive, negative) pairs ordered right,
    ties counting half; the rows are sorted once and tied scores grouped, so B resamples cost O(B * N)."""
    order = np.argsort(score, kind="stable")
    s, pos, w = score[order], positive[order], weight[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos_w = np.add.reduceat(w * pos, starts, axis=1)
    neg_w = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(neg_w, axis=1) - neg_w
    pairs = pos_w.sum(1) * neg_w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos_w * (below + 0.5 * neg_w)).sum(1) / pairs, np.nan)


def pgr(weak: float, w2s: float, ceiling: float, eps: float = 0.01) -> float | None:
    """(w2s - weak) / (ceiling - weak); None when the gap is below `eps` (the ratio would be noise)."""
    if any(v is None or math.isnan(v) for v in (weak, w2s, ceiling)):
        return None
    gap = ceiling - weak
    if gap < eps:
        log.warning("PGR undefined: ceiling - weak = %.4f < eps = %.4f; reporting null", gap, eps)
        return None
    return (w2s - weak) / gap


def pgr_table(weak: dict, w2s: dict, ceiling: dict, eps: float) -> dict[str, float | None]:
    return {m: pgr(weak[m], w2s[m], ceiling[m], eps) for m in weak if m in w2s and m in ceiling}


def exact_match(positions: list[str], predictions: list[str], targets: list[str]) -> dict[str, float]:
    """Generative tasks without a domain parser: the answer string equals the target (stripped)."""
    hits = [p.strip() == t.strip() for p, t in zip(predictions, targets, strict=True)]
    return {"acc": float(np.mean(hits)) if hits else float("nan")}


def same_text(position: str, a: str, b: str) -> bool:
    """Agreement for `exact_match` tasks: two answers are the same string."""
    return a.strip() == b.strip()
