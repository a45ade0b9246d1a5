"""Section 5's analyses as named hooks that run after the ladder, for every kind where the paper defines them.

A hook is a function of a `Context` (the config, the kind, the ladder's stages and the results so far) that
returns the keys it adds to results.json; `check` runs before any training, so a bad setting is one line, not a
traceback after hours. Each is switched by its entry under `analysis:` in conf/train.yaml. Adding an analysis is
one function here, registered with `@hook(...)`, and one config entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from w2s import analysis, artifacts
from w2s.data import LabelSource, write_labels
from w2s.errors import ConfigError
from w2s.kinds import Kind, TaskData, kind_class
from w2s.metrics import pgr_table
from w2s.prompting import check_prompting, prompting_stage


@dataclass
class Context:
    """What a hook may read or extend: the run's config, its kind, the ladder (stages, and `train`/`label` for
    hooks that train more), the results so far, the student's config and the final transfer split."""

    cfg: DictConfig
    kind: Kind
    ladder: Any
    results: dict[str, Any]
    student: Any
    final_split: str


@dataclass(frozen=True)
class Hook:
    name: str
    on: Callable[[DictConfig], bool]  # from the `analysis` config node
    run: Callable[[Context], dict[str, Any]]
    check: Callable[[DictConfig, TaskData], None]


HOOKS: dict[str, Hook] = {}


def _no_check(cfg: DictConfig, data: TaskData) -> None:
    return None


def hook(
    name: str, on: Callable[[DictConfig], bool], check: Callable[[DictConfig, TaskData], None] = _no_check
):
    """Register an analysis; hooks run in registration order (later ones see earlier ones' stages)."""

    def deco(fn: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any]]:
        HOOKS[name] = Hook(name, on, fn, check)
        return fn

    return deco


def active(cfg: DictConfig) -> list[Hook]:
    an = cfg.get("analysis") or {}
    return [h for h in HOOKS.values() if h.on(an)]


def _labels_artifact(ctx: Context, key: dict[str, Any], parts: dict[str, tuple[list[int], list[Any]]]) -> str:
    """Derived labels (noise, easy rows) stored like a label stage's, so the DataModule reads them the same way."""

    def build(out: Path) -> dict[str, Any]:
        write_labels(str(out / "labels"), parts)
        return {"derived": key, "splits": sorted(parts)}

    path = artifacts.cached(ctx.cfg.paths.artifact_root, "labels", key, build, force=bool(ctx.cfg.force))
    return str(path / "labels")


# ----------------------------------------------------------------------------------------------- noise
@hook("noise_control", on=lambda an: bool(an.get("noise_control")))
def noise_control(ctx: Context) -> dict[str, Any]:
    """Appendix E: the student on labels with the weak labels' error rate but errors on random rows."""
    cfg, kind, ladder, split = ctx.cfg, ctx.kind, ctx.ladder, ctx.final_split
    weak = ladder.stages["weak"]
    lab = ladder.label(weak, split)
    seed = int(cfg.seed)
    noisy = kind.noise(LabelSource(lab, split).values(), split, seed)
    noisy_val = kind.noise(LabelSource(lab, "val").values(), "val", seed + 1)
    splits = kind.data.splits
    labels_from = {"random_noise_of": weak.path.name, "seed": seed}
    path = _labels_artifact(
        ctx, {**labels_from, "labels": Path(lab).parent.name, "split": split},
        {split: (splits[split]["idx"], noisy), "val": (splits["val"]["idx"], noisy_val)},
    )  # fmt: skip
    stage = ladder.train(
        "noise", ctx.student, split, LabelSource(path, split), labels_from, cfg.loss, LabelSource(path, "val")
    )
    res = kind.score(stage.test_preds())
    return {
        "noise": res,
        "pgr_noise": pgr_table(ctx.results["weak"], res, ctx.results["ceiling"], cfg.pgr_eps),
        "noise_error_rate": float((~kind.right(noisy, split)).mean()),
    }


# ----------------------------------------------------------------------------------------------- easy-to-hard
def _difficulty_columns(data: TaskData) -> list[str]:
    rows = data.splits["all"]
    skip = {"idx", "hash", "label"}
    return sorted(
        c
        for c, f in rows.features.items()
        if c not in skip and getattr(f, "dtype", "").startswith(("int", "float"))
    )


def check_easy_to_hard(cfg: DictConfig, data: TaskData) -> None:
    e2h = cfg.analysis.easy_to_hard
    q = e2h.get("quantile", 0.5)
    if not isinstance(q, float | int) or isinstance(q, bool) or not 0 < q < 1:
        raise ConfigError(f"analysis.easy_to_hard.quantile={q!r} must be a number in (0, 1)")
    by = e2h.by
    choices = (["confidence"] if kind_class(cfg.task.type).has_confidence else []) + _difficulty_columns(data)
    if by not in choices:
        raise ConfigError(f"analysis.easy_to_hard.by={by!r}; choices for task {cfg.task.name!r}: {choices}")
    values = data.splits["all"][by] if by != "confidence" else [0.0]
    if any(v is None for v in values):
        raise ConfigError(f"analysis.easy_to_hard.by={by!r}: task {cfg.task.name!r} has rows without a {by}")


