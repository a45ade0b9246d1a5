"""Leak audit: can a trivial surface feature predict the label? Then a model learns the feature, not the task.

Every feature is scored by its AUROC against the label. A feature is flagged when it is far from chance
(|AUC - 0.5| > threshold) AND the deviation is statistically clear (two-sided Mann-Whitney p < alpha), so a
40-row fixture does not flag noise while a real leak (letters vs text) flags even on 20 rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset

_NUMBER = re.compile(r"^[+-]?\d+([.,]\d+)?%?$")
_WORD = re.compile(r"\w+")
SKIP_COLUMNS = {"id", "label", "hash", "difficulty"}


def _last_token(s: str) -> str:
    toks = s.split()
    return toks[-1].strip(".,;:!?\"')(") if toks else ""


TEXT_FEATURES: dict[str, Callable[[str], float]] = {
    "text_chars": len,
    "text_words": lambda s: len(s.split()),
    "first_line_chars": lambda s: len(s.strip().split("\n")[0]),
    "last_line_chars": lambda s: len(s.strip().split("\n")[-1]),
    "last_token_chars": lambda s: len(_last_token(s)),
    "last_token_single_char": lambda s: float(len(_last_token(s)) == 1),
    "last_token_is_number": lambda s: float(bool(_NUMBER.match(_last_token(s)))),
    "n_digits": lambda s: sum(c.isdigit() for c in s),
    "n_lines": lambda s: s.count("\n") + 1,
    "upper_ratio": lambda s: sum(c.isupper() for c in s) / max(len(s), 1),
    "ends_with_punct": lambda s: float(s.rstrip()[-1:] in ".!?"),
}


def auroc(x: np.ndarray, y: np.ndarray) -> float:
    """P(feature of a positive > feature of a negative), ties counted half (Mann-Whitney U / n1 n0)."""
    pos, n1 = y == 1, int((y == 1).sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = pd.Series(x).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _p_value(auc: float, n1: int, n0: int) -> float:
    """Two-sided normal approximation of the Mann-Whitney test under H0 (AUC = 0.5)."""
    sd = math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    return math.erfc(abs(auc - 0.5) / sd / math.sqrt(2))


def features(ds: Dataset) -> dict[str, np.ndarray]:
    """Trivial features per row: of `text` (a pairwise row: `second` minus `first`, since the label says
    which one is better), the length of every other string field, and answer shape."""
    if "text" in ds.column_names:
        texts = [str(t) for t in ds["text"]]
        feats = {k: np.array([f(t) for t in texts], dtype=float) for k, f in TEXT_FEATURES.items()}
    else:
        texts = []
        feats = {
            f"second_minus_first_{k}": np.array(
                [f(str(b)) - f(str(a)) for a, b in zip(ds["first"], ds["second"], strict=True)], dtype=float
            )
            for k, f in TEXT_FEATURES.items()
        }
    for col in ds.column_names:
        if col in SKIP_COLUMNS or col in ("text", "first", "second"):
            continue
        vals = ds[col]
        if not vals or not isinstance(vals[0], str):
            continue
        feats[f"{col}_chars"] = np.array([len(v or "") for v in vals], dtype=float)
    if "answer" in ds.column_names:
        ans = [str(a).strip() for a in ds["answer"]]
        feats["answer_single_char"] = np.array([len(a) == 1 for a in ans], dtype=float)
        feats["answer_is_number"] = np.array([bool(_NUMBER.match(a)) for a in ans], dtype=float)
        feats["answer_word_overlap"] = np.array(
            [_overlap(a, t.replace(a, " ", 1)) for a, t in zip(ans, texts, strict=True)], dtype=float
        )
        feats["answer_relpos"] = np.array(
            [t.find(a) / max(len(t), 1) if a else -1.0 for a, t in zip(ans, texts, strict=True)], dtype=float
        )
    return feats


def _overlap(answer: str, rest: str) -> float:
    """Fraction of the answer's words that also occur elsewhere in the text (copy-the-context shortcut)."""
    words = {w.lower() for w in _WORD.findall(answer)}
    if not words:
        return 0.0
    other = {w.lower() for w in _WORD.findall(rest)}
    return len(words & other) / len(words)


def audit(ds: Dataset, threshold: float = 0.1, alpha: float = 1e-3) -> dict[str, Any]:
    """AUROC of each trivial feature against the label; `flagged` lists features that predict it."""
    y = np.asarray(ds["label"], dtype=int)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    report: dict[str, Any] = {
        "n": len(y),
        "n_pos": n1,
        "threshold": threshold,
        "alpha": alpha,
        "features": {},
    }
    flagged = []
    if n1 and n0:
        for name, x in features(ds).items():
            a = auroc(x, y)
            p = _p_value(a, n1, n0)
            report["features"][name] = {"auc": round(a, 4), "p": float(f"{p:.3g}")}
            if abs(a - 0.5) > threshold and p < alpha:
                flagged.append(name)
    report["flagged"] = sorted(flagged, key=lambda k: -abs(report["features"][k]["auc"] - 0.5))
    report["ok"] = not flagged
    return report
