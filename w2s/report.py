"""From a sweep folder to the paper's tables and figures: `python -m w2s.report multirun/<date>/<time>`.

Reads every `results.json` below the folder (never the sweep's return values, which a crashed or requeued job
would not have), lists the jobs that have a Hydra config but no results as failed or missing, and writes a
Markdown and a CSV table (mean, std and n over seeds; the median across tasks) and PNG plots in the style of the
paper's Figure 3 (test accuracy vs student size, hue by supervisor, ceiling dashed), Figure 5 (PGR vs student
size) and Figure 7 (GT test accuracy over training). Over many tasks it adds the paper's Figure 3 per task
(weak, w2s per loss, ceiling vs student size), PGR per task for each loss, and the median and mean PGR over
tasks with their seed spread (`figure3.md`); a task whose gap ceiling - weak is below `--min-gap` is listed
apart, never averaged in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from w2s.artifacts import atomic_write_text

KEYS = ["task", "supervisor", "student", "loss", "method"]
ROLES = ["weak", "w2s", "ceiling"]


def collect(root: str | Path) -> tuple[pd.DataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per finished run, the runs' curves, and the jobs without results (with why, when known)."""
    root = Path(root)
    rows, curves, missing = [], [], []
    job_dirs = {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    for path in sorted(root.rglob("results.json")):
        res = json.loads(path.read_text())
        job_dirs.discard(path.parent)
        cfg = res.get("config") or {}
        row = {k: res.get(k) for k in KEYS}
        if (res.get("gen_finetune") or {}).get("enabled"):  # a different experiment: never pooled with plain
            row["method"] = f"{row['method']}+gft"
        row.update(
            seed=res.get("seed"),
            supervisor_params=(cfg.get("supervisor") or {}).get("params"),
            student_params=(cfg.get("student") or {}).get("params"),
            path=str(path.parent),
        )
        for role in [*ROLES, "direct", "noise"]:
            for metric, value in (res.get(role) or {}).items():
                row[f"{role}_{metric}"] = value
        for metric, value in (res.get("pgr") or {}).items():
            row[f"pgr_{metric}"] = value
        agree = (res.get("agreement") or {}).get("w2s") or {}
        for part in ("all", "supervisor_right", "supervisor_wrong"):
            if part in agree:
                row[f"agree_{part}"] = agree[part]
        stop = (res.get("stopping") or {}).get("w2s") or {}
        for point in ("final", "selected", "oracle"):
            if stop.get(point) is not None:
                row[f"stop_{point}"] = stop[point]
        rows.append(row)
        if res.get("curves", {}).get("w2s"):
            curves.append({**{k: row[k] for k in (*KEYS, "seed")}, "curve": res["curves"]["w2s"]})
    for job in sorted(job_dirs):
        missing.append({"job": str(job), "overrides": _overrides(job), "reason": _reason(job)})
    return pd.DataFrame(rows), curves, missing


def _overrides(job: Path) -> str:
    path = job / ".hydra" / "overrides.yaml"
    if not path.exists():
        return ""
    lines = [ln[2:].strip() for ln in path.read_text().splitlines() if ln.startswith("- ")]
    return " ".join(lines)


def _reason(job: Path) -> str:
    """The last error line of the job's own log or of a submitit log naming it; 'no results.json' otherwise."""
    logs = sorted(job.glob("*.log")) + sorted(job.parent.glob(".submitit/*/*.err"))
    for log in logs:
        text = log.read_text(errors="replace")
        if log.suffix == ".err" and str(job) not in text and job.name not in log.parent.name:
            continue
        errors = [ln for ln in text.splitlines() if "Error" in ln or ln.startswith("error:")]
        if errors:
            return errors[-1].strip()[:300]
    return "no results.json (still running, killed, or never started)"


def summarize(df: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Mean, std (over seeds, ddof=1) and n per (task, supervisor, student, loss, method)."""
    roles = ("weak", "w2s", "ceiling", "pgr", "direct")  # direct: the no-chain student of a bootstrap run
    cols = [f"{r}_{metric}" for r in roles if f"{r}_{metric}" in df]
    g = df.groupby(KEYS, dropna=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{stat}" for c, stat in out.columns]
    out["n"] = g.size()
    if f"pgr_{metric}" in df:  # PGR is null where ceiling - weak < eps: its mean may pool fewer seeds than n
        out[f"pgr_{metric}_n"] = g[f"pgr_{metric}"].count()
    out["student_params"] = g["student_params"].first()
    out["supervisor_params"] = g["supervisor_params"].first()
    return out.reset_index()


def medians(summary: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """The median across tasks of each cell's seed mean (the paper's headline aggregate)."""
    cols = [
        f"{r}_{metric}_mean" for r in ("weak", "w2s", "ceiling", "pgr") if f"{r}_{metric}_mean" in summary
    ]
    g = summary.groupby(["supervisor", "student", "loss", "method"], dropna=False)
    out = g[cols].median()
    out["tasks"] = g["task"].nunique()
    return out.reset_index()


def _fmt(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "null"
    return f"{mean:.3f}" if std is None or np.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def markdown(summary: pd.DataFrame, med: pd.DataFrame, missing: list[dict], metric: str = "acc") -> str:
    lines = [
        f"# Sweep report ({metric})",
        "",
        "| " + " | ".join(KEYS) + " | weak | w2s | ceiling | PGR | direct (no chain) | n |",
    ]
    lines.append("|" + "---|" * (len(KEYS) + 6))
    for _, r in summary.iterrows():
        cells = [str(r[k]) for k in KEYS]
        cells += [
            _fmt(r.get(f"{x}_{metric}_mean"), r.get(f"{x}_{metric}_std"))
            for x in ("weak", "w2s", "ceiling", "pgr")
        ]
        n_pgr = r.get(f"pgr_{metric}_n")
        if n_pgr is not None and 0 < n_pgr < r["n"]:  # a mean of 1 value must not read as a mean of 2
            cells[-1] += f" (n={int(n_pgr)}; {int(r['n'] - n_pgr)} null)"
        direct = r.get(f"direct_{metric}_mean")
        has_direct = direct is not None and not np.isnan(direct)
        cells.append(_fmt(direct, r.get(f"direct_{metric}_std")) if has_direct else "-")
        lines.append("| " + " | ".join(cells) + f" | {int(r['n'])} |")
    lines += [
        "",
        "## Median across tasks",
        "",
        "| supervisor | student | loss | method | weak | w2s | ceiling | PGR | tasks |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for _, r in med.iterrows():
        vals = [_fmt(r.get(f"{x}_{metric}_mean"), None) for x in ("weak", "w2s", "ceiling", "pgr")]
        lines.append(
            f"| {r['supervisor']} | {r['student']} | {r['loss']} | {r['method']} | "
            + " | ".join(vals)
            + f" | {r['tasks']} |"
        )
    lines += ["", f"## Failed or missing runs: {len(missing)}", ""]
    lines += [f"- `{m['job']}` ({m['overrides']}): {m['reason']}" for m in missing] or ["none"]
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(summary: pd.DataFrame, out: Path, metric: str = "acc") -> list[Path]:
    """Figure 3: test accuracy vs student size (log x), one line per supervisor, ceiling as a dashed black line;
    one panel per task, one file per loss."""
    plt = _plt()
    paths = []
    for loss, part in summary.groupby("loss"):
        tasks = sorted(part["task"].unique())
        ncol = min(4, len(tasks))
        nrow = -(-len(tasks) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(max(5.0, 3.6 * ncol), 3.0 * nrow + 0.4), squeeze=False)
        sups = sorted(
            part["supervisor"].unique(), key=lambda s: part[part.supervisor == s]["supervisor_params"].iloc[0]
        )
        colors = plt.cm.viridis(np.linspace(0.1, 0.9, max(1, len(sups))))
        for ax, task in zip(axes.flat, tasks, strict=False):
            t = part[part.task == task]
            ceil = t.groupby("student_params")[f"ceiling_{metric}_mean"].mean().sort_index()
            ax.plot(ceil.index, ceil.values, "k--", marker="o", label="strong ceiling")
            for color, sup in zip(colors, sups, strict=True):
                s = t[t.supervisor == sup].sort_values("student_params")
                if s.empty:
                    continue
                ax.errorbar(s["student_params"], s[f"w2s_{metric}_mean"], yerr=s[f"w2s_{metric}_std"].fillna(0),
                            color=color, marker="o", capsize=2, label=f"weak: {sup}")  # fmt: skip
                ax.axhline(s[f"weak_{metric}_mean"].mean(), color=color, lw=0.8, ls=":")
            _size_axis(ax, t["student_params"])
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("student parameters")
            ax.set_ylabel(f"test {metric}")
        for ax in list(axes.flat)[len(tasks) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"test {metric}, loss={loss} (dotted: supervisor alone)", fontsize=10)
        fig.tight_layout()
        paths.append(_save(fig, out / f"accuracy_{loss}.png"))
        plt.close(fig)
    return paths


def plot_pgr(summary: pd.DataFrame, out: Path, metric: str = "acc") -> Path:
    """Figure 5: median PGR across tasks vs student size, one line per supervisor, one panel per loss."""
    plt = _plt()
    losses = sorted(summary["loss"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(4.2 * len(losses), 3.4), squeeze=False, sharey=True)
    sups = sorted(
        summary["supervisor"].unique(),
        key=lambda s: summary[summary.supervisor == s]["supervisor_params"].iloc[0],
    )
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, max(1, len(sups))))
    for ax, loss in zip(axes.flat, losses, strict=True):
        part = summary[summary.loss == loss]
        for color, sup in zip(colors, sups, strict=True):
            s = (
                part[part.supervisor == sup]
                .groupby("student_params")[f"pgr_{metric}_mean"]
                .median()
                .sort_index()
            )
            if len(s):
                ax.plot(s.index, s.values, marker="o", color=color, label=f"weak: {sup}")
        ax.axhline(0, color="grey", lw=0.5)
        _size_axis(ax, part["student_params"])
        ax.set_title(f"loss={loss}")
        ax.set_xlabel("student parameters")
    axes.flat[0].set_ylabel(f"PGR ({metric}), median over tasks")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "pgr.png")
    plt.close(fig)
    return path


def plot_curves(curves: list[dict[str, Any]], out: Path) -> Path | None:
    """Figure 7: the student's GT test accuracy (and agreement with its supervisor) over training, per run."""
    curves = [c for c in curves if any("test_gt/acc" in p for p in c["curve"])]
    if not curves:
        return None
    plt = _plt()
    groups: dict[tuple, list[dict]] = {}
    for c in curves:
        groups.setdefault((c["task"], c["supervisor"], c["student"]), []).append(c)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.4), squeeze=False)
    for ax, ((task, sup, stu), runs) in zip(axes.flat, sorted(groups.items()), strict=True):
        losses = sorted({r["loss"] for r in runs})
        colors = dict(zip(losses, plt.cm.tab10.colors, strict=False))
        for r in runs:
            pts = [p for p in r["curve"] if "test_gt/acc" in p]
            steps = [p["step"] for p in pts]
            # markers: a run evaluated once is one point, which a line alone does not draw
            ax.plot(steps, [p["test_gt/acc"] for p in pts], color=colors[r["loss"]], lw=1, marker="o", ms=3,
                    label=f"{r['loss']} GT acc" if r["seed"] == min(x["seed"] for x in runs if x["loss"] == r["loss"]) else None)  # fmt: skip
            if all("test_weak/acc" in p for p in pts):
                ax.plot(steps, [p["test_weak/acc"] for p in pts], color=colors[r["loss"]], lw=0.8, ls="--",
                        marker="x", ms=3)  # fmt: skip
        ax.set_title(f"{task}: {sup} -> {stu}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy (solid) / agreement (dashed)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "curves.png")
    plt.close(fig)
    return path


def _size_axis(ax: Any, params: pd.Series) -> None:
    """Log x axis with one labelled tick per student size (e.g. 110M, 1.5B), as the paper's compute axis."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ticks = sorted({float(p) for p in params.dropna()})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{p / 1e9:.3g}B" if p >= 1e9 else f"{p / 1e6:.3g}M" for p in ticks], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: Path) -> Path:
    """PNG through a temp file and a rename: a report folder never holds half a plot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------- Figure 3 over tasks
MIN_GAP = 0.05  # ceiling - weak below this (in the metric) is within a few test-set standard errors: no PGR
PGR_EPS = 0.01  # a seed whose own gap is below this has no PGR (as pgr_eps in train.yaml)


def task_pgr(df: pd.DataFrame, metric: str = "acc", min_gap: float = MIN_GAP) -> pd.DataFrame:
    """One row per (task, supervisor, student, loss, method): seed means of weak, w2s and ceiling, the gap
    ceiling - weak, PGR of those means, the spread of the seeds' own PGRs, and whether the gap is large enough
    (`included`) for PGR to mean anything; a cell below `min_gap` is listed apart, never averaged in."""
    d = df.copy()
    weak, w2s, ceil = (d[f"{r}_{metric}"].astype(float) for r in ROLES)
    gap = ceil - weak
    d["seed_pgr"] = ((w2s - weak) / gap).where(gap.abs() >= PGR_EPS)
    g = d.groupby(KEYS, dropna=False)
    out = g[[f"{r}_{metric}" for r in ROLES]].mean()
    out.columns = ROLES
    out["w2s_std"] = g[f"w2s_{metric}"].std()
    out["gap"] = out["ceiling"] - out["weak"]
    out["pgr"] = ((out["w2s"] - out["weak"]) / out["gap"]).where(out["gap"].abs() >= PGR_EPS)
    out["pgr_seed_std"] = g["seed_pgr"].std()
    out["n"] = g.size()
    out["student_params"] = g["student_params"].first()
    out["included"] = out["gap"] >= min_gap
    return out.reset_index()


def pgr_over_tasks(df: pd.DataFrame, cells: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Median and mean PGR over the included tasks per (supervisor, student, loss, method), with their seed
    spread (the std over seeds of the median/mean taken within one seed), and the tasks left apart."""
    d = df.copy()
    weak, w2s, ceil = (d[f"{r}_{metric}"].astype(float) for r in ROLES)
    d["seed_pgr"] = ((w2s - weak) / (ceil - weak)).where((ceil - weak).abs() >= PGR_EPS)
    rows = []
    for key, part in cells.groupby(["supervisor", "student", "loss", "method"], dropna=False):
        inc = part[part["included"]]
        runs = d[(d[["supervisor", "student", "loss", "method"]] == list(key)).all(axis=1)]
        per_seed = runs[runs["task"].isin(inc["task"])].pivot_table(
            index="seed", columns="task", values="seed_pgr"
        )
        rows.append(
            {
                **dict(zip(["supervisor", "student", "loss", "method"], key, strict=True)),
                "student_params": part["student_params"].iloc[0],
                "tasks": len(inc),
                "median": inc["pgr"].median(),
                "median_seed_std": per_seed.median(axis=1).std(),
                "mean": inc["pgr"].mean(),
                "mean_seed_std": per_seed.mean(axis=1).std(),
                "seeds": len(per_seed),
                "apart": ", ".join(sorted(part.loc[~part["included"], "task"])),
            }
        )
    return pd.DataFrame(rows)


def figure3_markdown(
    cells: pd.DataFrame, agg: pd.DataFrame, min_gap: float = MIN_GAP, metric: str = "acc"
) -> str:
    """The per-task table (weak, w2s, ceiling, gap, PGR for each loss) and the aggregate over tasks."""
    losses = sorted(cells["loss"].unique())
    lines = [
        f"# Figure 3 over tasks ({metric}; PGR needs ceiling - weak >= {min_gap})",
        "",
        "| task | student | weak | ceiling | gap | "
        + " | ".join(f"w2s {x} | PGR {x}" for x in losses)
        + " | n |",
        "|" + "---|" * (5 + 2 * len(losses) + 1),
    ]
    for (task, sup, stu, method), part in cells.groupby(["task", "supervisor", "student", "method"]):
        by = part.set_index("loss")
        first = part.iloc[0]
        vals = []
        for x in losses:
            if x not in by.index:
                vals += ["-", "-"]
                continue
            r = by.loc[x]
            pgr = _fmt(r["pgr"], r["pgr_seed_std"]) if r["included"] else f"({_fmt(r['pgr'], None)}, apart)"
            vals += [_fmt(r["w2s"], r["w2s_std"]), pgr]
        lines.append(
            f"| {task} | {sup} -> {stu}{'' if method == 'naive' else f' ({method})'} | {first['weak']:.3f} | {first['ceiling']:.3f} | {first['gap']:+.3f} | "
            + " | ".join(vals)
            + f" | {int(part['n'].min())} |"
        )
    lines += [
        "",
        "## PGR over tasks (seed spread: std over seeds of the within-seed median / mean)",
        "",
        "| supervisor | student | loss | method | tasks | median PGR | mean PGR | seeds | left apart (gap too small) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in agg.sort_values(["method", "student_params", "loss"]).iterrows():
        lines.append(
            f"| {r['supervisor']} | {r['student']} | {r['loss']} | {r['method']} | {r['tasks']} | "
            f"{_fmt(r['median'], r['median_seed_std'])} | {_fmt(r['mean'], r['mean_seed_std'])} | "
            f"{r['seeds']} | {r['apart'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def plot_figure3(cells: pd.DataFrame, out: Path, metric: str = "acc") -> Path:
    """Figure 3: per task, test accuracy vs student size: the supervisor alone (dotted), the student on weak
    labels for each loss (seed std as error bars), and the strong ceiling (dashed)."""
    plt = _plt()
    tasks = sorted(cells["task"].unique())
    losses = sorted(cells["loss"].unique())
    colors = dict(zip(losses, plt.cm.tab10.colors, strict=False))
    ncol = min(4, len(tasks))
    nrow = -(-len(tasks) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow + 0.4), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        t = cells[cells["task"] == task].sort_values("student_params")
        ceil = t.groupby("student_params")["ceiling"].mean()
        ax.plot(ceil.index, ceil.values, "k--", marker="o", label="strong ceiling")
        sups = sorted(t["supervisor"].unique())
        for k, sup in enumerate(sups):
            name = f" ({sup})" if len(sups) > 1 else ""
            weak = t[t["supervisor"] == sup]["weak"].mean()
            ax.axhline(
                weak, color=["grey", "tab:brown", "tab:purple"][k % 3], ls=":", label=f"weak supervisor{name}"
            )
            for loss in losses:
                s = t[(t["loss"] == loss) & (t["supervisor"] == sup)]
                ax.errorbar(s["student_params"], s["w2s"], yerr=s["w2s_std"].fillna(0), color=colors[loss],
                            ls=["-", "-.", ":"][k % 3], marker="o", capsize=2, label=f"w2s {loss}{name}")  # fmt: skip
        _size_axis(ax, t["student_params"])
        apart = (
            "" if t["included"].all() else " (gap too small)" if not t["included"].any() else " (gap small)"
        )
        ax.set_title(task + apart, fontsize=9)
        ax.set_ylabel(f"test {metric}", fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "figure3.png")
    plt.close(fig)
    return path


def _pgr_limits(cells: pd.DataFrame) -> tuple[float, float]:
    """The PGR axis spans the cells that count (gap large enough), and 0: the left-apart ones are clipped."""
    inc = cells.loc[cells["included"], "pgr"].dropna()
    lo, hi = (inc.min(), inc.max()) if len(inc) else (-1.0, 1.0)
    pad = 0.1 * max(hi - lo, 0.5)
    return min(lo, 0.0) - pad, max(hi, 0.0) + pad


def plot_task_pgr(cells: pd.DataFrame, agg: pd.DataFrame, out: Path) -> Path:
    """PGR per task for each loss (bars, seed std), one panel per supervisor -> student; the median over tasks
    as a line per loss; tasks whose gap is too small are drawn hatched at the right, outside the median."""
    plt = _plt()
    pairs = sorted({(r.student_params, r.supervisor, r.student) for r in cells.itertuples()})
    losses = sorted(cells["loss"].unique())
    colors = dict(zip(losses, plt.cm.tab10.colors, strict=False))
    ntask = cells["task"].nunique()
    fig, axes = plt.subplots(len(pairs), 1, figsize=(max(6.0, 0.8 * ntask + 2), 3.2 * len(pairs)),
                             squeeze=False)  # fmt: skip
    width = 0.8 / len(losses)
    for ax, (_, sup, stu) in zip(axes.flat, pairs, strict=True):
        part = cells[(cells["student"] == stu) & (cells["supervisor"] == sup)]
        here = agg[(agg["student"] == stu) & (agg["supervisor"] == sup) & agg["method"].isin(part["method"])]
        inc = part.groupby("task")["included"].all()
        tasks = sorted(inc.index, key=lambda t: (not inc[t], t))
        for k, loss in enumerate(losses):
            s = part[part["loss"] == loss].set_index("task").reindex(tasks)
            xs = np.arange(len(tasks)) + (k - (len(losses) - 1) / 2) * width
            bars = ax.bar(xs, s["pgr"], width, yerr=s["pgr_seed_std"], capsize=2,
                          color=colors[loss], label=loss)  # fmt: skip
            for bar, task in zip(bars, tasks, strict=True):
                if not inc[task]:
                    bar.set_alpha(0.35)
                    bar.set_hatch("//")
            med = here[here["loss"] == loss]["median"]
            if len(med) and not np.isnan(med.iloc[0]):
                ax.axhline(med.iloc[0], color=colors[loss], ls="--", lw=1, label=f"median {loss}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylim(*_pgr_limits(part))
        ax.set_xticks(np.arange(len(tasks)))
        ax.set_xticklabels(tasks, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("PGR")
        ax.set_title(f"{sup} -> {stu} (hatched: gap too small, not in the median; clipped)", fontsize=9)
        ax.legend(fontsize=7, ncol=2 * len(losses))
    fig.tight_layout()
    path = _save(fig, out / "pgr_by_task.png")
    plt.close(fig)
    return path


def plot_pgr_vs_gap(cells: pd.DataFrame, out: Path, min_gap: float = MIN_GAP) -> Path:
    """PGR against the room to recover (ceiling - weak), one point per (task, supervisor, student, loss). Cells
    below `min_gap` are hollow and clipped to the plot's edge: a tiny gap divides noise into PGRs of +-5 that
    would otherwise set the scale."""
    plt = _plt()
    losses = sorted(cells["loss"].unique())
    colors = dict(zip(losses, plt.cm.tab10.colors, strict=False))
    markers = dict(zip(sorted(cells["student"].unique()), "osD^v", strict=False))
    lo, hi = _pgr_limits(cells)
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for (loss, stu), s in cells.groupby(["loss", "student"]):
        for kept, part in s.groupby("included"):
            face = colors[loss] if kept else "none"
            label = f"{loss}, {stu}" if kept else None
            ax.scatter(part["gap"], part["pgr"].clip(lo, hi), marker=markers[stu], s=22, edgecolors=colors[loss],
                       facecolors=face, label=label)  # fmt: skip
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(min_gap, color="grey", lw=0.5, ls=":")
    ax.set_ylim(lo, hi)
    ax.set_xlabel("ceiling - weak (test accuracy)")
    ax.set_ylabel("PGR")
    ax.set_title(f"hollow: gap < {min_gap}, left apart (PGR clipped to the frame)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "pgr_vs_gap.png")
    plt.close(fig)
    return path


def write_report(
    root: str | Path, out: str | Path | None = None, metric: str = "acc", min_gap: float = MIN_GAP
) -> dict[str, Any]:
    """Everything above for one sweep folder; returns the paths written and the missing runs."""
    root = Path(root)
    out = Path(out) if out else root / "report"
    df, curves, missing = collect(root)
    if df.empty:
        raise SystemExit(f"no results.json under {root}; {len(missing)} job folders without results")
    summary = summarize(df, metric)
    med = medians(summary, metric)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", df.to_csv(index=False))
    atomic_write_text(out / "table.csv", summary.to_csv(index=False))
    atomic_write_text(out / "medians.csv", med.to_csv(index=False))
    atomic_write_text(out / "report.md", markdown(summary, med, missing, metric))
    pngs = [*plot_accuracy(summary, out, metric), plot_pgr(summary, out, metric)]
    curve_png = plot_curves(curves, out)
    if curve_png:
        pngs.append(curve_png)
    cells = agg = None
    fig3: list[Path] = []
    if all(f"{r}_{metric}" in df for r in ROLES):  # Figure 3 over tasks needs all three stages
        cells = task_pgr(df, metric, min_gap)
        agg = pgr_over_tasks(df, cells, metric)
        atomic_write_text(out / "task_pgr.csv", cells.to_csv(index=False))
        atomic_write_text(out / "pgr_over_tasks.csv", agg.to_csv(index=False))
        atomic_write_text(out / "figure3.md", figure3_markdown(cells, agg, min_gap, metric))
        naive = cells[cells["method"] == "naive"]  # the paper's Figure 3: plain finetuning, a line per loss
        if len(naive):
            fig3 = [
                plot_figure3(naive, out, metric),
                plot_task_pgr(naive, agg, out),
                plot_pgr_vs_gap(naive, out, min_gap),
            ]
    return {"out": out, "runs": len(df), "missing": missing, "pngs": pngs, "summary": summary, "medians": med,
            "task_pgr": cells, "pgr_over_tasks": agg, "figure3_pngs": fig3}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m w2s.report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="a sweep folder, e.g. multirun/2026-11-24/10-00-00")
    ap.add_argument("--out", default=None, help="output folder (default: <sweep>/report)")
    ap.add_argument("--metric", default="acc", choices=["acc", "auroc", "legal"])
    ap.add_argument(
        "--min-gap", type=float, default=MIN_GAP, help="ceiling - weak below this: no PGR (apart)"
    )
    args = ap.parse_args(argv)
    if not Path(args.sweep).is_dir():
        print(f"error: sweep folder {args.sweep!r} does not exist", file=sys.stderr)
        return 2
    rep = write_report(args.sweep, args.out, args.metric, args.min_gap)
    print((rep["out"] / "report.md").read_text())
    for m in rep["missing"]:
        print(f"MISSING: {m['job']} ({m['overrides']}): {m['reason']}", file=sys.stderr)
    print(f"wrote {rep['out']}: {rep['runs']} runs, {len(rep['missing'])} missing, plots: "
          + ", ".join(p.name for p in rep["pngs"]))  # fmt: skip
    if rep["figure3_pngs"]:
        print("Figure 3 over tasks: figure3.md, " + ", ".join(p.name for p in rep["figure3_pngs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
