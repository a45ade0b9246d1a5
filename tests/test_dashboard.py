"""The dashboard's spec is built offline and charts exactly the names w2s.tracking writes."""

from __future__ import annotations

import pytest
import wandb_workspaces.reports.v2 as wr

from w2s import tracking
from w2s.dashboard import build_report, tag_values

RESULTS = {
    "weak": {"acc": 0.6}, "w2s": {"acc": 0.7}, "ceiling": {"acc": 0.8}, "pgr": {"acc": 0.5},
    "agreement": {"w2s": {"all": 0.9, "supervisor_right": 0.95, "supervisor_wrong": 0.3}},
}  # fmt: skip
STAGE_POINT = {"step": 3, "val/acc": 0.7, "test_gt/acc": 0.65}


def _names(panel) -> set[str]:
    """Every metric a panel charts, in the form the run holds it (summary key or history key)."""
    config = panel._to_model().model_dump(by_alias=True, exclude_none=True)["config"]  # no network
    names = set(config.get("metrics", []))
    names |= {config[k] for k in ("xAxis", "yAxis") if k in config}
    return {n.removeprefix("summary_metrics.").removeprefix("summary:") for n in names}


def test_report_spec_has_an_overview_and_a_grid_per_task_with_a_runset_per_loss():
    report = build_report("w2s", "lab", ["sciq", "boolq"], ["xent", "conf"])
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    heads = [b.text for b in report.blocks if isinstance(b, wr.H2)]
    assert heads == ["All tasks", "sciq", "boolq"] and len(grids) == 3
    assert [rs.name for rs in grids[0].runsets] == ["loss=xent", "loss=conf"]
    sciq = grids[1]
    assert [rs.name for rs in sciq.runsets] == ["sciq loss=xent", "sciq loss=conf"]
    assert "'task=sciq'" in sciq.runsets[0].filters and "'loss=xent'" in sciq.runsets[0].filters
    assert all(rs.project == "w2s" and rs.entity == "lab" for g in grids for rs in g.runsets)
    assert sciq.runsets[0].groupby == ["config.supervisor.name", "config.student.name"]  # seeds pooled
    pgr = sciq.panels[0]
    assert isinstance(pgr, wr.ScatterPlot) and pgr.log_x and _names(pgr) == {
        "config:student.value.params", "test/pgr"}  # fmt: skip


def test_every_charted_name_is_one_the_runs_log():
    """A panel on a name no run logs is an empty chart: check against what tracking sends."""
    logged = {*tracking.flat_metrics(RESULTS), *tracking.flat_results(RESULTS)}
    logged |= {f"{stage}/{k}" for stage in ("weak", "w2s", "ceiling") for k in STAGE_POINT}
    report = build_report("w2s", "lab", ["sciq"], ["xent"])
    charted = set().union(
        *(_names(p) for b in report.blocks if isinstance(b, wr.PanelGrid) for p in b.panels)
    )
    charted.discard("config:student.value.params")  # the config every run holds
    assert {
        "test/pgr",
        "test/w2s_acc",
        "results/agreement/w2s/supervisor_wrong",
        "w2s/test_gt/acc",
    } <= charted
    assert charted <= logged, charted - logged


def test_tasks_and_losses_come_from_the_tags():
    tags = [["task=sciq", "loss=xent", "seed=0"], ["task=boolq", "loss=conf"], ["task=sciq", "loss=xent"]]
    assert tag_values(tags, "task") == ["boolq", "sciq"] and tag_values(tags, "loss") == ["conf", "xent"]
    with pytest.raises(ValueError, match="no runs to chart"):
        build_report("w2s", "lab", [], ["xent"])
