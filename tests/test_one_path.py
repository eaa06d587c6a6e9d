"""One path for every number: methods and attacks are registries that a test can extend without
touching any other file; the harness's guards refuse numbers that lie; its cache key holds every
setting that can change a number; PMG-AFT's KL terms are the released code's."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from conftest import CLASS_NAMES
from tgazsr import losses
from tgazsr.attacks import AttackSpec, register_attack, unregister_attack
from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
from tgazsr.evaluation import (
    UNKEYED_FIELDS,
    EvalArguments,
    NonFiniteError,
    harness,
    keyed_settings,
    run_evaluation,
)
from tgazsr.limits import setting
from tgazsr.methods import METHODS, LossOutput, Method, MethodConfig, get_method, register_method, unregister_method
from tgazsr.objectives import register_objective, unregister_objective
from tgazsr.recipes import parse_recipe
from tgazsr.train import build_trainer


pytestmark = pytest.mark.usefixtures("single_thread")


def _args(eval_world, out, **kw) -> EvalArguments:
    base = dict(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]], attacks=["pgd"], eps=[8.0],
                attack_options={"pgd": {"steps": 3}}, batch_size=8, max_samples=8, output_dir=str(out), plot=False,
                sanity_samples=8)
    base.update(kw)
    return EvalArguments(**base)


# --- a method is one definition ----------------------------------------------------------------


@dataclass
class ToyPullConfig(MethodConfig):
    """The toy method's own settings: a weight (with its limits) and a prompt of its own."""

    pull_weight: float = setting(0.5, "Toy: weight of the pull term ||e(x_adv) - e(x)||^2.", ge=0)
    pull_prompt: str = setting("a blurry photo of a {}", "Toy: a second prompt the loss reads.", placeholders=1)


SEEN_BY_OBJECTIVE: list[dict] = []


def _away_from_reference(model, target):
    """A toy objective that reads the frozen model: distance to its clean embedding, plus CE."""
    SEEN_BY_OBJECTIVE.append({"reference": target.reference is not None,
                              "embeds": target.reference_embeds is not None,
                              "pull_weight": getattr(target.method_config, "pull_weight", None)})

    def loss(x):
        embeds = model(x).embeds
        return (embeds - target.reference_embeds).pow(2).sum(-1) + F.cross_entropy(
            model.logits(embeds, target.text_embeds), target.labels, reduction="none")

    return loss


def _toy_loss(view, cfg) -> LossOutput:
    """CE, plus ``pull_weight`` times the squared distance of the adversarial embedding to the clean
    one, plus a term on the method's own prompt."""
    logits = view.logits_fn(view.adv.embeds)
    ce = losses.cross_entropy(logits, view.labels)
    pull = (view.adv.embeds - view.clean.embeds).pow(2).sum(-1).mean()
    blurry = view.prompt_embeds["pull_prompt"][view.labels]
    prompt = 1 - (view.clean.embeds * blurry).sum(-1).mean()
    return LossOutput(ce + cfg.pull_weight * pull + 0.1 * prompt, None,
                      {"loss_ce": ce, "loss_pull": pull, "loss_prompt": prompt}, logits)


@pytest.fixture
def toy_method():
    register_objective("toy_away", reads_reference=True)(_away_from_reference)
    method = register_method(Method(
        name="toy_pull", title="Toy", description="A test method.", loss=_toy_loss, adversarial=True,
        attack_objective="toy_away", uses_clean=True, reference="clean", config=ToyPullConfig,
        prompts=("pull_prompt",), loss_terms=("loss_ce", "loss_pull", "loss_prompt"),
    ))
    SEEN_BY_OBJECTIVE.clear()
    yield method
    unregister_method("toy_pull")
    unregister_objective("toy_away")


