"""The SigLIP world: a tiny SigLIP pretrained with the sigmoid loss beside the world's CLIP, in its
own root, saved as a plain SigLIP folder that tgazsr's SigLIP backbone and the transformers pipeline
load, never taken from the shipped CLIP; TGA-ZSR trains on it through the quickstart recipe."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from itertools import product
from pathlib import Path

import pytest
import torch

from tgazsr import losses
from tgazsr.backbones.siglip import TEXT_LENGTH, SiglipBackbone
from tgazsr.world import (
    EVAL_SETS,
    SHAPES,
    TRAIN_PAIRS,
    TRAIN_TEMPLATE,
    VALUES,
    WorldSpec,
    build_world,
    default_root,
    make_tokenizer,
    new_model,
    pair_name,
    pretraining,
    shipped,
    sigmoid_loss,
)
from tgazsr.world.__main__ import main as world_main
from tgazsr.world.sets import CAPTION_FRAMES, SINGLE_ATTRIBUTE_FRAMES

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "recipes" / "quickstart.yaml")

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def siglip_world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("siglip_world") / "w", seed=0, small=True, backbone="siglip")


# --- the spec, the root, the shipped model ------------------------------------------------------


def test_the_backbone_enters_the_fingerprint_and_the_root():
    clip, siglip = WorldSpec(), WorldSpec.default(backbone="siglip")
    assert siglip.backbone == "siglip" and dataclasses.replace(siglip, backbone="clip") == clip
    assert siglip.fingerprint() != clip.fingerprint()
    assert WorldSpec.default(True, "siglip").fingerprint() != WorldSpec.reduced().fingerprint()
    assert default_root(0).endswith("world-v2-seed0")
    assert default_root(0, backbone="siglip").endswith("world-v2-seed0-siglip")
    assert default_root(0, small=True, backbone="siglip").endswith("world-v2-seed0-siglip-small")
    with pytest.raises(ValueError, match="choose one of clip, siglip"):
        WorldSpec.default(backbone="vit")
    with pytest.raises(ValueError, match="pass one"):
        build_world("unused", spec=WorldSpec.reduced(), backbone="siglip")


def test_the_shipped_clip_never_matches_a_siglip_spec():
    assert shipped.shipped_record(WorldSpec(), seed=0) is not None  # the CLIP's key is unchanged
    assert shipped.shipped_record(WorldSpec.default(backbone="siglip"), seed=0) is None


def test_every_caption_and_prompt_fits_siglips_64_tokens():
    tokenizer = make_tokenizer(TEXT_LENGTH)
    longest = {a: max(VALUES[a], key=len) for a in VALUES}
    words = " ".join([longest["size"], longest["colour"], longest["pattern"], longest["shape"]])
    texts = [frame.format(words) for frame in CAPTION_FRAMES]
    texts += [frame.format(max(VALUES[a], key=len) + " object") for a, frames in SINGLE_ATTRIBUTE_FRAMES.items()
              for frame in frames]
    texts += [TRAIN_TEMPLATE.format(pair_name(p)) for p in TRAIN_PAIRS]
    for es in EVAL_SETS.values():
        texts += [t.format(c) if "{}" in t else t for t, c in product(es.templates, es.class_names)]
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert max(lengths) <= TEXT_LENGTH - 8, max(zip(lengths, texts))
    batch = SiglipBackbone.tokenize(tokenizer, ["a red star", texts[0]])
    assert batch["input_ids"].shape == (2, TEXT_LENGTH) and (batch["input_ids"][:, -1] == 513).all()


# --- the loss and the initialization --------------------------------------------------------------


def test_the_sigmoid_loss_is_siglips_and_multi_positive_with_codes():
    torch.manual_seed(0)
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    scale, bias = 10.0, -10.0
    logits = scale * torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).t() + bias
    reference = losses.sigmoid_contrastive(image, text, scale, bias)
    torch.testing.assert_close(sigmoid_loss(logits), reference)
    unique = torch.arange(5).view(5, 1).repeat(1, 4)  # every caption names every attribute of distinct objects
    torch.testing.assert_close(sigmoid_loss(logits, unique, unique), reference)
    captions = unique.clone()
    captions[0] = -1  # says nothing: a positive of every image
    signs = 2 * torch.eye(5) - 1
    signs[:, 0] = 1
    expected = -torch.nn.functional.logsigmoid(signs * logits).sum() / 5
    torch.testing.assert_close(sigmoid_loss(logits, unique, captions), expected)
    assert not torch.isclose(expected, reference)


def test_a_fresh_world_siglip_starts_as_siglip_does():
    model = new_model(WorldSpec.default(True, "siglip"))
    assert type(model) is SiglipBackbone.model_class()
    assert math.isclose(model.logit_scale.item(), math.log(10), rel_tol=1e-6) and model.logit_bias.item() == -10
    assert SiglipBackbone.config_problem(model.config.to_dict()) is None
    assert model.config.text_config.max_position_embeddings == TEXT_LENGTH
    with pytest.raises(ValueError, match="pretrain_model"):
        pretraining.pretrain_clip(None, None, WorldSpec.default(True, "siglip"))


# --- the built world ------------------------------------------------------------------------------


def test_the_world_siglip_is_a_plain_siglip_folder(siglip_world):
    from transformers import AutoTokenizer, SiglipModel

    from tgazsr.model_checks import check_model_folder
    from tgazsr.modeling import load_clip

    check_model_folder(siglip_world.model)
    model = SiglipModel.from_pretrained(siglip_world.model)
    assert model.config.model_type == "siglip" and model.config.vision_config.image_size == 56
    tokenizer = AutoTokenizer.from_pretrained(siglip_world.model)
    assert tokenizer.model_max_length == TEXT_LENGTH
    assert tokenizer(["a star"], padding="max_length", max_length=TEXT_LENGTH)["input_ids"][0][-1] == 513
    info = json.loads(Path(siglip_world.model, "pretraining.json").read_text())
    assert info["loss"] == "sigmoid" and not info.get("shipped")
    assert all(math.isfinite(info[k]) for k in ("first_loss", "final_loss", "logit_scale", "logit_bias"))
    assert info["final_loss"] < info["first_loss"]  # it learns
    assert load_clip(siglip_world.model).__class__ is SiglipModel
    marker = json.loads(Path(siglip_world.root, "WORLD_COMPLETE.json").read_text())
    assert marker["spec"]["backbone"] == "siglip"


def test_the_pipeline_classifies_with_the_world_siglip(siglip_world):
    import datasets
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=siglip_world.model, device="cpu")
    image = datasets.load_from_disk(siglip_world.eval["shapes"])["test"][0]["image"]
    result = classifier(image, candidate_labels=list(SHAPES), hypothesis_template="a drawing of a {}.")
    assert sorted(r["label"] for r in result) == sorted(SHAPES)
    assert all(0 <= r["score"] <= 1 for r in result)  # sigmoid scores, one per label


def test_the_cli_builds_a_siglip_world(siglip_world, capsys):
    assert world_main(["--root", siglip_world.root, "--small", "--backbone", "siglip", "--no_report"]) == {}
    printed = capsys.readouterr().out
    assert f"{siglip_world.model} (siglip)" in printed and "sigmoid loss" in printed


def test_tga_zsr_trains_two_steps_on_the_siglip_world(siglip_world, tmp_path):
    from transformers import SiglipModel

    from tgazsr import train

    out = tmp_path / "qs"
    results = train.main([QUICKSTART, "--synthetic_backbone", "siglip", "--synthetic_small", "true",
                          "--synthetic_root", siglip_world.root, "--max_steps", "2", "--per_device_train_batch_size",
                          "8", "--eval_max_samples", "8", "--eval_attack_steps", "1", "--output_dir", str(out)])
    assert set(results["benchmark"]["datasets"]) == set(results["base_benchmark"]["datasets"])
    assert "tga_zsr pgd@8/255" in (out / "comparison.md").read_text()
    assert json.loads((out / "config.json").read_text())["model_type"] == "siglip"
    trained = SiglipModel.from_pretrained(str(out))
    base = SiglipModel.from_pretrained(siglip_world.model)
    assert not torch.equal(trained.vision_model.head.probe, base.vision_model.head.probe) or any(
        not torch.equal(a, b) for a, b in zip(trained.vision_model.parameters(), base.vision_model.parameters()))
    assert torch.equal(trained.logit_bias, base.logit_bias)  # frozen
    assert "SigLIP" in (out / "README.md").read_text()
