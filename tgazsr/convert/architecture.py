"""The architecture, read from the tensor shapes as OpenAI's ``build_model`` reads them and checked
against an open_clip config, and the CLIPConfig of each tower."""

from __future__ import annotations

import re
from typing import Mapping

import torch

from .base import BOT_TOKEN_ID, EOT_TOKEN_ID, LAYER_NORM_EPS, PAD_TOKEN_ID, ConversionError

#: open_clip config options that change the architecture away from what a CLIPModel computes.
UNSUPPORTED_VISION_OPTIONS = {
    "timm_model_name": None, "attentional_pool": False, "no_ln_pre": False, "pool_type": "tok",
    "final_ln_after_pool": False, "ls_init_value": None, "pos_embed_type": "learnable", "act_kwargs": None,
    "norm_kwargs": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "block_type": None,
}
UNSUPPORTED_TEXT_OPTIONS = {
    "hf_model_name": None, "text_arch": "clip", "embed_cls": False, "no_causal_mask": False,
    "final_ln_after_pool": False, "proj_bias": False, "proj_type": "linear", "ls_init_value": None,
    "act_kwargs": None, "norm_kwargs": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "block_type": None,
}


def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}transformer\.resblocks\.(\d+)\.")
    found = {int(m.group(1)) for m in map(pattern.match, sd) if m}
    if found and found != set(range(len(found))):
        raise ConversionError(f"The {prefix or 'text '}blocks are not numbered 0..N-1 (found {sorted(found)}).")
    return len(found)


def _heads(width: int, tower: str, override: int | None, cfg: dict | None) -> int:
    if override:
        heads = int(override)
    elif cfg and cfg.get("heads"):
        heads = int(cfg["heads"])
    elif cfg and cfg.get("head_width"):
        heads = width // int(cfg["head_width"])
    else:
        heads = width // 64  # OpenAI's build_model: heads of 64 channels
    if heads < 1 or width % heads:
        raise ConversionError(
            f"Cannot split the {tower} width {width} into attention heads ({heads}): OpenAI's rule is width // 64. "
            f"Pass {tower}_heads= (convert_state_dict) or an open_clip_config.json that gives them.")
    return heads


def _image_size(value) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ConversionError(f"Non-square image size {list(value)}: a CLIPModel takes square images.")
        value = value[0]
    return int(value)


def _check_options(cfg: dict, unsupported: dict, tower: str) -> None:
    bad = [f"{k}={cfg[k]!r}" for k, default in unsupported.items() if k in cfg and cfg[k] not in (default, None)
           and not (k == "pool_type" and cfg[k] == "tok")]
    if bad:
        raise ConversionError(f"The open_clip {tower} tower uses {', '.join(bad)}, which a transformers CLIPModel does "
                              "not compute: this model cannot be converted.")