def test_a_method_defined_in_a_test_trains_two_steps(toy_method, tiny_clip, saved_dataset, tmp_path, capsys):
    """A method with its own setting, loss term, prompt and an attack objective that reads the frozen
    model: trained two steps from a recipe that sets the setting, shown by --help and in the card."""
    recipe = tmp_path / "toy_pull.yaml"
    recipe.write_text("method: toy_pull\npull_weight: 0.25\n")
    out = tmp_path / "out"
    argv = [str(recipe), "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset, "--output_dir", str(out),
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--use_cpu", "true", "--logging_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--eval_split", "", "--disable_tqdm", "true"]
    model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)
    assert isinstance(cfg.method_config, ToyPullConfig)
    assert (cfg.pull_weight, cfg.pull_prompt) == (0.25, "a blurry photo of a {}")  # the recipe's, the default

    trainer, _, _ = build_trainer(model_args, data_args, cfg)
    before = {k: v.clone() for k, v in trainer.model.clip.vision_model.state_dict().items()}
    trainer.train()
    after = trainer.model.clip.vision_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all({"loss_ce", "loss_pull", "loss_prompt", "adv_acc"} <= set(h) for h in logged)
    # The training attack ran the method's objective, with the frozen model and the method's settings.
    assert SEEN_BY_OBJECTIVE and all(s == {"reference": True, "embeds": True, "pull_weight": 0.25}
                                     for s in SEEN_BY_OBJECTIVE)

    # The whole command: its --help lists the method's settings, its card shows the recipe's value.
    from tgazsr.errors import run_command
    from tgazsr.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "--pull_weight" in shown and "Toy: weight of the pull term" in shown and "toy_pull 0.5" in shown
    assert run_command(main, argv) == 0
    card = (out / "README.md").read_text()
    assert "pull_weight" in card and "0.25" in card
    recorded = json.loads((out / "tgazsr_recipe.json").read_text())
    assert recorded["method"] == {"pull_weight": 0.25, "pull_prompt": "a blurry photo of a {}"}
    # TTC's tau_reference auto finds the base model the trained checkpoint records.
    from tgazsr.defenses.ttc import recorded_base_model

    assert os.path.samefile(recorded_base_model(str(out)), model_args.model_name_or_path)


def test_a_method_setting_given_to_another_method_is_an_error(toy_method, capsys):
    from tgazsr.errors import run_command
    from tgazsr.train import main

    assert run_command(main, ["recipes/tecoa.yaml", "--pull_weight", "1"]) == 2
    err = capsys.readouterr().err
    assert "pull_weight is a setting of toy_pull, not of method tecoa" in err and "--method toy_pull" in err
    assert run_command(main, ["recipes/tga_zsr.yaml", "--method", "toy_pull", "--pull_weight", "-1"]) == 2
    assert "pull_weight = -1.0 is out of range: it must be >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="alpha is a setting of"):
        RobustTrainingConfig(output_dir="x", method="toy_pull", use_cpu=True, alpha=0.1)
    cfg = RobustTrainingConfig(output_dir="x", method="toy_pull", use_cpu=True, pull_weight=2.0)
    assert cfg.pull_weight == 2.0 and cfg.method_settings() == {"pull_weight": 2.0, "pull_prompt": "a blurry photo of a {}"}


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ValueError, match="Did you mean 'tga_zsr'"):
        RobustTrainingConfig(output_dir="x", method="tga_zrs", use_cpu=True)
    order = list(METHODS)
    assert order.index("tga_zsr") + 1 == order.index("comp_tga") < order.index("agft")  # the table's order


def test_every_method_carries_its_metadata():
    for method in METHODS.values():
        assert method.title and method.description and method.loss_terms
        assert method.paper is not None and method.paper.url.startswith("https://arxiv.org/abs/")
        assert "@" in method.citation()
        if method.config is not None:  # every setting has help text, and its default passes its own checks
            assert all(f.metadata.get("help") for f in dataclasses.fields(method.config)), method.name
            assert dataclasses.asdict(method.make_config()) == dataclasses.asdict(method.config())
    assert get_method("vision_attention").needs_attentions and get_method("comp_tga").prompts == (
        "negated_prompt_template",)
    assert get_method("tga_zsr").make_config().alpha == 0.08 and get_method("comp_tga").make_config().alpha == 0.10


