"""Zero-shot classification in pixel space, over any vision-language backbone.

Every attack and every loss in tgazsr sees images in ``[0, 1]``; the mean/std normalization
happens here, after any perturbation. One pass of the vision tower gives the image embedding,
the projected tokens of every position (for text-guided attention) and, when asked, the last
layer's attention weights (for the vision-based variant): what the model family computes is its
backbone's (:mod:`tgazsr.backbones`; CLIP is :mod:`tgazsr.backbones.clip`).

``ZeroShotCLIP`` is the module the Trainer optimizes. It owns the transformers model under
``.clip`` so that a checkpoint is always a plain transformers model directory.
``FrozenImageEncoder`` is a copy of the vision modules in evaluation mode with gradients off: the
reference model theta0.
"""

from __future__ import annotations

import copy
import hashlib
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone, ImageEncoding, backbone_for
from .errors import ModelFolderError
# check_model_folder, check_tokenizer and load_processor are also meant to be imported from here.
from .model_checks import (  # noqa: F401
    check_clip_config,
    check_model_folder,
    check_tokenizer,
    load_pretrained_strict,
    load_processor,
    looks_local,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
PIXEL_NORMALIZATIONS = {"clip": (CLIP_MEAN, CLIP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                        "siglip": (SIGLIP_MEAN, SIGLIP_STD)}
#: The values of ``--pixel_normalization``: 'auto' (the checkpoint's image processor) or a name above.
NORMALIZATION_CHOICES = ("auto", *PIXEL_NORMALIZATIONS)

__all__ = ["CLIP_MEAN", "CLIP_STD", "NORMALIZATION_CHOICES", "PIXEL_NORMALIZATIONS", "SIGLIP_MEAN", "SIGLIP_STD",
           "resolve_pixel_normalization", "FrozenImageEncoder", "ImageEncoding", "ZeroShotCLIP",
           "encode_image", "load_clip"]


def resolve_pixel_normalization(name: str, backbone: type[Backbone], image_processor, where: str,
                                log=None) -> tuple[list[float], list[float]]:
    """The (mean, std) that ``--pixel_normalization name`` means for a model of ``backbone``.

    'auto': the checkpoint's image processor's (where tgazsr.train saves the training normalization);
    without one, the constants of the family (``backbone.pixel_normalization``: CLIP's for a CLIP,
    0.5 for a SigLIP), said in the log. A name is that table entry; the normalization of another model
    family (CLIP's constants for a SigLIP) is refused, naming the fix, and 'imagenet' is accepted for
    any family (PMG-AFT's released code normalizes so)."""
    from .errors import UserError

    if name == "auto":
        mean = list(getattr(image_processor, "image_mean", None) or [])
        std = list(getattr(image_processor, "image_std", None) or [])
        if len(mean) == 3 and len(std) == 3:
            return [float(v) for v in mean], [float(v) for v in std]
        if log is not None:
            log.info("%s has no image processor with a 3-channel mean and std; using %s's normalization (%r).", where,
                     backbone.title or backbone.model_type, backbone.pixel_normalization)
        name = backbone.pixel_normalization
    if name not in PIXEL_NORMALIZATIONS:
        raise UserError(f"pixel_normalization = {name!r}: choose one of {', '.join(NORMALIZATION_CHOICES)} "
                        "(--pixel_normalization auto is the checkpoint's image processor's mean/std).")
    from .backbones import BACKBONES

    families = {b.pixel_normalization: b for b in BACKBONES.values()}
    if name in families and name != backbone.pixel_normalization:
        raise UserError(
            f"pixel_normalization = {name!r} is {families[name].title}'s mean/std, but {where} is a {backbone.title} "
            f"model, trained with its own ({backbone.pixel_normalization!r}). Pass --pixel_normalization auto (the "
            f"checkpoint's image processor) or {backbone.pixel_normalization}.")
    mean, std = PIXEL_NORMALIZATIONS[name]
    return list(mean), list(std)


def encode_image(
    towers,
    pixel_values: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    output_tokens: bool = False,
    output_attentions: bool = False,
    backbone: type[Backbone] | None = None,
) -> ImageEncoding:
    """Normalize ``[0,1]`` pixels and run the vision tower once. ``towers``: the model, or an object
    holding its vision modules (the frozen reference, which then names its ``backbone``)."""
    backbone = backbone or backbone_for(towers)
    x = (pixel_values - mean.to(pixel_values.dtype)) / std.to(pixel_values.dtype)
    # An engine that casts the weights themselves (DeepSpeed bf16/fp16) needs inputs of their dtype;
    # under autocast the weights stay float32 and this changes nothing.
    x = x.to(backbone.input_dtype(towers))
    return backbone.encode_image(towers, x, output_tokens=output_tokens, output_attentions=output_attentions)


class _PixelSpace(nn.Module):
    """Holds the normalization constants as non-persistent buffers (never saved)."""

    def _init_normalization(self, normalization: str | tuple) -> None:
        if isinstance(normalization, str):
            if normalization not in PIXEL_NORMALIZATIONS:
                raise ValueError(
                    f"Unknown pixel normalization {normalization!r}; choose one of {sorted(PIXEL_NORMALIZATIONS)}."
                )
            mean, std = PIXEL_NORMALIZATIONS[normalization]
        else:
            mean, std = normalization
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)


class ZeroShotCLIP(_PixelSpace):
    """A vision-language model (a ``Backbone``'s, CLIP's by default) seen as a zero-shot classifier
    of ``[0,1]`` images.

    ``forward(pixel_values)`` runs the vision tower (this is the call that goes through DDP);
    ``logits(embeds, text_embeds)`` turns image embeddings into ``s * cos (+ b)`` logits against
    L2-normalized class embeddings; ``class_embeddings(...)`` computes and caches those.
    The cache lives on the instance, so two models never share text features.
    """

    def __init__(self, clip: nn.Module, normalization: str | tuple = "clip"):
        super().__init__()
        self.clip = clip
        self.backbone: type[Backbone] = backbone_for(clip)
        self._init_normalization(normalization)
        self._text_cache: dict[str, torch.Tensor] = {}

    # --- towers -------------------------------------------------------------------------
    @property
    def vision_model(self) -> nn.Module:
        return self.clip.vision_model

    @property
    def logit_scale(self) -> torch.Tensor:
        """The multiplier of the cosines."""
        return self.backbone.logit_scale(self.clip)

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return self.backbone.logit_bias(self.clip)

    @property
    def image_size(self) -> int:
        return self.backbone.image_size(self.clip)

    def forward(
        self, pixel_values: torch.Tensor, output_tokens: bool = False, output_attentions: bool = False
    ) -> ImageEncoding:
        return encode_image(self.clip, pixel_values, self.pixel_mean, self.pixel_std, output_tokens=output_tokens,
                            output_attentions=output_attentions, backbone=self.backbone)

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: bool = True) -> torch.Tensor:
        """Zero-shot logits ``s * normalize(e) @ T^T (+ b)``; ``scale=False`` gives plain cosines (and no bias)."""
        logits = F.normalize(image_embeds, dim=-1) @ text_embeds.to(image_embeds.dtype).t()
        if not scale:
            return logits
        logits = self.logit_scale.to(logits.dtype) * logits
        bias = self.logit_bias
        return logits if bias is None else logits + bias.to(logits.dtype)

    def classify(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        return self.logits(self(pixel_values).embeds, text_embeds)

    # --- text side ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], tokenizer, batch_size: int = 256) -> torch.Tensor:
        """L2-normalized text embeddings (len(texts), D)."""
        device = self.pixel_mean.device
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.backbone.tokenize(tokenizer, texts[i : i + batch_size])
            batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            feats = self.backbone.text_features(self.clip, batch)
            out.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def class_embeddings(
        self, class_names: Sequence[str], templates: Sequence[str], tokenizer, batch_size: int = 256
    ) -> torch.Tensor:
        """(C, D) normalized class embeddings, averaged over prompt templates (an ensemble).

        A template holds ``{}`` for the class name; a template without ``{}`` is a fixed prompt
        per class (then ``templates`` must have one entry per class, as for PCAM).
        Cached on this instance by names and templates: the text tower never changes.
        """
        key = hashlib.sha1(repr((tuple(class_names), tuple(templates))).encode()).hexdigest()
        if key in self._text_cache:
            return self._text_cache[key]
        where = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
        if any("{}" not in t for t in templates):
            if len(templates) != len(class_names):
                raise ValueError(
                    "Fixed prompts (templates without '{}') need exactly one prompt per class: "
                    f"got {len(templates)} prompts for {len(class_names)} classes."
                )
            check_tokenizer(tokenizer, templates, where)
            embeds = self.encode_text(list(templates), tokenizer, batch_size)
        else:
            for t in templates:  # distinct classes must get distinct prompts (a tokenizer without vocabulary)
                check_tokenizer(tokenizer, [t.format(c) for c in class_names], where)
            per_template = [
                self.encode_text([t.format(c) for c in class_names], tokenizer, batch_size) for t in templates
            ]
            embeds = F.normalize(torch.stack(per_template).mean(0), dim=-1)
        self._text_cache[key] = embeds
        return embeds

    # --- parameters ---------------------------------------------------------------------
    def vision_parameters(self) -> list[tuple[str, nn.Parameter]]:
        prefixes = tuple(f"{name}." for name in self.backbone.vision_module_names)
        return [(n, p) for n, p in self.clip.named_parameters() if n.startswith(prefixes)]

    def freeze_all_but_vision(self, last_k: int | None = None) -> None:
        """Train the vision tower (or only its last ``last_k`` parameter tensors); freeze the rest."""
        for p in self.clip.parameters():
            p.requires_grad_(False)
        params = self.vision_parameters()
        if last_k is not None and last_k > 0:
            params = params[-last_k:]
        for _, p in params:
            p.requires_grad_(True)

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, every_n_layers: int = 1,
                                        offload: bool = False) -> None:
        """Recompute the towers' activations in the backward pass (``--activation_checkpointing true``,
        or ``--gradient_checkpointing true``): less memory, the same gradients, about a third more compute.
        Only the trained vision tower runs with gradients, so only it is affected in practice."""
        self.clip.activation_checkpointing_enable(activation_checkpointing_kwargs=activation_checkpointing_kwargs,
                                                  every_n_layers=every_n_layers, offload=offload)

    gradient_checkpointing_enable = activation_checkpointing_enable

    def frozen_copy(self) -> "FrozenImageEncoder":
        return FrozenImageEncoder(self.backbone.vision_modules(self.clip), (self.pixel_mean, self.pixel_std),
                                  self.backbone)