def infer_architecture(sd: Mapping[str, torch.Tensor], model_cfg: dict | None = None,
                       vision_heads: int | None = None, text_heads: int | None = None) -> dict:
    """Sizes from the tensor shapes (as OpenAI's ``build_model``), checked against an open_clip ``model_cfg``.

    Returns ``{"embed_dim", "vision": {...}, "text": {...} or None}``.
    """
    def shape(key):
        if key not in sd:
            raise ConversionError(f"The checkpoint has no {key!r}, which every OpenAI / open_clip ViT CLIP has.")
        return tuple(sd[key].shape)

    conv = shape("visual.conv1.weight")
    if len(conv) != 4 or conv[2] != conv[3] or conv[1] != 3:
        raise ConversionError(f"visual.conv1.weight has shape {conv}: expected (width, 3, patch, patch).")
    width, patch = conv[0], conv[-1]
    positions = shape("visual.positional_embedding")[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise ConversionError(f"visual.positional_embedding has {positions} rows, not a square grid plus the class token.")
    vision_cfg = (model_cfg or {}).get("vision_cfg") or {}
    text_cfg = (model_cfg or {}).get("text_cfg") or {}
    vision = {
        "width": width, "layers": _count_blocks(sd, "visual."), "patch_size": patch, "image_size": patch * grid,
        "intermediate_size": shape("visual.transformer.resblocks.0.mlp.c_fc.weight")[0],
        "heads": _heads(width, "vision", vision_heads, vision_cfg),
    }
    embed_dim = shape("visual.proj")[1]
    text = None
    if "token_embedding.weight" in sd:
        text_width = shape("ln_final.weight")[0]
        text = {
            "width": text_width, "layers": _count_blocks(sd, ""), "context_length": shape("positional_embedding")[0],
            "vocab_size": shape("token_embedding.weight")[0],
            "intermediate_size": shape("transformer.resblocks.0.mlp.c_fc.weight")[0],
            "heads": _heads(text_width, "text", text_heads, text_cfg),
        }
        if shape("text_projection")[1] != embed_dim:
            raise ConversionError(f"visual.proj projects to {embed_dim} but text_projection to "
                                  f"{shape('text_projection')[1]}: the towers do not share an embedding space.")
        if text["vocab_size"] <= EOT_TOKEN_ID:
            raise ConversionError(
                f"The text vocabulary has {text['vocab_size']} tokens, so it has no end-of-text token {EOT_TOKEN_ID} to "
                "pool at: this is not OpenAI's tokenizer. Only CLIPs with OpenAI's BPE vocabulary convert.")
    if model_cfg:
        _check_options(vision_cfg, UNSUPPORTED_VISION_OPTIONS, "vision")
        _check_options(text_cfg, UNSUPPORTED_TEXT_OPTIONS, "text")
        pool, eos = text_cfg.get("pool_type") or "argmax", text_cfg.get("eos_id") or EOT_TOKEN_ID
        if pool not in ("argmax", "eos") or eos != EOT_TOKEN_ID:
            raise ConversionError(f"The open_clip text tower pools with pool_type={text_cfg.get('pool_type')!r}, "
                                  f"eos_id={text_cfg.get('eos_id')!r}; a CLIPModel pools at the end-of-text token.")
        said = {("vision", "width"): vision_cfg.get("width"), ("vision", "layers"): vision_cfg.get("layers"),
                ("vision", "patch_size"): vision_cfg.get("patch_size"),
                ("vision", "image_size"): _image_size(vision_cfg["image_size"]) if "image_size" in vision_cfg else None,
                ("embed", "dim"): model_cfg.get("embed_dim")}
        if text is not None:
            said.update({("text", k): text_cfg.get(c) for k, c in (("width", "width"), ("layers", "layers"),
                         ("context_length", "context_length"), ("vocab_size", "vocab_size"))})
        found = {("embed", "dim"): embed_dim, **{("vision", k): v for k, v in vision.items()},
                 **({("text", k): v for k, v in text.items()} if text else {})}
        wrong = [f"{t} {k}: config {v}, weights {found[(t, k)]}" for (t, k), v in said.items()
                 if v is not None and int(v) != found[(t, k)]]
        if wrong:
            raise ConversionError("open_clip_config.json does not describe these weights (" + "; ".join(wrong) + ").")
    return {"embed_dim": embed_dim, "vision": vision, "text": text}


def _vision_config(arch: dict, embed_dim: int, hidden_act: str) -> dict:
    v = arch["vision"]
    return dict(hidden_size=v["width"], intermediate_size=v["intermediate_size"], num_hidden_layers=v["layers"],
                num_attention_heads=v["heads"], image_size=v["image_size"], patch_size=v["patch_size"], num_channels=3,
                hidden_act=hidden_act, layer_norm_eps=LAYER_NORM_EPS, projection_dim=embed_dim)


def _text_config(arch: dict, embed_dim: int, hidden_act: str) -> dict:
    t = arch["text"]
    return dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=t["intermediate_size"],
                num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                max_position_embeddings=t["context_length"], hidden_act=hidden_act, layer_norm_eps=LAYER_NORM_EPS,
                bos_token_id=BOT_TOKEN_ID, eos_token_id=EOT_TOKEN_ID, pad_token_id=PAD_TOKEN_ID,
                projection_dim=embed_dim)
