"""Training: every recipe trains on a tiny CLIP; what is saved loads with plain transformers."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CLASS_NAMES, TINY_DATA_FLAGS, merge_flags
from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
from tgazsr.methods import METHODS

METHOD_NAMES = tuple(METHODS)
from tgazsr.recipes import RecipeError, parse_recipe
from tgazsr.train import build_trainer, main, train_with_rescue
from timed_run import run_timed

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
EXPECTED_TERMS = {
    "tga_zsr": {"loss_ce", "loss_ar", "loss_amc", "adv_acc"},
    "comp_tga": {"loss_ce", "loss_ar", "loss_amc", "adv_acc"},
    "vision_attention": {"loss_ce", "loss_ar", "loss_amc", "adv_acc"},
    "tecoa": {"loss_ce", "adv_acc"},
    "pmg_aft": {"loss_ce", "loss_kl_general", "loss_kl_clean", "adv_acc"},
    "fare": {"loss_fare", "adv_acc"},
    "ft_clean": {"loss_contrastive", "clean_acc"},
    "ft_adv": {"loss_contrastive", "adv_acc"},
    "agft": {"loss_soft_ce", "adv_acc"},
}
#: Flags that fit a recipe's data fields to the tiny dataset (AGFT's recipe reads ImageNet's split and class names).


def tiny_args(tiny_clip, data, out, *extra):
    """A tiny run's flags; a flag in ``extra`` replaces the default (a flag given twice is an error)."""
    defaults = [
        "--model_name_or_path", tiny_clip, "--dataset_name", data, "--output_dir", str(out),
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--fp16", "false", "--use_cpu", "true",
        "--logging_steps", "1", "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "no",
        "--eval_max_samples", "4", "--eval_attack_steps", "2", "--report_to", "none",
    ]
    return merge_flags(defaults, extra)


def parse(argv):
    return parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)


def test_every_method_has_a_recipe():
    assert {p.stem for p in RECIPES.glob("*.yaml")} >= set(METHOD_NAMES)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_recipe_trains_two_steps(method, tiny_clip, saved_dataset, tmp_path):
    model_args, data_args, cfg = parse([str(RECIPES / f"{method}.yaml"),
                                        *tiny_args(tiny_clip, saved_dataset, tmp_path, *TINY_DATA_FLAGS.get(method, ()))])
    assert cfg.method == method
    trainer, _, _ = build_trainer(model_args, data_args, cfg)
    clip = trainer.model.clip
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    trainer.train()
    after = clip.state_dict()
    vision = [k for k in before if k.startswith(("vision_model.", "visual_projection."))]
    frozen = [k for k in before if k not in vision]
    assert any(not torch.equal(before[k], after[k]) for k in vision), "vision tower did not change"
    for k in frozen:  # text tower, text projection and logit scale: bit-identical
        assert torch.equal(before[k], after[k]), k
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2
    for entry in logged:
        assert EXPECTED_TERMS[method] <= set(entry)
        assert all(math.isfinite(entry[k]) for k in EXPECTED_TERMS[method])
    # The reference is frozen and untouched by training.
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())


def test_recipe_defaults_match_method_spec():
    _, data_args, cfg = parse([str(RECIPES / "tga_zsr.yaml")])
    assert (cfg.alpha, cfg.beta, cfg.train_eps, cfg.train_numsteps, cfg.train_stepsize) == (0.08, 0.05, 1, 2, 1)
    assert (cfg.learning_rate, cfg.per_device_train_batch_size, cfg.num_train_epochs, cfg.warmup_steps) == (
        1e-4, 128, 10, 1000)
    assert cfg.optim == "sgd" and "momentum=0.9" in cfg.optim_args and cfg.weight_decay == 0
    assert data_args.prompt_template == "This is a photo of a {}"
    _, _, comp = parse([str(RECIPES / "comp_tga.yaml")])
    assert (comp.alpha, comp.beta) == (0.10, 0.07)
    model_args, _, pmg = parse([str(RECIPES / "pmg_aft.yaml")])
    assert model_args.pixel_normalization == "imagenet"
    assert (pmg.kl_reduction, pmg.kl_detach_target, pmg.pmg_logit_scale, pmg.learning_rate) == ("sum", False, False, 5e-5)
    _, _, fare = parse([str(RECIPES / "fare.yaml")])
    assert (fare.train_numsteps, fare.learning_rate, fare.weight_decay) == (10, 1e-5, 1e-4)
    _, _, tecoa = parse([str(RECIPES / "tecoa.yaml")])
    assert tecoa.learning_rate == 1e-5


