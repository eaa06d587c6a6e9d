"""Test-time defenses (tgazsr.defenses) and their two threat models in the harness.

TTC's counterattack is checked against METHOD.md's steps computed independently here (a linear
encoder, whose loss gradient is written out by hand); a toy defense that masks its gradients
(a rounding step, zero gradient) and that the undefended model's adversarial images do not fool
shows what the adaptive threat model is for: the non-adaptive attack leaves it intact, the
adaptive one with BPDA breaks it, plain autograd does not, and the sanity record says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass

import pytest
import torch

from conftest import CLEAN_NAMES, TEMPLATE, labelled_dataset, merge_flags
from tgazsr.attacks import pgd, sample_generators
from tgazsr.defenses import (
    DEFENSES,
    DefendedClassifier,
    DefenseContext,
    DefenseSpec,
    TTCSettings,
    build_defended,
    counterattack,
    register_defense,
    step_weights,
    unregister_defense,
)
from tgazsr.defenses.ttc import SWITCH_MARGIN, TauReferenceError, prepare_tau
from tgazsr.errors import run_command
from tgazsr.evaluate import main as evaluate_main
from tgazsr.evaluation import EvalArguments, load_model, run_evaluation
from tgazsr.evaluation.cache import keyed_settings
from tgazsr.limits import setting
from tgazsr.objectives import AttackTarget, objective_loss

pytestmark = pytest.mark.usefixtures("single_thread")


def _key(args) -> str:
    return json.dumps(keyed_settings(args), sort_keys=True, default=str)


# --- TTC's counterattack, against METHOD.md ------------------------------------------------------


def test_ttc_step_weights_are_the_softmax_of_beta_k():
    w = step_weights(2.0, 2)
    by_hand = [math.exp(2 * k) / sum(math.exp(2 * j) for j in range(3)) for k in range(3)]
    assert torch.allclose(w, torch.tensor(by_hand, dtype=torch.float64), atol=1e-12)
    assert [round(float(v), 4) for v in w] == [0.0159, 0.1173, 0.8668]  # METHOD.md's numbers
    assert float(step_weights(2.0, 0)[0]) == 1.0


def _linear_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64)
    x[0, 0, 0, :] = 0.0  # pixels at the box's edges: the clamps matter
    x[1, 1, 1, :] = 1.0
    x[1, 2, 2, :2] = 0.999
    weight = torch.randn(48, 5, generator=g, dtype=torch.float64)
    noise = (torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1) * (4 / 255)
    return x, weight, noise


def _ttc_by_hand(x, weight, noise, eps=4 / 255, a=1 / 255, steps=2, beta=2.0, tau_thres=0.2):
    """METHOD.md's steps 1-4 for f(z) = z.flatten(1) @ W, whose loss gradient is
    2 (d W) W^T (f(x + d) - f(x) = d W)."""
    d0 = (x + noise).clamp(0, 1) - x
    ds, d = [d0], d0
    for _ in range(steps):
        grad = (2 * (d.flatten(1) @ weight) @ weight.t()).view_as(x)
        d = (d + a * grad.sign()).clamp(-eps, eps)
        d = (x + d).clamp(0, 1) - x
        ds.append(d)
    tau = (d0.flatten(1) @ weight).norm(dim=1) / (x.flatten(1) @ weight).norm(dim=1)
    w = [math.exp(beta * k) / sum(math.exp(beta * j) for j in range(steps + 1)) for k in range(steps + 1)]
    weighted = sum(wk * dk for wk, dk in zip(w, ds))
    delta = torch.stack([weighted[i] if tau[i] < tau_thres else d0[i] for i in range(len(x))])
    return delta, ds, tau


def test_ttc_counterattack_matches_the_steps_of_method_md():
    x, weight, noise = _linear_case()
    encode = lambda z: z.flatten(1) @ weight  # noqa: E731
    parts = {}
    delta = counterattack(encode, x, noise, TTCSettings(), parts=parts)
    expected, ds, tau = _ttc_by_hand(x, weight, noise)
    assert torch.allclose(parts["tau"], tau, atol=1e-12)
    for got, want in zip(parts["d"], ds):
        assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(delta, expected, atol=1e-12)
    assert bool(parts["use_steps"].all())  # a few grey levels of noise barely move these embeddings
    # every step stays in the budget and in the box; X + Delta is in the box without another clamp
    for d in parts["d"]:
        assert d.abs().max() <= 4 / 255 + 1e-12 and (x + d).min() >= 0 and (x + d).max() <= 1
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    # other settings: K = 3, beta 1, step 2/255
    s = TTCSettings(steps=3, beta=1.0, step_size=2.0)
    want, _, _ = _ttc_by_hand(x, weight, noise, a=2 / 255, steps=3, beta=1.0)
    assert torch.allclose(counterattack(encode, x, noise, s), want, atol=1e-12)


def test_ttc_hard_switch_falls_back_to_the_random_start():
    x, weight, noise = _linear_case(1)
    encode = lambda z: z.flatten(1) @ weight  # noqa: E731
    parts = {}
    counterattack(encode, x, noise, TTCSettings(), parts=parts)
    tau, d0 = parts["tau"], parts["d"][0]
    # tau_thres at sample 0's tau exactly (a tie: the random start) and above sample 1's (the steps)
    assert tau[0] > tau[1]
    thres = float(tau[0])
    parts2 = {}
    delta = counterattack(encode, x, noise, TTCSettings(tau_thres=thres), parts=parts2)
    assert parts2["use_steps"].tolist() == [False, True]
    assert torch.equal(delta[0], d0[0])
    weighted = sum(w * d for w, d in zip(parts2["weights"], parts2["d"]))
    assert torch.allclose(delta[1], weighted[1], atol=1e-12)
    # tau_thres 0: every image gets the noise alone; K = 0 (the random-noise baseline): d0 too
    assert torch.equal(counterattack(encode, x, noise, TTCSettings(tau_thres=0.0)), d0)
    assert torch.equal(counterattack(encode, x, noise, TTCSettings(steps=0)), d0)
    # TTC never returns X unchanged, and eps 0 returns zeros
    assert counterattack(encode, x, noise, TTCSettings()).abs().max() > 0
    assert torch.equal(counterattack(encode, x, noise, TTCSettings(eps=0.0)), torch.zeros_like(x))


def test_ttc_gradient_modes_keep_the_forward_values_and_differ_backward():
    x, weight, noise = _linear_case(2)
    x = x.float()
    weight, noise = weight.float(), noise.float()
    encode = lambda z: torch.tanh(z.flatten(1) @ weight)  # noqa: E731 - curved, so second-order terms exist
    values, grads = {}, {}
    for mode in ("bpda", "exact", "smooth"):
        xi = x.clone().requires_grad_(True)
        delta = counterattack(encode, xi, noise, TTCSettings(), gradient=mode, temperature=0.1)
        out = encode(xi + delta).pow(2).sum()
        (grads[mode],) = torch.autograd.grad(out, xi)
        values[mode] = delta.detach()
    assert torch.allclose(values["bpda"], values["exact"], atol=1e-7)
    assert torch.allclose(values["bpda"], values["smooth"], atol=1e-7)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert not torch.allclose(grads["smooth"], grads["bpda"])  # it differentiates through the steps


# --- the defended classifier --------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(eval_world):
    model, tokenizer, _ = load_model(EvalArguments(model_name_or_path=eval_world["clip_a"]), torch.device("cpu"))
    text = model.class_embeddings(CLEAN_NAMES, [TEMPLATE], tokenizer)
    from tgazsr.data import ImageTransform

    transform = ImageTransform(model.image_size)
    x = torch.stack([transform(im) for im in eval_world["images"][:6]])
    return model, text, x


def test_defense_randomness_is_per_sample_whatever_the_batch(victim):
    model, text, x = victim
    for name in ("ttc", "random_noise"):
        settings = DEFENSES[name].settings()
        full = build_defended(name, model, text, settings, DefenseContext(sample_generators(0, range(6), "s")))
        with torch.no_grad():
            everything = full(x)
            again = full(x)  # a second call draws anew
            part = build_defended(name, model, text, settings,
                                  DefenseContext(sample_generators(0, [4, 1], "s")))(x[[4, 1]])
        assert torch.allclose(everything[[4, 1]], part, atol=1e-4), name
        assert not torch.allclose(everything, again), name
    with pytest.raises(ValueError, match="generators"):
        build_defended("ttc", model, text, TTCSettings(), DefenseContext(sample_generators(0, [0], "s")))(x)


def test_tau_is_measured_by_the_base_model_when_asked(victim, eval_world):
    model, text, x = victim
    args = EvalArguments(model_name_or_path=eval_world["clip_a"])
    with pytest.raises(TauReferenceError, match="ttc_base_model_name_or_path"):
        prepare_tau(model, TTCSettings(tau_reference="base"), args)
    assert prepare_tau(model, TTCSettings(), args).encoder is None  # auto, nothing recorded: the victim
    reference = prepare_tau(model, TTCSettings(tau_reference="base", base_model_name_or_path=eval_world["clip_b"]),
                            args)
    assert reference.encoder is not None and reference.fingerprint and reference.reference == "base"
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 8 / 255 - 4 / 255
    victim_tau, base_tau = {}, {}
    counterattack(lambda z: model(z).embeds, x, noise, TTCSettings(), parts=victim_tau)
    counterattack(lambda z: model(z).embeds, x, noise, TTCSettings(), lambda z: reference.encoder(z).embeds,
                  parts=base_tau)
    assert not torch.allclose(victim_tau["tau"], base_tau["tau"])


def test_auto_finds_the_base_model_that_a_trained_checkpoint_records(tmp_path, eval_world):
    import json
    import shutil

    from tgazsr.defenses.ttc import recorded_base_model

    base = tmp_path / "my_clip"
    shutil.copytree(eval_world["clip_b"], base)
    trained = tmp_path / "trained"
    trained.mkdir()
    recipe = {"model": {"model_name_or_path": "my_clip"}, "training": {"method": "tga_zsr"}}  # as tgazsr.train writes it
    (trained / "tgazsr_recipe.json").write_text(json.dumps(recipe))
    assert recorded_base_model(str(trained)) == str(base)  # a published local name: the folder beside the checkpoint
    recipe["model"]["model_name_or_path"] = str(base)
    (trained / "tgazsr_recipe.json").write_text(json.dumps(recipe))
    assert recorded_base_model(str(trained)) == str(base)
    recipe["model"]["model_name_or_path"] = "openai/clip-vit-base-patch32"
    (trained / "tgazsr_recipe.json").write_text(json.dumps(recipe))
    assert recorded_base_model(str(trained)) == "openai/clip-vit-base-patch32"
    recipe["model"]["model_name_or_path"] = "gone_clip"  # neither here nor a Hub id: the victim, said in the log
    (trained / "tgazsr_recipe.json").write_text(json.dumps(recipe))
    assert recorded_base_model(str(trained)) is None
    (trained / "tgazsr_recipe.json").unlink()
    (trained / "conversion.json").write_text(json.dumps({"base_model": str(base)}))
    assert recorded_base_model(str(trained)) == str(base)


def test_a_defended_classifier_is_attacked_through_its_logits(victim):
    model, text, x = victim
    y = model.classify(x, text).argmax(-1)
    defended = build_defended("ttc", model, text, TTCSettings(), DefenseContext(sample_generators(0, range(6), "a")))
    calls = []
    loss = objective_loss("ce", defended, AttackTarget(y, text))
    x_adv = pgd(lambda z: calls.append(1) or loss(z), x, 8 / 255, 2 / 255, 2, eot=3)
    assert len(calls) == 2 * 3 and (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    with pytest.raises(ValueError, match="image embeddings"):
        objective_loss("fare", defended, AttackTarget(y, text, reference_embeds=model(x).embeds))


def _tau(model, x, settings, seed=0):
    """TTC's tau at ``x`` for one fixed random start (the victim measures it)."""
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 2 * settings.eps / 255 - \
        settings.eps / 255
    parts = {}
    with torch.no_grad():
        counterattack(lambda z: model(z).embeds, x, noise, settings, parts=parts)
    return parts["tau"]


