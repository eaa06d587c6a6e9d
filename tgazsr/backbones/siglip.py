"""SigLIP (transformers' ``SiglipModel``) as a :class:`~tgazsr.backbones.base.Backbone`.

SigLIP's vision tower has no class token and no projection: the patch tokens go through
``post_layernorm`` and the image embedding is the output of ``vision_model.head``, a
multihead-attention pooling head (a learned probe attends over the patches; then the head's
layer norm and MLP, added to the attention output). The text tower pools its last position, so
prompts are padded to the length the model was trained with (64 tokens, ``padding="max_length"``,
as transformers' zero-shot pipeline does for SigLIP); its ``head`` maps that position into the
joint space. Logits are ``exp(logit_scale) * cos + logit_bias``.

What the attention losses read (tgazsr's definitions for an encoder without a class token; see
docs/siglip.md):

- **projected tokens** (``prefix_tokens = 0``): each patch token ``h_n`` (after
  ``post_layernorm``) as the pooling head would output it if its probe attended to that patch
  alone: ``v_n = out_proj(W_v h_n + b_v)``, then ``v_n + mlp(layernorm(v_n))``. The head's
  attention output is the attention-weighted mean of the ``v_n`` (per head), so a patch lands in
  the joint space by the same layers the pooled embedding goes through, as CLIP's
  ``post_layernorm`` + ``visual_projection`` put its patches there;
- **attention**: the pooling head's attention weights from its probe to the patches, per head,
  ``(B, heads, 1, N)``: row 0 is the pooling query, with no prefix. ``nn.MultiheadAttention``
  returns them whatever attention kernel the encoder layers use.

SigLIP's own image normalization (mean = std = 0.5 for the google/siglip checkpoints) comes from
its image processor (``pixel_normalization``: ``auto`` or ``siglip``). FT-Clean and FT-Adv use
SigLIP's sigmoid loss (:func:`tgazsr.losses.sigmoid_contrastive`).

This module and :mod:`tgazsr.convert` are the only ones that name ``SiglipModel``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..errors import PromptError
from .base import Backbone, ImageEncoding, register_backbone

#: The prompt length SigLIP was trained with; its text tower pools this last position.
TEXT_LENGTH = 64

EXPECTED_SIGLIP = ('a SiglipModel directory: config.json with model_type "siglip" (and its text_config and '
                   "vision_config) plus model.safetensors, as SiglipModel.save_pretrained and tgazsr.train write it")

SIGLIP2_PROBLEM = (
    'its config.json has model_type "siglip2", a Siglip2Model (NaFlex): its vision tower takes a sequence of '
    "flattened patches with a pixel attention mask and each image's spatial shape, not an image tensor, so a "
    "pixel-space attack and the patch-grid attention maps are not defined on it here. The fixed-resolution SigLIP 2 "
    'checkpoints (such as google/siglip2-base-patch16-224) are saved as SiglipModel (model_type "siglip"): pass one '
    "of those."
)


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4.x and an output object in 5.x."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _value_projection(attention: nn.MultiheadAttention) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The value projection (weight, bias) of a ``nn.MultiheadAttention``."""
    d = attention.embed_dim
    weight = attention.in_proj_weight[2 * d:] if attention._qkv_same_embed_dim else attention.v_proj_weight
    bias = attention.in_proj_bias[2 * d:] if attention.in_proj_bias is not None else None
    return weight, bias


