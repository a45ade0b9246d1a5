"""From a sweep folder to the paper's tables and figures: `python -m w2s.report multirun/<date>/<time>`.

Reads every `results.json` below the folder (never the sweep's return values, which a crashed or requeued job
would not have), lists the jobs that have a Hydra config but no results as failed or missing, and writes a
Markdown and a CSV table (mean, std and n over seeds; the median across tasks) and the plots of `w2s.plots`.
Over many tasks it adds the paper's Figure 3 per task, PGR per task for each loss, and the median and mean PGR
over tasks with their seed spread (`figure3.md`); a task whose gap ceiling - weak is below `--min-gap` is
listed apart, never averaged in.

PGR has one rule, `w2s.metrics.pgr`, the function that wrote results.json: null when ceiling - weak is below
the run's own `pgr_eps` (its results.json config; `--pgr-eps` overrides), so a seed whose ceiling is below its
weak model is null here as it is there. A cell of seed means takes the largest `pgr_eps` of its runs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from w2s.artifacts import atomic_write_text
from w2s.metrics import pgr, pgr_table
from w2s.plots import plot_accuracy, plot_curves, plot_figure3, plot_pgr, plot_pgr_vs_gap, plot_task_pgr

KEYS = ["task", "supervisor", "student", "loss", "method"]
ROLES = ["weak", "w2s", "ceiling"]
#: The threshold of a results.json that recorded no `pgr_eps` (written before it was a setting).
DEFAULT_PGR_EPS = inspect.signature(pgr).parameters["eps"].default


def collect(
    root: str | Path, pgr_eps: float | None = None
) -> tuple[pd.DataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per finished run, the runs' curves, and the jobs without results (with why, when known). Each
    run's PGR is `metrics.pgr_table` over its weak, w2s and ceiling metrics at its own `pgr_eps` (or the
    caller's), exactly as the run computed the `pgr` of its results.json."""
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
            pgr_eps=pgr_eps if pgr_eps is not None else cfg.get("pgr_eps", DEFAULT_PGR_EPS),
            path=str(path.parent),
        )
        intervals = res.get("ci") or {}  # each role's 95% test-set interval (results written since they were)
        for role in [*ROLES, "direct", "noise"]:
            for metric, value in (res.get(role) or {}).items():
                row[f"{role}_{metric}"] = value
            for metric, (lo, hi) in (intervals.get(role) or {}).items():
                row[f"{role}_{metric}_lo"], row[f"{role}_{metric}_hi"] = lo, hi
        weak, w2s, ceiling = (res.get(role) or {} for role in ROLES)
        for metric, value in pgr_table(weak, w2s, ceiling, row["pgr_eps"]).items():
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
    """Mean, std (over seeds, ddof=1) and n per (task, supervisor, student, loss, method), and each role's 95%
    test-set interval (`<role>_<metric>_lo` / `_hi`: the runs' own, averaged over seeds) where runs have one."""
    roles = ("weak", "w2s", "ceiling", "pgr", "direct")  # direct: the no-chain student of a bootstrap run
    cols = [f"{r}_{metric}" for r in roles if f"{r}_{metric}" in df]
    g = df.groupby(KEYS, dropna=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{stat}" for c, stat in out.columns]
    for bound in [f"{c}_{b}" for c in cols for b in ("lo", "hi") if f"{c}_{b}" in df]:
        out[bound] = g[bound].mean()
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


def _fmt(mean: float, std: float, lo: float | None = None, hi: float | None = None) -> str:
    """`mean ± std` over seeds, and `[lo, hi]`, the 95% test-set interval, when given."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "null"
    out = f"{mean:.3f}" if std is None or np.isnan(std) else f"{mean:.3f} ± {std:.3f}"
    return out if lo is None or np.isnan(lo) else f"{out} [{lo:.3f}, {hi:.3f}]"


def markdown(summary: pd.DataFrame, med: pd.DataFrame, missing: list[dict], metric: str = "acc") -> str:
    lines = [
        f"# Sweep report ({metric})",
        "",
        "Cells: mean ± std over seeds [the 95% test-set interval (results.json `ci`), averaged over seeds].",
        "",
        "| " + " | ".join(KEYS) + " | weak | w2s | ceiling | PGR | direct (no chain) | n |",
    ]
    lines.append("|" + "---|" * (len(KEYS) + 6))
    for _, r in summary.iterrows():
        cells = [str(r[k]) for k in KEYS]
        cells += [
            _fmt(*(r.get(f"{x}_{metric}_{s}") for s in ("mean", "std", "lo", "hi")))
            for x in ("weak", "w2s", "ceiling", "pgr")
        ]
        n_pgr = r.get(f"pgr_{metric}_n")
        if n_pgr is not None and 0 < n_pgr < r["n"]:  # a mean of 1 value must not read as a mean of 2
            cells[-1] += f" (n={int(n_pgr)}; {int(r['n'] - n_pgr)} null)"
        direct = r.get(f"direct_{metric}_mean")
        has_direct = direct is not None and not np.isnan(direct)
        cells.append(
            _fmt(*(r.get(f"direct_{metric}_{s}") for s in ("mean", "std", "lo", "hi"))) if has_direct else "-"
        )
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


# ------------------------------------------------------------------------------------- Figure 3 over tasks
MIN_GAP = 0.05  # ceiling - weak below this (in the metric) is within a few test-set standard errors: apart


def task_pgr(df: pd.DataFrame, metric: str = "acc", min_gap: float = MIN_GAP) -> pd.DataFrame:
    """One row per (task, supervisor, student, loss, method): seed means of weak, w2s and ceiling, the gap
    ceiling - weak, PGR of those means, the spread of the seeds' own PGRs, and whether the gap is large enough
    (`included`) for PGR to mean anything; a cell below `min_gap` is listed apart, never averaged in."""
    d = df.assign(seed_pgr=df[f"pgr_{metric}"].astype(float))
    g = d.groupby(KEYS, dropna=False)
    out = g[[f"{r}_{metric}" for r in ROLES]].mean()
    out.columns = ROLES
    out["w2s_std"] = g[f"w2s_{metric}"].std()
    out["gap"] = out["ceiling"] - out["weak"]
    cell = zip(out["weak"], out["w2s"], out["ceiling"], g["pgr_eps"].max(), strict=True)
    out["pgr"] = [np.nan if (v := pgr(*args)) is None else v for args in cell]
    out["pgr_seed_std"] = g["seed_pgr"].std()
    out["n"] = g.size()
    out["student_params"] = g["student_params"].first()
    out["included"] = out["gap"] >= min_gap
    return out.reset_index()


def pgr_over_tasks(df: pd.DataFrame, cells: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Median and mean PGR over the included tasks per (supervisor, student, loss, method), with their seed
    spread (the std over seeds of the median/mean taken within one seed), and the tasks left apart."""
    d = df.assign(seed_pgr=df[f"pgr_{metric}"].astype(float))
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


def write_report(
    root: str | Path,
    out: str | Path | None = None,
    metric: str = "acc",
    min_gap: float = MIN_GAP,
    pgr_eps: float | None = None,
) -> dict[str, Any]:
    """Everything above for one sweep folder; returns the paths written and the missing runs."""
    root = Path(root)
    out = Path(out) if out else root / "report"
    df, curves, missing = collect(root, pgr_eps)
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
    ap.add_argument(
        "--pgr-eps", type=float, default=None, help="PGR is null below this gap (default: each run's pgr_eps)"
    )
    args = ap.parse_args(argv)
    if not Path(args.sweep).is_dir():
        print(f"error: sweep folder {args.sweep!r} does not exist", file=sys.stderr)
        return 2
    rep = write_report(args.sweep, args.out, args.metric, args.min_gap, args.pgr_eps)
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
