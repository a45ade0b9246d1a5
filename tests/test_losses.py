"""Each loss against numbers computed by hand (math, not the code under test)."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from w2s.config import CONF_DIR, choices
from w2s.losses import Conf, Entropy, Product, XEnt, alpha_at, harden


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


@pytest.mark.parametrize("loss", [XEnt(), XEnt(hard=True), Conf(), Product(), Entropy()])
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
        assert torch.isfinite(loss(LOGITS, WEAK, 0.5))
