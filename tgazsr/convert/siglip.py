"""open_clip's SigLIP (``ViT-B-16-SigLIP`` and its kin: a timm ViT pooled by an attention head, and
open_clip's text transformer pooled at its last position) onto transformers' ``SiglipModel``.

=====================================================  ==============================================
open_clip (``visual.trunk`` is a timm VisionTransformer)  SiglipModel
=====================================================  ==============================================
``visual.trunk.patch_embed.proj``                     ``vision_model.embeddings.patch_embedding``
``visual.trunk.pos_embed`` (1 x patches x width)      ``vision_model.embeddings.position_embedding.weight``
``visual.trunk.blocks.N.norm1`` / ``norm2``           ``vision_model.encoder.layers.N.layer_norm1`` / ``2``
``visual.trunk.blocks.N.attn.qkv`` (fused)            ``...layers.N.self_attn.{q,k,v}_proj`` (split in 3)
``visual.trunk.blocks.N.attn.proj``                   ``...layers.N.self_attn.out_proj``
``visual.trunk.blocks.N.mlp.fc1`` / ``fc2``           ``...layers.N.mlp.fc1`` / ``fc2``
``visual.trunk.norm``                                 ``vision_model.post_layernorm``
``visual.trunk.attn_pool.latent``                     ``vision_model.head.probe``
``visual.trunk.attn_pool.q`` + ``kv``                 ``vision_model.head.attention.in_proj_{weight,bias}``
``visual.trunk.attn_pool.proj``                       ``vision_model.head.attention.out_proj``
``visual.trunk.attn_pool.norm`` / ``mlp.fc1, fc2``    ``vision_model.head.layernorm`` / ``mlp.fc1, fc2``
``text.token_embedding`` / ``text.positional_embedding``  ``text_model.embeddings.token_embedding`` /
                                                      ``.position_embedding.weight``
``text.transformer.resblocks.N.*``                    ``text_model.encoder.layers.N.*`` (as for CLIP)
``text.ln_final`` / ``text.text_projection``          ``text_model.final_layer_norm`` / ``text_model.head``
``logit_scale`` / ``logit_bias``                      ``logit_scale`` / ``logit_bias`` (shape 1)
=====================================================  ==============================================

The sizes come from the tensor shapes. Two facts come from elsewhere:

- **the heads**: the vision tower's from its timm model name (``vit_base_*``: 12; ``vit_large_*``,
  ``vit_so400m_*`` and ``vit_giantopt_*``: 16, the heads timm gives them), the text tower's from
  ``open_clip_config.json`` (``heads``); ``vision_heads=`` / ``text_heads=`` override both.
- **the activation**: open_clip computes both towers with ``nn.GELU`` (the exact erf form) unless
  the config's ``act_kwargs`` say ``approximate: tanh`` (SigLIP 2's text tower); the converted
  config says the same (``gelu`` / ``gelu_pytorch_tanh``), so that it computes what open_clip
  computes. transformers' own SigLIP checkpoints (``google/siglip-*``) use the tanh form in both.

A checkpoint of the vision tower alone (``visual.trunk.*``) takes its text tower, logit scale and
bias from ``base_model``, the SigLIP it was fine-tuned from.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from .base import ConversionError
from .keys import OPEN_CLIP_BLOCK, _Source, fill_strictly, map_block, refuse_unused

TRUNK = "visual.trunk."
#: The attention heads timm gives its SigLIP vision towers, by the start of the model name.
VISION_HEADS = {"vit_base_": 12, "vit_large_": 16, "vit_so400m_": 16, "vit_giantopt_": 16}
#: open_clip config options of a SigLIP that a SiglipModel does not compute.
UNSUPPORTED_VISION = {"timm_proj": ("none", None, ""), "timm_pool": ("map",)}
UNSUPPORTED_TEXT = {"pool_type": ("last",), "no_causal_mask": (True,), "proj_bias": (True,),
                    "final_ln_after_pool": (False, None), "embed_cls": (False, None), "hf_model_name": (None,),
                    "proj_type": ("linear", None), "ls_init_value": (None,), "qk_norm": (False, None)}


#: A timm ViT block's weights besides the fused q/k/v, as (source, SiglipModel) names.
TIMM_BLOCK = (("attn.proj", "self_attn.out_proj"), ("norm1", "layer_norm1"), ("norm2", "layer_norm2"),
              ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"))


def is_siglip(sd: Mapping[str, torch.Tensor]) -> bool:
    return f"{TRUNK}patch_embed.proj.weight" in sd and f"{TRUNK}attn_pool.latent" in sd


def _count(sd, pattern: str, where: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for m in map(rx.match, sd) if m}
    if not found or found != set(range(len(found))):
        raise ConversionError(f"The {where} blocks are not numbered 0..N-1 (found {sorted(found)}).")
    return len(found)


def _heads(width: int, tower: str, heads: int | None, how: str) -> int:
    if not heads or width % heads:
        raise ConversionError(f"Cannot split the SigLIP {tower} width {width} into {heads} attention heads ({how}). "
                              f"Pass --{tower}_heads with the number of heads of this model.")
    return int(heads)


def _activation(cfg: dict, tower: str) -> str:
    kwargs = cfg.get("act_kwargs") or {}
    if cfg.get("act_layer") not in (None, "gelu"):
        raise ConversionError(f"The open_clip {tower} tower uses act_layer={cfg['act_layer']!r}; a converted SigLIP "
                              "computes GELU.")
    if set(kwargs) - {"approximate"} or kwargs.get("approximate", "none") not in ("none", "tanh"):
        raise ConversionError(f"The open_clip {tower} tower uses act_kwargs={kwargs}, which no transformers "
                              "activation computes.")
    return "gelu_pytorch_tanh" if kwargs.get("approximate") == "tanh" else "gelu"


def siglip_architecture(sd: Mapping[str, torch.Tensor], model_cfg: dict | None, *, vision_heads: int | None = None,
                        text_heads: int | None = None) -> dict:
    """The sizes, heads and activations of an open_clip SigLIP, from its shapes and config."""
    model_cfg = model_cfg or {}
    vision_cfg, text_cfg = model_cfg.get("vision_cfg") or {}, model_cfg.get("text_cfg") or {}
    for cfg, bad, tower in ((vision_cfg, UNSUPPORTED_VISION, "vision"), (text_cfg, UNSUPPORTED_TEXT, "text")):
        wrong = [f"{k}={cfg[k]!r}" for k, ok in bad.items() if k in cfg and cfg[k] not in ok]
        if wrong:
            raise ConversionError(f"The open_clip SigLIP {tower} tower uses {', '.join(wrong)}, which a transformers "
                                  "SiglipModel does not compute: this model cannot be converted.")
    patch = tuple(sd[f"{TRUNK}patch_embed.proj.weight"].shape)
    if len(patch) != 4 or patch[1] != 3 or patch[2] != patch[3]:
        raise ConversionError(f"visual.trunk.patch_embed.proj.weight has shape {patch}: expected (width, 3, p, p).")
    width, patch_size = patch[0], patch[2]
    positions = sd[f"{TRUNK}pos_embed"].shape[1]
    grid = round(positions ** 0.5)
    if grid * grid != positions:
        raise ConversionError(f"visual.trunk.pos_embed has {positions} positions, not a square grid of patches (a "
                              "SigLIP has no class token).")
    name = str(vision_cfg.get("timm_model_name") or "")
    known = next((h for prefix, h in VISION_HEADS.items() if name.startswith(prefix)), None)
    vheads = _heads(width, "vision", vision_heads or known,
                    "given" if vision_heads else f"timm model {name!r}" if known else
                    f"no heads known for the timm model {name or '(none named)'!r}")
    intermediate = sd[f"{TRUNK}blocks.0.mlp.fc1.weight"].shape[0]
    head_intermediate = sd[f"{TRUNK}attn_pool.mlp.fc1.weight"].shape[0]
    if head_intermediate != intermediate:
        raise ConversionError(f"The pooling head's MLP is {head_intermediate} wide and the blocks' {intermediate}: a "
                              "SiglipModel gives both one intermediate_size.")
    vision = {"width": width, "layers": _count(sd, rf"{re.escape(TRUNK)}blocks\.(\d+)\.", "vision"),
              "patch_size": patch_size, "image_size": patch_size * grid, "intermediate_size": intermediate,
              "heads": vheads, "hidden_act": _activation(vision_cfg, "vision"), "layer_norm_eps": 1e-6}
    if vision_cfg.get("image_size") is not None:
        said = vision_cfg["image_size"]
        said = said[0] if isinstance(said, (list, tuple)) and len(set(said)) == 1 else said
        if said != vision["image_size"]:
            raise ConversionError(f"open_clip_config.json says image_size {vision_cfg['image_size']}, the weights hold "
                                  f"{grid} x {grid} patches of {patch_size} ({vision['image_size']} pixels).")
    text = None
    if "text.token_embedding.weight" in sd:
        text_width = sd["text.ln_final.weight"].shape[0]
        heads = text_heads or text_cfg.get("heads") or (text_width // int(text_cfg["head_width"])
                                                        if text_cfg.get("head_width") else None)
        text = {"width": text_width, "layers": _count(sd, r"text\.transformer\.resblocks\.(\d+)\.", "text"),
                "context_length": sd["text.positional_embedding"].shape[0],
                "vocab_size": sd["text.token_embedding.weight"].shape[0],
                "intermediate_size": sd["text.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                "heads": _heads(text_width, "text", heads, "given" if text_heads else "open_clip_config.json"),
                "projection_size": sd["text.text_projection.weight"].shape[0],
                "hidden_act": _activation(text_cfg, "text"),
                "layer_norm_eps": float((text_cfg.get("norm_kwargs") or {}).get("eps", 1e-5))}
        if text["projection_size"] != width:
            raise ConversionError(f"The text tower projects to {text['projection_size']} dimensions and the vision "
                                  f"tower pools to {width}: the towers do not share an embedding space.")
        for key, value in (("width", text_width), ("layers", text["layers"]), ("vocab_size", text["vocab_size"]),
                           ("context_length", text["context_length"])):
            if text_cfg.get(key) is not None and int(text_cfg[key]) != value:
                raise ConversionError(f"open_clip_config.json does not describe these weights (text {key}: config "
                                      f"{text_cfg[key]}, weights {value}).")
    if model_cfg.get("embed_dim") is not None and int(model_cfg["embed_dim"]) != width:
        raise ConversionError(f"open_clip_config.json says embed_dim {model_cfg['embed_dim']}, the vision tower pools "
                              f"to {width}.")
    return {"family": "siglip", "embed_dim": width, "vision": vision, "text": text}


def _map_vision(src: _Source, out: dict, layers: int) -> None:
    d = "vision_model."
    out[f"{d}embeddings.patch_embedding.weight"] = src.take(f"{TRUNK}patch_embed.proj.weight")
    out[f"{d}embeddings.patch_embedding.bias"] = src.take(f"{TRUNK}patch_embed.proj.bias")
    out[f"{d}embeddings.position_embedding.weight"] = src.take(f"{TRUNK}pos_embed")[0].contiguous()
    for i in range(layers):
        map_block(src, out, f"{TRUNK}blocks.{i}.", f"{d}encoder.layers.{i}.", "attn.qkv.", TIMM_BLOCK)
    pool, h = f"{TRUNK}attn_pool.", f"{d}head."
    out[f"{h}probe"] = src.take(f"{pool}latent")
    out[f"{h}attention.in_proj_weight"] = torch.cat([src.take(f"{pool}q.weight"), src.take(f"{pool}kv.weight")])
    out[f"{h}attention.in_proj_bias"] = torch.cat([src.take(f"{pool}q.bias"), src.take(f"{pool}kv.bias")])
    for kind in ("weight", "bias"):
        out[f"{d}post_layernorm.{kind}"] = src.take(f"{TRUNK}norm.{kind}")
        for a, b in (("proj", "attention.out_proj"), ("norm", "layernorm"), ("mlp.fc1", "mlp.fc1"),
                     ("mlp.fc2", "mlp.fc2")):
            out[f"{h}{b}.{kind}"] = src.take(f"{pool}{a}.{kind}")


def _map_text(src: _Source, out: dict, layers: int) -> None:
    d = "text_model."
    out[f"{d}embeddings.token_embedding.weight"] = src.take("text.token_embedding.weight")
    out[f"{d}embeddings.position_embedding.weight"] = src.take("text.positional_embedding")
    for i in range(layers):
        map_block(src, out, f"text.transformer.resblocks.{i}.", f"{d}encoder.layers.{i}.", "attn.in_proj_",
                  OPEN_CLIP_BLOCK)
    for kind in ("weight", "bias"):
        out[f"{d}final_layer_norm.{kind}"] = src.take(f"text.ln_final.{kind}")
        out[f"{d}head.{kind}"] = src.take(f"text.text_projection.{kind}")
    out["logit_scale"] = src.take("logit_scale").reshape(1)
    out["logit_bias"] = src.take("logit_bias").reshape(1)


def convert_siglip(sd: Mapping[str, torch.Tensor], arch: dict, *, base=None, where: str = "the checkpoint"):
    """A ``SiglipModel`` (float32, eval mode) from an open_clip SigLIP state dict, every source tensor
    used and every weight filled; ``base`` (a loaded SiglipModel) gives the text tower of a
    vision-only checkpoint."""
    from transformers import SiglipConfig, SiglipModel

    v = arch["vision"]
    vision_config = dict(hidden_size=v["width"], intermediate_size=v["intermediate_size"],
                         num_hidden_layers=v["layers"], num_attention_heads=v["heads"], image_size=v["image_size"],
                         patch_size=v["patch_size"], num_channels=3, hidden_act=v["hidden_act"],
                         layer_norm_eps=v["layer_norm_eps"])
    src = _Source(sd)
    mapped: dict[str, torch.Tensor] = {}
    _map_vision(src, mapped, v["layers"])
    if arch["text"] is None:
        if base is None:
            raise ConversionError(
                f"{where} holds only a SigLIP vision tower (visual.trunk.* weights, no text tower). Its text tower, "
                "logit scale and bias and its tokenizer come from the SigLIP it was fine-tuned from: pass --base_model "
                "with that model, e.g. --base_model google/siglip-base-patch16-224.")
        if getattr(base.config, "model_type", None) != "siglip":
            raise ConversionError(f"{where} is a SigLIP vision tower, but the base model is a "
                                  f"{getattr(base.config, 'model_type', type(base).__name__)}: pass the SigLIP it was "
                                  "fine-tuned from as --base_model.")
        if base.config.text_config.projection_size != v["width"]:
            raise ConversionError(f"{where} pools images to {v['width']} dimensions but the base model's text tower "
                                  f"projects to {base.config.text_config.projection_size}.")
        text_config = base.config.text_config.to_dict()
        for key, value in base.state_dict().items():
            if key.startswith("text_model.") or key in ("logit_scale", "logit_bias"):
                mapped[key] = value.detach().to(torch.float32).clone()
    else:
        t = arch["text"]
        _map_text(src, mapped, t["layers"])
        text_config = dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=t["intermediate_size"],
                           num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                           max_position_embeddings=t["context_length"], hidden_act=t["hidden_act"],
                           layer_norm_eps=t["layer_norm_eps"], projection_size=t["projection_size"])
    refuse_unused(sd, src, where, "SiglipModel", "layer scale, registers, a class token or another architecture")
    return fill_strictly(SiglipModel(SiglipConfig(text_config=text_config, vision_config=vision_config)), mapped,
                         where, arch)
