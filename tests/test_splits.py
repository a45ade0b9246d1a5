"""Split sizes as counts or fractions of the task's rows: the default is unchanged, small files fit."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from w2s.artifacts import key_hash
from w2s.config import ConfigError, validate
from w2s.pipeline import run
from w2s.splits import make_splits, split_sizes
from w2s.tasks import TaskError, load_task

FRACTION = ["split.weak=0.1", "split.transfer=0.4", "split.val=0.05", "split.test=0.3"]


def _csv(tmp_path, n):
    rows = ["text,label"] + [f"sample number {i} {'good' if i % 2 else 'bad'},{i % 2}" for i in range(n)]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(rows))
    return path


def test_embedded_default_keeps_its_counts(cfg_factory):
    cfg = cfg_factory()
    assert split_sizes(cfg.split) == {"weak": 1000, "transfer": 4000, "val": 500, "test": 3000}
    assert split_sizes(cfg.split, 1, n_rows=10_000)["transfer1"] == 4000  # counts ignore the row count


def test_a_fraction_and_its_count_resolve_to_one_key():
    frac = OmegaConf.create({"weak": 0.1, "transfer": 0.4, "val": 0.05, "test": 0.3})
    count = OmegaConf.create({"weak": 1000, "transfer": 4000, "val": 500, "test": 3000})
    sizes = split_sizes(frac, 1, n_rows=10_000)
    assert sizes == {**split_sizes(count, 1), "transfer1": 4000}
    assert key_hash({"sizes": sizes}) == key_hash({"sizes": split_sizes(count, 1)})
    assert split_sizes(frac, n_rows=3_001)["val"] == 150  # rounded down
    with pytest.raises(TaskError, match=r"split.val=0.05 gives 0 of 10"):
        split_sizes(frac, n_rows=10)


def test_a_custom_file_of_3000_rows_splits_with_the_custom_default(cfg_factory, tmp_path):
    cfg = cfg_factory("task=custom", f"task.path={_csv(tmp_path, 3000)}")
    validate(cfg)
    ds, _ = load_task(cfg.task, seed=0)
    with pytest.raises(TaskError, match="only 3000; give fractions"):  # what the old counts did
        make_splits(ds, {"weak": 1000, "transfer": 4000, "val": 500, "test": 3000}, 0)
    splits = make_splits(ds, split_sizes(cfg.split), 0)  # fractions resolved against the rows
    assert {k: len(v) for k, v in splits.items()} == {"weak": 300, "transfer": 1200, "val": 150, "test": 900}


def test_results_record_resolved_counts(cfg_factory, tmp_path):
    fractions = ["split.weak=0.25", "split.transfer=0.25", "split.val=0.1", "split.test=0.25"]
    res = run(cfg_factory("experiment=tiny", "task=custom", f"task.path={_csv(tmp_path, 3000)}", *fractions))
    # experiment=tiny keeps the file's first 400 rows
    assert res["splits"] == {"weak": 100, "transfer": 100, "val": 40, "test": 100}
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["splits"] == res["splits"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["split.weak=1.5"], r"split.weak=1.5 must be a count \(an integer >= 1\) or a fraction in \(0, 1\)"),
        (["split.val=0"], "split.val=0 must be"),
        (["split.test=-0.2"], "split.test=-0.2 must be"),
        (["split.transfer=0.7", "split.test=0.4"], "split fractions sum to 1.1 > 1"),
        (
            [*FRACTION, "method=bootstrap", "chain1=tiny-bert"],
            "sum to 1.25 > 1 .transfer counted 2 times: 1 bootstrap steps",
        ),
    ],
)
def test_bad_split_values_are_one_line(cfg_factory, overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(cfg_factory("experiment=tiny", *overrides))