TRAINING_RECIPES = sorted(p.name for p in RECIPES.glob("*.yaml") if not p.name.startswith("eval_"))
#: The larger encoders' recipes: checkpoint and pixel normalization (SigLIP's are the checkpoint's own).
LARGER = {"vit_b16": ("openai/clip-vit-base-patch16", "clip"), "vit_l14": ("openai/clip-vit-large-patch14", "clip"),
          "vit_l14_336": ("openai/clip-vit-large-patch14-336", "clip"),
          "siglip_b16": ("google/siglip-base-patch16-224", "auto")}


@pytest.mark.parametrize("recipe", TRAINING_RECIPES)
def test_every_training_recipe_parses(recipe):
    _, _, cfg = parse([str(RECIPES / recipe)])
    assert cfg.method in METHODS


@pytest.mark.parametrize("method", ["tga_zsr", "fare"])
@pytest.mark.parametrize("arch", sorted(LARGER))
def test_larger_encoder_recipes_keep_the_method_and_its_reference_batch(method, arch):
    model_args, data_args, cfg = parse([str(RECIPES / f"{method}_{arch}.yaml")])
    _, base_data, base = parse([str(RECIPES / f"{method}.yaml")])
    assert (model_args.model_name_or_path, model_args.pixel_normalization) == LARGER[arch]
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 128  # the reference batch
    for name in ("method", "train_eps", "train_numsteps", "train_stepsize", "learning_rate", "weight_decay", "optim",
                 "num_train_epochs", "warmup_steps"):
        assert getattr(cfg, name) == getattr(base, name), name
    assert data_args.dataset_name == base_data.dataset_name
    text = (RECIPES / f"{method}_{arch}.yaml").read_text()
    assert "measured on CPU" in text and "MiB per image" in text


def test_command_line_overrides_recipe():
    _, _, cfg = parse([str(RECIPES / "tga_zsr.yaml"), "--learning_rate", "5e-5", "--max_steps", "100", "--alpha", "0.2"])
    assert (cfg.learning_rate, cfg.max_steps, cfg.alpha) == (5e-5, 100, 0.2)


