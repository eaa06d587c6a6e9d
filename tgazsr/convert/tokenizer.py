"""The tokenizer and the image processor of a converted model."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..modeling import CLIP_MEAN, CLIP_STD
from .base import ConversionError, public

logger = logging.getLogger("tgazsr.convert")

def _load_tokenizer(where: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where)
    except Exception as err:  # noqa: BLE001 - a folder without tokenizer files, an unreachable Hub id
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConversionError(f"Could not load a tokenizer from {public(where)} ({type(err).__name__}: {first}). Pass "
                              "--tokenizer or --base_model with a CLIP tokenizer (a local folder, or a Hub id on a "
                              "machine with access to the Hub).") from err


def _check_tokenizer(tokenizer, text_config, where: str) -> None:
    eos = text_config.eos_token_id
    if eos != 2 and tokenizer.eos_token_id != eos:  # 2: transformers' legacy argmax pooling (older configs)
        raise ConversionError(
            f"The tokenizer from {where} ends prompts with token {tokenizer.eos_token_id}, but the text tower pools at "
            f"the end-of-text token {eos}: the text embeddings would be taken at the wrong position. Pass the tokenizer "
            "of OpenAI's CLIP (--base_model openai/clip-vit-base-patch32).")
    largest = max(tokenizer.get_vocab().values())
    if largest >= text_config.vocab_size:
        raise ConversionError(f"The tokenizer from {where} has token ids up to {largest}, beyond the text tower's "
                              f"{text_config.vocab_size} embeddings: it is not this model's tokenizer.")
    if not tokenizer.model_max_length or tokenizer.model_max_length > text_config.max_position_embeddings:
        tokenizer.model_max_length = text_config.max_position_embeddings


def _image_processor(image_size: int, preprocess: dict | None, base_model) -> tuple[Any, dict]:
    """A CLIPImageProcessor at ``image_size`` with the source's mean/std (open_clip_config.json's
    preprocess_cfg), else the base model's, else CLIP's."""
    from transformers import CLIPImageProcessor, CLIPModel

    mean, std, origin = list(CLIP_MEAN), list(CLIP_STD), "CLIP's"
    if preprocess and preprocess.get("mean") and preprocess.get("std"):
        mean, std, origin = [float(v) for v in preprocess["mean"]], [float(v) for v in preprocess["std"]], \
            "open_clip_config.json"
    elif base_model is not None:
        where = base_model.name_or_path if isinstance(base_model, CLIPModel) else str(base_model)
        with contextlib.suppress(Exception):  # a base model without an image processor: CLIP's constants
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(where)
            if len(processor.image_mean) == 3 and len(processor.image_std) == 3:
                mean, std, origin = list(processor.image_mean), list(processor.image_std), "base model"
    resize_mode = (preprocess or {}).get("resize_mode", "shortest")
    resample = {"bilinear": 2, "bicubic": 3, "nearest": 0}.get((preprocess or {}).get("interpolation", "bicubic"), 3)
    crop = {"height": image_size, "width": image_size}
    if resize_mode == "squash":
        processor = CLIPImageProcessor(size=dict(crop), crop_size=crop, do_center_crop=False, image_mean=mean,
                                       image_std=std, resample=resample)
    else:
        if resize_mode != "shortest":
            logger.warning("resize_mode %r has no CLIPImageProcessor equivalent; using shortest-edge resize and a "
                           "center crop.", resize_mode)
        processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=crop, image_mean=mean,
                                       image_std=std, resample=resample)
    return processor, {"image_mean": mean, "image_std": std, "normalization_from": origin, "resize_mode": resize_mode}


#: open_clip's text cleaning (text_cfg.tokenizer_kwargs.clean) and a pair of prompts that it makes
#: one: a tokenizer that gives the pair different ids does not clean as open_clip does.
CLEANING_PROBES = {"canonicalize": ("A Photo, of a Dog.", "a photo of a dog"), "lower": ("A Photo of a Dog", "a photo of a dog")}


def check_siglip_tokenizer(tokenizer, text_config, where: str, text_cfg: dict | None) -> str:
    """The tokenizer of a converted SigLIP fits its text tower and cleans prompts as open_clip did
    (its ``clean``: ``canonicalize`` lowercases and drops punctuation, ``lower`` lowercases); returns
    the cleaning. Prompts are padded to the context length, as SigLIP was trained."""
    largest = max(tokenizer.get_vocab().values())
    if largest >= text_config.vocab_size:
        raise ConversionError(f"The tokenizer from {where} has token ids up to {largest}, beyond the text tower's "
                              f"{text_config.vocab_size} embeddings: it is not this model's tokenizer.")
    clean = str(((text_cfg or {}).get("tokenizer_kwargs") or {}).get("clean") or "whitespace")
    probe = CLEANING_PROBES.get(clean)
    if probe is not None:
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in probe]
        if ids[0] != ids[1]:
            raise ConversionError(
                f"open_clip cleans this SigLIP's prompts with clean={clean!r} before tokenizing, but the tokenizer from "
                f"{where} does not ({probe[0]!r} and {probe[1]!r} get different tokens), so every class embedding would "
                "differ from open_clip's. Pass --tokenizer with transformers' SiglipTokenizer of the same vocabulary "
                "(e.g. google/siglip-base-patch16-224 for the 32,000-token SigLIP vocabulary), which canonicalizes.")
    elif clean not in ("whitespace", "basic", "none"):
        raise ConversionError(f"open_clip's text cleaning {clean!r} is not one tgazsr knows how to check.")
    tokenizer.model_max_length = text_config.max_position_embeddings
    return clean


def siglip_image_processor(image_size: int, preprocess: dict | None, base_model) -> tuple[Any, dict]:
    """A SiglipImageProcessor resizing to ``image_size`` x ``image_size`` with the source's mean/std
    (open_clip_config.json's preprocess_cfg), else the base model's, else SigLIP's (0.5, 0.5)."""
    from transformers import SiglipImageProcessor

    mean, std, origin = [0.5] * 3, [0.5] * 3, "SigLIP's"
    if preprocess and preprocess.get("mean") and preprocess.get("std"):
        mean, std, origin = [float(v) for v in preprocess["mean"]], [float(v) for v in preprocess["std"]], \
            "open_clip_config.json"
    elif base_model is not None:
        where = getattr(base_model, "name_or_path", None) or str(base_model)
        with contextlib.suppress(Exception):
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(where)
            if len(processor.image_mean) == 3 and len(processor.image_std) == 3:
                mean, std, origin = list(processor.image_mean), list(processor.image_std), "base model"
    resize_mode = (preprocess or {}).get("resize_mode", "squash")
    if resize_mode != "squash":
        raise ConversionError(f"open_clip_config.json resizes with resize_mode={resize_mode!r}; transformers' "
                              "SiglipImageProcessor only squashes to the square size (resize_mode 'squash').")
    resample = {"bilinear": 2, "bicubic": 3, "nearest": 0}.get((preprocess or {}).get("interpolation", "bicubic"), 3)
    processor = SiglipImageProcessor(size={"height": image_size, "width": image_size}, image_mean=mean, image_std=std,
                                     resample=resample)
    return processor, {"image_mean": mean, "image_std": std, "normalization_from": origin, "resize_mode": resize_mode}
