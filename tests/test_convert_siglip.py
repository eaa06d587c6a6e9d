"""open_clip's SigLIP, converted, gives open_clip's features to 1e-5 as a plain SiglipModel.

open_clip and timm (installed without their dependencies, timm in .test_deps; see the README) build a random
SigLIP in a separate process (tests/open_clip_reference.py): open_clip's ``ViT-B-16-SigLIP``
recipe as its config file writes it (a timm ``vit_base_patch16_siglip_224`` trunk pooled by its
attention head, open_clip's text transformer pooled at its last position, the logit bias), with
the timm trunk shrunk to a tiny size. Its weights become an open_clip Hub folder, which
``tgazsr.convert`` converts; the SiglipModel's image and text features are compared with open_clip's
``encode_image`` / ``encode_text`` on the same inputs, and the folder is loaded by the transformers
pipeline and scored by the harness.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import write_char_tokenizer
from open_clip_reference import TEST_DEPS, TIMM_INSTALL, references
from test_open_clip import INSTALL
from test_siglip import check_pipeline
from tgazsr import convert as cv
from tgazsr.backbones.clip import _features

IMAGE, CONTEXT = 32, 64
#: timm's vit_base_patch16_siglip_224 at a tiny size (the test's; open_clip's config names the model).
TINY_TRUNK = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8, "img_size": IMAGE, "mlp_ratio": 2.0}


def siglip_model_cfg(vocab: int, **text_extra) -> dict:
    """open_clip's ViT-B-16-SigLIP.json with the sizes of a tiny model."""
    return {
        "embed_dim": 32, "init_logit_bias": -10, "custom_text": True,
        "vision_cfg": {"image_size": IMAGE, "timm_model_name": "vit_base_patch16_siglip_224",
                       "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": vocab, "tokenizer_kwargs": {"clean": "lower"},
                     "width": 32, "heads": 2, "layers": 2, "mlp_ratio": 2.0, "no_causal_mask": True,
                     "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}, **text_extra},
    }


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("siglip_tokenizer"))
    tok = write_char_tokenizer(directory)
    tok.model_max_length = CONTEXT
    tok.save_pretrained(directory)
    return directory


def _inputs(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tok(["a photo of a cat", "a dog", "x"], padding="max_length", max_length=CONTEXT,
              return_tensors="pt")["input_ids"]
    pixels = torch.randn(3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
    return pixels, ids, len(tok)


#: Each SigLIP the tests convert: (seed, extra text settings), by name.
SIGLIPS = {"siglip": (0, {}), "siglip2_text_activation": (0, {"act_kwargs": {"approximate": "tanh"}}),
           "evaluated": (2, {}), "vision_alone": (1, {}), "canonicalize": (3, {}), "refused_parts": (4, {})}


@pytest.fixture(scope="module")
def siglip_refs(tokenizer_dir, tmp_path_factory) -> dict:
    """open_clip's reference (state dict, features) of each of ``SIGLIPS``, built in one process."""
    if importlib.util.find_spec("open_clip") is None:
        pytest.fail(f"open_clip is not installed; the README's install command installs it ({INSTALL}).")
    if not (TEST_DEPS / "timm").is_dir():
        pytest.fail(f"timm is not in {TEST_DEPS}; the README's install command puts it there ({TIMM_INSTALL}).")
    pixels, ids, vocab = _inputs(tokenizer_dir)
    jobs = {name: ({**siglip_model_cfg(vocab, **extra), "seed": seed, "timm_overrides": TINY_TRUNK},
                   {"pixels": pixels, "ids": ids}) for name, (seed, extra) in SIGLIPS.items()}
    return references(jobs, tmp_path_factory.mktemp("siglip_refs"), measured_s=6)


def open_clip_siglip(tmp_path, tokenizer_dir, siglip_refs, name) -> tuple[str, dict, torch.Tensor, torch.Tensor]:
    """(open_clip folder, open_clip's reference, pixels, ids) of the random tiny open_clip SigLIP ``name``."""
    pixels, ids, vocab = _inputs(tokenizer_dir)
    model_cfg = siglip_model_cfg(vocab, **SIGLIPS[name][1])
    ref = siglip_refs[name]
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    folder = tmp_path / "open_clip_siglip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"}}))
    save_file({k: v.contiguous() for k, v in ref["state_dict"].items()}, str(folder / "open_clip_model.safetensors"))
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(str(folder))
    return str(folder), ref, pixels, ids


