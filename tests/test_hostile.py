"""The hostile battery (issue 16, item 7): bad input through `train.py` in a subprocess, as a user meets it.

Each case must exit 2 with exactly one `error: ...` line on stderr naming the bad value, no traceback, and
leave nothing partial in the artifact root (no temp dir, every artifact verified by its manifest).
`python -m pytest -q -m slow tests/test_hostile.py` runs it; docs/RESULTS.md has its figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from w2s import artifacts

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=tiny", "logger=none"]


def _rows(n: int = 400) -> str:
    return "".join(f"{'good' if i % 2 else 'bad'} text {i},{i % 2}\n" for i in range(n))


def _custom(name: str, write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A custom-task case: `write(path)` makes the bad file; the override points task.path at it."""

    def setup(tmp: Path) -> list[str]:
        path = tmp / name
        write(path)
        return ["task=custom", f"task.path={path}"]

    return setup


def _const(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: list(args)


#: case id -> (setup returning the overrides, a fragment the error line must contain)
CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "empty_file": (_custom("e.csv", lambda p: p.write_bytes(b"")), "is empty"),
    "latin1_bytes": (
        _custom(
            "l.csv", lambda p: p.write_bytes(b"text,label\n" + "caf\xe9 cr\xe8me,1\n".encode("latin-1") * 400)
        ),
        "not UTF-8",
    ),
    "csv_named_jsonl": (_custom("c.jsonl", lambda p: p.write_text("text,label\n" + _rows())), "as .jsonl"),
    "text_named_parquet": (_custom("t.parquet", lambda p: p.write_text("just some text\n")), "as .parquet"),
    "ragged_csv": (
        _custom(
            "r.csv", lambda p: p.write_text("text,label\n" + _rows(10) + "a,1,extra,fields\n" + _rows(10))
        ),
        "Expected 2 fields",
    ),
    "directory": (_custom("adir", lambda p: p.mkdir()), "is a directory"),
    "header_only": (_custom("h.csv", lambda p: p.write_text("text,label\n")), "no data rows"),
    "one_line_10mb": (_custom("big.csv", lambda p: p.write_text("x" * 10_000_000)), "big.csv"),
    "label_10mb_with_spaces": (
        _custom("big2.csv", lambda p: p.write_text("text,label\nhello," + "word " * 2_000_000 + "\n")),
        "labels must be binary",
    ),
    "missing_file": (_const("task=custom", "task.path=/nonexistent/data.csv"), "/nonexistent/data.csv"),
    "precision_bogus": (_const("trainer.precision=bogus"), "trainer.precision='bogus'"),
    "epochs_negative": (_const("+supervisor.epochs=-1"), "supervisor.epochs=-1"),
    "epochs_zero": (_const("+supervisor.epochs=0"), "supervisor.epochs=0"),
    "student_epochs_zero": (_const("+student.epochs=0"), "student.epochs=0"),
    "early_stop_metric_bogus": (_const("early_stop.metric=bogus"), "early_stop.metric='bogus'"),
    "hub_model_unreachable": (
        _const(
            "~supervisor.source",
            "+supervisor.source={_target_: w2s.models.hub, repo_id: nobody/no-such-model}",
        ),
        "HF_HUB_OFFLINE",
    ),
    "source_name_dotdot": (
        _const("supervisor.source.name=../../escape"),
        "supervisor.source.name='../../escape'",
    ),
    "source_name_slash": (_const("student.source.name=a/b"), "student.source.name='a/b'"),
}


def _nothing_partial(root: Path) -> None:
    if not root.exists():
        return
    assert not list(root.glob("*/.tmp-*")), "a temp dir was left behind"
    for folder in root.glob("*/*"):
        if folder.is_dir():
            assert artifacts.verify(folder) is None, folder


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_and_exit_2(case: str, tmp_path: Path) -> None:
    setup, fragment = CASES[case]
    root = tmp_path / "art"
    args = [*TINY, *setup(tmp_path), f"paths.artifact_root={root}", f"hydra.run.dir={tmp_path / 'out'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr[-3000:]
    assert len(errors[0]) < 1000, f"{len(errors[0])} chars"
    assert "Traceback" not in proc.stderr + proc.stdout
    _nothing_partial(root)


@pytest.mark.slow
def test_a_bad_cell_fails_alone_in_a_local_sweep(tmp_path: Path) -> None:
    """One job of a joblib multirun with an impossible split: it fails with its error line, the others still
    write results, and the sweep exits non-zero (a SystemExit in a worker used to end every job)."""
    sweep = tmp_path / "sweep"
    args = [*TINY, "hydra/launcher=local", "split.weak=100,900000,101", f"hydra.sweep.dir={sweep}",
            f"paths.artifact_root={tmp_path / 'art'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: splits ask for 900260 examples" in proc.stderr
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == ["0", "2"]
    _nothing_partial(tmp_path / "art")
