"""Label cleaning on small inputs whose answer is known by construction."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from conftest import make_cfg
from hydra.utils import instantiate

from w2s.clean import (
    Cleaned,
    Logistic,
    OracleFilter,
    RandomFilter,
    act,
    as_dist,
    count,
    knn_probe,
    logistic_probe,
    summary,
    topo_filter,
    tv_distance,
)
from w2s.config import choices


def _clusters(n: int, centres: list[list[float]], seed: int = 0) -> np.ndarray:
    """n points around each centre (spread 1), stacked in centre order."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.array(c) + rng.normal(size=(n, len(c))) for c in centres]).astype(np.float32)


def test_knn_with_k_1_returns_each_rows_own_label():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    x[1] = x[0]  # a duplicate point: still its own label
    y = rng.dirichlet(np.ones(3), size=30).astype(np.float32)
    assert np.array_equal(knn_probe(x, y, k=1), y)
    assert np.array_equal(knn_probe(x, y[:, 0], k=1), as_dist(y[:, 0]))


def test_knn_on_two_separated_clusters_returns_each_clusters_mean_label():
    x = _clusters(10, [[0.0, 0.0], [100.0, 100.0]])
    p1 = np.array([0.1] * 9 + [0.9] + [0.8] * 10, dtype=np.float32)  # one mislabelled row in the first
    got = knn_probe(x, p1, k=10)[:, 1]
    assert got[:10] == pytest.approx([0.18] * 10) and got[10:] == pytest.approx([0.8] * 10)
    y = np.eye(3, dtype=np.float32)[[0] * 9 + [2] + [1] * 10]
    got = knn_probe(x, y, k=10)
    assert got[:10] == pytest.approx(np.tile([0.9, 0.0, 0.1], (10, 1))) and got[10:, 1] == pytest.approx(1.0)


def test_logistic_probe_recovers_a_linear_labelling_deterministically():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8)).astype(np.float32) * 5 + 3  # standardised inside
    score = x[:, :3] @ np.array([1.0, -2.0, 0.5])
    x = x[np.abs(score) > 3]  # a margin (about a quarter of score's spread): the l2 term keeps the fit soft
    side = score[np.abs(score) > 3] > 0
    soft = np.where(side, 0.9, 0.1).astype(np.float32)
    got = logistic_probe(x, soft)
    assert np.array_equal(got.argmax(1), side.astype(int)) and np.allclose(got.sum(1), 1)
    assert np.array_equal(logistic_probe(x, soft), got)
    blobs = _clusters(40, [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], seed=2)
    gt = np.repeat(np.arange(3), 40)
    soft3 = np.full((120, 3), 0.1, dtype=np.float32)
    soft3[np.arange(120), gt] = 0.8
    assert np.array_equal(logistic_probe(blobs, soft3).argmax(1), gt)


