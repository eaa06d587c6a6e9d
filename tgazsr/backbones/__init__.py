"""Vision-language backbones: one interface (:mod:`.base`), one module per model family.

    from tgazsr.backbones import backbone_for
    backbone = backbone_for(model)            # by config.json's model_type
    enc = backbone.encode_image(model, normalized_pixels, output_tokens=True)
"""

from .base import BACKBONES, Backbone, ImageEncoding, backbone_for, expected_folders, register_backbone
from . import clip, siglip  # noqa: E402,F401  (registration)

#: Model types tgazsr knows and cannot read, with the reason and what to pass instead.
UNSUPPORTED_MODEL_TYPES = {"siglip2": siglip.SIGLIP2_PROBLEM}

__all__ = ["UNSUPPORTED_MODEL_TYPES", "BACKBONES", "Backbone", "ImageEncoding", "backbone_for", "expected_folders", "register_backbone"]
