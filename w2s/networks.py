"""The trainable networks of the scored kinds: a body that reads a batch into features, and a linear head.

A body is named by a model config (`network: {_target_: ..., _partial_: true}`, called with the model config):
`HFText` for Hugging Face text models, an image network for image models (`w2s.vision`); a probe's body is
`Cached`, the features a frozen pass stored. `Classifier` puts a head on any body, so a kind builds every train
mode (probe, full, LoRA) of every model the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from w2s import models
from w2s.errors import ModelError


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Sequence summary: masked mean, first token, or the last non-padding token.

    `last` finds the final position whose attention mask is 1, so it is right for left and right padding
    and never confuses a real token whose id is 0 with padding (the openai reference's bug).
    """
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ModelError(f"pooling {how!r} unknown; choices: ['cls', 'last', 'mean']")


def hidden_size(backbone: nn.Module) -> int:
    cfg = backbone.config
    cfg = getattr(cfg, "text_config", cfg)
    return int(cfg.hidden_size)


class HFText(nn.Module):
    """A Hugging Face text backbone read as one vector per sequence: `input_ids`, `attention_mask` [B, L] ->
    the `pooling` of hidden layer `layer` (None: the last; probes of middle layers are a Section 5 analysis)."""

    def __init__(self, model_cfg: Any, layer: int | None = None):
        super().__init__()
        self.backbone = models.load_backbone(model_cfg)
        self.pooling = model_cfg.pooling
        self.layer = layer if layer is not None else model_cfg.get("layer")
        self.dim = hidden_size(self.backbone)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        deep = self.layer is not None
        out = self.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=deep)
        if deep:
            hidden = out.hidden_states[self.layer]
        else:
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]
        return pool(hidden, mask, self.pooling)

    def layers(self) -> int:
        """Hidden states the backbone returns (embeddings + one per block): `layer` indexes these."""
        return int(getattr(self.backbone.config, "num_hidden_layers", 0)) + 1


class Cached(nn.Module):
    """A probe's body: the batch already holds the frozen features (`features` [B, D])."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["features"]


class Classifier(nn.Module):
    """A body and a linear head: logits [B, n_out]. A batch of K candidates per row (`candidates`: K, rows
    flattened to [B*K, ...]) with n_out = 1 gives one score per candidate, [B, K] (pairwise reward models).

    `zero_init` starts the head at logit 0 (P = 0.5) as openai's finetuning does; a probe keeps torch's init."""

    def __init__(self, body: nn.Module, n_out: int = 2, zero_init: bool = True):
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.dim, n_out)
        if zero_init:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        out = self.head(self.body.features(batch).float())
        k = batch.get("candidates")
        return out.view(-1, int(k)) if k else out


def lora_body(body: nn.Module, model_cfg: Any) -> nn.Module:
    """LoRA adapters on a body's backbone (peft); the head stays fully trainable in fp32."""
    body.backbone = lora_wrap(body.backbone, model_cfg)
    return body


def lora_wrap(backbone: nn.Module, model_cfg: Any) -> nn.Module:
    """LoRA adapters (peft) on every linear layer by default, settings from `model_cfg.lora`."""
    from peft import LoraConfig, get_peft_model

    lora = model_cfg.get("lora", {}) or {}
    config = LoraConfig(
        r=int(lora.get("r", 8)),
        lora_alpha=int(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules", "all-linear"),
    )
    return get_peft_model(backbone, config)
