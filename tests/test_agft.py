"""AGFT as its released code computes it (METHOD.md, "AGFT, as its released code computes it"): the
loss and the training attack against the formula written out here, two training steps from its
Tiny-ImageNet recipe, its settings in --help and the model card, and a method that needed no file
outside its module, its recipes, the papers and the registry order."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
from tgazsr.methods import METHODS, get_method
from tgazsr.methods.agft import AGFTConfig, agft_loss
from tgazsr.methods.base import StepView
from tgazsr.modeling import ImageEncoding, ZeroShotCLIP, load_clip
from tgazsr.objectives import AttackTarget, get_objective, objective_loss
from tgazsr.recipes import RecipeError, parse_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

pytestmark = pytest.mark.usefixtures("single_thread")


def parse(argv):
    return parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)


# --- the formula of METHOD.md, written out with torch ops ---------------------------------------


def released_loss(student: torch.Tensor, reference: torch.Tensor, text_raw: torch.Tensor, s: float, r: float):
    """``mean_b [ -sum_c p_bc log softmax(S cos(e_theta(x_adv_b), T))_c ]`` with
    ``p = softmax(r S cos(e_theta0(x_b), T))``; cos_sim L2-normalizes both sides (clip_model.py:202-213)."""
    t = text_raw / text_raw.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        ref = reference / reference.norm(dim=-1, keepdim=True)
        p = torch.softmax(r * s * (ref @ t.t()), dim=-1)
    z = s * ((student / student.norm(dim=-1, keepdim=True)) @ t.t())
    return -(p * torch.log_softmax(z, dim=-1)).sum(dim=-1).mean(), z, p


def _view(adv, ref, text, labels):
    """A step view whose logits function is ZeroShotCLIP.logits' (model scale 100 when scale=True)."""
    def logits_fn(e, scale=True):
        cos = F.normalize(e, dim=-1) @ text.t()
        return cos * 100.0 if scale else cos

    return StepView(labels=labels, text_embeds=text, logits_fn=logits_fn, logit_scale=torch.tensor(100.0),
                    image_size=32, adv=ImageEncoding(adv), clean=None, ref_adv=None, ref_clean=ImageEncoding(ref))