def _head_block(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooling head after its attention: ``x + mlp(layernorm(x))``."""
    return x + head.mlp(head.layernorm(x))


@register_backbone
class SiglipBackbone(Backbone):
    model_type = "siglip"
    title = "SigLIP"
    expected = EXPECTED_SIGLIP
    vision_module_names = ("vision_model",)  # the pooling head is inside vision_model
    prefix_tokens = 0
    pixel_normalization = "siglip"
    # The encoder layers' projections and the head's MLP. Not the head's attention: nn.MultiheadAttention
    # reads its out_proj weight directly, so an adapter there would not reach the pooled embedding.
    lora_targets = r".*vision_model\.(encoder\..*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)|head\.mlp\.(fc1|fc2))"
    contrastive_loss_name = "SigLIP's sigmoid loss"
    frozen_scalars = "the logit scale and bias"
    fsdp_config = "accelerate_configs/fsdp_siglip.yaml"

    transformers_classes = ("SiglipModel", "SiglipConfig", "SiglipProcessor")

    @classmethod
    def config_problem(cls, config: Mapping[str, Any]) -> str | None:
        vision = config.get("vision_config") or {}
        text = config.get("text_config") or {}
        if vision.get("vision_use_head") is False:
            return ("its vision_config has vision_use_head false: the vision tower has no pooling head, so it gives no "
                    "image embedding in the joint space. Pass a SiglipModel whose vision tower pools with its head "
                    "(every google/siglip checkpoint does).")
        hidden = vision.get("hidden_size", 768)
        projection = text.get("projection_size") or text.get("hidden_size", 768)
        if projection != hidden:
            return (f"its text_config.projection_size ({projection}) differs from vision_config.hidden_size ({hidden}): "
                    "the text and image embeddings would not share one space. Pass a SiglipModel whose text head "
                    "projects to the vision width.")
        length = text.get("max_position_embeddings", TEXT_LENGTH)
        if length < TEXT_LENGTH:
            return (f"its text_config.max_position_embeddings is {length}, but SigLIP's prompts are padded to "
                    f"{TEXT_LENGTH} tokens, as the model was trained. Pass a SiglipModel with at least {TEXT_LENGTH} "
                    "text positions.")
        return None

    # --- images -----------------------------------------------------------------------------
    @classmethod
    def encode_image(cls, towers, pixel_values: torch.Tensor, output_tokens: bool = False,
                     output_attentions: bool = False) -> ImageEncoding:
        vision_model = towers.vision_model
        out = vision_model(pixel_values=pixel_values)
        hidden = out.last_hidden_state  # after post_layernorm
        embeds, attentions, tokens = out.pooler_output, None, None
        head = vision_model.head
        if output_attentions:
            # The head once more, keeping its attention weights (its forward drops them); the embedding is
            # taken from this pass, so that the weights are those that pooled it.
            probe = head.probe.expand(hidden.shape[0], -1, -1).to(hidden.dtype)
            pooled, attentions = head.attention(probe, hidden, hidden, need_weights=True,
                                                average_attn_weights=False)
            embeds = _head_block(head, pooled)[:, 0]
        if output_tokens:
            # Each patch as the head would pool it alone, in the weights' precision (as CLIP's projection).
            with torch.autocast(device_type=pixel_values.device.type, enabled=False):
                weight, bias = _value_projection(head.attention)
                values = F.linear(hidden.to(weight.dtype), weight, bias)
                tokens = _head_block(head, head.attention.out_proj(values))
        return ImageEncoding(embeds=embeds, tokens=tokens, attentions=attentions, prefix_tokens=0)

    # --- text -------------------------------------------------------------------------------
    @classmethod
    def tokenize(cls, tokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = tokenizer(list(texts), padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                          return_tensors="pt")
        if batch["input_ids"].shape[1] != TEXT_LENGTH:
            raise PromptError(f"SigLIP's prompts are padded to {TEXT_LENGTH} tokens, but its tokenizer gave "
                              f"{batch['input_ids'].shape[1]}: pass the tokenizer saved with the SigLIP checkpoint.")
        return batch

    @classmethod
    def text_features(cls, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # The ids and the tokenizer's attention mask, as transformers' zero-shot pipeline passes them.
        return _features(model.get_text_features(**batch))

    # --- logits -----------------------------------------------------------------------------
    @classmethod
    def logit_bias(cls, model: nn.Module) -> torch.Tensor:
        return model.logit_bias

    @classmethod
    def contrastive_loss(cls, image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale, bias) -> torch.Tensor:
        return losses.sigmoid_contrastive(image_embeds, text_embeds, scale, bias)

    # --- the model card ---------------------------------------------------------------------
    @classmethod
    def card_notes(cls, method) -> list[str]:
        notes = []
        if method.backbone_loss:
            notes.append("On SigLIP its loss is SigLIP's sigmoid loss (every image-prompt pair of the batch, "
                         "-(1/B) sum log sigmoid(+-(t cos + b))), not CLIP's softmax contrastive loss of the paper"
                         + ("; the training attack maximizes the same sigmoid loss." if method.adversarial else "."))
        if method.attention:
            notes.append("SigLIP has no class token and pools with an attention head, so the attention maps here are "
                         "tgazsr's extension of the method to SigLIP, not a published method: text-guided attention "
                         "reads each patch as the pooling head would output it alone, the vision-based variant the "
                         "pooling head's attention over the patches (tgazsr's docs/siglip.md).")
        return notes

    # --- parameters -------------------------------------------------------------------------
    @classmethod
    def frozen_parts(cls, model: nn.Module) -> list:
        return [model.text_model, model.logit_scale, model.logit_bias]