def test_the_switch_term_is_taus_ratio_to_the_threshold_capped(victim):
    model, text, x = victim
    settings = TTCSettings()
    off = build_defended("ttc", model, text, settings, DefenseContext(sample_generators(0, range(6), "t")))
    assert off.adaptive_term(x) is None  # weight 0: the logits alone
    on = build_defended("ttc", model, text, settings, DefenseContext(sample_generators(0, range(6), "t"),
                                                                     term_weight=3.0))
    z = x.clone().requires_grad_(True)
    term = on.adaptive_term(z)
    assert term.shape == (6,) and torch.isfinite(term).all()
    assert (term <= 3.0 * SWITCH_MARGIN + 1e-6).all() and (term >= 0).all()
    (grad,) = torch.autograd.grad(term.sum(), z)
    free = term < 3.0 * SWITCH_MARGIN - 1e-6  # below the cap the term pulls; at the cap it is flat
    assert free.any() and (grad[free].abs().flatten(1).sum(-1) > 0).all()
    assert (grad[~free].abs().sum() == 0) if (~free).any() else True
    capped = build_defended("ttc", model, text, dataclasses.replace(settings, tau_thres=1e-6),
                            DefenseContext(sample_generators(0, range(6), "t"), term_weight=3.0))
    assert torch.allclose(capped.adaptive_term(x), torch.full((6,), 3.0 * SWITCH_MARGIN))