# --- an attack is one registration ----------------------------------------------------------------


@dataclass
class NudgeSettings:
    """A toy attack: move every pixel by ``fraction`` of eps toward grey."""

    fraction: float = 1.0


def _nudge(model, x, labels, eps, settings: NudgeSettings, context):
    return (x + settings.fraction * eps * torch.sign(0.5 - x)).clamp(0, 1)


@pytest.fixture
def nudge_attack():
    register_attack(AttackSpec("nudge", NudgeSettings, _nudge, description="toy"))
    yield
    unregister_attack("nudge")


def test_an_attack_defined_in_a_test_is_evaluated(eval_world, tmp_path, nudge_attack):
    args = _args(eval_world, tmp_path, attacks=["pgd", "nudge"], attack_options={"pgd": {"steps": 3},
                                                                            "nudge": {"fraction": 0.5}})
    r = run_evaluation(args)["datasets"]["saved"]
    assert set(r["robust"]) == {"pgd@8/255", "nudge@8/255", "worst@8/255"}
    assert r["robust"]["worst@8/255"] <= min(r["robust"]["pgd@8/255"], r["robust"]["nudge@8/255"])
    # PGD follows the gradient: it raised the margin on most samples it attacked.
    assert r["sanity"]["attack_raised_loss"]["pgd@8/255"] >= 0.75
    assert (tmp_path / "results.md").read_text().count("Sanity checks") == 1
    with pytest.raises(ValueError, match="has no settings"):
        EvalArguments(attacks=["nudge"], attack_options={"nudge": {"strength": 2}})


def test_an_attack_that_cheats_its_budget_is_refused(eval_world, tmp_path):
    def cheat(model, x, labels, eps, settings, context):
        return (x + 2 * eps).clamp(0, 1)

    register_attack(AttackSpec("cheat", NudgeSettings, cheat))
    try:
        with pytest.raises(RuntimeError, match="exceeded its budget"):
            run_evaluation(_args(eval_world, tmp_path, attacks=["cheat"]))
    finally:
        unregister_attack("cheat")


# --- guards -------------------------------------------------------------------------------------


def test_a_model_with_nan_weights_is_refused_by_name(eval_world, tmp_path):
    bad = tmp_path / "nan_clip"
    shutil.copytree(eval_world["clip_a"], bad)
    weights = load_file(bad / "model.safetensors")
    weights = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NonFiniteError, match=f"{bad}.*non-finite weights"):
        run_evaluation(_args(eval_world, tmp_path / "out", model_name_or_path=str(bad)))
    assert not (tmp_path / "out" / "results.json").exists()  # nothing was scored


def test_non_finite_logits_stop_the_evaluation(eval_world, tmp_path, monkeypatch):
    from tgazsr.modeling import ZeroShotCLIP

    original = ZeroShotCLIP.classify
    monkeypatch.setattr(ZeroShotCLIP, "classify", lambda self, x, t: original(self, x, t) * float("nan"))
    with pytest.raises(NonFiniteError, match="non-finite logits on clean images"):
        run_evaluation(_args(eval_world, tmp_path))


def test_sanity_record_passes_on_a_sound_run_and_warns_on_a_masked_one(eval_world, tmp_path, monkeypatch, caplog):
    sound = run_evaluation(_args(eval_world, tmp_path / "sound", eps=[4.0, 8.0]))["datasets"]["saved"]["sanity"]
    assert sound["passed"] and sound["robust_le_clean"] and sound["monotone_in_eps"]
    assert sound["large_eps"]["robust_accuracy"] <= 0.1 and sound["large_eps"]["num_samples"] == 8
    # A model whose gradient is zero (a step function in front of it) masks every gradient attack.
    from tgazsr.modeling import ZeroShotCLIP

    original = ZeroShotCLIP.forward

    def masked(self, pixel_values, **kw):
        quantized = pixel_values + ((pixel_values * 4).round() / 4 - pixel_values).detach()  # zero gradient
        return original(self, quantized * 0 + quantized.detach(), **kw)

    monkeypatch.setattr(ZeroShotCLIP, "forward", masked)
    res = run_evaluation(_args(eval_world, tmp_path / "masked"))["datasets"]["saved"]
    assert not res["sanity"]["passed"]
    assert any("raised the margin" in w for w in res["sanity"]["warnings"])
    assert "SANITY CHECK FAILED" in caplog.text
    assert "**WARNING**" in (tmp_path / "masked" / "results.md").read_text()


