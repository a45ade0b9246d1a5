"""The PGR dashboard as code: `python -m w2s.dashboard --project P [--entity E] [--url URL]`.

Builds a W&B report (with `wandb-workspaces`) over the runs of a project, selected by the tags every run carries
(`task=`, `loss=`, `supervisor=`, `student=`; conf/logger/wandb.yaml): an overview (PGR by student size, by
loss), then one panel grid per task with one run set per loss: PGR by student size, weak / w2s / ceiling test
accuracy and student-supervisor agreement per student, and the training curves of the supervisor, the student
and the ceiling (`<stage>/val/acc`, `<stage>/test_gt/acc` against `<stage>/step`, w2s.tracking). Seeds are
grouped (mean and standard deviation). `--url` updates an existing report in place; otherwise one is created.
Tasks and losses come from the project's run tags unless given (`--tasks`, `--losses`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

import wandb_workspaces.expr as we
import wandb_workspaces.reports.v2 as wr

TITLE = "Weak-to-strong: PGR"
#: Group seeds of one (supervisor, student) cell together; the grouped line or bar is their mean.
GROUP = ["config.supervisor.name", "config.student.name"]
SIZE = wr.Config("student.params")


def _stat(**kw: Any) -> dict[str, Any]:
    return {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev", **kw}


def task_panels() -> list[Any]:
    """The panels of one task: PGR and accuracies by student, agreement, and the stages' training curves."""
    curves = [
        wr.LinePlot(
            title=f"{stage}: selection set (val) and GT test accuracy over training",
            x=f"{stage}/step",
            y=[f"{stage}/val/acc", f"{stage}/test_gt/acc"],
            **_stat(),
        )
        for stage in ("weak", "w2s", "ceiling")
    ]
    return [
        wr.ScatterPlot(title="PGR by student size", x=SIZE, y=wr.SummaryMetric("test/pgr"), log_x=True),
        wr.BarPlot(
            title="test accuracy: weak, weak-to-strong, strong ceiling",
            metrics=[wr.SummaryMetric(f"test/{role}_acc") for role in ("weak", "w2s", "ceiling")],
            **_stat(),
        ),
        wr.BarPlot(
            title="student-supervisor agreement on test (all / supervisor right / supervisor wrong)",
            metrics=[
                wr.SummaryMetric(f"results/agreement/w2s/{part}")
                for part in ("all", "supervisor_right", "supervisor_wrong")
            ],
            **_stat(),
        ),
        *curves,
    ]


def _runset(project: str, entity: str, name: str, tags: Iterable[str]) -> wr.Runset:
    """Runs carrying every tag in `tags` (each `Tags().isin([t])` must hold), seeds grouped."""
    return wr.Runset(
        entity=entity,
        project=project,
        name=name,
        filters=[we.Tags().isin([t]) for t in tags],
        groupby=list(GROUP),
    )


def build_report(project: str, entity: str, tasks: list[str], losses: list[str]) -> wr.Report:
    """The report's spec, built without network (`save()` sends it)."""
    if not tasks or not losses:
        raise ValueError(f"no runs to chart: tasks={tasks}, losses={losses} (runs carry task=/loss= tags)")
    overview = wr.PanelGrid(
        runsets=[_runset(project, entity, f"loss={loss}", [f"loss={loss}"]) for loss in losses],
        panels=[
            wr.ScatterPlot(
                title="PGR by student size, every task", x=SIZE, y=wr.SummaryMetric("test/pgr"), log_x=True
            ),  # fmt: skip
            wr.BarPlot(
                title="PGR by supervisor -> student", metrics=[wr.SummaryMetric("test/pgr")], **_stat()
            ),
        ],
    )
    blocks: list[Any] = [
        wr.P(
            "PGR = (w2s - weak) / (ceiling - weak) on GT test accuracy (Burns et al. 2023). One run set per "
            "loss; seeds grouped by supervisor and student (mean, std). Built by `python -m w2s.dashboard`."
        ),
        wr.H2("All tasks"),
        overview,
    ]
    for task in tasks:
        runsets = [
            _runset(project, entity, f"{task} loss={loss}", [f"task={task}", f"loss={loss}"])
            for loss in losses
        ]
        blocks += [wr.H2(task), wr.PanelGrid(runsets=runsets, panels=task_panels())]
    return wr.Report(project=project, entity=entity, title=TITLE, description=f"tasks: {', '.join(tasks)}",
                     blocks=blocks, width="fluid")  # fmt: skip


def tag_values(tag_lists: Iterable[Iterable[str]], key: str) -> list[str]:
    """The values of `key=...` tags over runs, sorted: `tag_values(runs' tags, "task")`."""
    return sorted({t.split("=", 1)[1] for tags in tag_lists for t in tags if t.startswith(f"{key}=")})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m w2s.dashboard", description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True, help="the W&B project the runs were synced to")
    ap.add_argument("--entity", default=None, help="user or team (default: the API key's default entity)")
    ap.add_argument("--url", default=None, help="an existing report to update in place (else a new one)")
    ap.add_argument("--tasks", nargs="*", default=None, help="default: every task= tag in the project")
    ap.add_argument("--losses", nargs="*", default=None, help="default: every loss= tag in the project")
    args = ap.parse_args(argv)
    import wandb

    api = wandb.Api()
    entity = args.entity or api.default_entity
    tasks, losses = args.tasks, args.losses
    if tasks is None or losses is None:
        tags = [run.tags for run in api.runs(f"{entity}/{args.project}")]
        tasks = tasks if tasks is not None else tag_values(tags, "task")
        losses = losses if losses is not None else tag_values(tags, "loss")
    try:
        report = build_report(args.project, entity, tasks, losses)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.url:  # update: keep the report's id and URL, replace its content
        old = wr.Report.from_url(args.url)
        old.title, old.description, old.blocks, old.width = (
            report.title,
            report.description,
            report.blocks,
            "fluid",
        )
        report = old
    report.save()
    print(f"{'updated' if args.url else 'created'} {report.url}: {len(tasks)} tasks x {len(losses)} losses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
