"""Clean the weak labels before the student trains on them, by probing the strong model's untrained features
(the EleutherAI/w2s probe methods), and the baselines to compare them with.

Conventions: numpy in, numpy out. `X` is features [N, D] (a torch tensor too: neighbour searches then run on
its device); `Y` weak labels, [N, C] distributions, or [N] P(class 1) read as [1 - p, p]; `gt` ground-truth
classes [N]. Labels come back as [N, C] float32. Each method is a class built by Hydra from `conf/clean/NAME.yaml` (`_target_`), called once:

    method(X, Y, gt=None) -> Cleaned(keep [N] bool, labels [N, C], probe [N, C] or None)

The student trains on `labels[keep]`. `conf/clean/none.yaml` is empty (`{}`): no `_target_`, no cleaning.
`layer` (None: the middle layer) names the hidden layer whose features the stage passes; the methods only
carry it. Counts: a fraction f of N rows is floor(f * N + 1/2) rows, f read as the decimal it is written as
(0.1 * 25 = 2.5 -> 3; Python's round would give 2).

`clean_stage` is the pipeline's stage between the weak labels and the w2s student (docs/DESIGN.md).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from w2s import artifacts, models
from w2s.data import LabelSource, write_labels
from w2s.errors import ConfigError, build
from w2s.features import feature_precision

if TYPE_CHECKING:  # the kinds are above this module: a type, not an import at run time
    from w2s.kinds.base import Kind

ACTIONS = ("filter", "relabel", "both")


class Cleaned(NamedTuple):
    keep: np.ndarray
    labels: np.ndarray
    probe: np.ndarray | None


def as_dist(Y: np.ndarray | torch.Tensor) -> np.ndarray:
    """[N, C] distributions as float32; a vector of P(class 1) becomes [1 - p, p]."""
    y = np.asarray(Y, dtype=np.float32)
    return np.stack([1 - y, y], axis=1) if y.ndim == 1 else y


def count(frac: float, n: int) -> int:
    """floor(frac * n + 1/2), exact for the decimal `frac` is written as (no 0.15 * 10 = 1.4999... surprise)."""
    return math.floor(Fraction(str(float(frac))) * n + Fraction(1, 2))


def tv_distance(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Total-variation distance per row, 0.5 * sum_c |P - Y| (|p - y| on P(class 1) when C = 2)."""
    return 0.5 * np.abs(np.asarray(P, dtype=np.float64) - np.asarray(Y, dtype=np.float64)).sum(-1)