def _planted(outliers: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 around the origin, class 1 far away, and `outliers` class-1 rows among the class-0 ones."""
    x = np.concatenate([_clusters(20, [[0.0, 0.0]]), _clusters(20, [[50.0, 50.0]], seed=1)])
    out = np.random.default_rng(3).normal(size=(outliers, 2)).astype(np.float32) * 0.5
    y = np.array([0] * 20 + [1] * 20 + [1] * outliers)
    return np.concatenate([x, out]), np.eye(2, dtype=np.float32)[y]


def test_topo_removes_a_planted_outlier():
    x, y = _planted(1)  # N = 41
    keep = topo_filter(x, y, k=19, contamination=0.0)
    assert np.flatnonzero(~keep).tolist() == [40]  # alone in class 1's graph: its own component
    keep = topo_filter(x, y, k=19, contamination=0.1)  # floor(4.1 + 1/2) = 4 in all: 1 + 3 by distance
    assert (~keep).sum() == 4 and not keep[40]


def test_topo_keeps_its_component_drops_when_they_exceed_the_count():
    x, y = _planted(
        3
    )  # N = 43; count(0.02, 43) = floor(0.86 + 1/2) = 1, but 3 rows leave class 1's component
    keep = topo_filter(x, y, k=19, contamination=0.02)
    assert np.flatnonzero(~keep).tolist() == [40, 41, 42]


def test_count_rounds_half_up():
    cases = {(0.1, 25): 3, (0.1, 45): 5, (0.1, 15): 2, (0.15, 10): 2, (0.05, 30): 2, (0.1, 5): 1, (0.1, 4): 0}
    for (c, n), want in cases.items():
        assert count(c, n) == want
    assert round(0.1 * 25) == 2 and round(0.1 * 45) == 4  # what Python's round would have done


@pytest.mark.parametrize("n", [4, 5, 10, 15, 25, 30, 45, 101, 1000])
@pytest.mark.parametrize("c", [0.0, 0.05, 0.1, 0.15, 0.3, 0.35, 0.5])
def test_filter_drops_exactly_the_count(n, c):
    rng = np.random.default_rng(n)
    y, p = rng.dirichlet(np.ones(3), size=n), rng.dirichlet(np.ones(3), size=n)
    want = int((Decimal(str(c)) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP))  # decimal, half up
    for action in ("filter", "both"):
        keep = act(p, y, action, c).keep
        assert (~keep).sum() == want
        # the dropped rows are the furthest from the probe
        d = tv_distance(p, y)
        assert want == 0 or d[~keep].min() >= d[keep].max()


def test_actions_by_hand():
    y = np.array([0.75, 0.25, 0.5, 0.5], dtype=np.float32)
    p = np.array([0.25, 0.5, 0.25, 0.5], dtype=np.float32)  # |p - y| = .5, .25, .25, 0 (exact in binary)
    assert tv_distance(as_dist(p), as_dist(y)).tolist() == [0.5, 0.25, 0.25, 0.0]
    filt = act(as_dist(p), as_dist(y), "filter", 0.25)
    assert filt.keep.tolist() == [False, True, True, True] and np.array_equal(filt.labels, as_dist(y))
    relabel = act(as_dist(p), as_dist(y), "relabel", 0.25)
    assert relabel.keep.all() and np.array_equal(relabel.labels, as_dist(p))
    # the tie (.25, .25) goes by the lower index first
    both = act(as_dist(p), as_dist(y), "both", 0.5)
    assert both.keep.tolist() == [False, False, True, True]
    assert np.array_equal(both.labels[2:], as_dist(p)[2:]) and np.array_equal(both.labels[:2], as_dist(y)[:2])
    with pytest.raises(ValueError, match="choices"):
        Logistic(action="drop")


def test_random_filter_is_seeded():
    y = np.full(200, 0.7, dtype=np.float32)
    a, b, other = (
        RandomFilter(0.1, seed=0)(None, y),
        RandomFilter(0.1, seed=0)(None, y),
        RandomFilter(0.1, seed=1)(None, y),
    )
    assert (~a.keep).sum() == 20 and np.array_equal(a.keep, b.keep) and not np.array_equal(a.keep, other.keep)
    assert np.array_equal(a.labels, as_dist(y)) and a.probe is None


def test_oracle_keeps_the_fraction_closest_to_ground_truth():
    y = np.array([0.9, 0.2, 0.6, 0.45, 0.8, 0.3], dtype=np.float32)
    gt = np.array([1, 1, 0, 0, 1, 0])  # 1 - Y[gt] = .1, .8, .4, .55, .2, .3
    got = OracleFilter(keep_frac=0.5)(None, y, gt)
    assert got.keep.tolist() == [True, False, False, False, True, True]
    with pytest.raises(ValueError, match="ground truth"):
        OracleFilter()(None, y)


def test_summary_by_hand():
    y = as_dist(np.array([0.9, 0.2, 0.6, 0.4]))
    p = as_dist(np.array([0.8, 0.7, 0.4, 0.4]))
    gt = np.array([1, 1, 1, 0])
    cleaned = Cleaned(np.array([True, True, False, True]), np.where([[1], [1], [0], [0]], p, y), p)
    assert summary(y, cleaned, gt) == {
        "rows": 4,
        "kept": 3,
        "relabelled": 2,  # rows 0 and 1 (row 2 is dropped, row 3 keeps its label)
        "flipped": 1,  # row 1: 0.2 -> 0.7
        "probe_agree_weak": 0.5,  # rows 0 and 3
        "probe_acc_gt": 0.75,  # rows 0, 1, 3
        "weak_acc_all": 0.75,  # rows 0, 2, 3
        "weak_acc_kept": pytest.approx(2 / 3),  # rows 0, 3 of 0, 1, 3
        "label_acc_kept": 1.0,
    }
    assert summary(y, cleaned)["weak_acc_all"] is None


def test_every_clean_config_instantiates_and_runs(tmp_path):
    x = _clusters(30, [[0.0, 0.0, 0.0], [8.0, 8.0, 8.0]])
    gt = np.repeat([0, 1], 30)
    y = as_dist(np.where(gt == 1, 0.8, 0.3))
    assert set(choices("clean")) == {"none", "knn", "logistic", "topo", "random", "oracle"}
    for name in choices("clean"):
        cfg = make_cfg(tmp_path, [f"clean={name}", "seed=3"]).clean  # composed: `${seed}` is the run's
        if "_target_" not in cfg:
            assert name == "none" and not cfg
            continue
        method = instantiate(cfg)
        keep, labels, _ = method(x, y, gt)
        assert method.name == name and labels.shape == (60, 2) and 0 < keep.sum() <= 60
        assert set(summary(y, Cleaned(keep, labels, _), gt)) >= {"kept", "relabelled", "weak_acc_kept"}
        if name == "random":
            assert method.seed == 3
        if "layer" in cfg:
            assert method.layer is None
