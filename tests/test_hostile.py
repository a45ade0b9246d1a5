"""The hostile battery (issue 16, item 7): bad input through `train.py` in a subprocess, as a user meets it.

Each case must exit 2 with exactly one `error: ...` line on stderr naming the bad value, no traceback, and
leave nothing partial in the artifact root (no temp dir, every artifact verified by its manifest).
`python -m pytest -q -m slow tests/test_hostile.py` runs it; docs/RESULTS.md has its figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import OmegaConf

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
        "a classifier needs two classes",
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


# ---- issue 27: every bad value through one schema, Hydra's own errors reworded, limits on _target_ ----------

CHESS = ["task=chess", "supervisor=tiny-llama", "student=tiny-llama"]
#: overrides -> a fragment of the one-line ConfigError that `validate` raises (composed in-process: fast)
BAD_VALUES: dict[str, tuple[list[str], str]] = {
    "seed_huge": (["seed=99999999999999999999"], "seed=99999999999999999999 must be an integer in [0, 4294967295]"),
    "devices_0": (["trainer.devices=0"], "trainer.devices=0 is not a device count"),
    "devices_abc": (["trainer.devices=abc"], "trainer.devices='abc' is not a device count"),
    "accelerator_bogus": (["trainer.accelerator=bogus"], "trainer.accelerator='bogus'; choices"),
    "strategy_bogus": (["trainer.strategy=bogus"], "trainer.strategy='bogus'; choices"),
    "val_check_0": (["trainer.val_check_interval=0"], "trainer.val_check_interval=0 must be a fraction"),
    "val_check_5.0": (["trainer.val_check_interval=5.0"], "trainer.val_check_interval=5.0 must be"),
    "betas": (["optim.betas=[2,3]"], "optim.betas=[2, 3] must be a list of 2 values"),
    "trainer_bogus_arg": (["+trainer.bogus_arg=1"], "trainer.bogus_arg is not a known key"),
    "template_field": (["task.template='{nonexistent}'"], "names ['nonexistent']"),
    "template_syntax": (["task.template='{text'"], "is not a template"),
    "prompting_max_test": (["analysis.prompting.max_test=-1"], "analysis.prompting.max_test=-1 must be"),
    "prompting_batch": (["analysis.prompting.batch_size=0"], "analysis.prompting.batch_size=0 must be"),
    "limit_negative": (["task.loader.limit=-5"], "task.loader.limit=-5 must be an integer >= 1"),
    "limit_zero": (["task.loader.limit=0"], "task.loader.limit=0 must be"),
    "limit_abc": (["task.loader.limit=abc"], "task.loader.limit='abc' must be"),
    "noise_maybe": (["analysis.noise_control=maybe"], "analysis.noise_control='maybe' must be true or false"),
    "agreement_maybe": (["analysis.agreement=maybe"], "analysis.agreement='maybe' must be true or false"),
    "force_maybe": (["force=maybe"], "force='maybe' must be true or false"),
    "warmup_negative": (["scheduler.warmup_steps=-5"], "scheduler.warmup_steps=-5 must be an integer >= 0"),
    "max_tokens_0": (["features.max_tokens=0"], "features.max_tokens=0 must be"),
    "analysis_bogus": (["+analysis.bogus=true"], "analysis.bogus is not a known key"),
    "analysis_typo": (["+analysis.agreemnt=true"], "did you mean analysis.agreement?"),
    "timeout_zero": (["dist.timeout_min=0"], "dist.timeout_min=0 must be"),
    "lr_nan": (["student.lr=nan"], "student.lr=nan must be"),
    "loss_target": (["loss._target_=builtins.print"], "loss._target_='builtins.print' is not allowed"),
    "gt_loss_target": (["gt_loss._target_=os.system"], "gt_loss._target_='os.system' is not allowed"),
    "loader_target": (["task.loader._target_=subprocess.run"], "task.loader._target_='subprocess.run'"),
    "source_target": (["supervisor.source._target_=builtins.exec"], "supervisor.source._target_="),
    "chess_min_rating": ([*CHESS, "task.min_rating=high"], "task.min_rating='high' must be a number"),
    "chess_source": ([*CHESS, "task.source=bogus"], "task.source='bogus'; choices: ['checkmate_in_one'"),
    "chess_format": ([*CHESS, "task.input_format=bogus"], "task.input_format='bogus'; choices: ['moves', 'fen']"),
    "chain2_without_chain1": (["chain2=tiny-bert"], "have a gap"),
    "label_map_word": (["task=custom", "task.path=/etc/hostname", "task.loader.label_map={pos: high}"],
                       "label_map has pos: high"),
    "label_map_two": (["task=custom", "task.path=/etc/hostname", "task.loader.label_map={pos: 2, neg: 0}"],
                      "label_map has pos: 2"),
    "label_map_one_class": (["task=custom", "task.path=/etc/hostname", "task.loader.label_map={pos: 0, neg: 0}"],
                            "it uses [0]"),
}  # fmt: skip


def test_a_label_map_of_three_classes_is_valid(cfg_factory) -> None:
    from w2s.config import validate

    lm = "task.loader.label_map={neg: 0, neutral: 1, pos: 2, positive: 2}"
    validate(cfg_factory(*TINY, "task=custom", "task.path=/etc/hostname", lm))


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_is_one_config_error_naming_it(case: str, cfg_factory) -> None:
    from w2s.config import validate
    from w2s.errors import ConfigError

    overrides, fragment = BAD_VALUES[case]
    with pytest.raises(ConfigError) as e:
        validate(cfg_factory(*TINY, *overrides))
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_validation_is_one_pass_per_config(cfg_factory, monkeypatch) -> None:
    from w2s import config, schema

    calls = []
    monkeypatch.setattr(schema, "check", lambda cfg: calls.append(1))
    cfg = cfg_factory(*TINY)
    config.validate(cfg)
    config.validate(cfg)  # what pipeline.run does after train.py: found done
    assert calls == [1]
    cfg.seed = 3  # an edit since: checked again
    config.validate(cfg)
    assert calls == [1, 1]


def test_every_shipped_config_passes_the_schema(cfg_factory) -> None:
    """Each trainer, logger, loss, method, clean and task option composes and validates: the schema refuses no
    shipped file (tasks need their own data only later)."""
    from w2s import schema
    from w2s.config import choices

    for group in ("trainer", "logger", "loss", "method", "clean", "split"):
        for name in choices(group):
            cfg = cfg_factory(*TINY, f"{group}={name}")
            schema.check_targets(OmegaConf.to_container(cfg, resolve=False))
            schema.check_unknown_keys(cfg)
    for name in choices("task"):
        schema.check_targets(OmegaConf.to_container(cfg_factory(f"task={name}"), resolve=False))


@pytest.mark.parametrize(
    "target", ["torch.optim.AdamW", "torch.optim.lr_scheduler.CosineAnnealingLR", "pytorch_lightning.Trainer",
               "pytorch_lightning.callbacks.EarlyStopping", "pytorch_lightning.loggers.CSVLogger", "w2s.losses.XEnt"],
)  # fmt: skip
def test_allowed_targets_are_accepted(target: str) -> None:
    from w2s import schema

    schema.check_targets({"optim": {"_target_": target, "_partial_": True}})


@pytest.mark.parametrize(
    "target", ["builtins.print", "os.system", "pytorch_lightning.TrainerX", "torch.load", "w2sx.evil"]
)
def test_other_targets_are_refused(target: str) -> None:
    from w2s import schema
    from w2s.errors import ConfigError

    with pytest.raises(ConfigError, match=r"x\._target_=.*allowed prefixes: \['w2s\.'"):
        schema.check_targets({"x": {"_target_": target}})


# ---- the command line before Hydra: group options, parsing, folders ----------------------------------------

GROUP_CASES = {
    "loss=bogus": "loss=bogus unknown; choices: ['conf', 'entropy', 'product', 'window', 'xent']",
    "supervisor=": "supervisor= unknown; choices: ['alexnet', 'dino-resnet50'",
    "task=bogus": "task=bogus unknown; choices: ['amazon_polarity'",
    "method=bogus": "method=bogus unknown; choices: ['bootstrap', 'naive', 's2s']",
    "logger=bogus": "logger=bogus unknown; choices: ['csv', 'none', 'wandb']",
    "trainer=bogus": "trainer=bogus unknown; choices: ['ddp', 'ddp_cpu'",
    "chain1=bogus": "chain1=bogus unknown",
    "+chain2=tiny-bert": "without '+'",
    "loss=xent,bogus": "loss=bogus unknown",  # a sweep: every value is checked
}


@pytest.mark.parametrize("override", sorted(GROUP_CASES))
def test_hydra_errors_become_one_line(override: str) -> None:
    from w2s import overrides
    from w2s.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        overrides.precheck(["-m", *TINY, override] if "," in override else [*TINY, override])
    assert GROUP_CASES[override] in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_values_hydra_cannot_lex_are_passed_on_quoted(tmp_path: Path) -> None:
    from w2s import overrides

    path = tmp_path / "données é.csv"
    argv = overrides.precheck([*TINY, "task=custom", f"task.path={path}", "task.template={text"])
    assert argv[-2:] == [f"task.path='{path}'", "task.template='{text'"]
    assert overrides.precheck(["--help", "loss=bogus"]) == ["--help", "loss=bogus"]  # help is Hydra's


def test_an_unwritable_run_folder_is_one_line(tmp_path: Path) -> None:
    from w2s import overrides
    from w2s.errors import StorageError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match=r"hydra.run.dir=.*cannot be written"):
        overrides.precheck([*TINY, f"hydra.run.dir={blocker / 'out'}"])


def test_one_device_parser_for_every_caller() -> None:
    from w2s import dist, launch
    from w2s.errors import ConfigError

    assert [dist.device_count(d) for d in (2, "3", "0,1", [0, 1, 2], "auto", -1)] == [2, 3, 2, 3, None, None]
    for bad in (0, "abc", -2, True, [], "0,x", 1.5):
        with pytest.raises(ConfigError, match="trainer.devices="):
            dist.device_count(bad)
    with pytest.raises(ConfigError, match="cannot size a SLURM job") as e:
        launch.trainer_slurm_layout({"devices": "auto", "accelerator": "gpu"})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="disagree.*tasks_per_node") as e:
        launch.check_layout({"trainer": {"devices": 2, "accelerator": "gpu"}},
                            {"_target_": "SlurmLauncher", "tasks_per_node": 1, "nodes": 1, "gpus_per_node": 2})  # fmt: skip
    assert "\n" not in str(e.value)


# ---- the model cache: a config key, checksummed tiny models ---------------------------------------------------


def test_model_cache_is_a_config_key_the_environment_overrides(cfg_factory, monkeypatch, tmp_path) -> None:
    from w2s import models

    monkeypatch.delenv("W2S_MODEL_CACHE", raising=False)
    assert cfg_factory().paths.model_cache == "~/.cache/w2s/models"
    assert cfg_factory(f"paths.model_cache={tmp_path}").paths.model_cache == str(tmp_path)
    monkeypatch.setenv("W2S_MODEL_CACHE", "/elsewhere")
    assert cfg_factory().paths.model_cache == "/elsewhere"
    monkeypatch.setattr(models, "_CACHE_ROOT", [])
    models.set_cache_root("~/m")
    assert models.cache_root() == Path.home() / "m"


def test_a_damaged_tiny_model_is_rebuilt(tmp_path, monkeypatch) -> None:
    import hashlib

    from w2s import models, tiny

    monkeypatch.setattr(models, "_CACHE_ROOT", [tmp_path])
    root = tiny.tiny("check", hidden=8, layers=1, heads=2)
    weights = root / "model.safetensors"
    good = hashlib.sha256(weights.read_bytes()).hexdigest()
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # tensor bytes, not the header: it would still load
    weights.write_bytes(bytes(data))
    assert tiny.tiny("check", hidden=8, layers=1, heads=2) == root
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == good
    (root.with_name(root.name + ".sha256.json")).unlink()  # no record (an old cache): rebuilt, recorded
    tiny.tiny("check", hidden=8, layers=1, heads=2)
    assert root.with_name(root.name + ".sha256.json").exists()


# ---- through train.py: the exit code and the one line, for what only a real process shows -------------------

#: Root passes every file mode: these drop that power, so chmod 000 / 555 bind root too.
NO_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


def _run(args: list[str], tmp: Path, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*prefix, sys.executable, str(REPO / "train.py"), *TINY, *args]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        cmd.append(f"hydra.run.dir={tmp / 'out'}")
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def _one_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_train_py_hydra_errors_exit_2_in_one_line(tmp_path: Path) -> None:
    _one_line(_run(["loss=bogus"], tmp_path), "loss=bogus unknown; choices: ['conf'")
    _one_line(_run(["+analysis.bogus=true"], tmp_path), "analysis.bogus is not a known key")


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv")
def test_unreadable_input_and_read_only_run_folder_as_root(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("text,label\n" + _rows())
    secret.chmod(0)
    _one_line(
        _run(["task=custom", f"task.path={secret}"], tmp_path, NO_DAC), "cannot be read (Permission denied)"
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    _one_line(_run([f"hydra.run.dir={ro / 'out'}"], tmp_path, NO_DAC), "hydra.run.dir=")


@pytest.mark.slow
def test_file_size_limit_and_bad_rows_exit_2(tmp_path: Path) -> None:
    """`ulimit -f` (EFBIG) is a StorageError like a full disk; a NUL byte or a JSON object as text is refused."""
    env_cache = [f"paths.model_cache={tmp_path / 'models'}", f"paths.artifact_root={tmp_path / 'art'}"]
    _one_line(_run(env_cache, tmp_path, ["bash", "-c", 'ulimit -f 50; exec "$@"', "_"]), "File too large")
    nul = tmp_path / "nul.csv"
    nul.write_text(("text,label\n" + _rows()).replace("text 7,", "te\0xt 7,"))
    _one_line(_run(["task=custom", f"task.path={nul}", *env_cache], tmp_path), "NUL byte")
    obj = tmp_path / "o.jsonl"
    obj.write_text("".join(f'{{"text": {{"a": {i}}}, "label": {i % 2}}}\n' for i in range(400)))
    _one_line(_run(["task=custom", f"task.path={obj}", *env_cache], tmp_path), "text is a dict")


# ---- DDP and SIGTERM: every rank leaves with 143 and one line, whenever the signal lands ----------------------


def _storm_once(tmp: Path, to_group: bool, delay: float) -> tuple[str, float, str]:
    """One `trainer=ddp_cpu` run given SIGTERM after `delay` s, to its whole process group or to the parent only.
    Returns (outcome, seconds from the signal until every rank was gone, output)."""
    import signal
    import time

    log = tmp / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [*TINY, "trainer=ddp_cpu", f"paths.artifact_root={tmp / 'art'}", f"hydra.run.dir={tmp / 'out'}"]
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=tmp, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        time.sleep(delay)
        t = time.time()
        if proc.poll() is not None:
            return "finished first", 0.0, log.read_text()
        if to_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
            while time.time() - t < 60:  # every rank gone, not just the parent
                os.killpg(proc.pid, 0)
                time.sleep(0.2)
            outcome = "ranks left behind"
        except ProcessLookupError:
            outcome = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            outcome = "hung"
        if outcome != f"exit {proc.returncode}":
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return outcome, time.time() - t, log.read_text()


@pytest.mark.slow
def test_ddp_sigterm_storm_every_rank_exits_143_without_traceback(tmp_path: Path) -> None:
    """SIGTERM at random moments of a two-process CPU run, to the group (scancel) and to the parent alone:
    each try ends with 143 within a minute, no traceback from any rank, no rank left running.
    W2S_STORM_TRIES=20 runs the longer storm."""
    import random

    rng = random.Random(int(os.environ.get("W2S_STORM_SEED", "0")))
    tries = int(os.environ.get("W2S_STORM_TRIES", "4"))
    counts: dict[str, int] = {}
    for i in range(tries):
        tmp = tmp_path / str(i)
        tmp.mkdir()
        to_group, delay = i % 2 == 0, rng.uniform(4, 24)
        outcome, seconds, output = _storm_once(tmp, to_group, delay)
        ok = outcome == "exit 143" and "Traceback" not in output
        label = f"{'group' if to_group else 'parent'} {outcome}{'' if ok else ' (bad)'}"
        counts[label] = counts.get(label, 0) + 1
        print(f"try {i}: to {'group' if to_group else 'parent'} at {delay:.1f}s: {outcome} in {seconds:.1f}s")
        if outcome != "finished first":
            assert ok, f"try {i} at {delay:.1f}s: {outcome}\n{output[-4000:]}"
            assert seconds < 60
            assert [x for x in output.splitlines() if x.startswith("error:")], output[-2000:]
    print(counts)
