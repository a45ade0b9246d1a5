"""What a text model reads of a row: the rendered text (one string, or one per candidate), its token ids, and the
frozen pooled features a probe trains on, cached per row by a hash of exactly that text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset

from w2s import models
from w2s.data import pad, token_batches
from w2s.features import device, feature_precision, frozen
from w2s.networks import HFText


def render(task_cfg: Any, row: dict[str, Any]) -> str | list[str]:
    """The model's input text(s) for one row: one string, or one per candidate for pairwise rows."""
    if task_cfg.type == "pairwise":
        tmpl = task_cfg.get("template") or "{prompt}{completion}"
        return [tmpl.format(**{**row, "completion": row[c]}) for c in ("first", "second")]
    return (task_cfg.get("template") or "{text}").format(**row)


def encode(model_cfg: Any, texts: list[str]) -> tuple[list[list[int]], Any]:
    """Token ids, truncated from the left so the end of the context (the answer) survives."""
    tok = models.load_tokenizer(model_cfg, padding_side="right")
    tok.truncation_side = "left"
    enc = tok(texts, truncation=True, max_length=int(model_cfg.max_length), add_special_tokens=True)
    return enc["input_ids"], tok


def tokenize(model_cfg: Any, task_cfg: Any, ds: Dataset) -> tuple[list[Any], Any]:
    """Token ids per row (a list per candidate for pairwise rows) and the tokenizer."""
    texts = [render(task_cfg, r) for r in ds]
    enc, tok = encode(model_cfg, [t for x in texts for t in (x if isinstance(x, list) else [x])])
    if texts and isinstance(texts[0], list):
        k = len(texts[0])
        return [enc[i : i + k] for i in range(0, len(enc), k)], tok
    return enc, tok


def store_key(task_cfg: Any) -> dict[str, Any]:
    """What a text feature store depends on besides the model: the rendering."""
    return {"type": task_cfg.type, "template": task_cfg.get("template")}


class TextFeaturizer:
    """Pooled features of a text model for task rows, keyed by a hash of the rendered text(s); the frozen
    backbone is loaded on the first rows that need computing."""

    def __init__(self, cfg: Any, model_cfg: Any, ds: Dataset, layer: int | None = None):
        self.cfg, self.model_cfg, self.ds, self.layer = cfg, model_cfg, ds, layer
        self.body: HFText | None = None

    def texts(self, rows: Sequence[int]) -> list[str | list[str]]:
        return [render(self.cfg.task, r) for r in self.ds.select(list(rows))]

    def keys(self, rows: Sequence[int]) -> list[str]:
        return [hashlib.sha256(json.dumps(t).encode()).hexdigest()[:24] for t in self.texts(rows)]

    def compute(self, rows: Sequence[int]) -> torch.Tensor:
        texts = self.texts(rows)
        per_row = len(texts[0]) if isinstance(texts[0], list) else 1
        seqs = [s for t in texts for s in (t if isinstance(t, list) else [t])]
        ids, tok = encode(self.model_cfg, seqs)
        precision, dev = feature_precision(self.cfg, self.model_cfg), device()
        if self.body is None:
            self.body = HFText(self.model_cfg, layer=self.layer)
        body, ctx = frozen(self.body, precision, dev)
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        with torch.inference_mode(), ctx:
            for batch in token_batches([len(x) for x in ids], int(self.cfg.features.max_tokens)):
                x, m = pad([ids[i] for i in batch], tok.pad_token_id, left=False)
                f = body.features({"input_ids": x.to(dev), "attention_mask": m.to(dev)}).float().cpu()
                for i, row in zip(batch, f, strict=True):
                    out[i] = row
        part = torch.stack(out).reshape(len(texts), per_row, -1)
        return part[:, 0] if per_row == 1 else part