def test_the_adaptive_attack_aims_at_the_switch(victim):
    """With the switch term, PGD on the defended classifier leaves the attacked images' tau higher,
    more of them past tau_thres, where TTC applies its random noise alone."""
    model, text, x = victim
    y = model.classify(x, text).argmax(-1)
    settings = TTCSettings(tau_thres=0.005)  # at this tiny model's scale of tau: its clean images straddle it
    clean = _tau(model, x, settings)
    assert (clean < settings.tau_thres).any() and (clean >= settings.tau_thres).any()

    def attacked(weight):
        defended = build_defended("ttc", model, text, settings,
                                  DefenseContext(sample_generators(0, range(6), "s"), term_weight=weight))
        return pgd(objective_loss("ce", defended, AttackTarget(y, text)), x, 8 / 255, 2 / 255, 10, eot=2)

    plain, switch = _tau(model, attacked(0.0), settings), _tau(model, attacked(50.0), settings)
    assert switch.mean() > plain.mean()
    assert (switch >= settings.tau_thres).sum() > (plain >= settings.tau_thres).sum()


def test_a_defenses_own_term_joins_the_ce_and_margin_objectives(victim):
    """The mechanism, whatever the defense: its classifier's adaptive_term is added to ce and margin."""
    model, text, x = victim
    y = model.classify(x, text).argmax(-1)

    class Plain(DefendedClassifier):
        def forward(self, z):
            return self.undefended(z)

    class WithTerm(Plain):
        def adaptive_term(self, z):
            return 7.0 * z.flatten(1).mean(-1)

    for name in ("ce", "margin"):
        base = objective_loss(name, Plain(model, text, None, DefenseContext()), AttackTarget(y, text))(x)
        total = objective_loss(name, WithTerm(model, text, None, DefenseContext()), AttackTarget(y, text))(x)
        torch.testing.assert_close(total, base + 7.0 * x.flatten(1).mean(-1))


