"""From a sweep folder to the paper's tables and figures: `python -m w2s.report multirun/<date>/<time>`.

Reads every `results.json` below the folder (never the sweep's return values, which a crashed or requeued job
would not have), lists the jobs that have a Hydra config but no results as failed or missing, and writes a
Markdown and a CSV table (mean, std and n over seeds; the median across tasks) and PNG plots in the style of the
paper's Figure 3 (test accuracy vs student size, hue by supervisor, ceiling dashed), Figure 5 (PGR vs student
size) and Figure 7 (GT test accuracy over training).
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


def write_report(root: str | Path, out: str | Path | None = None, metric: str = "acc") -> dict[str, Any]:
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
    return {"out": out, "runs": len(df), "missing": missing, "pngs": pngs, "summary": summary, "medians": med}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m w2s.report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="a sweep folder, e.g. multirun/2026-11-24/10-00-00")
    ap.add_argument("--out", default=None, help="output folder (default: <sweep>/report)")
    ap.add_argument("--metric", default="acc", choices=["acc", "auroc", "legal"])
    args = ap.parse_args(argv)
    if not Path(args.sweep).is_dir():
        print(f"error: sweep folder {args.sweep!r} does not exist", file=sys.stderr)
        return 2
    rep = write_report(args.sweep, args.out, args.metric)
    print((rep["out"] / "report.md").read_text())
    for m in rep["missing"]:
        print(f"MISSING: {m['job']} ({m['overrides']}): {m['reason']}", file=sys.stderr)
    print(f"wrote {rep['out']}: {rep['runs']} runs, {len(rep['missing'])} missing, plots: "
          + ", ".join(p.name for p in rep["pngs"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