class FrozenImageEncoder(_PixelSpace):
    """theta0: a deep copy of a model's vision modules (its backbone's ``vision_module_names``), in
    eval mode, with no parameter gradients."""

    def __init__(self, modules: dict[str, nn.Module], normalization, backbone: type[Backbone]):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, copy.deepcopy(module))
        self.backbone = backbone
        mean, std = normalization
        self._init_normalization((mean.flatten().tolist(), std.flatten().tolist()))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always stays in evaluation mode
        return super().train(False)

    @torch.no_grad()
    def forward(
        self, pixel_values: torch.Tensor, output_tokens: bool = False, output_attentions: bool = False
    ) -> ImageEncoding:
        return encode_image(self, pixel_values, self.pixel_mean, self.pixel_std, output_tokens=output_tokens,
                            output_attentions=output_attentions, backbone=self.backbone)


def _config_dict(model_name_or_path: str) -> dict | None:
    """config.json of a local folder or a Hub id (None: not reachable; from_pretrained then says why)."""
    from transformers import PretrainedConfig

    try:  # a local folder's file, or a Hub id's (cached after the first time)
        config, _ = PretrainedConfig.get_config_dict(os.path.expanduser(model_name_or_path))
    except Exception:  # noqa: BLE001 - unreachable: from_pretrained below says so
        return None
    return config if isinstance(config, dict) else None