def test_the_switch_term_is_recorded_and_keyed(eval_world, tmp_path):
    base = EvalArguments(defense="ttc")
    assert _key(dataclasses.replace(base, adaptive_term_weight=0.0)) != _key(base)
    args = EvalArguments(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]], eps=[8.0],
                         attack_options={"pgd": {"steps": 1}}, max_samples=4, batch_size=4, sanity_samples=0,
                         output_dir=str(tmp_path / "eval"), plot=False, defense="ttc", threat_models=["adaptive"],
                         eot_draws=1)
    results = run_evaluation(args)
    record = results["defense"]
    assert record["adaptive_term"]["weight"] == 1.0 and "tau_thres" in record["adaptive_term"]["what"]
    assert "adds the defense's own term to the loss (weight 1)" in (tmp_path / "eval" / "results.md").read_text()
    broke = results["datasets"]["saved"]["adaptive_term_broke"]["adaptive:pgd@8/255"]
    assert 0 <= broke["broke"] <= broke["attacked"] <= 4


def test_the_adaptive_column_is_the_worst_of_the_logits_pass_and_the_term_pass(victim, eval_world, tmp_path):
    """With a term, the adaptive column counts a sample only if it survives both passes: never above
    the logits-only run's, and what the term broke is counted."""
    from tgazsr.evaluation.harness import AttackPlan, adaptive_passes

    common = dict(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]], eps=[4.0],
                  attack_options={"pgd": {"steps": 3}}, max_samples=16, batch_size=16, sanity_samples=0, plot=False,
                  defense="ttc", threat_models=["adaptive"], eot_draws=1,
                  defense_options={"ttc": {"tau_thres": 0.005}})  # at this model's scale of tau
    logits_only = run_evaluation(EvalArguments(**common, adaptive_term_weight=0.0, output_dir=str(tmp_path / "a")))
    both = run_evaluation(EvalArguments(**common, adaptive_term_weight=1.0, output_dir=str(tmp_path / "b")))
    a, b = logits_only["datasets"]["saved"], both["datasets"]["saved"]
    key = "adaptive:pgd@4/255"
    assert "adaptive_term_broke" not in a and "adaptive_term" not in logits_only["defense"]
    assert b["robust"][key] <= a["robust"][key]
    broke = b["adaptive_term_broke"][key]
    assert broke["attacked"] == round(a["robust"][key] * a["num_samples"])  # the first pass is the same attack
    assert b["robust"][key] == pytest.approx(a["robust"][key] - broke["broke"] / a["num_samples"])
    model, text, _ = victim
    plan = AttackPlan.__new__(AttackPlan)
    plan.defense = None
    assert adaptive_passes(plan, "adaptive") == [0.0]


