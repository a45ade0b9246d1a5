"""The one LightningModule: any network that maps a batch to logits [B, C], trained with any loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from w2s.analysis import selection_key
from w2s.data import soft_targets
from w2s.metrics import scores


class NonFiniteLoss(FloatingPointError):
    """Raised at the first NaN/inf loss, naming the step and the batch's example ids."""


class W2SModule(pl.LightningModule):
    """Trains `model` with `loss(logits, target, step_frac)`; evaluates every validation set given.

    Validation set 0 is the selection set (weak labels for students, GT for supervisors); the others are
    analyses (e.g. GT test accuracy over training) and are never used for selection unless named so.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[..., torch.Tensor] | None = None,
        lr: float = 1e-3,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        val_names: Sequence[str] = ("val",),
    ):
        super().__init__()
        self.model, self.loss, self.lr, self.val_names = model, loss, lr, list(val_names)
        self.optimizer = optimizer or adamw  # `conf/optim`, `conf/scheduler`: _partial_ targets
        self.scheduler = scheduler or warmup_cosine
        self.curve: list[dict[str, float]] = []
        self._val: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch)

    def step_frac(self) -> float:
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1
        return min(1.0, self.global_step / total)

    def targets(self, batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """The [N, C] distributions the loss compares `logits` with (soft labels as the batch carries them)."""
        return batch["target"].to(logits.dtype)

    def on_train_start(self) -> None:
        """The loss reads what it needs of every training target once, before the first step (`Loss.prepare`):
        a batch cannot see dataset statistics such as window's `midweak` radius."""
        dm = self.trainer.datamodule  # a stage's WeakLabelDataModule holds every training row's label
        if dm is not None:  # a bare loop of batches (gpu_check, benchmarks) has no dataset-level labels
            self.loss.prepare(soft_targets(dm.train_rows.targets))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch)
        loss = self.loss(logits, self.targets(batch, logits), self.step_frac())
        if not torch.isfinite(loss):
            ids = batch["idx"].tolist()
            raise NonFiniteLoss(f"loss is {loss.item()} at step {self.global_step}; batch example ids {ids}")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["idx"]))
        return loss

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        prob = torch.softmax(self.model(batch).float(), dim=-1)
        self._val.setdefault(dataloader_idx, []).append((prob.cpu(), batch["target"].argmax(-1).cpu()))

    def on_validation_epoch_end(self) -> None:
        point: dict[str, float] = {"step": float(self.global_step)}
        for k, parts in sorted(self._val.items()):
            prob = torch.cat([p for p, _ in parts]).numpy()
            label = torch.cat([t for _, t in parts]).numpy()
            for metric, value in scores(prob, label).items():
                name = f"{self.val_names[k]}/{metric}"
                point[name] = value
                self.log(name, value if not math.isnan(value) else 0.0, add_dataloader_idx=False)
        self._val.clear()
        if not self.trainer.sanity_checking:
            self.curve.append(point)

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> dict[str, torch.Tensor]:
        """Class probabilities [B, C] of a batch (the kind decodes them into labels)."""
        return {"idx": batch["idx"], "out": torch.softmax(self.model(batch).float(), dim=-1)}

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.optimizer([p for p in self.model.parameters() if p.requires_grad], lr=self.lr)
        sched = self.scheduler(opt, max(1, int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def adamw(
    params: Sequence[torch.Tensor],
    lr: float,
    weight_decay: float = 0.0,
    betas: Sequence[float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """AdamW, fused where the parameters allow it (`adamw_impl`)."""
    params = list(params)
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), **adamw_impl(params)
    )


def _warmup_then(
    opt: torch.optim.Optimizer, total: int, warmup_steps: int, shape: Callable[[float], float]
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then `shape` of the fraction of the remaining steps done."""
    warm = int(warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else shape(min(1.0, (s - warm) / max(1, total - warm)))
    )


def warmup_cosine(opt: torch.optim.Optimizer, total: int, warmup_steps: int = 0) -> Any:
    """Warm-up, then a cosine decay to 0 (the paper's schedule)."""
    return _warmup_then(opt, total, warmup_steps, lambda f: 0.5 * (1 + math.cos(math.pi * f)))


def warmup_linear(opt: torch.optim.Optimizer, total: int, warmup_steps: int = 0) -> Any:
    """Warm-up, then a linear decay to 0."""
    return _warmup_then(opt, total, warmup_steps, lambda f: max(0.0, 1 - f))


def warmup_constant(opt: torch.optim.Optimizer, total: int, warmup_steps: int = 0) -> Any:
    """Warm-up, then the model's lr throughout."""
    return _warmup_then(opt, total, warmup_steps, lambda f: 1.0)


#: Devices with a fused AdamW kernel (one kernel over all parameters: 8x faster than the default step on CPU).
FUSED_DEVICES = ("cpu", "cuda", "xpu", "mps")


def adamw_impl(params: Sequence[torch.Tensor]) -> dict[str, bool]:
    """`fused=True` when every parameter is a float on a device with the fused kernel, else `foreach=True`."""
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
    return {"fused": True} if fused and params else {"foreach": True}


class KeepBest(pl.Callback):
    """Keeps, in memory, the trainable weights at the best value of `monitor` (no checkpoint files).

    `tie_break` orders equal values (e.g. exact match stuck at 0 early in generative training, broken by token
    accuracy); without it, ties keep the earliest point. Under a sharding strategy (FSDP) the weights are
    gathered whole on rank 0 (`gathered` is then true) and `final_state` keeps the last ones too.
    """

    def __init__(self, monitor: str, mode: str = "max", tie_break: str | None = None):
        self.monitor, self.sign, self.tie_break = monitor, 1.0 if mode == "max" else -1.0, tie_break
        self.best: float | None = None
        self.best_key: tuple[float, ...] | None = None
        self.best_step: int | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.final_state: dict[str, torch.Tensor] | None = None
        self.gathered = False

    def _capture(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, torch.Tensor]:
        if (
            type(getattr(trainer, "strategy", None)).__name__ == "FSDPStrategy"
        ):  # a collective: all ranks call it
            self.gathered = True
            full = trainer.strategy.lightning_module_state_dict()
            return {k.removeprefix("model."): v.cpu() for k, v in full.items() if k.startswith("model.")}
        return {k: v.detach().cpu().clone() for k, v in trainable_state(module.model).items()}

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or self.monitor not in metrics:
            return
        key = selection_key(metrics, self.monitor, self.tie_break, self.sign)
        if self.best_key is None or key > self.best_key:
            self.best, self.best_key = float(metrics[self.monitor]), key
            self.best_step = trainer.global_step
            self.state = self._capture(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.gathered:
            self.final_state = self._capture(trainer, module)

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state, strict=False)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that training changes (the head, LoRA adapters, or everything when full)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}
