"""CLIP (transformers' ``CLIPModel``) as a :class:`~tgazsr.backbones.base.Backbone`.

The image embedding is the class token after ``post_layernorm`` and ``visual_projection``; the
projected tokens are every token through the same two layers (token 0, the class token, gives the
embedding); the attention is the last vision layer's, whose row 0 is the class token's. The text
embedding pools at the end-of-text token (transformers' rule: the first ``eos_token_id``, or
``argmax(input_ids)`` for the legacy ``eos_token_id == 2``), then ``text_projection``. Logits are
``exp(logit_scale) * cos``, without bias.

This module and :mod:`tgazsr.convert` are the only ones that name ``CLIPModel``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .. import losses
from .base import Backbone, ImageEncoding, register_backbone

EXPECTED = ('a CLIPModel directory: config.json with model_type "clip" (and its text_config and vision_config) '
            "plus model.safetensors, as CLIPModel.save_pretrained and tgazsr.train write it")


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4.x and an output object in 5.x."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@register_backbone
class CLIPBackbone(Backbone):
    model_type = "clip"
    expected = EXPECTED
    title = "CLIP"
    pixel_normalization = "clip"
    contrastive_loss_name = "CLIP's symmetric softmax contrastive loss"
    vision_module_names = ("vision_model", "visual_projection")
    prefix_tokens = 1

    transformers_classes = ("CLIPModel", "CLIPConfig", "CLIPProcessor")

    @classmethod
    def encode_image(cls, towers, pixel_values: torch.Tensor, output_tokens: bool = False,
                     output_attentions: bool = False) -> ImageEncoding:
        vision_model, visual_projection = towers.vision_model, towers.visual_projection
        out = vision_model(pixel_values=pixel_values, output_attentions=output_attentions)
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
            return ImageEncoding(embeds=tokens[:, 0].clone(), tokens=tokens, attentions=attentions, prefix_tokens=1)
        return ImageEncoding(embeds=visual_projection(out.pooler_output), attentions=attentions, prefix_tokens=1)

    @classmethod
    def text_features(cls, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _features(model.get_text_features(**batch))

    @classmethod
    def contrastive_loss(cls, image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale, bias) -> torch.Tensor:
        return losses.contrastive(image_embeds, text_embeds, scale)

    @classmethod
    def frozen_parts(cls, model: nn.Module) -> list:
        return [model.text_model, model.text_projection, model.logit_scale]