@pytest.mark.parametrize("s, r", [(180.0, 0.4), (50.0, 1.0)])
def test_loss_and_its_gradient_match_the_released_formula(s, r):
    torch.manual_seed(0)
    b, d, c = 6, 8, 5
    text_raw = torch.randn(c, d) * 3  # the released T is unnormalized; cos_sim normalizes it
    text = F.normalize(text_raw, dim=-1)
    labels = torch.randint(0, c, (b,))
    adv = torch.randn(b, d, requires_grad=True)
    ref = torch.randn(b, d, requires_grad=True)  # no gradient may reach the frozen side
    cfg = RobustTrainingConfig(output_dir="unused", method="agft", use_cpu=True, agft_logit_scale=s,
                               agft_scale_ratio=r)
    out = agft_loss(_view(adv, ref, text, labels), cfg)
    assert out.sum_part is None and set(out.logs) == {"loss_soft_ce"}
    g_adv, g_ref = torch.autograd.grad(out.mean_part, [adv, ref], allow_unused=True)

    adv2 = adv.detach().clone().requires_grad_(True)
    expected, z, p = released_loss(adv2, ref.detach(), text_raw, s, r)
    (expected_g,) = torch.autograd.grad(expected, [adv2])
    torch.testing.assert_close(out.mean_part, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_soft_ce"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_adv, expected_g, rtol=1e-4, atol=1e-7)
    assert expected_g.abs().sum() > 0 and (g_ref is None or g_ref.abs().sum() == 0)
    # torch's CrossEntropyLoss with a probability target, as the released step calls it (train.py:117-118).
    torch.testing.assert_close(out.mean_part, torch.nn.CrossEntropyLoss()(z, p), rtol=1e-5, atol=1e-6)
    # The labels are never read; the logged accuracy ranks classes as the loss's logits do.
    again = agft_loss(_view(adv, ref, text, (labels + 1) % c), cfg)
    torch.testing.assert_close(again.mean_part, out.mean_part)
    assert torch.equal(out.accuracy_logits.argmax(-1), z.argmax(-1))


def test_the_target_scale_is_the_ratio_times_the_student_scale():
    """At r = 1 the soft CE is minimized by the student equal to the reference; at r = 0.4 the
    reference's own logits are not optimal (the target is softer than the student at scale S)."""
    torch.manual_seed(1)
    text = F.normalize(torch.randn(4, 8), dim=-1)
    ref = torch.randn(3, 8)
    labels = torch.zeros(3, dtype=torch.long)

    def grad_at_reference(r):
        adv = ref.clone().requires_grad_(True)
        cfg = RobustTrainingConfig(output_dir="unused", method="agft", use_cpu=True, agft_scale_ratio=r)
        (g,) = torch.autograd.grad(agft_loss(_view(adv, ref, text, labels), cfg).mean_part, [adv])
        return g

    assert grad_at_reference(1.0).abs().max() < 1e-5
    assert grad_at_reference(0.4).abs().max() > 1e-4


# --- the training attack -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_clip):
    torch.manual_seed(0)
    return ZeroShotCLIP(load_clip(tiny_clip)).eval()


def test_attack_objective_is_the_same_soft_ce_with_an_image_gradient(tiny_model):
    objective = get_objective("agft_soft_ce")
    assert objective.reads_reference and get_method("agft").attack_objective == "agft_soft_ce"
    torch.manual_seed(0)
    x = torch.rand(5, 3, 32, 32)
    text_raw = torch.randn(3, tiny_model.clip.config.projection_dim)
    text = F.normalize(text_raw, dim=-1)
    frozen = tiny_model.frozen_copy()
    with torch.no_grad():
        reference = frozen(x).embeds
    settings = AGFTConfig()
    labels = torch.zeros(5, dtype=torch.long)
    target = AttackTarget(labels, text, reference_embeds=reference, reference=frozen, method_config=settings)
    x_in = x.clone().requires_grad_(True)
    per_sample = objective_loss("agft_soft_ce", tiny_model, target)(x_in)
    assert per_sample.shape == (5,)
    (g,) = torch.autograd.grad(per_sample.sum(), [x_in])
    assert torch.isfinite(g).all() and g.abs().sum() > 0

    # Written out: the soft CE at S = 180 against the target at 0.4 * 180 from the frozen clean embedding.
    x2 = x.clone().requires_grad_(True)
    expected, _, _ = released_loss(tiny_model(x2).embeds, reference, text_raw, 180.0, 0.4)
    (g2,) = torch.autograd.grad(expected, [x2])
    torch.testing.assert_close(per_sample.mean(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g / 5, g2, rtol=1e-4, atol=1e-8)
    # The hard labels do not drive it: other labels, the same losses.
    other = AttackTarget(labels + 2, text, reference_embeds=reference, reference=frozen, method_config=settings)
    torch.testing.assert_close(objective_loss("agft_soft_ce", tiny_model, other)(x), per_sample.detach())

    # PGD on it raises it.
    from tgazsr.attacks import pgd

    with torch.no_grad():
        before = objective_loss("agft_soft_ce", tiny_model, target)(x).mean()
    x_adv = pgd(objective_loss("agft_soft_ce", tiny_model, target), x, eps=8 / 255, step_size=2 / 255, steps=5)
    with torch.no_grad():
        assert objective_loss("agft_soft_ce", tiny_model, target)(x_adv).mean() > before


def test_attack_objective_needs_agft_settings(tiny_model):
    x = torch.rand(2, 3, 32, 32)
    text = F.normalize(torch.randn(3, tiny_model.clip.config.projection_dim), dim=-1)
    target = AttackTarget(torch.zeros(2, dtype=torch.long), text, reference_embeds=torch.randn(2, text.shape[1]),
                          method_config=get_method("tga_zsr").make_config())
    with pytest.raises(RecipeError, match="--method agft"):
        objective_loss("agft_soft_ce", tiny_model, target)


# --- recipes ---------------------------------------------------------------------------------------


def test_recipes_carry_the_released_run_and_the_tga_setting():
    model_args, data_args, cfg = parse([str(RECIPES / "agft.yaml")])
    assert cfg.method == "agft" and (cfg.agft_logit_scale, cfg.agft_scale_ratio) == (180.0, 0.4)
    assert data_args.dataset_name == "ILSVRC/imagenet-1k" and data_args.train_split == "train"
    assert data_args.prompt_template == "This is a photo of a {}."
    assert (cfg.train_eps, cfg.train_numsteps, cfg.train_stepsize, cfg.train_random_start) == (1, 2, 1, True)
    assert (cfg.learning_rate, cfg.per_device_train_batch_size, cfg.num_train_epochs, cfg.warmup_steps) == (
        4e-4, 128, 10, 1000)
    assert cfg.optim == "sgd" and "momentum=0.9" in cfg.optim_args and cfg.weight_decay == 0 and cfg.fp16
    assert str(getattr(cfg.lr_scheduler_type, "value", cfg.lr_scheduler_type)) == "cosine"
    assert model_args.pixel_normalization == "clip"
    names = Path(ROOT / data_args.class_names[0]).read_text(encoding="utf-8").splitlines()
    assert len([n for n in names if n.strip() and not n.startswith("#")]) == 1000
    text = (RECIPES / "agft.yaml").read_text(encoding="utf-8")
    assert "--num_processes 2" in text and "warmup_prefix" in text and "46.57" in text

    _, tiny_data, tiny = parse([str(RECIPES / "agft_tiny_imagenet.yaml")])
    assert tiny_data.dataset_name == "zh-plus/tiny-imagenet" and (tiny.agft_logit_scale, tiny.agft_scale_ratio) == (
        180.0, 0.4)
    assert "deviation" in (RECIPES / "agft_tiny_imagenet.yaml").read_text(encoding="utf-8")


def test_mini_table_takes_agft_and_its_settings(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import mini_table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert "agft" in mini_table.METHODS and mini_table.TITLES["agft"] == "AGFT"
    overrides = mini_table.method_overrides("agft")
    assert overrides[overrides.index("--agft_logit_scale") + 1] == "180.0"
    # On the shared protocol: the quickstart recipe less the settings of TGA-ZSR, which AGFT does not read.
    _, data_args, cfg = parse([mini_table.protocol_recipe("agft", str(tmp_path)), *overrides])
    assert cfg.method == "agft" and cfg.agft_scale_ratio == 0.4 and data_args.synthetic_world
    _, _, quick = parse([str(RECIPES / "quickstart.yaml")])
    assert (cfg.learning_rate, cfg.max_steps, cfg.train_eps) == (quick.learning_rate, quick.max_steps, quick.train_eps)
    for method in mini_table.METHODS[1:]:  # every method's overrides parse on its protocol
        _, _, each = parse([mini_table.protocol_recipe(method, str(tmp_path)), *mini_table.method_overrides(method)])
        assert each.method == method
    assert mini_table.protocol_recipe("tga_zsr", str(tmp_path)) == str(RECIPES / "quickstart.yaml")


# --- two training steps ----------------------------------------------------------------------------


def test_agft_trains_two_steps_from_its_recipe(tiny_clip, saved_dataset, tmp_path, monkeypatch):
    import tgazsr.trainer as trainer_module
    from tgazsr.train import build_trainer

    seen = []
    real = trainer_module.get_objective

    def spying(name):
        objective = real(name)

        def build(model, target):
            seen.append((name, target.reference_embeds is not None,
                         getattr(target.method_config, "agft_logit_scale", None)))
            return objective(model, target)

        return dataclasses.replace(objective, build=build)

    monkeypatch.setattr(trainer_module, "get_objective", spying)
    argv = [str(RECIPES / "agft_tiny_imagenet.yaml"), "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset,
            "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--use_cpu", "true", "--fp16", "false", "--logging_steps", "1", "--warmup_steps", "0",
            "--dataloader_num_workers", "0", "--save_strategy", "no", "--report_to", "none", "--eval_split", "",
            "--disable_tqdm", "true", "--agft_logit_scale", "150"]
    model_args, data_args, cfg = parse(argv)
    assert isinstance(cfg.method_config, AGFTConfig) and cfg.agft_logit_scale == 150.0
    trainer, _, _ = build_trainer(model_args, data_args, cfg)
    clip = trainer.model.clip
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    trainer.train()
    after = clip.state_dict()
    vision = [k for k in before if k.startswith(("vision_model.", "visual_projection."))]
    assert any(not torch.equal(before[k], after[k]) for k in vision)
    for k in before:
        if k not in vision:  # text tower, text projection, logit scale
            assert torch.equal(before[k], after[k]), k
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2
    for entry in logged:
        assert {"loss_soft_ce", "adv_acc"} <= set(entry) and math.isfinite(entry["loss_soft_ce"])
    # The training attack ran AGFT's objective, with the frozen model's embeddings and the run's settings.
    assert seen and all(s == ("agft_soft_ce", True, 150.0) for s in seen)


# --- --help and the model card -----------------------------------------------------------------------


def test_settings_in_help_and_model_card(capsys):
    from tgazsr.hub import build_model_card, hyperparameters
    from tgazsr.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for flag in ("--agft_logit_scale", "--agft_scale_ratio"):
        assert flag in shown
    assert "AGFT: the scale S of the student's logits" in shown and "agft 180.0" in shown and "agft 0.4" in shown
    cfg = RobustTrainingConfig(output_dir="unused", method="agft", use_cpu=True, agft_scale_ratio=0.5)
    card = build_model_card(method="agft", base_model="openai/clip-vit-base-patch32", dataset="ILSVRC/imagenet-1k",
                            hyperparameters=hyperparameters("agft", cfg)).text
    assert "| `agft_logit_scale` | `180.0` |" in card and "| `agft_scale_ratio` | `0.5` |" in card
    assert "**AGFT**" in card and "https://arxiv.org/abs/2603.29410" in card and "cui2026agft" in card


# --- one module ----------------------------------------------------------------------------------------


def test_agft_needed_no_file_outside_its_module_papers_and_the_order():
    package = ROOT / "tgazsr"
    naming = sorted(str(p.relative_to(package)) for p in package.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".yaml", ".txt", ".json")
                    and re.search("agft", p.read_text(encoding="utf-8", errors="replace"), re.IGNORECASE))
    assert naming == ["methods/__init__.py", "methods/agft.py", "papers.py"]
    # In the registry's module, only the import and the table's order name it.
    lines = [ln for ln in (package / "methods" / "__init__.py").read_text(encoding="utf-8").splitlines()
             if "agft" in ln.lower()]
    assert len(lines) == 3, lines  # the docstring's order, the import, _ORDER
    assert list(METHODS)[-1] == "agft"