# --- a gradient-masking toy defense --------------------------------------------------------------


@dataclass
class InvertAndRoundSettings:
    """The toy's one knob."""

    levels: int = setting(16, "Toy: grey levels the inverted image is rounded to.", ge=2)


class InvertAndRound(DefendedClassifier):
    """Classifies round(L (1 - x)) / L: the undefended model's adversarial images, negated and seen
    at another point, do not transfer; rounding has zero gradient (BPDA passes it straight through)."""

    def forward(self, x):
        z = 1 - x
        q = torch.round(z * self.settings.levels) / self.settings.levels
        if self.context.gradient == "bpda":
            q = z + (q - z).detach()
        return self.undefended(q)


@pytest.fixture
def toy_defense(victim, eval_world, tmp_path):
    """The toy registered for one test, and data labelled with its own clean predictions."""
    import datasets

    register_defense(DefenseSpec("invertround", InvertAndRoundSettings, InvertAndRound, gradients=("bpda", "exact"),
                                 description="toy: invert and round"))
    model, text, _ = victim
    from tgazsr.data import ImageTransform

    transform = ImageTransform(model.image_size)
    images = eval_world["images"]
    with torch.no_grad():
        x = torch.stack([transform(im) for im in images])
        labels = build_defended("invertround", model, text, InvertAndRoundSettings(), DefenseContext())(x)
    path = str(tmp_path / "toy")
    datasets.DatasetDict({"test": labelled_dataset(images, labels.argmax(-1).tolist())}).save_to_disk(path)
    try:
        yield path
    finally:
        unregister_defense("invertround")


def test_the_adaptive_attack_breaks_a_gradient_masking_defense_that_the_non_adaptive_one_does_not(
        toy_defense, eval_world, tmp_path):
    def run(gradient):
        args = EvalArguments(model_name_or_path=eval_world["clip_a"], datasets=[toy_defense], attacks=["pgd"],
                             eps=[16.0], attack_options={"pgd": {"steps": 10}}, batch_size=24, plot=False,
                             output_dir=str(tmp_path / gradient), sanity_samples=0, defense="invertround",
                             adaptive_gradient=gradient, prompt_template=TEMPLATE, class_names=",".join(CLEAN_NAMES))
        return run_evaluation(args)["datasets"]["toy"]

    bpda = run("bpda")
    assert bpda["clean_accuracy"] == 1.0 and bpda["threat_models"] == ["non_adaptive", "adaptive"]
    assert bpda["robust"]["non_adaptive:pgd@16/255"] >= 0.9  # the undefended model's images do not transfer
    assert bpda["robust"]["adaptive:pgd@16/255"] <= 0.5  # BPDA through the rounding breaks it
    assert bpda["robust"]["worst@16/255"] == bpda["robust"]["adaptive:pgd@16/255"]
    sanity = bpda["sanity"]
    assert sanity["non_adaptive_overstates"] == ["pgd@16/255"] and sanity["adaptive_not_weaker"]
    assert any("non-adaptive pgd@16/255" in f and "upper bound" in f for f in sanity["flags"])
    assert "**FLAG**" in (tmp_path / "bpda" / "results.md").read_text()
    # plain autograd sees the rounding's zero gradient: the attack does not move, and the record says so
    exact = run("exact")
    assert exact["robust"]["adaptive:pgd@16/255"] >= 0.9
    assert not exact["sanity"]["passed"]
    assert any("adaptive:pgd@16/255" in w and "gradient masking" in w for w in exact["sanity"]["warnings"])


