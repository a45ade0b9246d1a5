"""A loss that returns NaN: drives a real run into the NonFiniteLoss path (tests of failure handling)."""

import torch

from w2s.losses import Loss


class NanLoss(Loss):
    def __call__(self, logits: torch.Tensor, target: torch.Tensor, step_frac: float = 0.0) -> torch.Tensor:
        return (logits * float("nan")).sum()