def load_clip(
    model_name_or_path: str, attn_implementation: str | None = None, dtype: torch.dtype | str | None = None
) -> nn.Module:
    """The vision-language model of a folder or Hub id, as its backbone's transformers class
    (CLIP's for a CLIP), with a clear error when the checkpoint cannot be reached or is not
    a registered backbone's (a local folder without config.json, or whose config.json is another
    model's: transformers would build a randomly initialised model from it), and loaded strictly:
    a weights file with missing, unexpected or wrongly shaped tensors is a ``ModelFolderError``
    naming them (``Backbone.load``, ``load_pretrained_strict``). Training, evaluation and conversion
    all load through here."""
    check_model_folder(model_name_or_path)
    config = _config_dict(model_name_or_path)
    if config is not None:
        check_clip_config(config, model_name_or_path)
    # Unreachable config: the default family's class tries, and its from_pretrained names why it cannot.
    backbone = backbone_for(config) if config is not None else backbone_for({"model_type": "clip"})
    kwargs = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    kind = backbone.model_class().__name__
    try:
        return backbone.load(model_name_or_path, **kwargs)
    except ModelFolderError:
        raise
    except OSError as err:
        raise ModelFolderError(
            f"Could not load a {kind} from {model_name_or_path!r}: {err}\n"
            f"Pass --model_name_or_path a local {kind} directory (config.json + model.safetensors), "
            "or a Hub id on a machine with access to the Hub (set HF_HUB_OFFLINE=0)."
        ) from err
