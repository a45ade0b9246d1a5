"""The trainable networks of the scored kinds: a backbone with a pooled linear head, a probe on cached features,
LoRA adapters."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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


class Classifier(nn.Module):
    """Backbone + linear head on a pooled state. Inputs [B, L] give logits [B, n_out]; inputs [B, K, L]
    (K candidates, pairwise reward modeling with n_out=1) give scores [B, K]."""

    def __init__(self, backbone: nn.Module, pooling: str, n_out: int = 2):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(hidden_size(backbone), n_out)
        nn.init.zeros_(self.head.weight)  # openai's choice: start at logit 0 (P = 0.5)
        nn.init.zeros_(self.head.bias)

    #: Which hidden layer feeds the head (None: the last); probes of middle layers are a Section 5 analysis.
    layer: int | None = None

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        deep = self.layer is not None
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=deep)
        if deep:
            hidden = out.hidden_states[self.layer]
        else:
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if ids.dim() == 3:
            b, k, length = ids.shape
            feats = self.features(ids.reshape(b * k, length), mask.reshape(b * k, length))
            return self.head(feats.float()).reshape(b, k)
        return self.head(self.features(ids, mask).float())


class Head(nn.Module):
    """A linear probe on cached features: [B, D] -> [B, n_out], or [B, K, D] -> [B, K] when n_out=1."""

    def __init__(self, dim: int, n_out: int = 2):
        super().__init__()
        self.head = nn.Linear(dim, n_out)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.head(batch["features"].float())
        return out.squeeze(-1) if out.dim() == 3 else out


def add_lora(model: Classifier, model_cfg: Any) -> Classifier:
    """Wrap the backbone with LoRA adapters (peft); the head stays fully trainable in fp32."""
    model.backbone = lora_wrap(model.backbone, model_cfg)
    return model


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
