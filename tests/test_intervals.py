"""Accuracy and AUROC intervals, and the multi-class metrics, against known values and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc

from w2s.metrics import _auroc, binary_metrics, bootstrap_auroc, class_metrics, wilson


def _scores(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax scores that lean towards the label, rounded to 2 places so that scores tie."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, c, n)
    z = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[label]
    return np.round(np.exp(z) / np.exp(z).sum(-1, keepdims=True), 2), label


def test_wilson_known_values():
    assert wilson(80, 100) == pytest.approx((0.7112, 0.8666), abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0 < hi < 0.35
    assert wilson(10, 10)[1] == pytest.approx(1.0)
    assert all(np.isnan(wilson(0, 0)))


def test_class_metrics_match_torchmetrics():
    prob, label = _scores(500, 10)
    got = class_metrics(prob, label)
    p, y = torch.tensor(prob, dtype=torch.float64), torch.tensor(label)
    assert got["acc"] == pytest.approx(float(multiclass_accuracy(p, y, 10, average="micro")), abs=1e-9)
    assert got["auroc"] == pytest.approx(float(multiclass_auroc(p, y, 10, average="macro")), abs=1e-6)
    # two classes: the same numbers as binary_metrics on P(class 1)
    prob2, label2 = _scores(300, 2, seed=1)
    assert class_metrics(prob2, label2) == pytest.approx(binary_metrics(prob2[:, 1], label2), abs=1e-6)
    assert np.isnan(class_metrics(prob[label != 3], label[label != 3])["auroc"])


def test_weighted_auroc_equals_the_materialised_resample():
    prob, label = _scores(200, 4, seed=2)
    rows = np.random.default_rng(0).integers(0, 200, 200)
    weight = np.bincount(rows, minlength=200)[None, :].astype(float)
    want = float(multiclass_auroc(torch.tensor(prob[rows]), torch.tensor(label[rows]), 4, average="macro"))
    assert _auroc(prob, label, weight)[0] == pytest.approx(want, abs=1e-6)
    assert _auroc(prob[:, 1], (label == 1).astype(int), weight)[0] == pytest.approx(
        binary_metrics(prob[rows, 1], label[rows] == 1)["auroc"], abs=1e-6
    )


@pytest.mark.parametrize("c", [2, 10])
def test_bootstrap_interval_contains_the_estimate_and_is_seeded(c):
    prob, label = _scores(3000, c, seed=3)
    scores = prob[:, 1] if c == 2 else prob
    point = class_metrics(prob, label)["auroc"]
    lo, hi = bootstrap_auroc(scores, label, seed=0)
    assert lo < point < hi and hi - lo < 0.1
    assert bootstrap_auroc(scores, label, seed=0) == (lo, hi)
    assert bootstrap_auroc(scores, label, seed=1) != (lo, hi)
    assert bootstrap_auroc(torch.tensor(scores), torch.tensor(label), seed=0) == pytest.approx((lo, hi))


def test_bootstrap_leaves_out_resamples_missing_a_class():
    prob, label = np.array([0.9, 0.2, 0.4, 0.1, 0.3]), np.array([1, 0, 0, 0, 0])
    lo, hi = bootstrap_auroc(prob, label, n_boot=200)  # the positive is missing from about a third of them
    assert (lo, hi) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_auroc(prob, np.zeros(5, dtype=int), n_boot=50)))
