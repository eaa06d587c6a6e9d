"""tgazsr.convert: OpenAI-CLIP / open_clip checkpoints as plain CLIPModel directories, offline.

This file carries a compact reference forward of OpenAI's CLIP architecture that works directly
on an OpenAI-format state dict (fused in_proj attention, causal text mask, class-token and
end-of-text pooling, QuickGELU or GELU). Random state dicts of two tiny architectures are saved the
way the robust-CLIP codes save them, converted, and the converted CLIPModel's image and text
features are compared with the reference to 1e-5. test_open_clip.py does the same against open_clip
itself.

Tokenizer: the converted text towers pool at OpenAI's end-of-text id 49407, so the tests use a
character-level CLIP tokenizer whose <|startoftext|> / <|endoftext|> are 49406 / 49407 (conftest's
``tiny_clip`` tokenizer ends prompts with 513 and is refused for such a tower, as it should be;
it serves as the base model of the vision-only checkpoints, whose text tower it matches).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import CLASS_NAMES
from tgazsr import convert as cv
from tgazsr.convert import writing
from tgazsr.errors import UserError
from tgazsr.backbones.clip import _features

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB = 49408  # OpenAI's BPE vocabulary: 49406 <|startoftext|>, 49407 <|endoftext|>
SOT, EOT = 49406, 49407
#: vision width 128 -> 2 heads of 64, text width 64 -> 1 head (OpenAI's width // 64), MLP ratio 4
QUICK = dict(vision_width=128, vision_layers=2, patch=8, image=32, text_width=64, text_layers=2, context=64,
             embed=32, mlp=4, quick_gelu=True)
#: vision width 64 -> 1 head, text width 128 -> 2 heads, MLP ratio 2, a 3 x 3 grid of 16-pixel patches
GELU = dict(vision_width=64, vision_layers=1, patch=16, image=48, text_width=128, text_layers=2, context=12,
            embed=48, mlp=2, quick_gelu=False)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


# --- random OpenAI-format state dicts -------------------------------------------------------------

def _blocks(sd, prefix, width, layers, mlp, g):
    def rnd(*shape, std=0.05):
        return torch.randn(*shape, generator=g) * std

    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        sd[p + "attn.in_proj_weight"] = rnd(3 * width, width, std=width ** -0.5)
        sd[p + "attn.in_proj_bias"] = rnd(3 * width)
        sd[p + "attn.out_proj.weight"] = rnd(width, width, std=width ** -0.5)
        sd[p + "attn.out_proj.bias"] = rnd(width)
        for ln in ("ln_1", "ln_2"):
            sd[p + ln + ".weight"] = 1 + rnd(width, std=0.1)
            sd[p + ln + ".bias"] = rnd(width)
        sd[p + "mlp.c_fc.weight"] = rnd(mlp * width, width, std=width ** -0.5)
        sd[p + "mlp.c_fc.bias"] = rnd(mlp * width)
        sd[p + "mlp.c_proj.weight"] = rnd(width, mlp * width, std=(mlp * width) ** -0.5)
        sd[p + "mlp.c_proj.bias"] = rnd(width)


def openai_state_dict(arch: dict, seed: int = 0, vision_only: bool = False) -> dict[str, torch.Tensor]:
    """Random weights under the key names and shapes of OpenAI's CLIP (``clip/model.py``)."""
    g = torch.Generator().manual_seed(seed)
    vw, tw, grid = arch["vision_width"], arch["text_width"], arch["image"] // arch["patch"]
    sd = {
        "visual.class_embedding": torch.randn(vw, generator=g) * vw ** -0.5,
        "visual.positional_embedding": torch.randn(grid * grid + 1, vw, generator=g) * vw ** -0.5,
        "visual.conv1.weight": torch.randn(vw, 3, arch["patch"], arch["patch"], generator=g) * 0.05,
        "visual.ln_pre.weight": 1 + 0.1 * torch.randn(vw, generator=g),
        "visual.ln_pre.bias": 0.05 * torch.randn(vw, generator=g),
        "visual.ln_post.weight": 1 + 0.1 * torch.randn(vw, generator=g),
        "visual.ln_post.bias": 0.05 * torch.randn(vw, generator=g),
        "visual.proj": torch.randn(vw, arch["embed"], generator=g) * vw ** -0.5,
    }
    _blocks(sd, "visual.", vw, arch["vision_layers"], arch["mlp"], g)
    if vision_only:
        return sd
    sd.update({
        "token_embedding.weight": torch.randn(VOCAB, tw, generator=g) * 0.02,
        "positional_embedding": torch.randn(arch["context"], tw, generator=g) * 0.01,
        "ln_final.weight": 1 + 0.1 * torch.randn(tw, generator=g), "ln_final.bias": 0.05 * torch.randn(tw, generator=g),
        "text_projection": torch.randn(tw, arch["embed"], generator=g) * tw ** -0.5,
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
    })
    _blocks(sd, "", tw, arch["text_layers"], arch["mlp"], g)
    return sd


