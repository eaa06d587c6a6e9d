"""Sanity checks of the evaluation attacks on a tiny CLIP and on linear models.

PGD is checked against a loop written out here on fixed inputs; CW and the AutoAttack adapter
against their budgets and against PGD; per-sample random starts against batch composition.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import CLEAN_NAMES, TEMPLATE
from tgazsr.attacks import (
    AttackContext, autoattack, autoattack_plan, check_budget, make_settings, pgd, run_attack, sample_generators,
)
from tgazsr.data import ImageTransform
from tgazsr.evaluation import EvalArguments, load_model
from tgazsr.losses import margin_loss


def _check_budget(x, x_adv, eps_units, norm, name):
    check_budget(x, x_adv, eps_units / 255 if norm == "linf" else eps_units, norm, name)


def attack(name, model, text, x, y, eps, indices, salt, seed=0, **settings):
    """A registered attack at ``eps`` (units of 1/255) with per-sample random starts, as the harness runs it."""
    context = AttackContext(text, "linf", sample_generators(seed, indices, salt), seed, text.shape[0])
    return run_attack(name, model, x, y, eps / 255, make_settings(name, settings), context)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny(eval_world):
    """(model, text embeddings, images x in [0,1], labels = the model's clean predictions)."""
    model, tokenizer, _ = load_model(EvalArguments(model_name_or_path=eval_world["clip_a"]), torch.device("cpu"))
    text = model.class_embeddings(CLEAN_NAMES, [TEMPLATE], tokenizer)
    transform = ImageTransform(32)
    x = torch.stack([transform(im) for im in eval_world["images"][:8]])
    y = torch.tensor(eval_world["labels"][:8])
    return model, text, x, y


def _hand_pgd(model, text, x, y, eps, alpha, steps, starts):
    """PGD L-inf on the zero-shot cross-entropy, spelled out: start, sign step, clip, box."""
    delta = starts.clone()
    delta = torch.max(torch.min(delta, torch.full_like(delta, eps)), torch.full_like(delta, -eps))
    delta = torch.clamp(x + delta, 0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model.logit_scale * F.normalize(model(x + delta).embeds, dim=-1) @ text.t()
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        delta = delta.detach() + alpha * grad.sign()
        delta = torch.clamp(delta, -eps, eps)
        delta = torch.clamp(x + delta, 0, 1) - x
    return x + delta


def test_pgd_matches_a_hand_run_on_the_tiny_model(tiny):
    model, text, x, y = tiny
    indices = list(range(len(x)))
    out = attack("pgd", model, text, x, y, 4.0, indices, "salt", steps=4, step_size=1.0)
    # The random start of sample i is uniform in [-eps, eps], drawn from its own generator.
    starts = torch.stack([(torch.rand(x.shape[1:], generator=g) * 2 - 1) * (4 / 255)
                          for g in sample_generators(0, indices, "salt")])
    expected = _hand_pgd(model, text, x, y, 4 / 255, 1 / 255, 4, starts)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    _check_budget(x, out, 4.0, "linf", "pgd")
    # Without a random start, the first step is exactly eps * sign(gradient) (clipped to the box).
    one = attack("pgd", model, text, x, y, 2.0, indices, "salt", steps=1, step_size=2.0, random_start=False)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model.classify(xr, text), y, reduction="sum"), xr)
    torch.testing.assert_close(one, (x + 2 / 255 * g.sign()).clamp(0, 1), atol=1e-6, rtol=0)


def test_random_starts_do_not_depend_on_the_batch(tiny):
    model, text, x, y = tiny
    together = attack("pgd", model, text, x, y, 4.0, list(range(8)), "s", steps=2)
    alone = torch.cat([attack("pgd", model, text, x[i:i + 1], y[i:i + 1], 4.0, [i], "s", steps=2) for i in (5, 6)])
    torch.testing.assert_close(alone, together[5:7], atol=1e-5, rtol=0)
    other_seed = attack("pgd", model, text, x, y, 4.0, list(range(8)), "s", seed=1, steps=2)
    assert not torch.equal(other_seed, together)


