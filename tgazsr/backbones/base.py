"""The vision-language backbone: what training, the attacks, the attention maps, the harness, the
checks and the model card need of a model, and nothing more.

A :class:`Backbone` is stateless: it describes one family of transformers models (CLIP, SigLIP) and
its methods take the model, or any object holding the same vision modules (the frozen reference
copy), as their first argument. So the model stays a plain transformers model under
``ZeroShotCLIP.clip`` (its checkpoints load with ``from_pretrained`` and no custom code), and the
trainer, the FSDP wrapping and the saving code address it through this interface alone:

- images: ``encode_image(towers, x)`` maps normalized pixels to an :class:`ImageEncoding`: the
  pooled image embedding in the joint space and, when asked, every token projected into that
  space (``prefix_tokens`` leading tokens are not patches: CLIP's class token) and the last
  layer's attention whose row 0 is the pooling query (CLIP: the class token; a model that pools
  with an attention head, such as SigLIP, gives the head's attention);
- text: ``tokenize(tokenizer, texts)`` (the padding the model was trained with: CLIP pads to the
  longest prompt, SigLIP to a fixed length) and ``text_features(model, batch)``;
- logits: ``logit_scale(model)`` (the multiplier, already exponentiated) and ``logit_bias(model)``
  (None when the model has none); ``contrastive_loss`` the family's own image-text loss;
- parameters: ``vision_module_names`` (trained and copied as the frozen reference),
  ``frozen_parts(model)`` (kept whole under FSDP), ``lora_targets`` (the default LoRA modules);
- pixels: ``pixel_normalization``, the mean/std the family was trained with;
- folders: ``model_class``, ``config_problem(config)`` and ``load``.

Backbones register by their ``model_type`` (config.json's); :func:`backbone_for` finds the one of a
model or a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from ..registry import Registry


@dataclass
class ImageEncoding:
    """What one vision pass returns.

    embeds: (B, D) the pooled image embedding in the joint space, not normalized.
    tokens: (B, P+N, D) every token projected into the joint space, the ``prefix_tokens`` = P
        non-patch tokens first (CLIP: P = 1, the class token, whose projection is ``embeds``), or
        None when not asked for.
    attentions: (B, heads, Q, P+N) the last attention layer's weights, row 0 the pooling query,
        or None.
    """

    embeds: torch.Tensor
    tokens: torch.Tensor | None = None
    attentions: torch.Tensor | None = None
    prefix_tokens: int = 1


class Backbone:
    """One family of vision-language models, seen through the interface above (see the module)."""

    #: config.json's ``model_type`` of the family.
    model_type: ClassVar[str] = ""
    #: The names of the model's modules that form the image encoder: trained, and copied into the frozen reference.
    vision_module_names: ClassVar[tuple[str, ...]] = ()
    #: Leading tokens of ``ImageEncoding.tokens`` that are not patches.
    prefix_tokens: ClassVar[int] = 1
    #: What a model folder of this family holds, in words (for error messages).
    expected: ClassVar[str] = ""
    #: The family's name in prose (the model card).
    title: ClassVar[str] = ""
    #: The name of the pixel normalization the family was trained with (``tgazsr.modeling.PIXEL_NORMALIZATIONS``).
    pixel_normalization: ClassVar[str] = "clip"
    #: The default LoRA target modules (a regex over module names): the vision tower's projections.
    lora_targets: ClassVar[str] = r".*vision_model.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"
    #: What ``contrastive_loss`` is, in words (the model card of FT-Clean and FT-Adv).
    contrastive_loss_name: ClassVar[str] = ""
    #: The frozen scalars of the logits, in words (the model card).
    frozen_scalars: ClassVar[str] = "logit scale"
    #: The accelerate config of FSDP2 that wraps this family's layers (``shard_unit_names``).
    fsdp_config: ClassVar[str] = "accelerate_configs/fsdp.yaml"

    # --- the transformers classes and folders -----------------------------------------------
    #: The family's transformers classes, by name: the model, its config, its processor.
    transformers_classes: ClassVar[tuple[str, str, str]] = ("", "", "")

    @classmethod
    def _transformers_class(cls, index: int) -> type:
        import transformers

        return getattr(transformers, cls.transformers_classes[index])

    @classmethod
    def model_class(cls) -> type:
        return cls._transformers_class(0)

    @classmethod
    def config_class(cls) -> type:
        return cls._transformers_class(1)

    @classmethod
    def processor_class(cls) -> type:
        return cls._transformers_class(2)

    @classmethod
    def config_problem(cls, config: Mapping[str, Any]) -> str | None:
        """What keeps a config.json (as a dict) of this family from being used (None: nothing)."""
        return None

    @classmethod
    def load(cls, name_or_path: str, **kwargs) -> nn.Module:
        """``from_pretrained``, strictly: every tensor the config declares, with its shape, and no other
        (``tgazsr.model_checks.load_pretrained_strict``)."""
        from ..model_checks import load_pretrained_strict

        return load_pretrained_strict(cls.model_class(), name_or_path, **kwargs)

    @classmethod
    def image_size(cls, model: nn.Module) -> int:
        return int(model.config.vision_config.image_size)

    # --- images -----------------------------------------------------------------------------
    @classmethod
    def vision_modules(cls, model: nn.Module) -> dict[str, nn.Module]:
        return {name: getattr(model, name) for name in cls.vision_module_names}

    @classmethod
    def input_dtype(cls, towers) -> torch.dtype:
        """The dtype the vision tower's weights hold (an engine may cast them to 16 bits): its patch
        embedding's, which the pixels meet first (CLIP's and SigLIP's ``vision_model``)."""
        return towers.vision_model.embeddings.patch_embedding.weight.dtype

    @classmethod
    def encode_image(cls, towers, pixel_values: torch.Tensor, output_tokens: bool = False,
                     output_attentions: bool = False) -> ImageEncoding:
        """Normalized pixels -> :class:`ImageEncoding`. ``towers``: the model, or an object holding
        its ``vision_module_names`` (the frozen reference)."""
        raise NotImplementedError

    # --- text -------------------------------------------------------------------------------
    @classmethod
    def tokenize(cls, tokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")

    @classmethod
    def text_features(cls, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) text embeddings in the joint space, not normalized."""
        raise NotImplementedError

    # --- logits -----------------------------------------------------------------------------
    @classmethod
    def logit_scale(cls, model: nn.Module) -> torch.Tensor:
        """The multiplier of the cosines (exp of the stored log scale)."""
        return model.logit_scale.exp()

    @classmethod
    def logit_bias(cls, model: nn.Module) -> torch.Tensor | None:
        return None

    @classmethod
    def contrastive_loss(cls, image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor | float,
                         bias: torch.Tensor | None) -> torch.Tensor:
        """The family's own image-text loss over a batch whose i-th image matches the i-th text (FT-Clean,
        FT-Adv and their attack): CLIP's softmax contrastive loss, SigLIP's sigmoid loss."""
        raise NotImplementedError

    # --- the model card ---------------------------------------------------------------------
    @classmethod
    def card_notes(cls, method) -> list[str]:
        """Sentences the model card adds for ``method`` (a ``tgazsr.methods.Method``) on this family:
        where the method as run here differs from its paper's (which was written for CLIP)."""
        return []

    # --- parameters -------------------------------------------------------------------------
    @classmethod
    def frozen_parts(cls, model: nn.Module) -> list[nn.Module | nn.Parameter]:
        """What stays whole (unsharded) under FSDP: the frozen towers and the scalars read outside
        the forward pass."""
        raise NotImplementedError

    @classmethod
    def shard_unit_names(cls, model: nn.Module) -> list[str]:
        """The class names of the trained tower's repeated layers: FSDP's units (the transformer
        layer class an FSDP config wraps)."""
        return sorted({type(layer).__name__ for layer in model.vision_model.encoder.layers})


BACKBONES: Registry[type[Backbone]] = Registry("backbone")


def register_backbone(backbone: type[Backbone]) -> type[Backbone]:
    BACKBONES.register(backbone.model_type, backbone)
    return backbone


def expected_folders() -> str:
    """What a model folder of any registered family holds, in words."""
    return " or ".join(b.expected for b in BACKBONES.values())


def backbone_for(model_or_config) -> type[Backbone]:
    """The backbone of a model, a config object or a config.json dict (by its ``model_type``)."""
    config = getattr(model_or_config, "config", model_or_config)  # a peft wrapper passes its model's config on
    model_type = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    return BACKBONES.get(str(model_type))
