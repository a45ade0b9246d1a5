"""Objectives for training on (weak) labels. Pure torch: `loss(logits[N, C], target[N, C], step_frac) -> scalar`.

`target` is a distribution per row (soft weak labels, or one-hot ground truth). C = 2 for binary tasks and for
pairwise preference (logits = [r_first, r_second], a two-way softmax over the score difference); C = V for
generative targets, one row per target token. `step_frac` in [0, 1] is the fraction of training done.
Each class is built by Hydra from `conf/loss/*.yaml` (`_target_`), never chosen by an if/elif on a name.

Every loss is a `Loss`: besides `__call__`, it has `prepare(targets: Tensor[N, C]) -> None`, which the trainer
calls once, before the first step, with all the training targets (the whole weak-label set), because a batch
cannot see dataset statistics. It does nothing by default; `Window(radius="midweak")` reads its radius there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PRIORS = ("batch", "dataset", "fixed")


def alpha_at(step_frac: float, alpha_max: float, warmup_frac: float) -> float:
    """Linear warm-up from 0 to `alpha_max` over the first `warmup_frac` of training, then constant.

    (openai's reference jumps from 0 to alpha_max at the end of warm-up; the paper ramps.)
    """
    if warmup_frac <= 0:
        return alpha_max
    return alpha_max * min(1.0, max(0.0, step_frac) / warmup_frac)


def soft_ce_rows(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of each row against a distribution (numerically stable through log_softmax)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(target.float() * logp).sum(-1)


def soft_ce(logits: Tensor, target: Tensor) -> Tensor:
    return soft_ce_rows(logits, target).mean()


def one_hot_argmax(probs: Tensor) -> Tensor:
    return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)


def harden(probs: Tensor, prior: float | None) -> Tensor:
    """Hardened predictions: for C = 2 the top `round(prior * N)` rows by P(class 1) become class 1 (the
    adaptive threshold: the quantile that makes the positive fraction equal the prior); for C > 2, argmax."""
    if probs.shape[-1] != 2 or prior is None:
        return one_hot_argmax(probs)
    n = probs.shape[0]
    k = int(round(min(1.0, max(0.0, prior)) * n))
    hard1 = torch.zeros(n, dtype=probs.dtype, device=probs.device)
    if k > 0:
        hard1[torch.topk(probs[:, 1], k).indices] = 1.0
    return torch.stack([1 - hard1, hard1], dim=-1)


def balance(target: Tensor) -> Tensor:
    """Centre a batch of distributions in log space: softmax(log y - batch mean of log y), per class."""
    log_y = torch.log(target.clamp(min=1e-12))
    return torch.softmax(log_y - log_y.mean(0, keepdim=True), dim=-1)


class Loss:
    """The loss protocol: `prepare` once with every training target, then `__call__` per batch."""

    name: str

    def prepare(self, targets: Tensor) -> None:
        """Read what the loss needs from all training targets [N, C]; most losses need nothing."""

    def __call__(self, logits: Tensor, target: Tensor, step_frac: float) -> Tensor:
        raise NotImplementedError


class XEnt(Loss):
    """Naive finetuning: cross-entropy against the weak soft labels (or their argmax, `hard=true`)."""

    def __init__(self, hard: bool = False, name: str = "xent"):
        self.hard, self.name = hard, name

    def __call__(self, logits: Tensor, target: Tensor, step_frac: float) -> Tensor:
        return soft_ce(logits, one_hot_argmax(target) if self.hard else target)


class Conf(Loss):
    """Auxiliary confidence loss (paper Section 4.3.2, Appendix A.4):
    CE(f, (1 - a) * weak + a * harden(f)), with `a` warming up linearly to `alpha_max`.

    The hardening prior (fraction of rows hardened to class 1, binary/pairwise only):
    - `batch`: the fraction of this batch's weak labels with P(class 1) > 0.5;
    - `dataset`: an exponential moving average of those batch fractions (one float of state, bounded);
    - `fixed`: `prior_value` (0.5 is the paper's "exactly half" for balanced tasks).
    For C > 2 (generative, per token) hardening is the student's argmax: there is no threshold to adapt.

    `balance_batch=true` centres the batch's weak labels first, y <- softmax(log y - mean over the batch of
    log y) (for C = 2 this is sigmoid(logit y - mean logit y)), so the batch is balanced, and then hardens with
    prior 0.5 whatever `prior` says; the centred labels are also the weak part of the target.
    """

    def __init__(
        self,
        alpha_max: float = 0.5,
        warmup_frac: float = 0.2,
        prior: str = "batch",
        prior_value: float = 0.5,
        momentum: float = 0.99,
        balance_batch: bool = False,
        name: str = "conf",
    ):
        if prior not in PRIORS:
            raise ValueError(f"conf loss prior={prior!r}; choices: {list(PRIORS)}")
        if not 0.0 <= alpha_max <= 1.0:
            raise ValueError(f"conf loss alpha_max={alpha_max} must be in [0, 1]")
        self.alpha_max, self.warmup_frac, self.prior, self.momentum = alpha_max, warmup_frac, prior, momentum
        self.prior_value, self.balance_batch = prior_value, balance_batch
        self.running: float | None = prior_value if prior == "fixed" else None
        self.name = name

    def current_prior(self, target: Tensor) -> float:
        batch = float((target[:, 1] > 0.5).float().mean())
        if self.prior == "batch":
            return batch
        if self.prior == "fixed":
            return self.prior_value
        self.running = (
            batch if self.running is None else self.momentum * self.running + (1 - self.momentum) * batch
        )
        return self.running

    def __call__(self, logits: Tensor, target: Tensor, step_frac: float) -> Tensor:
        a = alpha_at(step_frac, self.alpha_max, self.warmup_frac)
        target = balance(target.float()) if self.balance_batch else target.float()
        if a == 0.0:
            return soft_ce(logits, target)
        probs = torch.softmax(logits.detach().float(), dim=-1)
        if target.shape[-1] != 2:
            prior = None
        else:
            prior = 0.5 if self.balance_batch else self.current_prior(target)
        mixed = (1 - a) * target + a * harden(probs, prior)
        return soft_ce(logits, mixed)


class Product(Loss):
    """Product loss of the reference code: CE against a target proportional to weak^alpha * student^beta
    (student detached), with beta warming up linearly from 0 so training starts as plain cross-entropy."""

    def __init__(
        self, alpha: float = 1.0, beta: float = 1.0, warmup_frac: float = 0.2, name: str = "product"
    ):
        self.alpha, self.beta, self.warmup_frac, self.name = alpha, beta, warmup_frac, name

    def __call__(self, logits: Tensor, target: Tensor, step_frac: float) -> Tensor:
        beta = alpha_at(step_frac, self.beta, self.warmup_frac)
        logp = torch.log_softmax(logits.detach().float(), dim=-1)
        log_t = self.alpha * torch.log(target.float().clamp(min=1e-12)) + beta * logp
        return soft_ce(logits, torch.softmax(log_t, dim=-1))


class Entropy(Loss):
    """Entropy minimisation: CE(f, weak) + lam * H(f), the entropy taken WITH its gradient (a detached
    self-target is self-training, not an entropy penalty); lam warms up linearly to `lam_max`."""

    def __init__(self, lam_max: float = 0.5, warmup_frac: float = 0.2, name: str = "entropy"):
        self.lam_max, self.warmup_frac, self.name = lam_max, warmup_frac, name

    def __call__(self, logits: Tensor, target: Tensor, step_frac: float) -> Tensor:
        lam = alpha_at(step_frac, self.lam_max, self.warmup_frac)
        logp = torch.log_softmax(logits.float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        return soft_ce(logits, target) + lam * entropy.mean()


class Window(Loss):
    """Cross-entropy against the weak label only where the student is unsure: rows whose top probability
    (detached) is at most 0.5 + r, summed and divided by the batch's full row count (confident rows add 0).

    `radius="midweak"` sets r in `prepare` to the median (the mean of the middle two for an even count) over
    the training labels of (max_c weak - 0.5), which is |P(class 1) - 0.5| when C = 2. With r >= 0.5 every row counts: plain cross-entropy.
    """

    def __init__(self, radius: float | str = 0.15, name: str = "window"):
        if isinstance(radius, str) and radius != "midweak":
            raise ValueError(f"window loss radius={radius!r}; a number or 'midweak'")
        self.radius, self.name = radius, name
        self.r: float | None = None if radius == "midweak" else float(radius)

    def prepare(self, targets: Tensor) -> None:
        if self.radius == "midweak":
            self.r = float(torch.quantile(targets.float().max(-1).values - 0.5, 0.5))

    def __call__(self, logits: Tensor, target: Tensor, step_frac: float) -> Tensor:
        if self.r is None:
            raise RuntimeError("window loss radius=midweak: call prepare(training targets) before training")
        top = torch.softmax(logits.detach().float(), dim=-1).max(-1).values
        inside = (top <= 0.5 + self.r).float()
        return (soft_ce_rows(logits, target) * inside).sum() / len(logits)