def test_cw_raises_the_capped_margin_within_budget(tiny):
    model, text, x, y = tiny
    x_adv = attack("cw", model, text, x, y, 8.0, list(range(len(x))), "cw", steps=5, step_size=2.0, kappa=50.0,
                   random_start=False)
    _check_budget(x, x_adv, 8.0, "linf", "cw")
    with torch.no_grad():
        before = margin_loss(model.classify(x, text), y)
        after = margin_loss(model.classify(x_adv, text), y)
    assert (after >= before - 1e-5).all() and (after > before).any()
    # The cap: a margin beyond kappa no longer counts.
    assert margin_loss(torch.tensor([[0.0, 100.0]]), torch.tensor([0]), kappa=50.0).item() == 50.0


def test_autoattack_plan_follows_the_number_of_classes():
    assert autoattack_plan(2, "tga") == (["apgd-ce"], 1)  # the reference: APGD-CE alone on 2 classes
    assert autoattack_plan(3, "tga") == (["apgd-ce", "apgd-dlr"], 2)
    assert autoattack_plan(3, "fare") == (["apgd-ce"], 2)  # targeted DLR needs 4 classes
    assert autoattack_plan(5, "standard") == (["apgd-ce", "apgd-t", "fab-t", "square"], 4)
    assert autoattack_plan(100, "standard")[1] == 9
    assert autoattack_plan(10, "custom", ["apgd-ce", "square"]) == (["apgd-ce", "square"], 9)
    with pytest.raises(ValueError, match="Unknown AutoAttack version"):
        autoattack_plan(10, "strong")
    with pytest.raises(ValueError, match="Unknown AutoAttack attacks"):
        autoattack_plan(10, "custom", ["pgd"])


@pytest.mark.parametrize("classes,version", [(2, "tga"), (5, "standard"), (4, "fare")])
def test_autoattack_runs_on_small_label_sets_and_respects_the_budget(classes, version):
    torch.manual_seed(classes)
    lin = torch.nn.Linear(3 * 4 * 4, classes)
    x = torch.rand(6, 3, 4, 4)
    f = lambda xa: lin(xa.flatten(1))  # noqa: E731
    with torch.no_grad():
        y = f(x).argmax(1)
    x_adv = autoattack(f, x, y, 8 / 255, version=version, n_iter=5, square_queries=10, seed=0)
    _check_budget(x, x_adv, 8.0, "linf", "autoattack")
    with torch.no_grad():
        assert (f(x_adv).argmax(1) == y).float().mean() <= 1.0


def test_autoattack_is_at_least_as_strong_as_one_pgd_step(tiny):
    model, text, x, y = tiny
    indices = list(range(len(x)))
    eps = 8.0
    one_step = attack("pgd", model, text, x, y, eps, indices, "a", steps=1, step_size=eps)
    aa = attack("autoattack", model, text, x, y, eps, indices, "a", n_iter=5)
    _check_budget(x, aa, eps, "linf", "autoattack")
    with torch.no_grad():
        acc_pgd = (model.classify(one_step, text).argmax(-1) == y).float().mean()
        acc_aa = (model.classify(aa, text).argmax(-1) == y).float().mean()
    assert acc_aa <= acc_pgd and acc_aa < 1.0


def test_budget_check_refuses_an_attack_that_cheats():
    x = torch.full((2, 3, 4, 4), 0.5)
    with pytest.raises(RuntimeError, match="exceeded its budget"):
        _check_budget(x, x + 2 / 255, 1.0, "linf", "bad")
    with pytest.raises(RuntimeError, match="pixel box"):
        _check_budget(x, x * 3, 255.0, "linf", "bad")
    _check_budget(x, x + 1 / 255, 1.0, "linf", "fine")


def test_pgd_l2_start_is_per_sample_and_in_the_ball():
    x = torch.rand(3, 3, 5, 5)
    w = torch.randn(75)
    gens = sample_generators(0, [0, 1, 2])
    out = pgd(lambda xa: (xa.flatten(1) * w).sum(1), x, 0.5, 0.1, 3, norm="l2", generator=gens)
    assert (out - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