def siglip_features(directory, pixels, ids):
    from transformers import SiglipModel

    model = SiglipModel.from_pretrained(directory).eval()
    with torch.no_grad():
        return model, _features(model.get_image_features(pixel_values=pixels)), \
            _features(model.get_text_features(input_ids=ids))


@pytest.mark.parametrize("text_act", [None, "tanh"], ids=["siglip", "siglip2_text_activation"])
def test_open_clip_siglip_converts_to_its_own_features(text_act, tokenizer_dir, siglip_refs, tmp_path):
    name = "siglip2_text_activation" if text_act else "siglip"
    folder, ref, pixels, ids = open_clip_siglip(tmp_path, tokenizer_dir, siglip_refs, name)
    with pytest.raises(cv.ConversionError, match="--vision_heads"):  # the tiny trunk is not timm's 12-head ViT-B
        cv.convert(folder, str(tmp_path / "wrong"))
    out = cv.convert(folder, str(tmp_path / "siglip"), vision_heads=2)
    model, image, text = siglip_features(out, pixels, ids)
    assert type(model).__name__ == "SiglipModel"
    assert image.abs().mean() > 1e-2 and text.abs().mean() > 1e-2
    torch.testing.assert_close(image, ref["image"], atol=1e-5, rtol=0)
    torch.testing.assert_close(text, ref["text"], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.logit_scale.detach(), ref["state_dict"]["logit_scale"].reshape(1))
    torch.testing.assert_close(model.logit_bias.detach(), ref["state_dict"]["logit_bias"].reshape(1))
    assert model.config.vision_config.hidden_act == "gelu"  # open_clip's nn.GELU, as open_clip computes it
    assert model.config.text_config.hidden_act == ("gelu_pytorch_tanh" if text_act else "gelu")
    record = json.loads((Path(out) / "conversion.json").read_text())
    assert record["model_type"] == "siglip" and record["text_clean"] == "lower"
    assert record["image_mean"] == [0.5] * 3 and record["resize_mode"] == "squash"
    check_pipeline(out)  # a plain SiglipModel directory that transformers' pipeline loads


def test_a_converted_siglip_evaluates_through_the_harness(tokenizer_dir, siglip_refs, tmp_path, eval_world):
    from tgazsr.evaluation import EvalArguments, run_evaluation

    from tgazsr.cli import main as tgazsr_main

    folder, _, _, _ = open_clip_siglip(tmp_path, tokenizer_dir, siglip_refs, "evaluated")
    out = str(tmp_path / "siglip")
    assert tgazsr_main(["convert", folder, out, "--vision_heads", "2"]) == 0  # the command, as a user runs it
    args = EvalArguments(model_name_or_path=out, datasets=[eval_world["saved"]], attacks=["pgd"], eps=[4.0],
                         attack_options={"pgd": {"steps": 2}}, batch_size=8, output_dir=str(tmp_path / "eval"),
                         plot=False)
    results = run_evaluation(args)
    assert not results["errors"]
    r = results["datasets"]["saved"]
    assert 0.0 <= r["robust"]["pgd@4/255"] <= r["clean_accuracy"] <= 1.0