def test_a_weaker_adaptive_attack_is_a_warning():
    from tgazsr.evaluation.harness import AttackPlan, DefensePlan, sanity_record

    plan = AttackPlan(["pgd"], {}, [1.0], defense=DefensePlan("ttc", TTCSettings(), ["non_adaptive", "adaptive"]))
    result = {"clean_accuracy": 0.9, "clean_accuracy_undefended": 0.95,
              "robust": {"non_adaptive:pgd@1/255": 0.3, "adaptive:pgd@1/255": 0.5, "worst@1/255": 0.3}}
    record = sanity_record(result, plan, {}, None, EvalArguments())
    assert not record["passed"] and not record["adaptive_not_weaker"]
    assert any("adaptive attack is weaker" in w for w in record["warnings"])
    assert record["clean_accuracy"] == {"defended": 0.9, "undefended": 0.95}


# --- the command -------------------------------------------------------------------------------


def _flags(eval_world, out, *extra):
    return merge_flags(["--model_name_or_path", eval_world["clip_a"], "--datasets", eval_world["saved"], "--eps", "8",
                        "--pgd_steps", "2", "--max_samples", "6", "--batch_size", "6", "--sanity_samples", "2",
                        "--sanity_steps", "2", "--eot_draws", "2", "--output_dir", str(out), "--plot", "false"], extra)


def test_evaluate_with_ttc_names_the_threat_models_in_every_report(eval_world, tmp_path):
    out = tmp_path / "ttc"
    assert evaluate_main(_flags(eval_world, out, "--defense", "ttc", "--attention_shift", "true")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["defense"]["name"] == "ttc" and results["threat_models"] == ["non_adaptive", "adaptive"]
    assert results["defense"]["settings"]["steps"] == 2 and results["defense"]["tau_reference"] == "victim"
    row = results["datasets"]["saved"]
    assert set(row["robust"]) == {"non_adaptive:pgd@8/255", "adaptive:pgd@8/255", "worst@8/255"}
    assert row["robust"]["worst@8/255"] <= min(row["robust"]["non_adaptive:pgd@8/255"],
                                               row["robust"]["adaptive:pgd@8/255"])
    assert 0 <= row["clean_accuracy_undefended"] <= 1 and row["sanity"]["large_eps"]["threat_model"] == "adaptive"
    assert set(row["attention_shift"]) == {"non_adaptive:pgd@8/255", "adaptive:pgd@8/255"}
    assert all(math.isfinite(v) and v >= 0 for v in row["attention_shift"].values())
    md = (out / "results.md").read_text()
    assert "Test-time defense: `ttc`" in md and "non_adaptive:" in md and "adaptive:" in md
    assert "clean (undefended)" in md and "attention shift adaptive:pgd@8/255" in md
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert record["defense"] == "ttc" and record["threat_models"] == ["non_adaptive", "adaptive"]
    assert "robust_acc1@adaptive:pgd@8/255" in record["metrics"] and "acc1_undefended" in record["metrics"]
    # the same numbers in batches of 4 (randomness drawn per sample); a changed TTC setting recomputes
    again = tmp_path / "ttc_b4"
    assert evaluate_main(_flags(eval_world, again, "--defense", "ttc", "--attention_shift", "true",
                                "--batch_size", "4")) == 0
    assert json.loads((again / "results.json").read_text())["datasets"]["saved"]["robust"] == row["robust"]
    from tgazsr.hub import _attack_text

    assert "ttc" in _attack_text(results) and "adaptive" in _attack_text(results)


def test_autoattack_runs_adaptively_on_a_randomized_defense(eval_world, tmp_path):
    args = EvalArguments(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]],
                         attacks=["autoattack"], attack_options={"autoattack": {"version": "rand", "n_iter": 2}},
                         eps=[8.0], max_samples=4, batch_size=4, sanity_samples=0, plot=False, eot_draws=2,
                         output_dir=str(tmp_path), defense="random_noise", threat_models=["adaptive"])
    row = run_evaluation(args)["datasets"]["saved"]
    assert set(row["robust"]) == {"adaptive:autoattack@8/255"}
    assert row["robust"]["adaptive:autoattack@8/255"] <= row["clean_accuracy"]
    assert row["autoattack"]["attacks"] == ["apgd-ce", "apgd-dlr"]


