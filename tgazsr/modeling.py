"""Zero-shot CLIP in pixel space.

Every attack and every loss in tgazsr sees images in ``[0, 1]``; the mean/std normalization
happens here, after any perturbation. One pass of the vision tower gives the image embedding
(CLS token), the projected tokens of every position (for text-guided attention) and, when asked,
the last layer's self-attention weights (for the vision-based variant).

``ZeroShotCLIP`` is the module the Trainer optimizes. It owns the ``CLIPModel`` under ``.clip``
so that a checkpoint is always a plain ``CLIPModel`` directory. ``FrozenImageEncoder`` is a
copy of the vision tower in evaluation mode with gradients off: the reference model theta0.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

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
PIXEL_NORMALIZATIONS = {"clip": (CLIP_MEAN, CLIP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


@dataclass
class ImageEncoding:
    """What one vision pass returns.

    embeds: (B, D) CLS embedding after post_layernorm and visual_projection, not normalized.
    tokens: (B, 1+N, D) every token after post_layernorm and visual_projection (token 0 is CLS),
        or None when not asked for.
    attentions: (B, heads, 1+N, 1+N) self-attention of the last vision layer, or None.
    """

    embeds: torch.Tensor
    tokens: torch.Tensor | None = None
    attentions: torch.Tensor | None = None


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4.x and an output object in 5.x."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def encode_image(
    vision_model: nn.Module,
    visual_projection: nn.Module,
    pixel_values: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    output_tokens: bool = False,
    output_attentions: bool = False,
) -> ImageEncoding:
    """Normalize ``[0,1]`` pixels and run the vision tower once."""
    x = (pixel_values - mean.to(pixel_values.dtype)) / std.to(pixel_values.dtype)
    # An engine that casts the weights themselves (DeepSpeed bf16/fp16) needs inputs of their dtype;
    # under autocast the weights stay float32 and this changes nothing.
    x = x.to(vision_model.embeddings.patch_embedding.weight.dtype)
    out = vision_model(pixel_values=x, output_attentions=output_attentions)
    attentions = None
    if output_attentions:
        if not out.attentions or out.attentions[-1] is None:
            raise RuntimeError(
                "The vision tower returned no attention weights. Load the model with "
                "attn_implementation='eager' (SDPA and flash attention do not return them)."
            )
        attentions = out.attentions[-1]
    if output_tokens:
        # post_layernorm on every token, then the projection: the CLS token of this is e(x). Under
        # autocast this one small matmul stays in the weights' precision (float32 unless the engine casts
        # them): the attention losses compare nearly equal token maps, which 16-bit rounding would blur.
        with torch.autocast(device_type=pixel_values.device.type, enabled=False):
            weight = visual_projection.weight
            hidden = vision_model.post_layernorm(out.last_hidden_state.to(vision_model.post_layernorm.weight.dtype))
            tokens = visual_projection(hidden.to(weight.dtype))
        # CLS as its own tensor, not a view: FSDP2 warns that in-place ops on a module's view outputs lose its hooks.
        return ImageEncoding(embeds=tokens[:, 0].clone(), tokens=tokens, attentions=attentions)
    return ImageEncoding(embeds=visual_projection(out.pooler_output), attentions=attentions)


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
    """A ``CLIPModel`` seen as a zero-shot classifier of ``[0,1]`` images.

    ``forward(pixel_values)`` runs the vision tower (this is the call that goes through DDP);
    ``logits(embeds, text_embeds)`` turns image embeddings into ``s * cos`` logits against
    L2-normalized class embeddings; ``class_embeddings(...)`` computes and caches those.
    The cache lives on the instance, so two models never share text features.
    """

    def __init__(self, clip: CLIPModel, normalization: str | tuple = "clip"):
        super().__init__()
        self.clip = clip
        self._init_normalization(normalization)
        self._text_cache: dict[str, torch.Tensor] = {}

    # --- towers -------------------------------------------------------------------------
    @property
    def vision_model(self) -> nn.Module:
        return self.clip.vision_model

    @property
    def visual_projection(self) -> nn.Module:
        return self.clip.visual_projection

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def forward(
        self, pixel_values: torch.Tensor, output_tokens: bool = False, output_attentions: bool = False
    ) -> ImageEncoding:
        return encode_image(
            self.vision_model,
            self.visual_projection,
            pixel_values,
            self.pixel_mean,
            self.pixel_std,
            output_tokens=output_tokens,
            output_attentions=output_attentions,
        )

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: bool = True) -> torch.Tensor:
        """Zero-shot logits ``s * normalize(e) @ T^T``; ``scale=False`` gives plain cosines."""
        logits = F.normalize(image_embeds, dim=-1) @ text_embeds.to(image_embeds.dtype).t()
        return self.logit_scale.to(logits.dtype) * logits if scale else logits

    def classify(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        return self.logits(self(pixel_values).embeds, text_embeds)

    # --- text side ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], tokenizer, batch_size: int = 256) -> torch.Tensor:
        """L2-normalized text embeddings (len(texts), D)."""
        device = self.clip.logit_scale.device
        out = []
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            feats = _features(self.clip.get_text_features(**batch))
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
        return [
            (n, p)
            for n, p in self.clip.named_parameters()
            if n.startswith("vision_model.") or n.startswith("visual_projection.")
        ]

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
        return FrozenImageEncoder(self.vision_model, self.visual_projection, (self.pixel_mean, self.pixel_std))


class FrozenImageEncoder(_PixelSpace):
    """theta0: a deep copy of a vision tower, in eval mode, with no parameter gradients."""

    def __init__(self, vision_model: nn.Module, visual_projection: nn.Module, normalization):
        super().__init__()
        self.vision_model = copy.deepcopy(vision_model)
        self.visual_projection = copy.deepcopy(visual_projection)
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
        return encode_image(
            self.vision_model,
            self.visual_projection,
            pixel_values,
            self.pixel_mean,
            self.pixel_std,
            output_tokens=output_tokens,
            output_attentions=output_attentions,
        )


def load_clip(
    model_name_or_path: str, attn_implementation: str | None = None, dtype: torch.dtype | str | None = None
) -> CLIPModel:
    """``CLIPModel.from_pretrained`` with a clear error when the checkpoint cannot be reached or is
    not a CLIPModel (a local folder without config.json, or whose config.json is another model's:
    transformers would build a randomly initialised CLIP from it), and loaded strictly: a weights
    file with missing, unexpected or wrongly shaped tensors is a ``ModelFolderError`` naming them
    (``load_pretrained_strict``). Training, evaluation and conversion all load through here."""
    check_model_folder(model_name_or_path)
    if not os.path.exists(os.path.expanduser(model_name_or_path)) and not looks_local(model_name_or_path):
        from transformers import PretrainedConfig

        try:  # a Hub id: its config.json only (cached after the first time)
            config, _ = PretrainedConfig.get_config_dict(model_name_or_path)
        except Exception:  # noqa: BLE001 - unreachable: from_pretrained below says so
            config = None
        if isinstance(config, dict):
            check_clip_config(config, model_name_or_path)
    kwargs = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return load_pretrained_strict(CLIPModel, model_name_or_path, **kwargs)
    except ModelFolderError:
        raise
    except OSError as err:
        raise ModelFolderError(
            f"Could not load a CLIPModel from {model_name_or_path!r}: {err}\n"
            "Pass --model_name_or_path a local CLIPModel directory (config.json + model.safetensors), "
            "or a Hub id on a machine with access to the Hub (set HF_HUB_OFFLINE=0)."
        ) from err