def test_a_siglip_vision_tower_alone_takes_its_text_from_the_base(tokenizer_dir, siglip_refs, tmp_path):
    folder, ref, pixels, ids = open_clip_siglip(tmp_path, tokenizer_dir, siglip_refs, "vision_alone")
    base = cv.convert(folder, str(tmp_path / "base"), vision_heads=2)
    tower = {k[len("visual."):]: v for k, v in ref["state_dict"].items() if k.startswith("visual.")}
    torch.save(tower, tmp_path / "robust_visual.pt")  # as a fine-tuning code saves model.visual.state_dict()
    with pytest.raises(cv.ConversionError, match="--base_model"):
        cv.convert(str(tmp_path / "robust_visual.pt"), str(tmp_path / "no_base"), vision_heads=2)
    out = cv.convert(str(tmp_path / "robust_visual.pt"), str(tmp_path / "converted"), base_model=base, vision_heads=2)
    _, image, text = siglip_features(out, pixels, ids)
    torch.testing.assert_close(image, ref["image"], atol=1e-5, rtol=0)
    torch.testing.assert_close(text, ref["text"], atol=1e-5, rtol=0)
    record = json.loads((Path(out) / "conversion.json").read_text())
    assert record["vision_only"] and record["base_model"] == "base"


def test_a_tokenizer_that_does_not_clean_as_open_clip_is_refused(tokenizer_dir, siglip_refs, tmp_path):
    folder, _, _, _ = open_clip_siglip(tmp_path, tokenizer_dir, siglip_refs, "canonicalize")
    config_path = os.path.join(folder, "open_clip_config.json")
    config = json.loads(Path(config_path).read_text())
    config["model_cfg"]["text_cfg"]["tokenizer_kwargs"]["clean"] = "canonicalize"  # ViT-B-16-SigLIP's own cleaning
    Path(config_path).write_text(json.dumps(config))
    with pytest.raises(cv.ConversionError, match="canonicalize.*--tokenizer"):
        cv.convert(folder, str(tmp_path / "out"), vision_heads=2)
    assert not (tmp_path / "out").exists()  # nothing half-written
    # through --model_name_or_path, which takes no conversion options: the fix is to convert first
    with pytest.raises(cv.ConversionError, match="run `tgazsr convert .* FOLDER` with the options named"):
        cv.load_model_or_convert(folder, cache_dir=str(tmp_path / "cache"))


def test_siglip_parts_a_siglipmodel_cannot_hold_are_refused(tokenizer_dir, siglip_refs, tmp_path):
    from tgazsr.convert.siglip import convert_siglip, siglip_architecture

    folder, ref, _, _ = open_clip_siglip(tmp_path, tokenizer_dir, siglip_refs, "refused_parts")
    sd = dict(ref["state_dict"])
    cfg = json.loads((Path(folder) / "open_clip_config.json").read_text())["model_cfg"]
    layer_scaled = {**sd, "visual.trunk.blocks.0.ls1.gamma": torch.ones(32)}
    arch = siglip_architecture(layer_scaled, cfg, vision_heads=2)
    with pytest.raises(cv.ConversionError, match="ls1.gamma"):
        convert_siglip(layer_scaled, arch)
    with pytest.raises(cv.ConversionError, match="timm_pool='avg'"):
        siglip_architecture(sd, {**cfg, "vision_cfg": {**cfg["vision_cfg"], "timm_pool": "avg"}}, vision_heads=2)
    with pytest.raises(cv.ConversionError, match="QuickGELU"):
        cv.convert(folder, str(tmp_path / "quick"), vision_heads=2, quick_gelu=True)
    for name in os.listdir(folder):  # no tokenizer in the folder, none named: SigLIP's is the one to name
        if name.startswith(("tokenizer", "special_tokens", "vocab")):
            os.remove(os.path.join(folder, name))
    with pytest.raises(cv.ConversionError, match="no tokenizer files.*--tokenizer google/siglip-base-patch16-224"):
        cv.convert(folder, str(tmp_path / "no_tokenizer"), vision_heads=2)
