"""Writing a converted model: the CLIPModel or SiglipModel directory (safetensors, its processor and
``conversion.json``), put in place only once complete."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

from .base import CONVERTER_VERSION, TOKENIZER_FILES, ConversionError, public
from .model import _convert
from .reading import load_checkpoint
from .sources import _Resolved, _resolve
from .tokenizer import _check_tokenizer, _image_processor, _load_tokenizer, check_siglip_tokenizer, siglip_image_processor

logger = logging.getLogger("tgazsr.convert")

def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.isfile(output_dir):
        raise ConversionError(f"The output {output_dir} is a file; pass a folder.")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ConversionError(f"The output folder {output_dir} is not empty. Pass another folder, or "
                              "--overwrite_output_dir true to replace it.")


def _convert_resolved(resolved: _Resolved, output_dir: str, *, base_model: str | None = None,
                      tokenizer: str | None = None, quick_gelu: bool | None = None, overwrite: bool = False,
                      vision_heads: int | None = None, text_heads: int | None = None) -> str:
    entry = resolved.zoo
    output_dir = os.path.expanduser(str(output_dir))
    _check_output_dir(output_dir, overwrite)
    quick_gelu_from = "given"
    if entry is not None:  # the zoo's curated facts come before what the files say
        if quick_gelu is None:
            quick_gelu, quick_gelu_from = entry.quick_gelu, "zoo"
        if base_model is None and entry.vision_only:
            base_model = entry.tokenizer
    ckpt = load_checkpoint(resolved.local)
    model, info = _convert(ckpt.state_dict, quick_gelu=quick_gelu, base_model=base_model, model_cfg=ckpt.model_cfg,
                           where=resolved.name, quick_gelu_from=quick_gelu_from, vision_heads=vision_heads,
                           text_heads=text_heads)
    # The tokenizer: --tokenizer, else the base model's, else the source folder's, else the zoo's. Never another.
    for candidate, origin in ((tokenizer, "tokenizer"), (base_model, "base_model"), (ckpt.tokenizer_dir, "source"),
                              (entry.tokenizer if entry else None, "zoo")):
        if candidate:
            tok_where, tok_origin = candidate, origin
            break
    else:
        which = ("Pass the tokenizer of the SigLIP it comes from: --tokenizer google/siglip-base-patch16-224 (the "
                 "32,000-token SigLIP vocabulary; transformers' SiglipTokenizer cleans prompts as open_clip does), or "
                 "--tokenizer FOLDER." if model.config.model_type == "siglip" else
                 "Pass the tokenizer of the CLIP it comes from: --base_model openai/clip-vit-base-patch32 (or "
                 "openai/clip-vit-large-patch14, ...; every OpenAI / open_clip CLIP uses the same BPE vocabulary), or "
                 "--tokenizer FOLDER.")
        raise ConversionError(
            f"{resolved.name} has no tokenizer files ({', '.join(TOKENIZER_FILES)}), and none was named. {which} "
            "tgazsr never picks a tokenizer on its own.")
    tok = _load_tokenizer(str(tok_where))
    siglip = model.config.model_type == "siglip"
    extra = {}
    if siglip:
        text_cfg = (ckpt.model_cfg or {}).get("text_cfg")
        extra["text_clean"] = check_siglip_tokenizer(tok, model.config.text_config, public(str(tok_where)), text_cfg)
        extra["text_padding"] = f"max_length ({model.config.text_config.max_position_embeddings})"
        image_processor, image_info = siglip_image_processor(model.config.vision_config.image_size,
                                                             ckpt.preprocess_cfg, base_model)
        from transformers import SiglipProcessor as Processor
    else:
        _check_tokenizer(tok, model.config.text_config, public(str(tok_where)))
        image_processor, image_info = _image_processor(model.config.vision_config.image_size, ckpt.preprocess_cfg,
                                                       base_model)
        from transformers import CLIPProcessor as Processor

    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        model.save_pretrained(tmp)
        Processor(image_processor=image_processor, tokenizer=tok).save_pretrained(tmp)
        record = {
            "converter": "tgazsr.convert", "converter_version": CONVERTER_VERSION, "source": resolved.name,
            "source_revision": resolved.revision, "zoo": entry.name if entry else None,
            "format": "open_clip" if ckpt.model_cfg is not None else "openai",
            "checkpoint_entry": ckpt.container or None, "vision_only": info["vision_only"],
            "base_model": public(str(base_model)) if base_model is not None else None,
            "tokenizer": public(str(tok_where)), "tokenizer_from": tok_origin,
            "quick_gelu": info["quick_gelu"], "quick_gelu_from": info["quick_gelu_from"],
            "hidden_act": info["hidden_act"], "architecture": info["architecture"],
            "model_type": model.config.model_type,
            "text_eos_token_id": None if siglip else model.config.text_config.eos_token_id,
            "source_dtype": info["source_dtype"], **extra, **image_info,
        }
        with open(os.path.join(tmp, "conversion.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        if os.path.isdir(output_dir):
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    arch = info["architecture"]
    logger.info("Converted %s into %s (%s): ViT width %d, %d layers, patch %d, image %d; %s; activation %s (%s).",
                resolved.name, output_dir, type(model).__name__, arch["vision"]["width"], arch["vision"]["layers"],
                arch["vision"]["patch_size"], arch["vision"]["image_size"],
                "vision tower only, text from the base model" if info["vision_only"] else
                f"text width {arch['text']['width']}, {arch['text']['layers']} layers",
                info["hidden_act"], info["quick_gelu_from"])
    return output_dir


def convert(source: str, output_dir: str, *, base_model: str | None = None, tokenizer: str | None = None,
            quick_gelu: bool | None = None, overwrite: bool = False, vision_heads: int | None = None,
            text_heads: int | None = None) -> str:
    """Convert ``source`` into a CLIPModel directory ``output_dir`` (safetensors, CLIPProcessor,
    ``conversion.json``) and return ``output_dir``.

    ``source``: a checkpoint file, an open_clip folder, ``hf-hub:ORG/NAME`` (downloaded when the Hub
    is reachable, else read from the local Hub cache) or a zoo name. ``base_model``: the CLIP it was
    fine-tuned from (the text tower of a vision-only checkpoint; the tokenizer and normalization).
    ``tokenizer``: where the tokenizer comes from, before ``base_model`` and the source folder.
    ``vision_heads`` / ``text_heads``: the attention heads, where the rule (width // 64 for a CLIP,
    the timm model name for a SigLIP's vision tower) does not give them.
    """
    return _convert_resolved(_resolve(source), output_dir, base_model=base_model, tokenizer=tokenizer,
                             quick_gelu=quick_gelu, overwrite=overwrite, vision_heads=vision_heads,
                             text_heads=text_heads)
