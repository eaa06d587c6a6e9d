"""Vision-language backbones: one interface (:mod:`.base`), one module per model family.

    from tgazsr.backbones import backbone_for
    backbone = backbone_for(model)            # by config.json's model_type
    enc = backbone.encode_image(model, normalized_pixels, output_tokens=True)
"""

from .base import BACKBONES, Backbone, ImageEncoding, backbone_for, expected_folders, register_backbone
from . import clip  # noqa: E402,F401  (registration)

__all__ = ["BACKBONES", "Backbone", "ImageEncoding", "backbone_for", "expected_folders", "register_backbone"]
