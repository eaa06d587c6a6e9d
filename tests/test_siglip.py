"""SigLIP through the backbone seam: the encoding and its attention definitions against
transformers' own SiglipModel, the logits and the sigmoid loss, every method trained two steps
on a tiny SiglipModel and saved as a plain SiglipModel folder, and the harness scoring one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import CLEAN_NAMES, TEMPLATE, TINY_DATA_FLAGS, build_tiny_siglip, labelled_dataset, make_images, merge_flags, \
    model_predictions
from tgazsr import losses
from tgazsr.backbones import backbone_for
from tgazsr.backbones.siglip import TEXT_LENGTH, SiglipBackbone
from tgazsr.errors import ModelFolderError, UserError
from tgazsr.methods import METHODS
from tgazsr.model_checks import check_model_folder, load_processor
from tgazsr.modeling import ZeroShotCLIP, load_clip

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def siglip(tiny_siglip):
    model = load_clip(tiny_siglip)
    model.eval()
    processor = load_processor(tiny_siglip)
    return ZeroShotCLIP(model, HALF), processor.tokenizer


def test_backbone_and_normalization_come_from_the_folder(tiny_siglip, siglip):
    model, _ = siglip
    assert backbone_for(model.clip) is SiglipBackbone and model.backbone is SiglipBackbone
    check_model_folder(tiny_siglip)  # a SigLIP folder is a model folder
    processor = load_processor(tiny_siglip)
    assert list(processor.image_processor.image_mean) == HALF[0]
    from tgazsr.evaluation import EvalArguments, load_model

    evaluated, _, _ = load_model(EvalArguments(model_name_or_path=tiny_siglip), torch.device("cpu"))
    assert evaluated.pixel_mean.flatten().tolist() == HALF[0] and evaluated.pixel_std.flatten().tolist() == HALF[1]
    with pytest.raises(UserError, match=r"'clip' is CLIP's mean/std, but .* is a SigLIP model.*"
                                        r"--pixel_normalization auto"):
        load_model(EvalArguments(model_name_or_path=tiny_siglip, pixel_normalization="clip"), torch.device("cpu"))


def test_the_embedding_is_the_pooling_heads_and_the_attention_its_probes(siglip):
    model, _ = siglip
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        enc = model(x, output_tokens=True, output_attentions=True)
        reference = model.clip.get_image_features(pixel_values=(x - 0.5) / 0.5).pooler_output
        hidden = model.clip.vision_model(pixel_values=(x - 0.5) / 0.5).last_hidden_state
    torch.testing.assert_close(plain.embeds, reference, rtol=0, atol=0)
    torch.testing.assert_close(enc.embeds, reference, rtol=1e-6, atol=1e-6)
    n, heads = (32 // 8) ** 2, 2
    assert enc.prefix_tokens == 0 and enc.tokens.shape == (3, n, 32) and enc.attentions.shape == (3, heads, 1, n)
    # The probe's attention, computed here from the head's own projections, per head.
    head = model.clip.vision_model.head
    d = head.attention.embed_dim
    w, b = head.attention.in_proj_weight, head.attention.in_proj_bias
    q = F.linear(head.probe, w[:d], b[:d]).view(1, heads, d // heads)
    k = F.linear(hidden, w[d:2 * d], b[d:2 * d]).view(3, n, heads, d // heads)
    weights = torch.einsum("hc,bnhc->bhn", q[0], k).div(math.sqrt(d // heads)).softmax(-1)
    torch.testing.assert_close(enc.attentions[:, :, 0], weights, rtol=1e-5, atol=1e-6)


def test_a_patch_token_is_the_heads_output_when_its_probe_sees_that_patch_alone(siglip):
    model, _ = siglip
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    head = model.clip.vision_model.head
    with torch.no_grad():
        tokens = model(x, output_tokens=True).tokens
        hidden = model.clip.vision_model(pixel_values=(x - 0.5) / 0.5).last_hidden_state
        for patch in (0, 5, hidden.shape[1] - 1):
            alone = hidden[:, patch:patch + 1].expand_as(hidden)  # every key the same patch: its weight is 1
            torch.testing.assert_close(tokens[:, patch], head(alone), rtol=1e-5, atol=1e-5)


def test_prompts_pad_to_64_and_logits_are_transformers_with_the_bias(siglip):
    model, tokenizer = siglip
    batch = SiglipBackbone.tokenize(tokenizer, ["a photo of a cat", "a dog"])
    assert batch["input_ids"].shape == (2, TEXT_LENGTH)
    torch.manual_seed(2)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        text = model.encode_text(["a photo of a cat", "a dog"], tokenizer)
        ours = model.logits(model(x).embeds, text)
        theirs = model.clip(**batch, pixel_values=(x - 0.5) / 0.5).logits_per_image
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert model.logit_bias is not None and float(model.logit_bias.detach()) == pytest.approx(-10.0)
    # The bias is the same for every class: CE, the CW margin and the argmax are those of s * cos.
    labels = torch.tensor([1, 0])
    unbiased = ours - model.logit_bias
    assert losses.cross_entropy(ours, labels).item() == pytest.approx(losses.cross_entropy(unbiased, labels).item(),
                                                                      rel=1e-6)
    torch.testing.assert_close(losses.margin_loss(ours, labels), losses.margin_loss(unbiased, labels))


def test_sigmoid_loss_is_the_papers_and_transformers():
    torch.manual_seed(3)
    img, txt = torch.randn(5, 8), torch.randn(5, 8)
    scale, bias = torch.tensor(7.0), torch.tensor(-3.0)
    value = losses.sigmoid_contrastive(img, txt, scale, bias)
    z = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t() + bias
    by_hand = sum(-math.log(1 / (1 + math.exp(-(1 if i == j else -1) * z[i, j].item())))
                  for i in range(5) for j in range(5)) / 5
    assert value.item() == pytest.approx(by_hand, rel=1e-6)
    # transformers' SiglipModel(return_loss=True): the same sum over pairs, divided by the batch size.
    signs = 2 * torch.eye(5) - 1
    assert value.item() == pytest.approx((-F.logsigmoid(signs * z.t()).sum(-1)).mean().item(), rel=1e-6)
    assert SiglipBackbone.contrastive_loss(img, txt, scale, bias).item() == pytest.approx(value.item())


def test_folders_that_do_not_fit_are_refused_saying_why(tiny_siglip, tmp_path):
    config = json.loads((Path(tiny_siglip) / "config.json").read_text())
    cases = {
        "siglip2": ({**config, "model_type": "siglip2"}, r"Siglip2Model \(NaFlex\).*fixed-resolution SigLIP 2"),
        "headless": ({**config, "vision_config": {**config["vision_config"], "vision_use_head": False}},
                     "no pooling head"),
        "short": ({**config, "text_config": {**config["text_config"], "max_position_embeddings": 16}},
                  "padded to 64 tokens"),
    }
    for name, (changed, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(changed))
        with pytest.raises(ModelFolderError, match=message):
            check_model_folder(str(folder))


# --- every method, two steps -----------------------------------------------------------------------


def siglip_args(model, data, out, *extra):
    defaults = [
        "--model_name_or_path", model, "--dataset_name", data, "--output_dir", str(out),
        "--pixel_normalization", "auto", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--fp16", "false", "--use_cpu", "true", "--logging_steps", "1", "--dataloader_num_workers", "0",
        "--warmup_steps", "0", "--save_strategy", "no", "--eval_max_samples", "0", "--report_to", "none",
    ]
    return merge_flags(defaults, extra)


def check_pipeline(directory):
    from PIL import Image
    from transformers import SiglipModel, pipeline
    import numpy as np

    SiglipModel.from_pretrained(str(directory))
    clf = pipeline("zero-shot-image-classification", model=str(directory))
    out = clf(Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)), candidate_labels=["red square", "blue star"])
    assert len(out) == 2 and all(0 <= o["score"] <= 1 for o in out)


@pytest.mark.parametrize("method", tuple(METHODS))
def test_every_method_trains_two_steps_and_saves_a_plain_siglip(method, tiny_siglip, saved_dataset, tmp_path,
                                                                monkeypatch):
    from transformers import Trainer

    from tgazsr.train import main

    logged, log = [], Trainer.log

    def record(self, logs, *args, **kwargs):  # what the trainer logs, with the method's terms
        logged.append(dict(logs))
        return log(self, logs, *args, **kwargs)

    monkeypatch.setattr(Trainer, "log", record)
    out = tmp_path / method
    main([str(RECIPES / f"{method}.yaml"), *siglip_args(tiny_siglip, saved_dataset, out, *TINY_DATA_FLAGS.get(method, ()))])
    base, trained = load_file(Path(tiny_siglip) / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(base) == set(trained)
    vision = [k for k in base if k.startswith("vision_model.")]
    assert any(not torch.equal(base[k], trained[k]) for k in vision), "the vision tower did not change"
    for k in base:
        if not k.startswith("vision_model."):  # text tower, logit scale and bias: bit-identical
            assert torch.equal(base[k], trained[k]), k
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    image = json.loads((out / "processor_config.json").read_text())
    image = image.get("image_processor", image)
    assert image["image_mean"] == HALF[0] and image["image_std"] == HALF[1]
    steps = [h for h in logged if "loss" in h]
    terms = set(METHODS[method].loss_terms) | {METHODS[method].accuracy_name}
    assert len(steps) == 2 and all(terms <= set(h) for h in steps), steps
    assert all(math.isfinite(h[k]) for h in steps for k in terms)
    card = (out / "README.md").read_text()
    assert "A SigLIP vision tower" in card and "logit scale and bias" in card
    method_def = METHODS[method]
    assert ("SigLIP's sigmoid loss" in card) == method_def.backbone_loss
    assert ("tgazsr's extension" in card) == bool(method_def.attention)
    check_pipeline(out)


def test_sigmoid_loss_drives_ft_clean_on_siglip(tiny_siglip, saved_dataset, tmp_path, monkeypatch):
    from tgazsr import backbones
    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import parse_recipe
    from tgazsr.train import build_trainer

    calls = []
    real = losses.sigmoid_contrastive

    def counted(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(backbones.siglip.losses, "sigmoid_contrastive", counted)
    argv = [str(RECIPES / "ft_clean.yaml"), *siglip_args(tiny_siglip, saved_dataset, tmp_path / "o", "--max_steps",
                                                          "1")]
    trainer, _, _ = build_trainer(*parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv))
    trainer.train()
    assert calls and float(calls[0]) == pytest.approx(-10.0)  # the model's own bias reached the loss


def test_clip_normalization_on_a_siglip_is_refused_in_training(tiny_siglip, saved_dataset, tmp_path, capsys):
    from tgazsr.errors import run_command
    from tgazsr.train import main

    out = tmp_path / "refused"
    capsys.readouterr()
    code = run_command(main, [str(RECIPES / "tecoa.yaml"), *siglip_args(tiny_siglip, saved_dataset, out,
                                                                         "--pixel_normalization", "clip")])
    err = capsys.readouterr().err
    assert code == 2 and "error: " in err and "Traceback" not in err, err
    assert "is a SigLIP model" in err and "--pixel_normalization auto" in err
    assert not (out / "model.safetensors").exists()


def test_lora_on_siglip_adapts_the_encoder_and_the_heads_mlp(tiny_siglip, saved_dataset, tmp_path):
    from tgazsr.train import main

    out = tmp_path / "lora"
    main([str(RECIPES / "tga_zsr.yaml"), *siglip_args(tiny_siglip, saved_dataset, out, "--use_peft", "true",
                                                      "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "0.05")])
    base, weights = load_file(Path(tiny_siglip) / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(weights) == set(base)
    changed = [k for k in base if not torch.equal(base[k], weights[k])]
    assert changed and all(k.startswith("vision_model.") for k in changed)
    assert not any("head.attention" in k for k in changed)
    check_pipeline(out)


@pytest.mark.launches
def test_a_trained_siglip_loads_without_tgazsr(tiny_siglip, saved_dataset, tmp_path):
    from tgazsr.train import main

    out = tmp_path / "plain"
    main([str(RECIPES / "tecoa.yaml"), *siglip_args(tiny_siglip, saved_dataset, out)])
    script = f"""
