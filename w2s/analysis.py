"""Section 5 analyses as plain functions of stored predictions: agreement, stopping, noise controls, difficulty.

Nothing here trains a model; `w2s.pipeline` calls these on the arrays its stages wrote, so every analysis can be
recomputed from an old run's artifacts and tested on hand-made arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def agreement_of(same: np.ndarray, right: np.ndarray) -> dict[str, float | None]:
    """How often the student's answer equals the supervisor's (Figure 8), overall and split by whether the
    supervisor is right, from per-row booleans (any task kind); `None` where a subset is empty."""
    same, right = np.asarray(same, dtype=bool), np.asarray(right, dtype=bool)

    def frac(mask: np.ndarray) -> float | None:
        return float(same[mask].mean()) if mask.any() else None

    return {
        "all": frac(np.ones_like(same)),
        "supervisor_right": frac(right),
        "supervisor_wrong": frac(~right),
        "supervisor_acc": float(right.mean()),
        "n_wrong": int((~right).sum()),
    }


def selection_key(
    metrics: Any, monitor: str, tie_break: str | None = None, sign: float = 1.0
) -> tuple[float, ...]:
    """The order checkpoint selection uses, live (`KeepBest`) and on a stored curve (`stopping`): the monitored
    value, then `tie_break`; a missing value ranks lowest. Compared with `>`, so ties keep the earlier point."""
    names = (monitor, tie_break) if tie_break else (monitor,)
    return tuple(sign * float(metrics[n]) if n in metrics else -np.inf for n in names)


def stopping(
    curve: list[dict[str, float]], select: str, metric: str = "acc", tie_break: str | None = None
) -> dict[str, Any]:
    """GT test `metric` at three checkpoints of one training run (Section 5.1.1).

    `final`: the last evaluation; `oracle`: the best GT test value anywhere on the curve (cheating early
    stopping); `selected`: the value where the selection metric `select` (e.g. `val/auroc` on weak labels)
    peaked, which is the checkpoint a non-cheating run keeps. Ties go to `tie_break`, then to the earliest
    point, as KeepBest does.
    """
    key = f"test_gt/{metric}"
    points = [p for p in curve if key in p]
    if not points:
        return {"final": None, "oracle": None, "selected": None, "points": 0}
    values = [p[key] for p in points]
    chosen = points[0]
    for p in points:
        if selection_key(p, select, tie_break) > selection_key(chosen, select, tie_break):
            chosen = p
    best = int(np.nanargmax(values))
    return {
        "final": float(values[-1]),
        "oracle": float(values[best]),
        "oracle_step": int(points[best]["step"]),
        "selected": float(chosen[key]),
        "selected_step": int(chosen["step"]),
        "points": len(points),
    }


def random_noise_labels(weak: np.ndarray, gt: np.ndarray, seed: int) -> np.ndarray:
    """Weak labels with the same error count and the same confidence values, but errors on random rows.

    The control of Appendix E: a student that beats its supervisor by more on these labels than on the real
    ones is merely robust to noise; one that does equally well could not imitate the real errors either. The
    multiset of confidences (each row's top probability) is kept (shuffled over rows), so only the errors'
    structure changes. `weak` is P(class 1) [N] (returned so) or C class probabilities [N, C]: a wrong row then
    points at a random other class, which gets the confidence; the other classes share the rest.
    """
    weak = np.asarray(weak, dtype=np.float64)
    probs = np.stack([1 - weak, weak], axis=-1) if weak.ndim == 1 else weak
    n, c = probs.shape
    y = np.asarray(gt).astype(int) if weak.ndim > 1 else (np.asarray(gt) > 0.5).astype(int)
    rng = np.random.default_rng(seed)
    n_wrong = int((probs.argmax(-1) != y).sum())
    conf = rng.permutation(probs.max(-1))
    wrong = np.zeros(n, dtype=bool)
    wrong[rng.choice(n, size=n_wrong, replace=False)] = True
    shift = rng.integers(1, c, size=n) if c > 2 else np.ones(n, dtype=int)  # binary: the other class
    pointed = np.where(wrong, (y + shift) % c, y)
    out = np.repeat(((1 - conf) / (c - 1))[:, None], c, axis=1)
    out[np.arange(n), pointed] = conf
    return (out[:, 1] if weak.ndim == 1 else out).astype(np.float32)


def easy_mask(score: np.ndarray, quantile: float, easy_is_low: bool) -> np.ndarray:
    """Rows on the easy side of the `quantile` of a difficulty score (Appendix C's easy-to-hard split).

    Puzzle ratings are easy when low; supervisor confidence |p - 0.5| is easy when high.
    """
    score = np.asarray(score, dtype=np.float64)
    if not 0 < quantile < 1:
        raise ValueError(f"easy_to_hard.quantile={quantile!r} must be in (0, 1)")
    cut = np.quantile(score, quantile if easy_is_low else 1 - quantile)
    return score <= cut if easy_is_low else score >= cut
