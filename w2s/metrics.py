"""Test metrics (torchmetrics) and the performance gap recovered."""

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
