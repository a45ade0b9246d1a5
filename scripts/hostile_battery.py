"""Issue 27's hostile battery: each case through `train.py experiment=tiny` in a subprocess, scored to spec.

To spec: exit 2 with exactly one `error: ...` line and no traceback (a bad input), or exit 0 (a legal input).
`python scripts/hostile_battery.py [--repo DIR] [--only CASE ...]` prints one line per case and the count.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: Root reads and writes through any file mode: these drop that power, so chmod 000 / 555 bind it too.
NO_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]
Setup = Callable[[Path], list[str]]


def _rows(n: int = 400) -> str:
    return "".join(f"{'good' if i % 2 else 'bad'} text {i},{['neg', 'pos'][i % 2]}\n" for i in range(n))


def _csv(name: str, body: str | bytes) -> Setup:
    def setup(tmp: Path) -> list[str]:
        p = tmp / name
        p.write_bytes(body if isinstance(body, bytes) else body.encode())
        p.chmod(0o644)
        return ["task=custom", f"task.path={p}"]

    return setup


def _c(*args: str) -> Setup:
    return lambda tmp: list(args)


def _unreadable(tmp: Path) -> list[str]:
    p = tmp / "secret.csv"
    p.write_text("text,label\n" + _rows().replace("neg", "0").replace("pos", "1"))
    p.chmod(0)
    return ["task=custom", f"task.path={p}"]


def _readonly_out(tmp: Path) -> list[str]:
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return [f"hydra.run.dir={ro / 'out'}"]


CHESS = ["task=chess", "supervisor=tiny-llama", "student=tiny-llama"]
PROMPT = ["analysis.prompting.enabled=true"]
B = "text,label\n"
#: case -> (setup, expected exit: 2 = one error line, 0 = a legal input that runs), options
CASES: dict[str, tuple[Setup, int, dict]] = {
    # Hydra's own errors
    "loss=bogus": (_c("loss=bogus"), 2, {}),
    "supervisor=": (_c("supervisor="), 2, {}),
    "task=bogus": (_c("task=bogus"), 2, {}),
    "method=bogus": (_c("method=bogus"), 2, {}),
    "logger=bogus": (_c("logger=bogus"), 2, {}),
    "trainer=bogus": (_c("trainer=bogus"), 2, {}),
    "chain1=bogus": (_c("method=bootstrap", "chain1=bogus"), 2, {}),
    "+chain2=X": (_c("+chain2=tiny-bert"), 2, {}),
    "loader.limit=abc": (_c("task.loader.limit=abc"), 2, {}),
    "chess min_rating=high": (_c(*CHESS, "task.min_rating=high"), 2, {}),
    "label_map={pos: high}": (
        _csv("lm.csv", B + _rows()),
        2,
        {"extra": ["task.loader.label_map={pos: high}"]},
    ),
    "chess source=bogus": (_c(*CHESS, "task.source=bogus"), 2, {}),
    "chess input_format=bogus": (_c(*CHESS, "task.input_format=bogus"), 2, {}),
    "unicode task.path": (
        _csv("données_é.csv", B + _rows()),
        0,
        {"extra": ["task.loader.label_map={pos: 1, neg: 0}"]},
    ),
    # tracebacks
    "seed=huge": (_c("seed=99999999999999999999"), 2, {}),
    "devices=0": (_c("trainer.devices=0"), 2, {}),
    "devices=abc": (_c("trainer.devices=abc"), 2, {}),
    "accelerator=gpu": (_c("trainer.accelerator=gpu"), 2, {}),
    "accelerator=bogus": (_c("trainer.accelerator=bogus"), 2, {}),
    "strategy=bogus": (_c("trainer.strategy=bogus"), 2, {}),
    "val_check_interval=0": (_c("trainer.val_check_interval=0"), 2, {}),
    "betas=[2,3]": (_c("optim.betas=[2,3]"), 2, {}),
    "+trainer.bogus_arg": (_c("+trainer.bogus_arg=1"), 2, {}),
    "template={nonexistent}": (_c("task.template={nonexistent}"), 2, {}),
    "template={text": (_c("task.template={text"), 2, {}),
    "prompting.max_test=-1": (_c(*PROMPT, "analysis.prompting.max_test=-1"), 2, {}),
    "prompting.batch_size=0": (_c(*PROMPT, "analysis.prompting.batch_size=0"), 2, {}),
    "unreadable task.path": (_unreadable, 2, {"nobody": True}),
    "ulimit -f 50": (_c(), 2, {"ulimit": 50}),
    "read-only output dir": (_readonly_out, 2, {"nobody": True}),
    # silently accepted garbage
    "NUL in CSV": (_csv("nul.csv", (B + _rows()).replace("text 7", "te\0xt 7")), 2, {"labels01": True}),
    "JSONL object text": (
        _csv("o.jsonl", "".join(f'{{"text": {{"a": {i}}}, "label": {i % 2}}}\n' for i in range(400))),
        2,
        {},
    ),
    "loader.limit=-5": (_c("task.loader.limit=-5"), 2, {}),
    "val_check_interval=5.0": (_c("trainer.val_check_interval=5.0"), 2, {}),
    "noise_control=maybe": (_c("analysis.noise_control=maybe"), 2, {}),
    "agreement=maybe": (_c("analysis.agreement=maybe"), 2, {}),
    "force=maybe": (_c("force=maybe"), 2, {}),
    "warmup_steps=-5": (_c("scheduler.warmup_steps=-5"), 2, {}),
    "features.max_tokens=0": (_c("features.max_tokens=0"), 2, {}),
    "+analysis.bogus": (_c("+analysis.bogus=true"), 2, {}),
    # exit 2 naming the wrong thing (scored by the fragment the line must hold)
    "label_map 3 keys": (
        _csv("lm3.csv", B + _rows()),
        2,
        {"extra": ["task.loader.label_map={pos: 2, neg: 0, neutral: 0}"], "fragment": "pos: 2"},
    ),
    "loader.limit=0 on 600 rows": (
        _csv("six.csv", B + _rows(600)),
        2,
        {"extra": ["task.loader.label_map={pos: 1, neg: 0}", "task.loader.limit=0"], "fragment": "limit=0"},
    ),
    # damage, code execution
    "tiny model damaged": (_c(), 0, {"damage": True}),
    "loss._target_=builtins.print": (_c("loss._target_=builtins.print"), 2, {}),
}


def _damage_tiny(cache: Path) -> tuple[Path, str] | None:
    files = sorted(cache.glob("tiny-bert-small-*/model.safetensors"))
    if not files:
        return None
    f = files[0]
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    data = bytearray(f.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):  # tensor bytes, not the header: it still loads
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))
    return f, good


def run_case(name: str, repo: Path, work: Path) -> tuple[bool, str]:
    setup, want, opt = CASES[name]
    tmp = Path(tempfile.mkdtemp(dir=work, prefix="case-"))
    tmp.chmod(0o777)
    cache, art = work / "models", work / "art"
    args = ["experiment=tiny", "logger=none", *setup(tmp), *opt.get("extra", [])]
    if opt.get("labels01"):
        args.append("task.loader.label_map={pos: 1, neg: 0}")
    elif "task=custom" in args and not any("label_map" in a for a in args) and "jsonl" not in str(args):
        args.append("task.loader.label_map={pos: 1, neg: 0}")
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp / 'out'}")
    args.append(f"paths.artifact_root={art}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "W2S_MODEL_CACHE": str(cache), "PYTHONPATH": str(repo)}  # fmt: skip
    damaged = _damage_tiny(cache) if opt.get("damage") else None
    cmd = [sys.executable, str(repo / "train.py"), *args]
    if opt.get("ulimit"):
        cmd = ["bash", "-c", f'ulimit -f {opt["ulimit"]}; exec "$@"', "_", *cmd]
        env["W2S_MODEL_CACHE"] = str(tmp / "models")  # a fresh cache: the model write must hit the limit too
        args[-1] = f"paths.artifact_root={tmp / 'art'}"
        cmd[-1] = args[-1]
    if opt.get("nobody"):
        cmd = [*NO_DAC, *cmd]
    t = time.time()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    clean = "Traceback" not in proc.stderr + proc.stdout
    if want == 2:
        ok = proc.returncode == 2 and len(errors) == 1 and clean and opt.get("fragment", "") in errors[0]
    else:
        ok = proc.returncode == 0 and clean
    if damaged is not None:
        f, good = damaged
        restored = f.exists() and hashlib.sha256(f.read_bytes()).hexdigest() == good
        ok = (proc.returncode == 0 and restored) or (proc.returncode == 2 and len(errors) == 1)
    tail = errors[0] if errors else (proc.stderr.strip().splitlines() or [""])[-1]
    shutil.rmtree(tmp, ignore_errors=True)
    return ok, f"exit {proc.returncode} {time.time() - t:.0f}s {tail[:160]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="battery-"))
    work.chmod(0o777)
    names = a.only or list(CASES)
    # the damage case needs a built tiny model: a first legal run builds the cache
    if "tiny model damaged" in names:
        run_case("unicode task.path", Path(a.repo), work)
    passed = 0
    for name in names:
        ok, line = run_case(name, Path(a.repo), work)
        passed += ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:32s} {line}", flush=True)
    print(f"to spec: {passed} of {len(names)}", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
