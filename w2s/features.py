"""Model inputs: the text a row renders to, its token ids, and the frozen features a linear probe trains on.

`features` is the one frozen feature pass of the scored kinds (probes); it is cached per model and data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from w2s import models
from w2s.artifacts import cached
from w2s.data import Collate, Examples, loader


def render(task_cfg: Any, row: dict[str, Any]) -> str | list[str]:
    """The model's input text(s) for one row: one string, or one per candidate for pairwise rows."""
    if task_cfg.type == "pairwise":
        tmpl = task_cfg.get("template") or "{prompt}{completion}"
        return [tmpl.format(**{**row, "completion": row[c]}) for c in ("first", "second")]
    return (task_cfg.get("template") or "{text}").format(**row)


def tokenize(model_cfg: Any, task_cfg: Any, ds: Dataset) -> tuple[list[Any], Any]:
    """Token ids per row, truncated from the left so the end of the context (the answer) survives."""
    tok = models.load_tokenizer(model_cfg, padding_side="right")
    tok.truncation_side = "left"
    texts = [render(task_cfg, r) for r in ds]
    flat = [t for x in texts for t in (x if isinstance(x, list) else [x])]
    enc = tok(flat, truncation=True, max_length=int(model_cfg.max_length), add_special_tokens=True)[
        "input_ids"
    ]
    if texts and isinstance(texts[0], list):
        k = len(texts[0])
        return [enc[i : i + k] for i in range(0, len(enc), k)], tok
    return enc, tok


def features(cfg: Any, model_cfg: Any, task_cfg: Any, ds: Dataset, data_key: Any) -> torch.Tensor:
    """Frozen pooled features of every row of `ds`, cached per (model, data): the linear-probe inputs."""

    def build(out: Path) -> dict[str, Any]:
        ids, tok = tokenize(model_cfg, task_cfg, ds)
        net = models.Classifier(models.load_backbone(model_cfg), model_cfg.pooling, n_out=1)
        net.layer = model_cfg.get("layer")
        rows = Examples(ids, [0.0] * len(ids), list(range(len(ids))))
        feats: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            net.eval()
            for batch in loader(rows, int(cfg.eval_batch_size), Collate(tok.pad_token_id), shuffle=False):
                x, m = batch["input_ids"], batch["attention_mask"]
                shape = x.shape
                f = net.features(x.reshape(-1, shape[-1]), m.reshape(-1, shape[-1])).float()
                f = f.reshape(*shape[:-1], -1)
                feats.update(zip(batch["idx"].tolist(), f, strict=True))
        torch.save(torch.stack([feats[i] for i in range(len(ids))]), out / "features.pt")
        return {"rows": len(ids)}

    key = {"model": models.model_key(model_cfg), "data": data_key, "template": task_cfg.get("template")}
    path = cached(cfg.paths.artifact_root, "features", key, build, force=bool(cfg.force))
    return torch.load(path / "features.pt", weights_only=True)
