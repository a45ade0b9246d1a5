"""The GPU check (scripts/gpu_check.sh) runs end to end in its CPU smoke mode, and its parts say what they measured."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from w2s import tiny
from w2s.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_smoke_runs_every_part(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--cpu-smoke"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "framework / bare tokens/s" in proc.stdout and "pgr" in proc.stdout
    fig = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert fig["status"] == {"throughput": 0, "ladder": 0}
    tp = fig["throughput"]
    assert tp["smoke"] and tp["device"] == "cpu" and tp["peak_flops"] is None
    assert tp["params_embedding"] == 512 * 32  # the smoke overrides (vocab 512, hidden 32) reached the model
    for side in ("bare", "framework"):
        assert tp[side]["tokens_per_s"] > 0 and tp[side]["mfu"] is None
        assert tp[side]["loss_first"] == pytest.approx(
            0.693147, abs=1e-4
        )  # zero-init head: ln 2 on both sides
    ratio = tp["framework"]["tokens_per_s"] / tp["bare"]["tokens_per_s"]
    assert tp["ratio_tokens_per_s"] == pytest.approx(ratio, rel=0.01)
    ld = fig["ladder"]
    assert ld["rc"] == 0 and "trainer=gpu" in ld["command"] and ld["wall_s"] > 0
    assert ld["splits"]["transfer"] == 32 and ld["trainer"]["precision"] == "bf16-mixed"  # trainer=gpu's
    for role in ("weak", "w2s", "ceiling"):
        assert 0.0 <= ld[role]["acc"] <= 1.0
    assert set(ld["pgr"]) == {"acc", "auroc"}
    assert not list(tmp_path.glob("w2s-gpu-check.*"))  # the ladder's work folder is removed on exit


def test_peak_flops_by_device_name(monkeypatch):
    gc = _script()
    monkeypatch.delenv("W2S_PEAK_TFLOPS", raising=False)
    assert gc.peak_flops("NVIDIA H200")[0] == 989e12
    assert gc.peak_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert gc.peak_flops("NVIDIA H100 PCIe")[0] == 756e12
    peak, why = gc.peak_flops("Some GPU")
    assert peak is None and "W2S_PEAK_TFLOPS" in why
    monkeypatch.setenv("W2S_PEAK_TFLOPS", "100")
    assert gc.peak_flops("Some GPU") == (100e12, "W2S_PEAK_TFLOPS")


def test_report_names_failed_and_timed_out_parts(tmp_path):
    gc = _script()
    (tmp_path / "ladder.json").write_text(json.dumps({"command": "python train.py", "rc": 2, "wall_s": 1.0}))
    fig = gc.report(tmp_path, {"throughput": 124, "ladder": 2})
    text = gc.table(fig)
    assert "throughput: FAILED (exit 124, timed out)" in text and "ladder: FAILED (exit 2)" in text


def test_random_init_builds_the_architecture_once():
    dims = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}
    dims |= {"intermediate_size": 32, "vocab_size": 300, "tie_word_embeddings": True}
    path = tiny.random_init("t", "qwen2", **dims)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["num_key_value_heads"] == 1 and cfg["tie_word_embeddings"]
    assert (path / "tokenizer.json").exists()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert tiny.random_init("t", "qwen2", **dims) == path
    assert (path / "config.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert tiny.random_init("t", "qwen2", **{**dims, "hidden_size": 32}) != path
    with pytest.raises(ModelError, match="'nope' unknown"):
        tiny.random_init("t", "nope", **dims)
    with pytest.raises(ModelError, match="vocab_size=100"):
        tiny.random_init("t", "qwen2", **{**dims, "vocab_size": 100})
