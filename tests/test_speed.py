"""The fast paths keep results: per-row feature cache, precision choice, padding-aware batches, fused AdamW."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2s import artifacts, features
from w2s.data import padding_fraction, token_batches
from w2s.errors import ConfigError
from w2s.module import W2SModule, adamw_impl
from w2s.pipeline import task_stage
from w2s.text import TextFeaturizer, store_key

TINY = ("experiment=tiny", "logger=none")


def _features(cfg, ds, idx):
    """The supervisor's frozen features of text rows `idx`, through the store (what a probe trains on)."""
    return features.features(
        cfg, cfg.supervisor, store_key(cfg.task), TextFeaturizer(cfg, cfg.supervisor, ds), idx
    )


def _store(cfg):
    return features.store(cfg, cfg.supervisor, store_key(cfg.task))


def _shard_rows(cfg) -> list[int]:
    """Rows per readable shard of the model's feature store (what has been computed and kept)."""
    out = []
    for shard in sorted(_store(cfg).glob("rows-*.pt")):
        try:
            out.append(len(torch.load(shard, weights_only=True)["keys"]))
        except Exception:  # noqa: BLE001 - a damaged shard holds no rows
            continue
    return out


def test_feature_cache_computes_only_new_rows(cfg_factory, tmp_path):
    cfg = cfg_factory(*TINY, "features.precision=fp32", "features.shard_rows=16")
    ds = task_stage(cfg).splits["all"]
    first = _features(cfg, ds, range(30))
    assert sum(_shard_rows(cfg)) == 30 and max(_shard_rows(cfg)) <= 16  # shards of at most 16 rows
    more = _features(cfg, ds, range(60))
    assert sum(_shard_rows(cfg)) == 60  # only rows 30..59 were computed and added
    assert torch.equal(more[:30], first)
    shards = _shard_rows(cfg)
    again = _features(cfg, ds, [59, 3, 17])
    assert _shard_rows(cfg) == shards and torch.equal(again, more[[59, 3, 17]])
    # a full recompute in a fresh store (other batch compositions) gives the same features
    fresh = cfg_factory(*TINY, "features.precision=fp32")
    fresh.paths.artifact_root = str(tmp_path / "other")
    full = _features(fresh, ds, range(60))
    assert full.dtype == torch.float32 and full.shape == more.shape == (60, first.shape[1])
    torch.testing.assert_close(full, more, atol=1e-5, rtol=1e-4)


def test_damaged_shard_and_leftover_temp_are_ignored(cfg_factory):
    cfg = cfg_factory(*TINY, "features.precision=fp32", "features.shard_rows=10")
    ds = task_stage(cfg).splits["all"]
    before = _features(cfg, ds, range(20))
    folder = _store(cfg)
    shards = sorted(folder.glob("rows-*.pt"))
    assert len(shards) == 2
    shards[0].write_bytes(b"truncated")
    (folder / ".rows-killed.tmp").write_bytes(b"half")
    assert sum(_shard_rows(cfg)) == 10
    after = _features(cfg, ds, range(20))
    assert sum(_shard_rows(cfg)) == 20  # only the damaged shard's rows were recomputed
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_edited_shard_that_still_loads_is_recomputed(cfg_factory):
    """A shard is named by its content: one whose floats were edited (it still loads) is caught by its name."""
    cfg = cfg_factory(*TINY, "features.precision=fp32", "features.shard_rows=10")
    ds = task_stage(cfg).splits["all"]
    before = _features(cfg, ds, range(20))
    shard = sorted(_store(cfg).glob("rows-*.pt"))[0]
    part = torch.load(shard, weights_only=True)
    part["features"] = part["features"] + 1.0
    torch.save(part, shard)
    assert torch.load(shard, weights_only=True)["features"].shape[0] == 10  # loads fine, numbers wrong
    after = _features(cfg, ds, range(20))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    assert not shard.exists() and sum(_shard_rows(cfg)) == 20  # replaced by a shard named by its content


def test_precision_choice_and_override(cfg_factory, monkeypatch):
    cfg = cfg_factory(*TINY)
    sup = cfg.supervisor
    monkeypatch.setattr(features, "device", lambda: torch.device("cpu"))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(features, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert features.feature_precision(cfg, sup) == "bf16"
    monkeypatch.setattr(features, "_cpu_flags", lambda: frozenset({"avx512f", "avx2"}))
    assert features.feature_precision(cfg, sup) == "fp32"  # emulated bf16 is slower: auto stays fp32
    cfg.features.precision = "bf16"
    assert features.feature_precision(cfg, sup) == "bf16"
    cfg.features.fp32_models = [sup.name]
    assert features.feature_precision(cfg, sup) == "fp32"
    cfg.features.fp32_models = []
    cfg.features.precision = "fp32"
    assert features.feature_precision(cfg, sup) == "fp32"
    cfg.features.precision = "half"
    with pytest.raises(ConfigError, match="features.precision 'half' unknown"):
        features.feature_precision(cfg, sup)


def test_offline_qwen_stays_fp32_under_auto(cfg_factory, monkeypatch):
    """Its bf16 probes lost accuracy (docs/RESULTS.md): the default config pins it, other models stay bf16."""
    cfg = cfg_factory(*TINY, "student=qwen2.5-0.5b-offline")
    monkeypatch.setattr(features, "device", lambda: torch.device("cpu"))
    monkeypatch.setattr(features, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert features.feature_precision(cfg, cfg.student) == "fp32"
    assert features.feature_precision(cfg, cfg.supervisor) == "bf16"


def test_precision_keys_the_store_and_is_recorded(cfg_factory):
    ds = None
    stores = {}
    for precision in ("fp32", "bf16"):
        cfg = cfg_factory(*TINY, f"features.precision={precision}")
        ds = ds or task_stage(cfg).splits["all"]
        feats = _features(cfg, ds, range(40))
        folder = _store(cfg)
        assert artifacts.manifest(folder)["meta"]["precision"] == precision
        stores[precision] = (folder, feats)
    assert stores["fp32"][0] != stores["bf16"][0]
    a, b = stores["fp32"][1], stores["bf16"][1]
    assert not torch.equal(a, b)
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.99


def test_token_batches_cover_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(3.2, 0.6, 500).astype(int) + 1
    batches = token_batches(lengths, max_tokens=1024)
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(500))  # every row once: results restore to row order by index
    assert all(len(b) * lengths[b].max() <= 1024 or len(b) == 1 for b in batches)
    fixed = [order[i : i + 64] for i in range(0, 500, 64)]  # the same length order in fixed batches of 64
    assert padding_fraction(lengths, batches) < padding_fraction(lengths, fixed)
    assert all(len(b) <= 8 for b in token_batches(lengths, max_tokens=10**6, max_rows=8))


def test_adamw_fused_where_supported_else_foreach():
    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert adamw_impl(cpu) == {"fused": True}
    assert adamw_impl([torch.nn.Parameter(torch.zeros(3, device="meta"))]) == {"foreach": True}
    assert adamw_impl([torch.zeros(3, dtype=torch.long)]) == {"foreach": True}

    class Trainer:
        estimated_stepping_batches = 10

    module = W2SModule(torch.nn.Linear(3, 2), loss=None, lr=1e-3)
    module._trainer = Trainer()
    opt = module.configure_optimizers()["optimizer"]
    assert opt.param_groups[0]["fused"] is True