# --- the cache key ------------------------------------------------------------------------------


def _flipped(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if 0 < value <= 1 else value * 2 + 1  # a fraction stays a fraction (declared limits)
    if isinstance(value, str):
        return {"tga": "fare", "linf": "l2", "auto": "clip", "shorter_side_crop": "square",
                "stored": "clip_benchmark", "none": "ttc", "bpda": "exact"}.get(value, value + "x")
    if isinstance(value, list):
        return value + [value[-1] * 2 + 1] if value and isinstance(value[0], float) else value + ["x"]
    if value is None:
        return 7
    raise TypeError(value)


def test_every_setting_but_the_documented_ones_is_in_the_cache_key():
    base = EvalArguments(attacks=["pgd", "cw"])
    key = json.dumps(keyed_settings(base), sort_keys=True, default=str)
    for f in dataclasses.fields(EvalArguments):
        if f.name in ("attacks", "attack_options", "norm", "defense_options", "threat_models"):
            # checked below and in test_defenses.py (their values are constrained)
            continue
        value = getattr(base, f.name)
        limits = f.metadata.get("limits")
        new = "a {}." if value is None and limits is not None and limits.placeholders else _flipped(value)
        changed = dataclasses.replace(base, **{f.name: new})
        changed_key = json.dumps(keyed_settings(changed), sort_keys=True, default=str)
        assert (changed_key == key) == (f.name in UNKEYED_FIELDS), f.name
    # Every numeric setting of every attack that runs.
    base = EvalArguments(attacks=["pgd", "cw", "autoattack"])
    key = json.dumps(keyed_settings(base), sort_keys=True, default=str)
    for attack in base.attacks:
        for f in dataclasses.fields(type(base.attack_settings(attack))):
            value = getattr(base.attack_settings(attack), f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            changed = dataclasses.replace(base, attack_options={attack: {f.name: _flipped(value)}})
            assert json.dumps(keyed_settings(changed), sort_keys=True, default=str) != key, f"{attack}.{f.name}"
    assert keyed_settings(dataclasses.replace(base, attacks=["pgd"])) != keyed_settings(base)
    # Options of an attack that does not run change nothing.
    only_pgd = EvalArguments(attacks=["pgd"])
    assert keyed_settings(only_pgd) == keyed_settings(dataclasses.replace(only_pgd, attack_options={"cw": {"steps": 9}}))
    # AutoAttack's numbers depend on its batches: there, and only there, the batch size is keyed.
    assert "batch_size" in keyed_settings(base) and "batch_size" not in keyed_settings(only_pgd)


def test_a_changed_setting_recomputes_and_a_batch_size_reuses(eval_world, tmp_path, monkeypatch):
    calls = []
    original = harness.evaluate_dataset
    monkeypatch.setattr(harness, "evaluate_dataset", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = run_evaluation(_args(eval_world, tmp_path))
    assert len(calls) == 1
    run_evaluation(_args(eval_world, tmp_path, attack_options={"pgd": {"steps": 4}}))
    run_evaluation(_args(eval_world, tmp_path, attack_options={"pgd": {"steps": 3, "step_size": 2.0}}))
    run_evaluation(_args(eval_world, tmp_path, sanity_samples=4))
    run_evaluation(_args(eval_world, tmp_path, worst_case=False, attacks=["pgd", "cw"]))
    assert len(calls) == 5
    again = run_evaluation(_args(eval_world, tmp_path, batch_size=3, num_workers=0))  # cannot change a number
    assert len(calls) == 5 and again["datasets"]["saved"]["robust"] == first["datasets"]["saved"]["robust"]
    fresh = run_evaluation(_args(eval_world, tmp_path / "fresh", batch_size=3))  # and indeed it does not
    assert fresh["datasets"]["saved"]["robust"] == first["datasets"]["saved"]["robust"]
    assert fresh["datasets"]["saved"]["clean_accuracy"] == first["datasets"]["saved"]["clean_accuracy"]


# --- PMG-AFT as released ----------------------------------------------------------------------


def test_pmg_aft_kl_terms_are_the_released_code_calls():
    from tgazsr.methods.base import StepView
    from tgazsr.methods.pmg_aft import pmg_aft_loss
    from tgazsr.modeling import ImageEncoding

    torch.manual_seed(0)
    b, d, c = 6, 8, 5
    text = F.normalize(torch.randn(c, d), dim=-1)
    labels = torch.randint(0, c, (b,))
    adv = torch.randn(b, d, requires_grad=True)
    clean = torch.randn(b, d, requires_grad=True)
    ref_adv = torch.randn(b, d)

    def cosine_logits(e, scale=True):
        return F.normalize(e, dim=-1) @ text.t()

    view = StepView(labels=labels, text_embeds=text, logits_fn=cosine_logits,
                    logit_scale=torch.tensor(100.0), image_size=32, adv=ImageEncoding(adv), clean=ImageEncoding(clean),
                    ref_adv=ImageEncoding(ref_adv), ref_clean=None, scale=False)
    cfg = RobustTrainingConfig(output_dir="unused", method="pmg_aft", use_cpu=True)
    out = pmg_aft_loss(view, cfg)
    total = out.mean_part + out.sum_part
    grads = torch.autograd.grad(total, [adv, clean])

    # The released training step, as it calls torch's KLDivLoss.
    adv2, clean2 = adv.detach().clone().requires_grad_(True), clean.detach().clone().requires_grad_(True)
    q_adv, q_clean, q_ref = cosine_logits(adv2), cosine_logits(clean2), cosine_logits(ref_adv)
    kl = torch.nn.KLDivLoss(reduction="sum")
    general = kl(F.log_softmax(q_adv, dim=1), F.softmax(q_ref, dim=1))
    clean_term = kl(F.log_softmax(q_adv, dim=1), F.softmax(q_clean, dim=1))
    expected = F.cross_entropy(q_adv, labels) + general + clean_term
    expected_grads = torch.autograd.grad(expected, [adv2, clean2])
    torch.testing.assert_close(out.logs["loss_kl_general"], general, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_kl_clean"], clean_term, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert expected_grads[1].abs().sum() > 0  # the clean target is not detached in the released code
    # kl_detach_target detaches that target: no gradient reaches the clean embedding.
    detached = pmg_aft_loss(view, dataclasses.replace(cfg, kl_detach_target=True))
    (g_clean,) = torch.autograd.grad(detached.mean_part + detached.sum_part, [clean], allow_unused=True)
    assert g_clean is None or g_clean.abs().sum() == 0


def test_pmg_aft_differs_from_the_reversed_kl():
    p, q = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    assert not torch.isclose(losses.kl_divergence(p, q), losses.kl_divergence(q, p))


def test_training_check_needs_its_split_before_training(tiny_clip, tmp_path):
    from conftest import write_image_folder

    folder = write_image_folder(str(tmp_path / "flat"), n=8, class_names=CLASS_NAMES)
    argv = ["--method", "tecoa", "--model_name_or_path", tiny_clip, "--dataset_name", folder, "--output_dir",
            str(tmp_path / "out"), "--max_steps", "1", "--use_cpu", "true", "--report_to", "none"]
    model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)
    from tgazsr.data import DataError

    with pytest.raises(DataError, match=r"no split 'valid'.*\['train'\]"):  # the default eval_split
        build_trainer(model_args, data_args, cfg)
    assert not os.path.exists(tmp_path / "out" / "model.safetensors")