def test_a_defense_typo_is_one_error_line_with_the_closest_name(eval_world, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)
    assert run_command(evaluate_main, _flags(eval_world, tmp_path, "--defense", "tcc")) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Did you mean 'ttc'" in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("extra,named", [
    (["--defense", "ttc", "--ttc_steps", "-1"], "ttc_steps"),
    (["--defense", "ttc", "--ttc_tau_reference", "clip"], "ttc_tau_reference"),
    (["--defense", "ttc", "--ttc_eps", "0.0157"], "ttc_eps"),
    (["--defense", "ttc", "--defense_options", '{"ttc": {"stepz": 2}}'], "stepz"),
    (["--defense", "ttc", "--random_noise_eps", "2"], "random_noise"),
    (["--defense", "random_noise", "--adaptive_gradient", "smooth"], "adaptive_gradient"),
    (["--defense", "ttc", "--eot_draws", "0"], "eot_draws"),
    (["--defense", "ttc", "--threat_models", "oblivious"], "threat_models"),
])
def test_defense_settings_out_of_limits_are_refused(eval_world, tmp_path, capsys, monkeypatch, extra, named):
    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)
    assert run_command(evaluate_main, _flags(eval_world, tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and named in err and "Traceback" not in err, err
    assert not (tmp_path / "results.json").exists()


def test_the_field_limit_property_test_covers_the_defense_flags():
    import test_field_limits

    ids = {p.id for p in test_field_limits.cases()}
    assert {"evaluate-ttc_steps=-1", "evaluate-ttc_tau_thres=-1", "evaluate-random_noise_eps=nan",
            "evaluate-eot_draws=0", "evaluate-adaptive_gradient=no-such-choice"} <= ids


def test_every_defense_setting_and_threat_model_is_in_the_cache_key():
    base = EvalArguments(defense="ttc")
    key = _key(base)
    for f in dataclasses.fields(TTCSettings):
        value = getattr(TTCSettings(), f.name)
        new = {"auto": "victim", None: "some/base"}.get(value, value) if not isinstance(value, (int, float)) \
            else value + 1
        changed = dataclasses.replace(base, defense_options={"ttc": {f.name: new}})
        assert _key(changed) != key, f.name
    assert _key(dataclasses.replace(base, threat_models=["adaptive"])) != key
    assert _key(dataclasses.replace(base, defense="random_noise")) != key
    assert _key(dataclasses.replace(base, threat_models=["non_adaptive", "adaptive"])) == key  # the default, spelt out
    assert EvalArguments().threats == [] and base.threats == ["non_adaptive", "adaptive"]


def test_without_a_defense_the_columns_are_unchanged(eval_world, tmp_path):
    args = EvalArguments(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]], eps=[8.0],
                         attack_options={"pgd": {"steps": 2}}, max_samples=4, batch_size=4, sanity_samples=0,
                         plot=False, output_dir=str(tmp_path / "plain"))
    plain = run_evaluation(args)
    assert set(plain["datasets"]["saved"]["robust"]) == {"pgd@8/255"} and plain["threat_models"] == []
    assert plain["defense"]["name"] == "none" and "clean_accuracy_undefended" not in plain["datasets"]["saved"]
    # the identity defense under the non-adaptive threat model attacks the same images: the same number
    none = run_evaluation(dataclasses.replace(args, output_dir=str(tmp_path / "none"), threat_models=["non_adaptive"]))
    row = none["datasets"]["saved"]
    assert row["robust"]["non_adaptive:pgd@8/255"] == plain["datasets"]["saved"]["robust"]["pgd@8/255"]
    assert row["clean_accuracy"] == row["clean_accuracy_undefended"]
    assert os.path.isfile(tmp_path / "none" / "results.jsonl")


def test_the_smooth_adaptive_attack_runs_through_the_unrolled_steps_of_ttc(eval_world, tmp_path):
    args = EvalArguments(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]], eps=[8.0],
                         attack_options={"pgd": {"steps": 2}}, max_samples=3, batch_size=3, sanity_samples=0,
                         plot=False, output_dir=str(tmp_path), defense="ttc", threat_models=["adaptive"],
                         adaptive_gradient="smooth", eot_draws=1, defense_score_draws=2)
    results = run_evaluation(args)
    row = results["datasets"]["saved"]
    assert set(row["robust"]) == {"adaptive:pgd@8/255"} and row["robust"]["adaptive:pgd@8/255"] <= row["clean_accuracy"]
    assert results["defense"]["adaptive_gradient"] == "smooth" and results["defense"]["score_draws"] == 2
    assert row["sanity"]["attack_raised_loss"]["adaptive:pgd@8/255"] > 0
