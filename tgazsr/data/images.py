"""The image boundary: every image tgazsr reads is opened, decoded and turned into RGB here.

Every loader (image folder, save_to_disk, parquet, webdataset tar, the Hub, ``tgazsr visualize``)
decodes through :func:`decode_image` (or :func:`open_image_file` for a file on disk) and converts
through :func:`to_rgb`, so the same picture gives the same pixels whatever its file format or mode:

- ``RGB``: as stored.
- ``L`` (8-bit grayscale), ``1`` (bilevel): the gray level in each of the three channels.
- ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grayscale, e.g. a 16-bit PNG) and ``I`` (32-bit
  integer grayscale, holding 16-bit levels): level ``v`` of 0..65535 becomes ``round(v / 257)`` of
  0..255, so a picture saved at 8 and at 16 bits decodes to the same RGB values. (PIL's own
  ``convert("RGB")`` clips these levels at 255: most of the image would turn white.) An ``I``
  level outside 0..65535 is an error naming the image.
- ``F`` (32-bit float grayscale): values within [0, 1] are fractions of white (times 255); values
  within [0, 255] with one above 1 are 8-bit levels (PIL's scale). Negative values, values above
  255, NaN and infinities are an error naming the image: no silent clipping.
- ``P`` (palette, with or without a transparent colour), ``LA``, ``PA``, ``RGBA``, ``La``,
  ``RGBa``: the alpha channel is dropped and each pixel keeps its colour, as PIL's
  ``convert("RGB")`` does, which is what torchvision's image folder loader, open_clip's and
  transformers' CLIP preprocessing do; transparent pixels are not composited on any background.
  An image with opaque alpha therefore decodes exactly like the same image without alpha.
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: PIL's conversion to RGB (a CMYK JPEG: PIL undoes the
  Adobe inversion when it decodes).

An unreadable file (not an image, a truncated or corrupt one: PIL's ``UnidentifiedImageError`` or
``OSError: image file is truncated``) is an :class:`UnreadableImageError` that names the image
(its file, or the dataset and row) and how to fix it. PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES``
is never set: it would accept a truncated file silently, its missing part grey.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

__all__ = ["UnreadableImageError", "decode_image", "open_image_file", "to_rgb", "SKIP_HINT"]

#: How to skip unreadable images on purpose (the two commands name their field the same).
SKIP_HINT = ("Replace or delete the file, or pass --skip_unreadable_images true to skip such images "
             "(they are counted in the report).")

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class UnreadableImageError(DataError):
    """An image that cannot be decoded (not an image, truncated, corrupt); the message names it."""


def _gray_to_rgb(levels: np.ndarray) -> Image.Image:
    gray = Image.fromarray(levels.astype(np.uint8), mode="L")
    return gray.convert("RGB")


def to_rgb(image: Image.Image, where: str = "the image") -> Image.Image:
    """``image`` as an 8-bit RGB image, by the rules of this module's docstring; ``where`` names
    the image in an error (a file, or a dataset and row)."""
    if not isinstance(image, Image.Image):
        raise DataError(f"{where} is a {type(image).__name__}, not an image: is image_column the column of images?")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT or mode == "I":
        levels = np.asarray(image).astype(np.int64)
        if mode == "I" and levels.size and (levels.min() < 0 or levels.max() > 65535):
            raise UnreadableImageError(
                f"{where} is a 32-bit integer image with levels {levels.min()}..{levels.max()}, outside the 16-bit "
                "range 0..65535 that tgazsr reads: convert it to an 8-bit or 16-bit image."
            )
        return _gray_to_rgb((levels * 255 + 32767) // 65535)  # round(v / 257)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not np.isfinite(values).all():
            raise UnreadableImageError(f"{where} is a float image with NaN or infinite values: fix or remove it.")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise UnreadableImageError(
                f"{where} is a float image with values {low:g}..{high:g}, outside both [0, 1] (fractions) and "
                "[0, 255] (8-bit levels): rescale it into one of these ranges."
            )
        scale = 255.0 if high <= 1 else 1.0
        return _gray_to_rgb(np.clip(np.rint(values * scale), 0, 255))
    if mode == "P":
        return image.convert("RGBA").convert("RGB")  # palette colours; a transparent index keeps its colour
    return image.convert("RGB")


def _opened(source) -> Image.Image:
    image = Image.open(source)
    image.load()  # decode now: a truncated or corrupt file fails here, not later
    return image


def open_image_file(path: str, where: str | None = None) -> Image.Image:
    """The image file at ``path``, decoded and converted to RGB (:func:`to_rgb`)."""
    where = where or f"The image file {path}"
    if not os.path.isfile(os.path.expanduser(path)):
        raise UnreadableImageError(f"{where} does not exist: pass the path of an existing image file.")
    try:
        image = _opened(os.path.expanduser(path))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UnreadableImageError(f"{where} cannot be read as an image ({_reason(err)}).") from None
    return to_rgb(_exif_upright(image), where)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _exif_upright(image: Image.Image) -> Image.Image:
    """Turned upright by its EXIF orientation, as ``datasets.Image`` decodes."""
    from PIL import ImageOps

    if image.getexif().get(Image.ExifTags.Base.Orientation) is not None:
        return ImageOps.exif_transpose(image)
    return image


def describe_row(value, source: str, index: int) -> str:
    """How an error names one row's image: its file where the row has one, and the row."""
    path = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
    if path:
        return f"The image {path} (row {index} of {source})"
    return f"The image of row {index} of {source}"


def decode_image(value, source: str, index: int) -> Image.Image:
    """One row's image (a ``datasets.Image`` value: ``{"bytes", "path"}``, a path, or an image),
    decoded as ``datasets.Image`` decodes it and converted to RGB (:func:`to_rgb`); an unreadable
    image is an :class:`UnreadableImageError` naming the file (or ``source`` and ``index``)."""
    where = describe_row(value, source, index)
    if isinstance(value, Image.Image):
        return to_rgb(value, where)
    if value is None or (isinstance(value, dict) and value.get("bytes") is None and not value.get("path")):
        raise UnreadableImageError(f"{where} is empty (no bytes, no path). {SKIP_HINT}")
    try:
        if isinstance(value, dict) and value.get("bytes") is not None:
            image = _opened(io.BytesIO(value["bytes"]))
        else:
            path = value.get("path") if isinstance(value, dict) else value
            if os.path.isfile(path):
                image = _opened(path)
            else:  # a file inside a Hub repository or an archive: datasets knows how to open it
                import datasets

                image = datasets.Image().decode_example({"path": path, "bytes": None})
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UnreadableImageError(f"{where} cannot be read as an image ({_reason(err)}). {SKIP_HINT}") from None
    return to_rgb(_exif_upright(image), where)


def readable(value) -> bool:
    """Whether one row's image decodes (for skipping unreadable images on purpose)."""
    try:
        decode_image(value, "", 0)
    except UnreadableImageError:
        return False
    return True