def drop_furthest(dist: np.ndarray, n: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Keep mask without the `n` rows of largest `dist` among those `keep` allows (ties: lower index first)."""
    keep = np.ones(len(dist), dtype=bool) if keep is None else keep.copy()
    candidates = np.flatnonzero(keep)
    order = candidates[np.argsort(-dist[candidates], kind="stable")]
    keep[order[: max(0, n)]] = False
    return keep


def neighbours(X: np.ndarray | torch.Tensor, k: int, include_self: bool, chunk: int = 1024) -> np.ndarray:
    """Indices [N, k] of each row's k nearest rows (Euclidean), nearest first, the row itself first when
    `include_self` (even among duplicates) and never otherwise. `chunk` rows at a time, ranked by
    |x_j|^2 - 2 x_i.x_j (the squared distance less |x_i|^2, one matmul), on the device of a tensor `X`."""
    x = X.float() if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X, dtype=np.float32))
    n = len(x)
    k = min(k, n if include_self else n - 1)
    sq = x.square().sum(1)
    out = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk):
        d = torch.addmm(sq[None], x[start : start + chunk], x.T, alpha=-2.0)
        rows = torch.arange(len(d), device=x.device)
        d[rows, start + rows] = -math.inf if include_self else math.inf
        out[start : start + chunk] = d.topk(k, largest=False).indices
    return out.cpu().numpy()


def knn_probe(X: np.ndarray | torch.Tensor, Y: np.ndarray | torch.Tensor, k: int = 50) -> np.ndarray:
    """In-sample kNN: each row's prediction is the mean soft label of its k nearest rows, itself included
    (k = 1 returns the row's own label; k is capped at N)."""
    y = as_dist(Y)
    return y[neighbours(X, k, include_self=True)].mean(1)


def logistic_probe(
    X: np.ndarray | torch.Tensor, Y: np.ndarray | torch.Tensor, l2: float = 1e-3, max_iter: int = 500
) -> np.ndarray:
    """In-sample linear probe on standardised features (each column to mean 0, std 1), fitted with full-batch
    L-BFGS from zero weights (deterministic) to mean cross-entropy against the soft labels + l2 * |W|^2 (bias
    not penalised). Binary: one logit, i.e. BCE; C > 2: softmax. Returns in-sample P [N, C]."""
    y = torch.as_tensor(as_dist(Y), dtype=torch.float64)
    x = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-8)
    c = y.shape[1]
    w = torch.zeros(x.shape[1], 1 if c == 2 else c, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(w.shape[1], dtype=torch.float64, requires_grad=True)

    def logits() -> torch.Tensor:
        z = x @ w + b
        return torch.cat([torch.zeros_like(z), z], dim=1) if c == 2 else z

    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(y * torch.log_softmax(logits(), dim=1)).sum(1).mean() + l2 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return torch.softmax(logits(), dim=1).float().numpy()


def topo_filter(
    X: np.ndarray | torch.Tensor, Y: np.ndarray | torch.Tensor, k: int = 50, contamination: float = 0.1
) -> np.ndarray:
    """Keep mask from a k-neighbour graph (the row itself excluded). Inside each weak class (argmax of Y) only
    the largest strongly connected component stays; then, while fewer than count(contamination, N) rows are
    gone, the kept rows whose label is furthest (total variation) from their k neighbours' mean label go.
    When the component step already dropped that many or more, those drops stand and nothing more goes."""
    y = as_dist(Y)
    n = len(y)
    idx = neighbours(X, k, include_self=False)
    graph = csr_matrix(
        (np.ones(idx.size), (np.repeat(np.arange(n), idx.shape[1]), idx.ravel())), shape=(n, n)
    )
    weak = y.argmax(1)
    keep = np.ones(n, dtype=bool)
    for c in np.unique(weak):
        rows = np.flatnonzero(weak == c)
        _, comp = connected_components(graph[rows][:, rows], directed=True, connection="strong")
        keep[rows[comp != np.bincount(comp).argmax()]] = False
    return drop_furthest(tv_distance(y[idx].mean(1), y), count(contamination, n) - int((~keep).sum()), keep)


def act(P: np.ndarray, Y: np.ndarray, action: str, contamination: float) -> Cleaned:
    """A probe's predictions P put to use: `filter` drops the count(contamination, N) rows furthest from P
    (total variation), `relabel` replaces every label with P, `both` drops those rows and relabels the rest."""
    keep = np.ones(len(Y), dtype=bool)
    if action in ("filter", "both"):
        keep = drop_furthest(tv_distance(P, Y), count(contamination, len(Y)))
    labels = Y if action == "filter" else np.where(keep[:, None], P, Y).astype(np.float32)
    return Cleaned(keep, labels, P)


def _check(action: str, contamination: float) -> None:
    if action not in ACTIONS:
        raise ConfigError(f"clean.action={action!r}; choices: {list(ACTIONS)}")
    if not 0.0 <= contamination < 1.0:
        raise ConfigError(f"clean.contamination={contamination} must be in [0, 1)")


class Method:
    """What the cleaning stage reads of a method besides the call: its settings (for results.json), whether
    it reads the strong model's features (of hidden layer `layer`, None: the middle one) and GT."""

    name: str
    action = "filter"
    contamination: float | None = None
    layer: int | None = None
    reads_features = True
    uses_ground_truth = False

    def __call__(self, X: np.ndarray | None, Y: np.ndarray, gt: np.ndarray | None = None) -> Cleaned:
        raise NotImplementedError


class Knn(Method):
    """kNN probe (`knn_probe`) on the strong model's features, then `act`."""

    def __init__(
        self,
        k: int = 50,
        action: str = "filter",
        contamination: float = 0.1,
        layer: int | None = None,
        name: str = "knn",
    ):
        _check(action, contamination)
        self.k, self.action, self.contamination = k, action, contamination
        self.layer, self.name = layer, name

    def __call__(self, X: np.ndarray, Y: np.ndarray, gt: np.ndarray | None = None) -> Cleaned:
        y = as_dist(Y)
        return act(knn_probe(X, y, self.k), y, self.action, self.contamination)


class Logistic(Method):
    """Logistic-regression probe (`logistic_probe`) on the strong model's features, then `act`."""

    def __init__(
        self,
        l2: float = 1e-3,
        action: str = "filter",
        contamination: float = 0.1,
        layer: int | None = None,
        name: str = "logistic",
    ):
        _check(action, contamination)
        self.l2, self.action, self.contamination = l2, action, contamination
        self.layer, self.name = layer, name

    def __call__(self, X: np.ndarray, Y: np.ndarray, gt: np.ndarray | None = None) -> Cleaned:
        y = as_dist(Y)
        return act(logistic_probe(X, y, self.l2), y, self.action, self.contamination)


class Topo(Method):
    """Topological filter (`topo_filter`): drops rows, never relabels, and has no probe."""

    def __init__(self, k: int = 50, contamination: float = 0.1, layer: int | None = None, name: str = "topo"):
        _check("filter", contamination)
        self.k, self.contamination, self.layer, self.name = k, contamination, layer, name

    def __call__(self, X: np.ndarray, Y: np.ndarray, gt: np.ndarray | None = None) -> Cleaned:
        y = as_dist(Y)
        return Cleaned(topo_filter(X, y, self.k, self.contamination), y, None)


class RandomFilter(Method):
    """Baseline: drop count(contamination, N) rows chosen at random (seeded); reads no features."""

    reads_features = False

    def __init__(self, contamination: float = 0.1, seed: int = 0, name: str = "random"):
        _check("filter", contamination)
        self.contamination, self.seed, self.name = contamination, seed, name

    def __call__(self, X: np.ndarray | None, Y: np.ndarray, gt: np.ndarray | None = None) -> Cleaned:
        y = as_dist(Y)
        dropped = np.random.default_rng(self.seed).permutation(len(y))[: count(self.contamination, len(y))]
        keep = np.ones(len(y), dtype=bool)
        keep[dropped] = False
        return Cleaned(keep, y, None)


class OracleFilter(Method):
    """Uses ground truth, so an analysis bound, never a method: keep the count(keep_frac, N) rows whose weak
    label is closest to the true class (total variation to its one-hot, 1 - Y[gt]); reads no features."""

    reads_features, uses_ground_truth = False, True

    def __init__(self, keep_frac: float = 0.5, name: str = "oracle"):
        if not 0.0 < keep_frac <= 1.0:
            raise ConfigError(f"clean.keep_frac={keep_frac} must be in (0, 1]")
        self.keep_frac, self.name = keep_frac, name

    def __call__(self, X: np.ndarray | None, Y: np.ndarray, gt: np.ndarray | None = None) -> Cleaned:
        if gt is None:
            raise ValueError("the oracle filter needs ground truth (gt)")
        y = as_dist(Y)
        dist = 1.0 - y[np.arange(len(y)), np.asarray(gt)].astype(np.float64)
        return Cleaned(drop_furthest(dist, len(y) - count(self.keep_frac, len(y))), y, None)


def summary(Y: np.ndarray | torch.Tensor, cleaned: Cleaned, gt: np.ndarray | None = None) -> dict:
    """What results.json holds about a cleaning: rows kept and relabelled (label changed; `flipped`: its argmax
    changed), the probe's argmax agreement with the weak labels and with GT on all rows, and the weak labels'
    GT accuracy on all rows vs the kept rows (`label_acc_kept`: of the labels the student trains on).
    A figure that needs a probe or GT it lacks is None."""
    y = as_dist(Y)
    keep, labels, probe = cleaned
    weak, new = y.argmax(1), labels.argmax(1)
    changed = np.abs(labels - y).max(1) > 1e-6
    out = {
        "rows": len(y),
        "kept": int(keep.sum()),
        "relabelled": int((keep & changed).sum()),
        "flipped": int((keep & (new != weak)).sum()),
        "probe_agree_weak": None if probe is None else float((probe.argmax(1) == weak).mean()),
        "probe_acc_gt": None,
        "weak_acc_all": None,
        "weak_acc_kept": None,
        "label_acc_kept": None,
    }
    if gt is not None:
        gt = np.asarray(gt)
        out["weak_acc_all"] = float((weak == gt).mean())
        out["weak_acc_kept"] = float((weak[keep] == gt[keep]).mean()) if keep.any() else None
        out["label_acc_kept"] = float((new[keep] == gt[keep]).mean()) if keep.any() else None
        if probe is not None:
            out["probe_acc_gt"] = float((probe.argmax(1) == gt).mean())
    return out


# ----------------------------------------------------------------------------------------------- the stage
def configured(cfg: DictConfig, kind: Kind) -> Method | None:
    """The run's cleaning method (None for `clean=none`), checked before any training: a bad setting, or a
    kind whose labels no probe reads (generation: its `frozen_features` raises), is one ConfigError line."""
    if not cfg.get("clean"):
        return None
    method = build(cfg.clean)
    # no rows asked for: a kind without features raises its ConfigError, the others return nothing
    kind.frozen_features(cfg.student, [], None)
    return method


def feature_layer(method: Method, kind: Kind, model_cfg: Any) -> int | None:
    """The layer the method's features come from: its `layer`, else the kind's choice (`probe_layer`: the middle
    block's output of a text model, `hidden_states[num_hidden_layers // 2]`; None, the pooled output, for an
    image model); None when it reads no features."""
    if not method.reads_features:
        return None
    return method.layer if method.layer is not None else kind.probe_layer(model_cfg)


def clean_stage(cfg: DictConfig, kind: Kind, method: Method, model_cfg: Any, labels: str, split: str) -> Path:
    """Clean the weak labels of `split` (the label folder `labels`) with `method` on `model_cfg`'s untrained
    frozen features of the split's rows (a row's candidates' features side by side), GT reaching the method
    only when it `uses_ground_truth` and the summary always. Writes `labels/`, the format `LabelSource` reads,
    holding the kept rows only (relabelled where the method relabels), and results.json's `clean` numbers as
    the manifest's meta. Cached by the labels it cleaned, the features' model, layer and precision, the clean
    config and the seed, so a sweep over losses or students of one feature model reuses it."""
    layer = feature_layer(method, kind, model_cfg)
    key: dict[str, Any] = {
        "labels": Path(labels).parent.name,
        "split": split,
        "clean": OmegaConf.to_container(cfg.clean, resolve=True),
        "seed": int(cfg.seed),
        **kind.key(),
    }
    if method.reads_features:
        precision = feature_precision(cfg, model_cfg)
        key["features"] = {"model": models.model_key(model_cfg), "layer": layer, "precision": precision}

    def build(out: Path) -> dict[str, Any]:
        rows = kind.data.splits[split]
        weak = LabelSource(labels, split).read()
        y = np.asarray([weak[i] for i in rows["idx"]], dtype=np.float32)
        x = kind.frozen_features(model_cfg, rows["idx"], layer).flatten(1) if method.reads_features else None
        gt = np.asarray(rows[kind.gt_column])
        cleaned = method(x, y, gt if method.uses_ground_truth else None)
        kept = np.flatnonzero(cleaned.keep)
        values = cleaned.labels[kept, 1] if y.ndim == 1 else cleaned.labels[kept]  # P(class 1) stays a number
        write_labels(str(out / "labels"), {split: (np.asarray(rows["idx"])[kept].tolist(), values.tolist())})
        m = method
        settings = {"method": m.name, "action": m.action, "contamination": m.contamination, "layer": layer}
        return {**settings, "uses_ground_truth": m.uses_ground_truth, **summary(y, cleaned, gt)}

    return artifacts.cached(cfg.paths.artifact_root, "clean", key, build, force=bool(cfg.force))
