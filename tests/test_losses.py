"""Each loss against numbers computed by hand (math, not the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from w2s.config import CONF_DIR, choices
from w2s.losses import Conf, Entropy, Product, Window, XEnt, alpha_at, harden


def _sig(x):
    return 1 / (1 + math.exp(-x))


LOGITS = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.0, 0.5], [0.0, -3.0]])
WEAK = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])


def _ce_row(z, p1):
    """Binary cross-entropy for logits [0-ish difference z] and soft label p1, by hand."""
    q = _sig(z)
    return -(p1 * math.log(q) + (1 - p1) * math.log(1 - q))


def test_xent_soft_and_hard():
    z = [2.0, -2.0, 0.5, -3.0]
    want = sum(_ce_row(zi, p) for zi, p in zip(z, [0.8, 0.4, 0.7, 0.1], strict=True)) / 4
    assert float(XEnt()(LOGITS, WEAK, 0.3)) == pytest.approx(want, rel=1e-5)
    want_hard = sum(_ce_row(zi, p) for zi, p in zip(z, [1, 0, 1, 0], strict=True)) / 4
    assert float(XEnt(hard=True)(LOGITS, WEAK, 0.3)) == pytest.approx(want_hard, rel=1e-5)


def test_warmup_is_linear_then_flat():
    got = [alpha_at(f, 0.5, 0.2) for f in (0.0, 0.1, 0.2, 0.5)]
    assert got == pytest.approx([0.0, 0.25, 0.5, 0.5])
    assert alpha_at(0.05, 0.75, 0.2) == pytest.approx(0.1875)


def test_conf_equals_xent_at_start_and_mixes_after_warmup():
    assert float(Conf()(LOGITS, WEAK, 0.0)) == pytest.approx(float(XEnt()(LOGITS, WEAK, 0.0)))
    # after warm-up a = 0.5; batch prior = 2/4 weak positives -> the 2 rows with highest student P(1) harden to 1
    # student P(1): sig(2)=.88, sig(-2)=.12, sig(.5)=.62, sig(-3)=.05 -> rows 0 and 2 are positive
    z = [2.0, -2.0, 0.5, -3.0]
    mixed = [0.5 * 0.8 + 0.5, 0.5 * 0.4, 0.5 * 0.7 + 0.5, 0.5 * 0.1]
    want = sum(_ce_row(zi, p) for zi, p in zip(z, mixed, strict=True)) / 4
    assert float(Conf()(LOGITS, WEAK, 0.5)) == pytest.approx(want, rel=1e-5)


def test_adaptive_threshold_on_unbalanced_batch():
    probs = torch.softmax(torch.randn(40, 2, generator=torch.Generator().manual_seed(0)), -1)
    hard = harden(probs, 0.25)
    assert int(hard[:, 1].sum()) == 10
    # the hardened positives are exactly the 10 highest P(class 1)
    top = set(torch.topk(probs[:, 1], 10).indices.tolist())
    assert set(torch.nonzero(hard[:, 1]).flatten().tolist()) == top
    # the conf loss takes the prior from the batch's weak labels: 1 positive weak label in 4 -> 1 hardened
    weak = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.7, 0.3], [0.9, 0.1]])
    loss = Conf(alpha_max=1.0, warmup_frac=0.0)
    assert loss.current_prior(weak) == pytest.approx(0.25)


def test_dataset_prior_state_is_bounded():
    loss = Conf(prior="dataset", momentum=0.9)
    for i in range(2000):
        weak = torch.tensor([[0.0, 1.0]] * (i % 3) + [[1.0, 0.0]] * 2)
        loss(torch.zeros(len(weak), 2), weak, 0.5)
    assert isinstance(loss.running, float) and 0.0 <= loss.running <= 1.0
    assert Conf(prior="fixed", prior_value=0.3).current_prior(WEAK) == 0.3
    with pytest.raises(ValueError, match="choices"):
        Conf(prior="global")


def test_product_by_hand():
    # beta fully warmed: target ∝ weak * student; row 0: 0.8*.8808 vs 0.2*.1192
    q = [_sig(2.0), _sig(-2.0), _sig(0.5), _sig(-3.0)]
    w = [0.8, 0.4, 0.7, 0.1]
    t = [wi * qi / (wi * qi + (1 - wi) * (1 - qi)) for wi, qi in zip(w, q, strict=True)]
    z = [2.0, -2.0, 0.5, -3.0]
    want = sum(_ce_row(zi, ti) for zi, ti in zip(z, t, strict=True)) / 4
    assert float(Product()(LOGITS, WEAK, 1.0)) == pytest.approx(want, rel=1e-5)
    assert float(Product()(LOGITS, WEAK, 0.0)) == pytest.approx(float(XEnt()(LOGITS, WEAK, 0.0)), rel=1e-5)


def test_entropy_penalty_has_gradient():
    z = [2.0, -2.0, 0.5, -3.0]
    ce = sum(_ce_row(zi, p) for zi, p in zip(z, [0.8, 0.4, 0.7, 0.1], strict=True)) / 4
    ent = sum(-(_sig(zi) * math.log(_sig(zi)) + (1 - _sig(zi)) * math.log(1 - _sig(zi))) for zi in z) / 4
    assert float(Entropy(lam_max=0.5)(LOGITS, WEAK, 1.0)) == pytest.approx(ce + 0.5 * ent, rel=1e-5)
    # the entropy term has its own gradient: dH/dz = -z * p * (1 - p) for logits [0, z] (towards confidence)
    grads = []
    for lam in (0.0, 1.0):
        x = torch.tensor([[0.0, 0.3]], requires_grad=True)
        Entropy(lam_max=lam, warmup_frac=0.0)(x, torch.tensor([[0.5, 0.5]]), 1.0).backward()
        grads.append(float(x.grad[0, 1]))
    p = _sig(0.3)
    assert grads[1] - grads[0] == pytest.approx(-0.3 * p * (1 - p), rel=1e-4)


@pytest.mark.parametrize(
    "loss", [XEnt(), XEnt(hard=True), Conf(), Conf(balance_batch=True), Product(), Entropy(), Window()]
)
def test_finite_gradients_on_extremes_and_any_width(loss):
    for c in (2, 7):  # binary/pairwise rows and generative (vocabulary) rows
        logits = torch.tensor(
            [[1e4] + [-1e4] * (c - 1), [0.0] * c, [-1e4] * (c - 1) + [1e4]], requires_grad=True
        )
        target = torch.zeros(3, c)
        target[0, 0], target[1, c - 1], target[2, 0] = 1.0, 1.0, 1.0
        out = loss(logits, target, 0.6)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(logits.grad).all()


def test_generative_conf_hardens_by_argmax():
    logits = torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    got = float(Conf(alpha_max=0.5, warmup_frac=0.0)(logits, target, 1.0))
    # argmax of row 0 is token 1, of row 1 token 0: targets become [.5, .5, 0] and [.5, 0, .5]
    logp0 = [3 - math.log(2 + math.exp(3)), -math.log(2 + math.exp(3))]
    logp1 = [2 - math.log(2 + math.exp(2)), -math.log(2 + math.exp(2))]
    want = (-(0.5 * logp0[1] + 0.5 * logp0[0]) - (0.5 * logp1[0] + 0.5 * logp1[1])) / 2
    assert got == pytest.approx(want, rel=1e-5)


def test_every_loss_config_instantiates():
    for name in choices("loss"):
        loss = instantiate(OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml"))
        assert loss.name == name
        loss.prepare(WEAK)
        assert torch.isfinite(loss(LOGITS, WEAK, 0.5))


def test_window_with_radius_half_or_more_is_cross_entropy():
    saturated = torch.tensor([[0.0, 1e4], [1e4, 0.0], [0.0, 0.5], [0.0, -3.0]])
    for logits in (LOGITS, saturated):
        for r in (0.5, 0.7):
            assert float(Window(r)(logits, WEAK, 0.3)) == pytest.approx(
                float(XEnt()(logits, WEAK, 0.3)), abs=1e-7
            )
    logits, weak = torch.randn(6, 10), torch.softmax(torch.randn(6, 10), -1)
    assert float(Window(0.5)(logits, weak, 0.0)) == pytest.approx(float(XEnt()(logits, weak, 0.0)), abs=1e-7)


def test_window_by_hand():
    # student top probabilities: sig(2)=.881, 1-sig(-2)=.881, sig(.5)=.622, 1-sig(-3)=.953
    # r = .15: only row 2 is at most .65; the sum is divided by all 4 rows
    assert float(Window(0.15)(LOGITS, WEAK, 0.5)) == pytest.approx(_ce_row(0.5, 0.7) / 4, rel=1e-5)
    # r = .4: rows 0, 1, 2 are at most .9
    want = (_ce_row(2.0, 0.8) + _ce_row(-2.0, 0.4) + _ce_row(0.5, 0.7)) / 4
    assert float(Window(0.4)(LOGITS, WEAK, 0.5)) == pytest.approx(want, rel=1e-5)


def test_window_midweak_radius_comes_from_prepare():
    loss = Window("midweak")
    with pytest.raises(RuntimeError, match="prepare"):
        loss(LOGITS, WEAK, 0.0)
    loss.prepare(WEAK)  # |weak - .5| = .3, .1, .2, .4 -> median (.2 + .3) / 2
    assert loss.r == pytest.approx(0.25)
    assert float(loss(LOGITS, WEAK, 0.5)) == pytest.approx(_ce_row(0.5, 0.7) / 4, rel=1e-5)
    loss.prepare(torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]]))  # max - .5: 0, .2, .1
    assert loss.r == pytest.approx(0.1)
    with pytest.raises(ValueError, match="midweak"):
        Window("median")


def test_balance_batch_by_hand():
    w = [0.8, 0.4, 0.7, 0.1]
    logit = [math.log(p / (1 - p)) for p in w]
    mean = sum(logit) / 4
    shifted = [_sig(x - mean) for x in logit]
    z = [2.0, -2.0, 0.5, -3.0]
    loss = Conf(alpha_max=0.5, warmup_frac=0.2, balance_batch=True)
    want0 = sum(_ce_row(zi, p) for zi, p in zip(z, shifted, strict=True)) / 4
    assert float(loss(LOGITS, WEAK, 0.0)) == pytest.approx(want0, rel=1e-5)
    # prior 0.5 whatever the batch says: the 2 highest student P(1) (rows 0 and 2) harden to class 1
    mixed = [0.5 * shifted[0] + 0.5, 0.5 * shifted[1], 0.5 * shifted[2] + 0.5, 0.5 * shifted[3]]
    want = sum(_ce_row(zi, p) for zi, p in zip(z, mixed, strict=True)) / 4
    assert float(loss(LOGITS, WEAK, 1.0)) == pytest.approx(want, rel=1e-5)
    unbalanced = torch.tensor([[0.2, 0.8], [0.3, 0.7], [0.1, 0.9], [0.4, 0.6]])  # batch prior would be 1
    hard = [1, 0, 1, 0]
    logit = [math.log(p / (1 - p)) for p in (0.8, 0.7, 0.9, 0.6)]
    shifted = [_sig(x - sum(logit) / 4) for x in logit]
    mixed = [0.5 * s + 0.5 * h for s, h in zip(shifted, hard, strict=True)]
    want = sum(_ce_row(zi, p) for zi, p in zip(z, mixed, strict=True)) / 4
    assert float(loss(LOGITS, unbalanced, 1.0)) == pytest.approx(want, rel=1e-5)


def _np_ce(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -(target * logp).sum(-1)


def test_every_loss_on_ten_classes_by_hand():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 10)) * 2
    weak = rng.dirichlet(np.ones(10), size=8)
    logits, target = torch.tensor(z, dtype=torch.float32), torch.tensor(weak, dtype=torch.float32)
    q = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    hard = np.eye(10)[q.argmax(-1)]
    ce = _np_ce(z, weak).mean()
    assert float(XEnt()(logits, target, 1.0)) == pytest.approx(ce, rel=1e-5)
    assert float(XEnt(hard=True)(logits, target, 1.0)) == pytest.approx(
        _np_ce(z, np.eye(10)[weak.argmax(-1)]).mean(), rel=1e-5
    )
    conf = Conf(alpha_max=0.5, warmup_frac=0.0)
    assert float(conf(logits, target, 1.0)) == pytest.approx(
        _np_ce(z, 0.5 * weak + 0.5 * hard).mean(), rel=1e-5
    )
    log_w = np.log(weak)
    centred = np.exp(log_w - log_w.mean(0)) / np.exp(log_w - log_w.mean(0)).sum(-1, keepdims=True)
    balanced = Conf(alpha_max=0.5, warmup_frac=0.0, balance_batch=True)
    assert float(balanced(logits, target, 1.0)) == pytest.approx(
        _np_ce(z, 0.5 * centred + 0.5 * hard).mean(), rel=1e-5
    )
    prod = weak * q / (weak * q).sum(-1, keepdims=True)
    assert float(Product(warmup_frac=0.0)(logits, target, 1.0)) == pytest.approx(
        _np_ce(z, prod).mean(), rel=1e-5
    )
    entropy = -(q * np.log(q)).sum(-1).mean()
    got = float(Entropy(lam_max=0.5, warmup_frac=0.0)(logits, target, 1.0))
    assert got == pytest.approx(ce + 0.5 * entropy, rel=1e-5)
    r = float(np.quantile(q.max(-1), 0.5)) - 0.5  # half the rows are inside the window
    inside = q.max(-1) <= 0.5 + r
    assert 0 < inside.sum() < 8
    assert float(Window(r)(logits, target, 1.0)) == pytest.approx(_np_ce(z, weak)[inside].sum() / 8, rel=1e-5)
