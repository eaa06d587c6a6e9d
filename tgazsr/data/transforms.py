"""Pixel transforms: PIL images to float tensors in [0, 1]. No normalization here.

The reference resizes the shorter side to 256 (bilinear) and center-crops 224 for most
datasets, and resizes CIFAR straight to 224 x 224. Sizes scale with the model's image size
(a 32-pixel model resizes to 36 and crops 32), so tiny test models follow the same path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .errors import DataError
from .images import to_rgb


class NotAnImageError(DataError, TypeError):
    """A value of the image column that is not an image (a ``TypeError`` too, as before)."""

RESIZE_MODES = ("shorter_side_crop", "square")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1], through the one RGB conversion (``tgazsr.data.images.to_rgb``)."""
    array = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


@dataclass
class ImageTransform:
    """Resize (bilinear) and crop a PIL image to ``image_size`` and return a [0,1] tensor.

    ``shorter_side_crop``: shorter side to ``round(image_size * 256 / 224)``, center crop.
    ``square``: resize straight to image_size x image_size.
    """

    image_size: int = 224
    resize_mode: str = "shorter_side_crop"

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise DataError(f"Unknown resize_mode {self.resize_mode!r}; choose one of {', '.join(RESIZE_MODES)}.")

    def __call__(self, image: Image.Image, where: str = "the image") -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise NotAnImageError(f"{where} is a {type(image).__name__}, not an image: is image_column the column that "
                                  "holds the images? Pass --image_column with that column's name.")
        image = to_rgb(image, where)
        size = self.image_size
        if self.resize_mode == "square":
            return to_tensor(image.resize((size, size), Image.BILINEAR))
        short = round(size * 256 / 224)
        w, h = image.size
        scale = short / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((new_w, new_h), Image.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return to_tensor(image.crop((left, top, left + size, top + size)))