def test_unknown_keys_are_named_with_suggestions(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: tga_zsr\ntrain_epss: 2\n")
    with pytest.raises(RecipeError, match=r"train_epss.*Closest valid fields: train_eps"):
        parse([str(bad)])
    with pytest.raises(RecipeError, match=r"learning_rat.*learning_rate"):
        parse([str(RECIPES / "tga_zsr.yaml"), "--learning_rat", "1"])
    with pytest.raises(RecipeError, match="does not exist"):
        parse([str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match="Did you mean 'tga_zsr'"):
        parse([str(RECIPES / "tga_zsr.yaml"), "--method", "tga_zrs"])
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="mapping"):
        parse([str(tmp_path / "list.yaml")])


def test_help_lists_fields_with_help_text(capsys):
    with pytest.raises(SystemExit):
        parse(["--help"])
    out = capsys.readouterr().out
    assert "--train_eps" in out and "units of 1/255" in out
    assert "--alpha" in out and "--dataset_name" in out


@pytest.mark.launches
def test_saved_checkpoint_loads_without_tgazsr(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "run"
    results = main([str(RECIPES / "tga_zsr.yaml"), *tiny_args(tiny_clip, saved_dataset, out)])
    check = results["check"]["datasets"]["toy"]  # the held-out split, through the evaluation harness
    assert check["split"] == "valid" and check["num_samples"] == 4 and set(check["robust"]) == {"pgd@1/255"}
    assert check["sanity"]["robust_le_clean"]
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    base, trained = load_file(Path(tiny_clip) / "model.safetensors"), load_file(out / "model.safetensors")
    for k in base:
        if k.startswith(("text_model.", "text_projection.", "logit_scale")):
            assert torch.equal(base[k], trained[k]), k
    check_plain_transformers(out)


def test_imagenet_normalization_is_saved_in_the_image_processor(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "pmg"
    main([str(RECIPES / "pmg_aft.yaml"), *tiny_args(tiny_clip, saved_dataset, out, "--eval_max_samples", "0")])
    config = json.loads((out / "processor_config.json").read_text())
    image_config = config.get("image_processor", config)
    assert image_config["image_mean"] == [0.485, 0.456, 0.406] and image_config["image_std"] == [0.229, 0.224, 0.225]


def check_plain_transformers(directory):
    """Load and run the zero-shot pipeline in a fresh interpreter where tgazsr cannot be imported."""
    script = f"""
import sys
sys.modules["tgazsr"] = None
import numpy as np
from PIL import Image
from transformers import CLIPModel, pipeline
model = CLIPModel.from_pretrained({str(directory)!r})
clf = pipeline("zero-shot-image-classification", model={str(directory)!r})
out = clf(Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)), candidate_labels=["red square", "green circle"])
assert len(out) == 2 and abs(sum(o["score"] for o in out) - 1) < 1e-4, out
print("OK")
"""
    res = run_timed([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"}, measured_s=4,
                    doing="the saved model in a transformers pipeline, without tgazsr")
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


def test_lora_saves_merged_plain_model(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "lora"
    main([str(RECIPES / "tga_zsr.yaml"), *tiny_args(tiny_clip, saved_dataset, out,
          "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "0.05")])
    weights = load_file(out / "model.safetensors")
    assert not any("lora" in k for k in weights)
    base = load_file(Path(tiny_clip) / "model.safetensors")
    assert set(weights) == set(base)
    changed = [k for k in base if not torch.equal(base[k], weights[k])]
    assert changed and all(k.startswith("vision_model.") for k in changed)
    assert all(any(p in k for p in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")) for k in changed)
    check_plain_transformers(out)


def _one_step_vision(tiny_clip, data, out, batch, accumulation, method="tga_zsr", extra=()):
    model_args, data_args, cfg = parse([str(RECIPES / f"{method}.yaml"), *tiny_args(
        tiny_clip, data, out, "--max_steps", "1", "--per_device_train_batch_size", str(batch),
        "--gradient_accumulation_steps", str(accumulation), "--train_random_start", "false",
        "--learning_rate", "0.01", "--optim_args", "momentum=0.0", "--max_grad_norm", "0", *extra,
    )])
    trainer, _, _ = build_trainer(model_args, data_args, cfg)
    trainer.train()
    return {k: v.clone() for k, v in trainer.model.clip.state_dict().items() if k.startswith("vision_model.")}


@pytest.mark.parametrize("method", ["tga_zsr", "pmg_aft"])
def test_gradient_accumulation_matches_larger_batch(method, tiny_clip, saved_dataset, tmp_path):
    # Same seed, same shuffle: both runs see the same 8 images in their one optimizer step.
    # PMG-AFT: a strong attack and scaled logits make its batch-summed KL term weigh in the update.
    extra = ("--pmg_logit_scale", "true", "--train_eps", "16", "--train_stepsize", "8", "--kl_weight_clean", "100") if method == "pmg_aft" else ()
    big = _one_step_vision(tiny_clip, saved_dataset, tmp_path / "a", 8, 1, method, extra)
    small = _one_step_vision(tiny_clip, saved_dataset, tmp_path / "b", 4, 2, method, extra)
    base = load_file(Path(tiny_clip) / "model.safetensors")
    moved = max((big[k] - base[k]).abs().max().item() for k in big)
    assert moved > 1e-5
    for k in big:
        torch.testing.assert_close(big[k], small[k], rtol=1e-4, atol=1e-6)


def test_resume_from_checkpoint_continues_exactly(tiny_clip, saved_dataset, tmp_path):
    from transformers import TrainerCallback

    class StopAfterFirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                control.should_training_stop = True

    def run(out, resume=None, save=True, stop=False):
        model_args, data_args, cfg = parse([
            str(RECIPES / "tga_zsr.yaml"), *tiny_args(tiny_clip, saved_dataset, out, "--max_steps", "3",
                                                      "--save_strategy", "steps" if save else "no", "--save_steps", "1"),
        ])
        trainer, _, _ = build_trainer(model_args, data_args, cfg)
        if stop:
            trainer.add_callback(StopAfterFirstStep())
        trainer.train(resume_from_checkpoint=resume)
        return trainer.model.clip.state_dict()

    straight = run(tmp_path / "straight", save=False)
    run(tmp_path / "interrupted", stop=True)
    resumed = run(tmp_path / "interrupted", resume=str(tmp_path / "interrupted" / "checkpoint-1"))
    for k in straight:
        torch.testing.assert_close(straight[k], resumed[k], rtol=1e-5, atol=1e-7)


def test_crash_leaves_a_resumable_checkpoint(tiny_clip, saved_dataset, tmp_path):
    from transformers import TrainerCallback

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("simulated crash")

    out = tmp_path / "crash"
    model_args, data_args, cfg = parse([str(RECIPES / "tga_zsr.yaml"), *tiny_args(tiny_clip, saved_dataset, out,
                                                                                   "--max_steps", "4")])
    trainer, _, _ = build_trainer(model_args, data_args, cfg)
    trainer.add_callback(Boom())
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_with_rescue(trainer)
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    results = main([str(RECIPES / "tga_zsr.yaml"), *tiny_args(tiny_clip, saved_dataset, out, "--max_steps", "4",
                                                               "--resume_from_checkpoint", "true")])
    assert results is not None and (out / "model.safetensors").is_file()


def test_robust_accuracy_while_training_reaches_logs_and_picks_the_best(tiny_clip, saved_dataset, tmp_path):
    import datasets

    from conftest import make_hf_dataset

    held_out = tmp_path / "held_out"
    datasets.DatasetDict({"test": make_hf_dataset(8, seed=5)}).save_to_disk(str(held_out))
    logged = []
    from transformers import TrainerCallback

    class Capture(TrainerCallback):  # what a tracker (tensorboard, wandb) receives
        def on_log(self, args, state, control, logs=None, **kwargs):
            logged.append(dict(logs or {}))

    out = tmp_path / "evalsteps"
    model_args, data_args, cfg = parse([str(RECIPES / "tecoa.yaml"), *tiny_args(
        tiny_clip, saved_dataset, out, "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
        "--eval_datasets", f"held={held_out}", "--eval_steps_max_samples", "4", "--save_strategy", "steps",
        "--save_steps", "2", "--metric_for_best_model", "eval_robust_accuracy", "--learning_rate", "0.01")])
    trainer, _, _ = build_trainer(model_args, data_args, cfg)
    trainer.add_callback(Capture())
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_robust_accuracy" in h]
    assert [h["step"] for h in evals] == [2, 4]
    assert all({"eval_clean_accuracy", "eval_held_robust_accuracy"} <= set(h) for h in evals)
    assert any("eval_robust_accuracy" in entry for entry in logged)
    assert trainer.state.best_metric == max(h["eval_robust_accuracy"] for h in evals)
    assert trainer.state.best_model_checkpoint.endswith(("checkpoint-2", "checkpoint-4"))
    assert trainer.model.training  # back to training mode after each evaluation
    saved = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert any("eval_robust_accuracy" in h for h in saved["log_history"])


def test_robust_accuracy_curve_and_final_benchmark_reach_tensorboard(tiny_clip, saved_dataset, tmp_path):
    """`--report_to tensorboard`: the event files hold the robust accuracy at each evaluation step,
    the loss terms, and the final benchmark on eval_datasets."""
    import datasets
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from conftest import make_hf_dataset

    held_out = tmp_path / "held_out"
    datasets.DatasetDict({"test": make_hf_dataset(8, seed=5)}).save_to_disk(str(held_out))
    out = tmp_path / "tb"
    main([str(RECIPES / "tecoa.yaml"), *tiny_args(
        tiny_clip, saved_dataset, out, "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
        "--eval_datasets", f"held={held_out}", "--eval_steps_max_samples", "4", "--report_to", "tensorboard",
        "--eval_max_samples", "0")])
    scalars: dict[str, list] = {}
    for events in (out / "runs").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    curve = sorted(scalars["eval/robust_accuracy"])
    assert [step for step, _ in curve] == [2, 4]
    assert all(0.0 <= value <= 1.0 for _, value in curve)
    assert "eval/clean_accuracy" in scalars and "train/loss" in scalars
    assert any("benchmark_robust_accuracy" in tag for tag in scalars)  # the final benchmark, once training ended


def test_attacks_keep_the_weights_trainable_and_free_of_gradients(tiny_clip, saved_dataset, tmp_path):
    """The training attack and the evaluation while training run with the weights' requires_grad
    off (less memory); afterwards every trained weight requires gradients again and holds none."""
    from tgazsr.data import collate

    model_args, data_args, cfg = parse([str(RECIPES / "tga_zsr.yaml"), *tiny_args(tiny_clip, saved_dataset,
                                                                                   tmp_path / "flags")])
    trainer, train, _ = build_trainer(model_args, data_args, cfg)
    model = trainer.model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    seen = []
    model.clip.vision_model.encoder.layers[0].mlp.fc1.register_forward_hook(
        lambda m, i, o: seen.append(m.weight.requires_grad))
    batch = collate([train.dataset[i] for i in range(4)])
    x_adv = trainer._attack(model, batch["pixel_values"], batch["labels"], None)
    assert seen and not any(seen)  # inside the attack the weights did not require gradients
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(x_adv, batch["pixel_values"])
    with pytest.raises(RuntimeError, match="inside"):
        with trainer._image_gradients_only(model):
            raise RuntimeError("inside")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable  # restored after an error
