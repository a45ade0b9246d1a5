"""The report's figures, in the style of the paper: Figure 3 (test accuracy vs student size, hue by
supervisor, ceiling dashed; and per task, a line per loss), Figure 5 (PGR vs student size), Figure 7 (GT test
accuracy over training), PGR per task and PGR against the gap. Each is a pure function of the tables that
`w2s.report` builds, written as a PNG through a temp file and a rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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
                ax.errorbar(s["student_params"], s[f"w2s_{metric}_mean"], yerr=_bars(s, f"w2s_{metric}"),
                            color=color, marker="o", capsize=2, label=f"weak: {sup}")  # fmt: skip
                ax.axhline(s[f"weak_{metric}_mean"].mean(), color=color, lw=0.8, ls=":")
            _size_axis(ax, t["student_params"])
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("student parameters")
            ax.set_ylabel(f"test {metric}")
        for ax in list(axes.flat)[len(tasks) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        bars = "95% test-set interval" if f"w2s_{metric}_lo" in part else "seed std"
        fig.suptitle(f"test {metric}, loss={loss} (dotted: supervisor alone; bars: {bars})", fontsize=10)
        fig.tight_layout()
        paths.append(_save(fig, out / f"accuracy_{loss}.png"))
        plt.close(fig)
    return paths


def _bars(cells: pd.DataFrame, col: str) -> Any:
    """Error bars of a column's seed means: the 95% test-set interval (`<col>_lo` / `_hi`, the runs' own
    averaged over seeds), or, for results written without intervals, the seed std."""
    if f"{col}_lo" not in cells:
        return cells[f"{col}_std"].fillna(0)
    mean = cells[f"{col}_mean"]
    return np.nan_to_num(np.vstack([mean - cells[f"{col}_lo"], cells[f"{col}_hi"] - mean])).clip(min=0)


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


def plot_pgr_vs_gap(cells: pd.DataFrame, out: Path, min_gap: float) -> Path:
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