@hook("easy_to_hard", on=lambda an: bool((an.get("easy_to_hard") or {}).get("by")), check=check_easy_to_hard)
def easy_to_hard(ctx: Context) -> dict[str, Any]:
    """Appendix C: the student learns GT of the easy part of the transfer split and is tested on the hard part.

    Difficulty is a task column (e.g. puzzle `rating`, low = easy) or the supervisor's confidence |p - 0.5|
    (high = easy, scored kinds). The supervisor, the w2s student and the all-GT ceiling are scored on the same
    hard test rows.
    """
    cfg, kind, ladder, split = ctx.cfg, ctx.kind, ctx.ladder, ctx.final_split
    e2h = cfg.analysis.easy_to_hard
    by, q = e2h.by, float(e2h.get("quantile", 0.5))
    splits = kind.data.splits
    train_rows, test = splits[split], splits["test"]
    weak = ladder.stages["weak"]
    if by == "confidence":
        train_score = kind.confidence(LabelSource(ladder.label(weak, split), split).values())
        test_score, low = kind.confidence(weak.test_preds()), False
    else:
        train_score, test_score, low = np.asarray(train_rows[by]), np.asarray(test[by]), True
    easy = analysis.easy_mask(train_score, q, easy_is_low=low)
    hard = ~analysis.easy_mask(test_score, q, easy_is_low=low)
    rows = train_rows.select(np.flatnonzero(easy).tolist())
    labels_from = {"gt_easy": by, "quantile": q}
    path = _labels_artifact(
        ctx, {**labels_from, "data": kind.data.key, "split": split},
        {split: (rows["idx"], list(rows[kind.gt_column]))},
    )  # fmt: skip
    ladder.train(
        "easy", ctx.student, split, LabelSource(path, split), labels_from, cfg.gt_loss, ladder.gt("val")
    )
    out: dict[str, Any] = {"by": by, "quantile": q, "n_train_easy": len(rows), "n_test_hard": int(hard.sum())}
    for role in ("easy", "weak", "w2s", "ceiling"):
        out[role] = kind.score(ladder.stages[role].test_preds(), "test", hard)
    return {"easy_to_hard": out}


# ----------------------------------------------------------------------------------------------- prompting
@hook(
    "prompting",
    on=lambda an: bool((an.get("prompting") or {}).get("enabled")),
    check=lambda cfg, data: check_prompting(cfg, data.info.get("classes")),
)
def prompting(ctx: Context) -> dict[str, Any]:
    """Section 5.2.1: k-shot prompting of a decoder, shots with GT of A or the supervisor's labels of B."""
    weak = ctx.ladder.stages["weak"]
    weak_transfer = LabelSource(ctx.ladder.label(weak, "transfer"), "transfer").values()
    data = ctx.kind.data
    return {
        "prompting": prompting_stage(
            ctx.cfg, data.splits, np.asarray(weak_transfer), data.key, weak.path.name
        )
    }


# ----------------------------------------------------------------------------------------------- agreement
@hook("agreement", on=lambda an: bool(an.get("agreement", True)))
def agreement(ctx: Context) -> dict[str, Any]:
    """Figure 8: how often each student's test answer equals its own supervisor's, split by whether the
    supervisor is right (moves compared as moves on chess)."""
    kind, out = ctx.kind, {}
    for name, stage in ctx.ladder.stages.items():
        if stage.supervisor is None:
            continue
        student, sup = stage.test_preds(), stage.supervisor.test_preds()
        out[name] = analysis.agreement_of(kind.same(student, sup, "test"), kind.right(sup, "test"))
    return {"agreement": out}


# ----------------------------------------------------------------------------------------------- stopping
@hook("stopping", on=lambda an: bool(an.get("stopping", True)))
def stopping(ctx: Context) -> dict[str, Any]:
    """Section 5.1.1: every stage's curve (val and GT test over training) and GT test accuracy at the final,
    the selected and the oracle (cheating) checkpoint."""
    curves = {n: json.loads((s.path / "curve.json").read_text()) for n, s in ctx.ladder.stages.items()}
    tie = f"val/{ctx.kind.tie_break}" if ctx.kind.tie_break else None
    select = f"val/{ctx.kind.select}"
    return {
        "curves": curves,
        "stopping": {n: analysis.stopping(c, select, tie_break=tie) for n, c in curves.items()},
    }