# --- the reference forward (OpenAI's architecture, on the state dict itself) ----------------------

def _ln(x, sd, name):
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def _block(x, sd, p, heads, mask, quick_gelu):
    b, n, w = x.shape
    h = _ln(x, sd, p + "ln_1")
    q, k, v = (h @ sd[p + "attn.in_proj_weight"].t() + sd[p + "attn.in_proj_bias"]).split(w, dim=-1)
    q, k, v = (t.reshape(b, n, heads, w // heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(w // heads)
    if mask is not None:
        scores = scores + mask
    attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
    x = x + attended @ sd[p + "attn.out_proj.weight"].t() + sd[p + "attn.out_proj.bias"]
    h = _ln(x, sd, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].t() + sd[p + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h) if quick_gelu else F.gelu(h)
    return x + h @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"]


def _layers(sd, prefix):
    return len({k.split(".")[len(prefix.split(".")) + 1] for k in sd if k.startswith(prefix + "transformer.resblocks.")})


def reference_image_features(sd, pixels, quick_gelu):
    width, patch = sd["visual.conv1.weight"].shape[0], sd["visual.conv1.weight"].shape[-1]
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, width)
    x = _ln(torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"], sd, "visual.ln_pre")
    for i in range(_layers(sd, "visual.")):
        x = _block(x, sd, f"visual.transformer.resblocks.{i}.", width // 64, None, quick_gelu)
    return _ln(x[:, 0], sd, "visual.ln_post") @ sd["visual.proj"]


def reference_text_features(sd, ids, quick_gelu):
    width, n = sd["ln_final.weight"].shape[0], ids.shape[1]
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"][:n]
    causal = torch.full((n, n), float("-inf")).triu(1)
    for i in range(_layers(sd, "")):
        x = _block(x, sd, f"transformer.resblocks.{i}.", width // 64, causal, quick_gelu)
    x = _ln(x, sd, "ln_final")
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ sd["text_projection"]  # the EOT token: the largest id


def test_reference_attention_is_torchs_multihead_attention():
    """OpenAI's ResidualAttentionBlock calls nn.MultiheadAttention: the reference's attention is that one."""
    g = torch.Generator().manual_seed(0)
    width, heads, n = 128, 2, 5
    sd = {}
    _blocks(sd, "", width, 1, 4, g)
    p = "transformer.resblocks.0."
    mha = torch.nn.MultiheadAttention(width, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(sd[p + "attn.in_proj_weight"])
        mha.in_proj_bias.copy_(sd[p + "attn.in_proj_bias"])
        mha.out_proj.weight.copy_(sd[p + "attn.out_proj.weight"])
        mha.out_proj.bias.copy_(sd[p + "attn.out_proj.bias"])
    x = torch.randn(2, n, width, generator=g)
    causal = torch.full((n, n), float("-inf")).triu(1)
    for mask in (None, causal):
        h = _ln(x, sd, p + "ln_1")
        attended = mha(h, h, h, need_weights=False, attn_mask=mask)[0]
        mlp_in = x + attended
        m = _ln(mlp_in, sd, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].t() + sd[p + "mlp.c_fc.bias"]
        expected = mlp_in + (m * torch.sigmoid(1.702 * m)) @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"]
        torch.testing.assert_close(_block(x, sd, p, heads, mask, True), expected, atol=1e-5, rtol=0)


def text_batch(context, seed=0):
    """Token ids as OpenAI's tokenizer writes them: <|startoftext|>, words, <|endoftext|>, then 0-padding."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for length in (3, context - 2, 7, 1):
        ids = [SOT] + torch.randint(1, 5000, (length,), generator=g).tolist() + [EOT]
        rows.append(ids + [0] * (context - len(ids)))
    return torch.tensor(rows)


def pixels(arch, n=3, seed=0):
    return torch.randn(n, 3, arch["image"], arch["image"], generator=torch.Generator().manual_seed(seed))


def converted_features(directory, arch, ids=None):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(directory).eval()
    with torch.no_grad():
        image = _features(model.get_image_features(pixel_values=pixels(arch)))
        text = _features(model.get_text_features(input_ids=ids)) if ids is not None else None
    return model, image, text


# --- tokenizers and files ---------------------------------------------------------------------------

def write_eot_tokenizer(directory: str, max_length: int = 64) -> str:
    """A character-level CLIP tokenizer whose specials are OpenAI's ids 49406 / 49407."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = SOT, EOT
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = max_length
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def eot_tokenizer(tmp_path_factory) -> str:
    return write_eot_tokenizer(str(tmp_path_factory.mktemp("eot_tokenizer")))


def save_training_checkpoint(path, sd, **extra) -> str:
    """As the TeCoA / PMG-AFT / TGA-ZSR codes do with a DataParallel model: .pth.tar, module. prefixes."""
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()},
                "best_acc1": np.float64(41.5), **extra}, path)
    return str(path)


def write_open_clip_folder(folder, sd, arch, tokenizer_dir=None, quick_gelu=None, preprocess=True, **cfg_extra):
    """An open_clip Hub folder: open_clip_config.json (model_cfg + preprocess_cfg) and open_clip_model.safetensors."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    model_cfg = {**open_clip_model_cfg(arch), **cfg_extra}
    if quick_gelu is not None:
        model_cfg["quick_gelu"] = quick_gelu
    config = {"model_cfg": model_cfg}
    if preprocess:
        config["preprocess_cfg"] = {"mean": IMAGENET[0], "std": IMAGENET[1], "interpolation": "bicubic",
                                    "resize_mode": "shortest"}
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump(config, f)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(folder, "open_clip_model.safetensors"))
    if tokenizer_dir:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return str(folder)


def open_clip_model_cfg(arch) -> dict:
    """The ``model_cfg`` of open_clip_config.json for ``arch`` (open_clip's CLIP takes it as keywords)."""
    return {
        "embed_dim": arch["embed"],
        "vision_cfg": {"image_size": arch["image"], "layers": arch["vision_layers"], "width": arch["vision_width"],
                       "patch_size": arch["patch"], "mlp_ratio": arch["mlp"]},
        "text_cfg": {"context_length": arch["context"], "vocab_size": VOCAB, "width": arch["text_width"],
                     "heads": arch["text_width"] // 64, "layers": arch["text_layers"], "mlp_ratio": arch["mlp"]},
    }


# --- features against the reference -----------------------------------------------------------------

@pytest.mark.parametrize("arch", [QUICK, GELU], ids=["quick_gelu", "gelu"])
def test_training_checkpoint_matches_the_reference_forward(arch, eot_tokenizer, tmp_path):
    sd = openai_state_dict(arch, seed=1)
    ckpt = save_training_checkpoint(tmp_path / "checkpoint.pth.tar", sd)
    out = cv.convert(ckpt, str(tmp_path / "clip"), tokenizer=eot_tokenizer, quick_gelu=arch["quick_gelu"])
    ids = text_batch(arch["context"])
    model, image, text = converted_features(out, arch, ids)
    torch.testing.assert_close(image, reference_image_features(sd, pixels(arch), arch["quick_gelu"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(text, reference_text_features(sd, ids, arch["quick_gelu"]), atol=1e-5, rtol=0)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)

    text_cfg, vision_cfg = model.config.text_config, model.config.vision_config
    assert (text_cfg.eos_token_id, text_cfg.bos_token_id, text_cfg.pad_token_id) == (EOT, SOT, 0)
    assert vision_cfg.hidden_act == text_cfg.hidden_act == ("quick_gelu" if arch["quick_gelu"] else "gelu")
    assert (vision_cfg.hidden_size, vision_cfg.num_hidden_layers, vision_cfg.patch_size, vision_cfg.image_size) == (
        arch["vision_width"], arch["vision_layers"], arch["patch"], arch["image"])
    assert (text_cfg.max_position_embeddings, text_cfg.vocab_size, model.config.projection_dim) == (
        arch["context"], VOCAB, arch["embed"])
    assert os.path.isfile(os.path.join(out, "model.safetensors"))

    record_text = open(os.path.join(out, "conversion.json")).read()
    record = json.loads(record_text)
    assert str(tmp_path) not in record_text  # names, never local paths
    assert record["source"] == "checkpoint.pth.tar" and record["checkpoint_entry"] == "state_dict"
    assert record["quick_gelu"] is arch["quick_gelu"] and record["quick_gelu_from"] == "given"
    assert record["architecture"]["vision"]["heads"] == arch["vision_width"] // 64
    assert record["architecture"]["text"]["intermediate_size"] == arch["mlp"] * arch["text_width"]

    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(out)
    assert processor.tokenizer.eos_token_id == EOT and processor.tokenizer.model_max_length <= arch["context"]
    assert list(processor.image_processor.image_mean) == pytest.approx(list(cv.CLIP_MEAN))


def test_the_activation_matters_and_is_never_guessed():
    sd = openai_state_dict(QUICK, seed=2)
    right = cv.convert_state_dict(sd, quick_gelu=True)
    wrong = cv.convert_state_dict(sd, quick_gelu=False)
    x = pixels(QUICK)
    with torch.no_grad():
        gap = (_features(right.get_image_features(pixel_values=x)) - _features(wrong.get_image_features(pixel_values=x)))
    assert gap.abs().max() > 1e-3
    with pytest.raises(UserError, match="--quick_gelu true or --quick_gelu false"):
        cv.convert_state_dict(sd)


def test_wrapped_state_dict_keys_and_missing_or_extra_weights():
    sd = openai_state_dict(GELU, seed=3)
    model = cv.convert_state_dict({"module." + k: v.half() for k, v in sd.items()}, quick_gelu=False)
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(UserError, match="ls_1.gamma"):  # layer scale: a CLIPModel has no place for it
        cv.convert_state_dict({**sd, "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(64)}, quick_gelu=False)
    incomplete = {k: v for k, v in sd.items() if k != "ln_final.bias"}
    with pytest.raises(UserError, match="ln_final.bias"):
        cv.convert_state_dict(incomplete, quick_gelu=False)
    resnet = {"visual.layer1.0.conv1.weight": torch.zeros(1), "visual.attnpool.positional_embedding": torch.zeros(1)}
    with pytest.raises(UserError, match="ResNet"):
        cv.convert_state_dict(resnet, quick_gelu=True)


# --- a vision tower alone ------------------------------------------------------------------------

def _vision_only_files(tmp_path, layout: str) -> tuple[str, dict]:
    arch = dict(QUICK, embed=16)  # conftest's tiny_clip projects to 16 dimensions
    sd = openai_state_dict(arch, seed=4, vision_only=True)
    path = tmp_path / "vision.pth.tar"
    if layout == "tga_zsr":  # TGA-ZSR.py: model.visual.state_dict() beside an empty prompter
        bare = {k[len("visual."):]: v for k, v in sd.items()}
        torch.save({"epoch": 10, "state_dict": {}, "add_prompter": {"prompt": torch.empty(1, 0, 768)},
                    "best_acc1": np.float64(40.0), "vision_encoder_state_dict": bare}, path)
    else:  # visual.* keys only, DataParallel prefixes
        save_training_checkpoint(path, sd)
    return str(path), sd


@pytest.mark.parametrize("layout", ["tga_zsr", "module_visual"])
def test_vision_only_checkpoint_takes_the_rest_from_the_base_model(layout, tiny_clip, tmp_path):
    from transformers import AutoTokenizer, CLIPModel

    path, sd = _vision_only_files(tmp_path, layout)
    out = cv.convert(path, str(tmp_path / "clip"), base_model=tiny_clip)
    model = CLIPModel.from_pretrained(out).eval()
    base = CLIPModel.from_pretrained(tiny_clip).eval()
    arch = dict(QUICK, embed=16)
    with torch.no_grad():
        image = _features(model.get_image_features(pixel_values=pixels(arch)))
        ids = AutoTokenizer.from_pretrained(tiny_clip)(["a photo of a dog", "a cat"], padding=True, return_tensors="pt")
        text, base_text = (_features(m.get_text_features(**ids)) for m in (model, base))
    # the activation comes from the base model's vision tower (CLIP's default: quick_gelu)
    assert base.config.vision_config.hidden_act == "quick_gelu"
    torch.testing.assert_close(image, reference_image_features(sd, pixels(arch), True), atol=1e-5, rtol=0)
    assert torch.equal(text, base_text) and torch.equal(model.logit_scale, base.logit_scale)
    assert model.config.text_config.eos_token_id == base.config.text_config.eos_token_id
    record = json.loads(open(os.path.join(out, "conversion.json")).read())
    assert record["vision_only"] and record["quick_gelu_from"] == "base model"
    assert record["base_model"] == os.path.basename(tiny_clip) and record["tokenizer_from"] == "base_model"
    assert record["checkpoint_entry"] == ("vision_encoder_state_dict" if layout == "tga_zsr" else "state_dict")
    assert AutoTokenizer.from_pretrained(out).eos_token_id == AutoTokenizer.from_pretrained(tiny_clip).eos_token_id


def test_vision_only_without_a_base_model_is_a_clear_error(tmp_path):
    path, _ = _vision_only_files(tmp_path, "tga_zsr")
    with pytest.raises(UserError, match="--base_model openai/clip-vit-base-patch32") as err:
        cv.convert(path, str(tmp_path / "clip"), quick_gelu=True)
    assert "only the vision tower" in str(err.value)
    assert not (tmp_path / "clip").exists()


def test_a_visual_prompt_is_refused(tmp_path, tiny_clip):
    sd = openai_state_dict(dict(QUICK, embed=16), seed=5, vision_only=True)
    path = tmp_path / "vp.pth.tar"
    torch.save({"epoch": 1, "state_dict": {"pad_up": torch.ones(1, 3, 2, 32)}, "add_prompter": {},
                "vision_encoder_state_dict": {k[len("visual."):]: v for k, v in sd.items()}}, path)
    with pytest.raises(UserError, match="visual prompt"):
        cv.convert(str(path), str(tmp_path / "clip"), base_model=tiny_clip)


# --- open_clip folders, file formats ---------------------------------------------------------------

def test_open_clip_folder(eot_tokenizer, tmp_path):
    arch = GELU
    sd = openai_state_dict(arch, seed=6)
    folder = write_open_clip_folder(tmp_path / "fare-open_clip", sd, arch, tokenizer_dir=eot_tokenizer)
    assert cv.needs_conversion(folder)
    out = cv.convert(folder, str(tmp_path / "clip"))  # activation, sizes, normalization and tokenizer: the folder's
    ids = text_batch(arch["context"], seed=1)
    model, image, text = converted_features(out, arch, ids)
    torch.testing.assert_close(image, reference_image_features(sd, pixels(arch), False), atol=1e-5, rtol=0)
    torch.testing.assert_close(text, reference_text_features(sd, ids, False), atol=1e-5, rtol=0)
    record = json.loads(open(os.path.join(out, "conversion.json")).read())
    assert record["format"] == "open_clip" and record["quick_gelu_from"] == "open_clip_config.json"
    assert record["tokenizer_from"] == "source" and not record["quick_gelu"]
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(out)
    assert list(processor.image_mean) == pytest.approx(IMAGENET[0])
    assert list(processor.image_std) == pytest.approx(IMAGENET[1])
    assert processor.crop_size["height"] == arch["image"]

    # quick_gelu in the config is followed; a config that does not describe the weights is refused
    quick = write_open_clip_folder(tmp_path / "quick", sd, arch, tokenizer_dir=eot_tokenizer, quick_gelu=True)
    assert CLIPConfig_act(cv.convert(quick, str(tmp_path / "clip_quick"))) == "quick_gelu"
    liar = write_open_clip_folder(tmp_path / "liar", sd, arch, tokenizer_dir=eot_tokenizer)
    cfg = json.loads(open(os.path.join(liar, "open_clip_config.json")).read())
    cfg["model_cfg"]["vision_cfg"]["layers"] = 3
    open(os.path.join(liar, "open_clip_config.json"), "w").write(json.dumps(cfg))
    with pytest.raises(UserError, match="vision layers: config 3, weights 1"):
        cv.convert(liar, str(tmp_path / "clip_liar"))
    pooled = write_open_clip_folder(tmp_path / "pooled", sd, arch, tokenizer_dir=eot_tokenizer)
    cfg = json.loads(open(os.path.join(pooled, "open_clip_config.json")).read())
    cfg["model_cfg"]["vision_cfg"]["attentional_pool"] = True
    open(os.path.join(pooled, "open_clip_config.json"), "w").write(json.dumps(cfg))
    with pytest.raises(UserError, match="attentional_pool"):
        cv.convert(pooled, str(tmp_path / "clip_pooled"))


def CLIPConfig_act(directory):
    return json.loads(open(os.path.join(directory, "config.json")).read())["vision_config"]["hidden_act"]


def test_a_folder_without_tokenizer_asks_for_one(tmp_path):
    sd = openai_state_dict(GELU, seed=7)
    folder = write_open_clip_folder(tmp_path / "no_tokenizer", sd, GELU)
    with pytest.raises(UserError, match="--base_model openai/clip-vit-base-patch32") as err:
        cv.convert(folder, str(tmp_path / "clip"))
    assert "never picks a tokenizer" in str(err.value) and not (tmp_path / "clip").exists()


def test_a_tokenizer_that_ends_prompts_elsewhere_is_refused(tiny_clip, tmp_path):
    ckpt = save_training_checkpoint(tmp_path / "c.pth.tar", openai_state_dict(GELU, seed=8))
    with pytest.raises(UserError, match="pools at the end-of-text token 49407"):
        cv.convert(ckpt, str(tmp_path / "clip"), tokenizer=tiny_clip, quick_gelu=False)


def test_weights_only_refuses_pickled_objects_and_reads_safetensors(eot_tokenizer, tmp_path):
    sd = openai_state_dict(GELU, seed=9)
    pickled = tmp_path / "with_args.pth.tar"
    torch.save({"epoch": 1, "state_dict": sd, "args": argparse.Namespace(lr=1e-5)}, pickled)
    with pytest.raises(UserError, match="pickled Python objects") as err:
        cv.load_checkpoint(str(pickled))
    assert "argparse.Namespace" in str(err.value) and "weights_only=True" in str(err.value)

    from safetensors.torch import save_file

    plain = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, plain)
    loaded = cv.load_checkpoint(str(plain))
    assert loaded.container == "" and set(loaded.state_dict) == set(sd)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(UserError, match="not a checkpoint file"):
        cv.load_checkpoint(str(notes))


# --- sources, the zoo, the cache --------------------------------------------------------------------

def test_the_zoo():
    assert {"fare2-clip", "fare4-clip", "tecoa2-clip", "tecoa4-clip"} <= set(cv.ZOO)
    for name, entry in cv.ZOO.items():
        assert entry.name == name and entry.eps > 0 and entry.paper and entry.confirmed and entry.architecture
        assert entry.source.startswith(("hf-hub:", "https://"))
        assert cv.resolve_zoo(name) == entry.source
    assert cv.resolve_zoo("FARE2-CLIP") == "hf-hub:chs20/fare2-clip"
    with pytest.raises(UserError, match="fare2-clip"):
        cv.resolve_zoo("fare2-clp")
    table = cv.zoo_table()
    assert all(f"`{n}`" in table for n in cv.ZOO)


def test_the_shipped_zoo_file():
    # threat models parsed from "k/255", papers the shared citations, every number's page a public address
    from tgazsr.papers import FARE, TECOA, TGA_ZSR

    assert cv.read_zoo(cv.ZOO_FILE) == cv.ZOO
    fare2, tecoa4, tga = cv.ZOO["fare2-clip"], cv.ZOO["tecoa4-clip"], cv.ZOO["tga-zsr-vit-b-32"]
    assert fare2.threat_model == cv.ThreatModel("Linf", 2 / 255) and str(fare2.threat_model) == "Linf 2/255"
    assert fare2.eps == pytest.approx(2) and tga.eps == pytest.approx(1)
    assert fare2.paper is FARE and tecoa4.paper is TECOA and tecoa4.released_by is FARE and tga.paper is TGA_ZSR
    assert fare2.training_data == "ImageNet" and tga.training_data == "Tiny-ImageNet"
    assert fare2.reported[0].clean == 67.0 and fare2.reported[0].robust[0] == (cv.ThreatModel("Linf", 2 / 255), 43.1)
    assert cv.ZOO["fare4-vit-b-16-laion2b"].reported == ()  # no number confirmed: none given
    for entry in cv.ZOO.values():
        assert all(r.url.startswith("https://") and r.task and r.datasets and r.attack for r in entry.reported)


def test_the_zoo_is_package_data():
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    line = next(line for line in pyproject.splitlines() if line.startswith("tgazsr = ["))
    assert '"convert/*.yaml"' in line and cv.ZOO_FILE.name == "zoo.yaml" and cv.ZOO_FILE.parent.name == "convert"


_GOOD_ENTRY = """\
my-clip:
  source: hf-hub:someone/my-clip
  architecture: ViT-B/32 (OpenAI init)
  method: TeCoA
  threat_model: {norm: Linf, eps: EPS}
  training_data: ImageNet
  paper: TECOA
  quick_gelu: true
  tokenizer: openai/clip-vit-base-patch32
  confirmed: https://example.org/card shows the radius
  reported:
    - url: https://example.org/card
      shows: its table
      task: zero-shot classification
      datasets: CIFAR-10
      attack: PGD-10
      clean: 80.5
      robust:
        - {norm: L2, eps: 0.5, accuracy: 40}
"""


def _zoo_file(tmp_path, text):
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    return path


def test_zoo_file_validation_names_the_file_and_the_field(tmp_path):
    zoo = cv.read_zoo(_zoo_file(tmp_path, _GOOD_ENTRY.replace("EPS", "4/255")))
    entry = zoo["my-clip"]
    assert entry.threat_model.eps == pytest.approx(4 / 255) and entry.paper.title.startswith("Understanding")
    assert entry.reported[0].robust[0] == (cv.ThreatModel("L2", 0.5), 40.0)
    assert cv.read_zoo(_zoo_file(tmp_path, _GOOD_ENTRY.replace("EPS", "0.0156"))) \
        ["my-clip"].threat_model.eps == pytest.approx(0.0156)  # a number is the radius itself
    good = _GOOD_ENTRY.replace("EPS", "4/255")
    bad = {  # a part of the good file -> (its replacement, what the error says)
        "eps: 4/255": ("eps: 4", "my-clip.threat_model.eps: 4 is not a radius"),  # units of 1/255 as a radius
        "eps: 4/255}": ("eps: four/255}", "my-clip.threat_model.eps: expected a fraction"),
        "norm: Linf": ("norm: Lx", "my-clip.threat_model.norm: expected one of Linf, L2"),
        "paper: TECOA": ("paper: NOBODY", "my-clip.paper: no paper 'NOBODY'"),
        "quick_gelu: true": ("quick_gelu: yes please", "my-clip.quick_gelu: expected bool"),
        "  tokenizer: openai/clip-vit-base-patch32\n": ("", "my-clip.tokenizer: missing"),
        "clean: 80.5": ("clean: 180.5", "my-clip.reported[0].clean: expected an accuracy in percent"),
        "url: https://example.org/card\n": ("url: http://example.org/card\n",
                                            "my-clip.reported[0].url: expected a public https://"),
        "source: hf-hub:someone/my-clip": ("source: someone/my-clip", "my-clip.source: expected hf-hub:ORG/NAME"),
        "my-clip:": ("My CLIP:", "My CLIP: a zoo name is lower-case"),
    }
    for old, (new, message) in bad.items():
        assert old in good, old
        path = _zoo_file(tmp_path, good.replace(old, new, 1))
        with pytest.raises(cv.ZooFileError) as err:
            cv.read_zoo(path)
        assert str(err.value).startswith(f"{path}: ") and message in str(err.value), (old, str(err.value))
        assert isinstance(err.value, UserError)
    # an unknown field is refused, at every level
    for old, new, where in (("  method: TeCoA", "  method: TeCoA\n  methd: TeCoA", "my-clip.methd: unknown field"),
                            ("attack: PGD-10", "attack: PGD-10\n      atack: PGD", "my-clip.reported[0].atack: unknown"),
                            ("accuracy: 40}", "accuracy: 40, steps: 10}", "my-clip.reported[0].robust[0].steps: unknown")):
        path = _zoo_file(tmp_path, good.replace(old, new))
        with pytest.raises(cv.ZooFileError, match="unknown field") as err:
            cv.read_zoo(path)
        assert str(path) in str(err.value) and where in str(err.value), str(err.value)
    with pytest.raises(cv.ZooFileError, match="not a readable YAML file"):
        cv.read_zoo(_zoo_file(tmp_path, "my-clip: [unclosed"))


def test_list_zoo_shows_the_threat_model_and_the_paper(capsys):
    from tgazsr.cli import main

    assert main(["convert", "--list_zoo"]) == 0
    out = capsys.readouterr().out
    assert "threat model" in out and "training data" in out
    fare2 = next(line for line in out.splitlines() if "`fare2-clip`" in line)
    assert "Linf 2/255" in fare2 and "ImageNet" in fare2 and "https://arxiv.org/abs/2402.12336" in fare2
    assert "clean 67.0, Linf 2/255 43.1" in fare2
    tga = next(line for line in out.splitlines() if "`tga-zsr-vit-b-32`" in line)
    assert "Linf 1/255" in tga and "NeurIPS 2024" in tga


def test_sources_that_cannot_be_had_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="download the folder") as err:
        cv.convert("hf-hub:nobody-here/not-a-model", str(tmp_path / "clip"))
    assert "pass its path" in str(err.value)
    with pytest.raises(UserError, match="drive.google.com"):  # released outside the Hub: never fetched
        cv.convert("tga-zsr-vit-b-32", str(tmp_path / "clip"))
    with pytest.raises(UserError, match="needs no conversion"):
        cv.convert("openai/clip-vit-base-patch32", str(tmp_path / "clip"))
    with pytest.raises(UserError, match="does not exist"):
        cv.convert(str(tmp_path / "missing.pt"), str(tmp_path / "clip"))


def test_conversion_cache(eot_tokenizer, tiny_clip, tmp_path, monkeypatch):
    ckpt = save_training_checkpoint(tmp_path / "tecoa.pth.tar", openai_state_dict(GELU, seed=10))
    cache = tmp_path / "cache"
    first = cv.load_model_or_convert(ckpt, cache_dir=str(cache), tokenizer=eot_tokenizer, quick_gelu=False)
    assert os.path.basename(first).startswith("tecoa-") and os.path.isfile(os.path.join(first, "config.json"))
    assert os.path.dirname(first) == str(cache)

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(writing, "_convert_resolved", no_second_conversion)  # what cache.py calls
    assert cv.load_model_or_convert(ckpt, cache_dir=str(cache), tokenizer=eot_tokenizer, quick_gelu=False) == first
    monkeypatch.undo()
    os.utime(ckpt, ns=(1_000_000_000, 1_000_000_000))  # a new file at the same path: a new conversion
    second = cv.load_model_or_convert(ckpt, cache_dir=str(cache), tokenizer=eot_tokenizer, quick_gelu=False)
    assert second != first and os.path.isfile(os.path.join(second, "conversion.json"))
    # the default cache lives under $TGAZSR_HOME
    monkeypatch.setenv("TGAZSR_HOME", str(tmp_path / "home"))
    assert cv.default_cache_dir() == str(tmp_path / "home" / "converted")
    # CLIPModel directories and Hub ids pass through untouched
    assert cv.load_model_or_convert(tiny_clip) == tiny_clip
    assert cv.load_model_or_convert("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    assert not cv.needs_conversion(tiny_clip) and cv.needs_conversion("fare2-clip")
    assert cv.needs_conversion("hf-hub:chs20/fare2-clip") and cv.needs_conversion(ckpt)


# --- the command, and the harness on a converted model ------------------------------------------------

def test_tgazsr_convert_command(eot_tokenizer, tiny_clip, tmp_path, capsys):
    from tgazsr.cli import main

    ckpt = save_training_checkpoint(tmp_path / "ft.pth.tar", openai_state_dict(GELU, seed=11))
    out = tmp_path / "converted"
    assert main(["convert", ckpt, str(out), "--tokenizer", eot_tokenizer, "--quick-gelu", "false"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    assert (out / "model.safetensors").is_file() and (out / "conversion.json").is_file()
    assert main(["convert", ckpt, str(out), "--tokenizer", eot_tokenizer, "--quick_gelu", "false"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["convert", ckpt, str(out), "--tokenizer", eot_tokenizer, "--quick_gelu", "false",
                 "--overwrite_output_dir", "true"]) == 0
    vision, _ = _vision_only_files(tmp_path, "tga_zsr")
    capsys.readouterr()
    assert main(["convert", vision, str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--base_model" in err and "Traceback" not in err
    assert main(["convert", "--list_zoo"]) == 0
    assert "hf-hub:chs20/fare2-clip" in capsys.readouterr().out
    assert main(["convert", ckpt]) == 2 and "OUTPUT_DIR" in capsys.readouterr().err
    assert main(["convert", ckpt, str(out), "extra"]) == 2


def test_converted_model_through_the_evaluation_harness(eval_world, eot_tokenizer, tmp_path):
    from tgazsr.evaluation import EvalArguments, run_evaluation

    ckpt = save_training_checkpoint(tmp_path / "robust.pth.tar", openai_state_dict(QUICK, seed=12))
    model_dir = cv.load_model_or_convert(ckpt, cache_dir=str(tmp_path / "cache"), tokenizer=eot_tokenizer,
                                         quick_gelu=True)
    args = EvalArguments(model_name_or_path=model_dir, datasets=[eval_world["saved"]], attacks=["pgd"], eps=[8.0],
                         attack_options={"pgd": {"steps": 2}}, batch_size=8, output_dir=str(tmp_path / "eval"),
                         plot=False)
    results = run_evaluation(args)
    assert not results["errors"]
    r = results["datasets"]["saved"]
    assert r["num_samples"] == 24 and r["num_classes"] == len(CLASS_NAMES)
    assert 0.0 <= r["robust"]["pgd@8/255"] <= r["clean_accuracy"] <= 1.0
    assert results["pixel_normalization"][0] == pytest.approx(list(cv.CLIP_MEAN), abs=1e-6)