import sys
sys.modules["tgazsr"] = None
import numpy as np
from PIL import Image
from transformers import SiglipModel, pipeline
SiglipModel.from_pretrained({str(out)!r})
clf = pipeline("zero-shot-image-classification", model={str(out)!r})
out = clf(Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)), candidate_labels=["red square", "green circle"])
assert len(out) == 2, out
print("OK")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


# --- the harness --------------------------------------------------------------------------------


def test_the_harness_scores_a_siglip_with_pgd_cw_and_autoattack(tiny_siglip, tmp_path):
    from tgazsr.evaluation import EvalArguments, run_evaluation

    import datasets

    images, _ = make_images(8, 4, seed=5)
    labels = model_predictions(tiny_siglip, images)  # its own predictions: clean accuracy is 100%
    data = str(tmp_path / "data")
    datasets.DatasetDict({"test": labelled_dataset(images, labels)}).save_to_disk(data)
    args = EvalArguments(model_name_or_path=tiny_siglip, datasets=[data], attacks=["pgd", "cw", "autoattack"],
                         eps=[8.0], batch_size=8, output_dir=str(tmp_path / "out"), plot=False,
                         class_names=",".join(CLEAN_NAMES), prompt_template=TEMPLATE,
                         attack_options={"pgd": {"steps": 3}, "cw": {"steps": 3}, "autoattack": {"n_iter": 2}})
    results = run_evaluation(args)
    r = results["datasets"]["data"]
    assert r["num_samples"] == 8 and r["clean_accuracy"] == 1.0
    assert {"pgd@8/255", "cw@8/255", "autoattack@8/255", "worst@8/255"} <= set(r["robust"])
    assert all(0.0 <= v <= r["clean_accuracy"] for v in r["robust"].values())
    assert r["robust"]["worst@8/255"] <= min(r["robust"]["pgd@8/255"], r["robust"]["cw@8/255"])
    assert results["pixel_normalization"] == [HALF[0], HALF[1]]
    assert r["sanity"]["robust_le_clean"]


def test_visualize_draws_a_siglips_attention(tiny_siglip, tmp_path):
    from tgazsr.evaluation import visualize

    image = tmp_path / "img.png"
    make_images(1, 4, seed=6)[0][0].save(image)
    png = tmp_path / "attention.png"
    code = visualize.main(["--model_name_or_path", tiny_siglip, "--image", str(image), "--label", "red square",
                           "--class_names", ",".join(CLEAN_NAMES), "--eps", "8", "--steps", "2", "--output", str(png)])
    assert code == 0 and png.stat().st_size > 1000


def test_only_the_backbones_and_convert_name_the_model_classes():
    package = ROOT / "tgazsr"
    allowed = {"CLIPModel": package / "backbones" / "clip.py", "SiglipModel": package / "backbones" / "siglip.py"}
    for path in package.rglob("*.py"):
        if "convert" in path.relative_to(package).parts:
            continue
        text = path.read_text(encoding="utf-8")
        for name, home in allowed.items():
            assert name not in text or path == home, f"{path} names {name}"
