import math

import pytest
import torch
import torch.nn.functional as F

from tgazsr import losses
from tgazsr.attacks import pgd


def test_cross_entropy_known_value():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 0])
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert losses.cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_symmetric_known_value():
    img = torch.eye(2)
    txt = torch.eye(2)
    # cos = identity; logits = 2*I; each CE = log(1 + e^-2)
    value = losses.contrastive(img, txt, 2.0).item()
    assert value == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)
    # Asymmetric case: average of the two directions.
    img = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    logits = F.normalize(img, dim=-1) @ torch.eye(2).t()
    target = torch.arange(2)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    assert losses.contrastive(img, torch.eye(2), 1.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_attention_distances_known_values():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert losses.attention_distance(a, b, "l2").item() == pytest.approx(2.5)  # (5 + 0) / 2
    assert losses.attention_distance(a, b, "l1").item() == pytest.approx(7.0 / 4)
    c = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    d = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert losses.attention_distance(c, d, "cos").item() == pytest.approx(0.5)  # (1 + 0) / 2
    with pytest.raises(ValueError, match="distance_metric"):
        losses.attention_distance(a, b, "l3")


def test_kl_divergence_known_value_and_reduction():
    p = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    q = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1]]))
    kl0 = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert losses.kl_divergence(p, q, "sum").item() == pytest.approx(kl0, rel=1e-5)
    assert losses.kl_divergence(p, q, "mean").item() == pytest.approx(kl0 / 2, rel=1e-5)
    assert losses.kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_gradient_flows_through_both_sides_unless_detached():
    p = torch.randn(3, 4, requires_grad=True)
    q = torch.randn(3, 4, requires_grad=True)
    losses.kl_divergence(p, q).backward()
    assert p.grad.abs().sum() > 0 and q.grad.abs().sum() > 0
    p2 = p.detach().clone().requires_grad_(True)
    out = losses.kl_divergence(p2, q.detach(), detach_p=True)
    assert not out.requires_grad


def test_embedding_l2_and_margin():
    e = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert losses.embedding_l2(e, t).item() == pytest.approx((5 + 9) / 2)
    assert losses.embedding_l2(e, t, reduce=False).tolist() == [5.0, 9.0]
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 100.0, 0.0]])
    m = losses.margin_loss(logits, torch.tensor([0, 0]), kappa=50.0)
    assert m.tolist() == [-3.0, 50.0]


def _linear_loss(w):
    def loss_fn(x):
        return (x.flatten(1) * w).sum(1)

    return loss_fn


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_budget_and_box_and_raises_loss(norm):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 6, 6)
    w = torch.randn(3 * 6 * 6)
    loss_fn = _linear_loss(w)
    eps = 4 / 255 if norm == "linf" else 0.5
    x_adv = pgd(loss_fn, x, eps=eps, step_size=eps / 4, steps=10, norm=norm)
    delta = (x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (loss_fn(x_adv) > loss_fn(x)).all()


def test_pgd_linf_matches_hand_run_on_linear_loss():
    # No random start, a linear loss: each step moves sign(w) * step, clipped to eps and [0,1].
    x = torch.full((1, 1, 2, 2), 0.5)
    x[0, 0, 0, 0] = 1.0
    w = torch.tensor([1.0, -1.0, 2.0, -0.5])
    x_adv = pgd(_linear_loss(w), x, eps=0.1, step_size=0.04, steps=3, random_start=False)
    expected = torch.tensor([1.0, 0.4, 0.6, 0.4]).view(1, 1, 2, 2)
    torch.testing.assert_close(x_adv, expected)


def test_pgd_takes_no_parameter_gradients():
    lin = torch.nn.Linear(12, 3)
    x = torch.rand(4, 12)
    y = torch.tensor([0, 1, 2, 0])
    pgd(lambda xa: F.cross_entropy(lin(xa), y, reduction="none"), x, 0.1, 0.05, 3)
    assert lin.weight.grad is None


def test_pgd_restarts_keep_best_and_seed_is_deterministic():
    torch.manual_seed(0)
    x = torch.rand(5, 10)
    w = torch.randn(10)
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    a = pgd(_linear_loss(w), x, 0.05, 0.01, 2, restarts=3, generator=g1)
    b = pgd(_linear_loss(w), x, 0.05, 0.01, 2, restarts=3, generator=g2)
    torch.testing.assert_close(a, b)
    single = pgd(_linear_loss(w), x, 0.05, 0.01, 2, generator=torch.Generator().manual_seed(3))
    assert (_linear_loss(w)(a) >= _linear_loss(w)(single) - 1e-6).all()
