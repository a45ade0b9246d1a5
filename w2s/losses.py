# TEMPORARY (replaced by the losses branch)
import torch


class XEnt:
    def __init__(self, name="xent", hard=False):
        pass

    def __call__(self, logits, target, step_frac, weight=None):
        return -(target * torch.log_softmax(logits.float(), -1)).sum(-1).mean()
