"""The converted ``CLIPModel``: architecture, activation, mapped weights, and the strict checks that
every source tensor is used and every CLIPModel weight filled."""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from .architecture import infer_architecture, _text_config, _vision_config
from .base import ConversionError, public
from .keys import _Source, _map_text, _map_vision, fill_strictly, refuse_unused
from .reading import _kind, _pick_state_dict, normalize_state_dict
from .siglip import convert_siglip, is_siglip, siglip_architecture

logger = logging.getLogger("tgazsr.convert")


def _source_dtypes(sd) -> list[str]:
    """The floating-point dtypes the source's tensors hold (the record's ``source_dtype``)."""
    return sorted({str(v.dtype).replace("torch.", "") for v in sd.values() if v.is_floating_point()})


def _load_base(base_model):
    if isinstance(base_model, torch.nn.Module):
        return base_model
    from ..modeling import load_clip

    return load_clip(str(base_model))


def _activation(quick_gelu: bool | None, model_cfg: dict | None, base, where: str,
                origin: str = "given") -> tuple[bool, str]:
    if quick_gelu is not None:
        if model_cfg is not None and bool(model_cfg.get("quick_gelu", False)) != bool(quick_gelu):
            logger.warning("%s: open_clip_config.json says quick_gelu=%s, overridden by quick_gelu=%s (%s).", where,
                           bool(model_cfg.get("quick_gelu", False)), bool(quick_gelu), origin)
        return bool(quick_gelu), origin
    if model_cfg is not None:
        return bool(model_cfg.get("quick_gelu", False)), "open_clip_config.json"
    if base is not None:
        return base.config.vision_config.hidden_act == "quick_gelu", "base model"
    raise ConversionError(
        f"{where}: the weights do not say whether the model uses QuickGELU (OpenAI's CLIP and every model fine-tuned "
        "from it: TeCoA, PMG-AFT, FARE, TGA-ZSR) or GELU (most open_clip models trained on LAION or DataComp), and "
        "there is no open_clip_config.json or base model to tell. Pass --quick_gelu true or --quick_gelu false "
        "(quick_gelu= in Python).")


def _convert(state_dict: Mapping[str, torch.Tensor], *, quick_gelu: bool | None = None, base_model=None,
             model_cfg: dict | None = None, vision_heads: int | None = None, text_heads: int | None = None,
             where: str = "the checkpoint", quick_gelu_from: str = "given"):
    """(CLIPModel, info): the converted model and what was inferred (sizes, activation, its origin)."""
    from transformers import CLIPConfig, CLIPModel

    sd = normalize_state_dict(state_dict)
    kind = _kind(sd)
    if kind == "resnet" or kind is None or kind == "text":
        _pick_state_dict(sd, where)  # raises the error that says what is missing
    if is_siglip(sd):
        return _convert_siglip(sd, model_cfg=model_cfg, base_model=base_model, quick_gelu=quick_gelu,
                               vision_heads=vision_heads, text_heads=text_heads, where=where)
    arch = infer_architecture(sd, model_cfg, vision_heads, text_heads)
    vision_only = arch["text"] is None
    base = None
    if vision_only:
        if base_model is None:
            raise ConversionError(
                f"{where} holds only the vision tower (visual.* weights, no token_embedding or text transformer). Its "
                "text tower, text projection, logit scale and tokenizer come from the CLIP it was fine-tuned from: "
                "pass --base_model with that model, e.g. --base_model openai/clip-vit-base-patch32 for a ViT-B/32 "
                "fine-tuned by the TeCoA / PMG-AFT / TGA-ZSR code (base_model= in Python).")
        base = _load_base(base_model)
    use_quick, act_from = _activation(quick_gelu, model_cfg, base, where, quick_gelu_from)
    hidden_act = "quick_gelu" if use_quick else "gelu"
    src = _Source(sd)
    mapped: dict[str, torch.Tensor] = {}
    _map_vision(src, mapped, arch["vision"]["layers"])
    if vision_only:
        if base.config.projection_dim != arch["embed_dim"]:
            raise ConversionError(
                f"{where} projects images to {arch['embed_dim']} dimensions but the base model "
                f"{public(base_model)} projects text to {base.config.projection_dim}: it is not the model this "
                "vision tower was fine-tuned from.")
        text_config = base.config.text_config.to_dict()
        base_sd = base.state_dict()
        for key, value in base_sd.items():
            if key.startswith("text_model.") or key.startswith("text_projection.") or key == "logit_scale":
                mapped[key] = value.detach().to(torch.float32).clone()
        logit_scale_init = float(base.config.logit_scale_init_value)
    else:
        _map_text(src, mapped, arch["text"]["layers"])
        text_config = _text_config(arch, arch["embed_dim"], hidden_act)
        logit_scale_init = float(mapped["logit_scale"])
    refuse_unused(sd, src, where, "CLIPModel", "layer scale, attentional pooling, prompts or another architecture")
    config = CLIPConfig(text_config=text_config, vision_config=_vision_config(arch, arch["embed_dim"], hidden_act),
                        projection_dim=arch["embed_dim"], logit_scale_init_value=logit_scale_init)
    model = fill_strictly(CLIPModel(config), mapped, where, arch)
    source_dtypes = _source_dtypes(sd)
    info = {"architecture": arch, "vision_only": vision_only, "quick_gelu": use_quick, "quick_gelu_from": act_from,
            "hidden_act": hidden_act, "source_dtype": source_dtypes}
    return model, info


def _convert_siglip(sd, *, model_cfg, base_model, quick_gelu, vision_heads, text_heads, where):
    if quick_gelu:
        raise ConversionError(f"{where} is an open_clip SigLIP, which computes GELU, not QuickGELU: leave --quick_gelu "
                              "unset.")
    arch = siglip_architecture(sd, model_cfg, vision_heads=vision_heads, text_heads=text_heads)
    base = _load_base(base_model) if arch["text"] is None and base_model is not None else None
    model = convert_siglip(sd, arch, base=base, where=where)
    acts = {arch["vision"]["hidden_act"], model.config.text_config.hidden_act}
    source_dtypes = _source_dtypes(sd)
    info = {"architecture": arch, "vision_only": arch["text"] is None, "quick_gelu": False,
            "quick_gelu_from": "open_clip SigLIP", "hidden_act": "/".join(sorted(acts)), "source_dtype": source_dtypes}
    return model, info


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], *, quick_gelu: bool | None = None,
                       base_model: str | None = None, open_clip_config: dict | None = None,
                       vision_heads: int | None = None, text_heads: int | None = None):
    """A ``CLIPModel`` (float32, eval mode) from an OpenAI-CLIP / open_clip state dict.

    ``state_dict`` may be wrapped (``module.`` prefixes) or hold the vision tower alone (``visual.*``
    keys, or the bare keys of ``model.visual.state_dict()``); then ``base_model`` (a CLIPModel
    directory or Hub id, or a loaded ``CLIPModel``) supplies the text tower, text projection and
    logit scale. ``quick_gelu``: the activation (None: from ``open_clip_config`` (its ``model_cfg``
    or the whole file), else the base model, else an error). ``vision_heads`` / ``text_heads``
    override the ``width // 64`` rule.
    """
    model_cfg = None
    if open_clip_config is not None:
        model_cfg = open_clip_config.get("model_cfg", open_clip_config)
    model, _ = _convert(state_dict, quick_gelu=quick_gelu, base_model=base_model, model_cfg=model_cfg,
                        vision_heads=vision_heads, text_heads=text_heads)
    return model
