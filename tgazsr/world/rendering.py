"""Drawing the world's images: one object on a cluttered background, from a seeded generator.

The background is a low-saturation colour gradient with random lines, rectangles and ellipses
(clutter); saturated colour belongs to the object only. Each colour word covers a broad region
of HSV (``COLOUR_HSV``), sizes are radius ranges with a small gap (12-20% and 24-36% of the
image), shapes are slightly rotated, patterns are stripes, dots or checks in a dark shade of
the object's colour.
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from .spec import ATTRIBUTES, COLOUR_HSV, IMAGE_SIZE, VALUES, ObjectSpec

SUPERSAMPLE = 4  # shape masks are drawn at 4x and box-filtered down (anti-aliasing)


def _polygon(shape: str) -> list[tuple[float, float]] | None:
    """Vertices of a shape of radius about 1 around the origin (None for round shapes)."""

    def ring(n: int, radius: float, start_deg: float) -> list[tuple[float, float]]:
        return [
            (radius * math.cos(math.radians(start_deg + 360 * k / n)), radius * math.sin(math.radians(start_deg + 360 * k / n)))
            for k in range(n)
        ]

    if shape == "square":
        return ring(4, 1.15, 45)
    if shape == "triangle":
        return [(x, y + 0.15) for x, y in ring(3, 1.2, -90)]
    if shape == "hexagon":
        return ring(6, 1.05, 0)
    if shape == "diamond":
        return [(0.0, -1.15), (0.65, 0.0), (0.0, 1.15), (-0.65, 0.0)]
    if shape == "star":
        outer, inner = ring(5, 1.2, -90), ring(5, 0.48, -54)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        a, b = 0.34, 1.05
        return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    return None


def _shape_mask(shape: str, cx: float, cy: float, radius: float, angle: float, size: int) -> np.ndarray:
    """(size, size) float mask in [0, 1] of a shape centred at (cx, cy) in pixels."""
    ss = SUPERSAMPLE
    canvas = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, r = cx * ss, cy * ss, radius * ss
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy = cx + 0.5 * r * math.cos(angle), cy + 0.5 * r * math.sin(angle)
        ri = 0.85 * r
        draw.ellipse([ox - ri, oy - ri, ox + ri, oy + ri], fill=0)
    else:
        cos, sin = math.cos(angle), math.sin(angle)
        points = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in _polygon(shape)]
        draw.polygon(points, fill=255)
    small = canvas.resize((size, size), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _soft_square_wave(u: np.ndarray, period: float) -> np.ndarray:
    """1 on half of each period and 0 on the other half, with a soft edge (anti-aliased)."""
    return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * u / period), 0.0, 1.0)


def _pattern_weight(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) weight in [0, 1] of the dark second colour of a pattern."""
    if pattern == "plain":
        return np.zeros((size, size), np.float32)
    scale = size / 56.0
    period = rng.uniform(5.0, 7.0) * scale
    theta = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u = x * math.cos(theta) + y * math.sin(theta) + rng.uniform(0, period)
    v = -x * math.sin(theta) + y * math.cos(theta) + rng.uniform(0, period)
    if pattern == "striped":
        return _soft_square_wave(u, period)
    if pattern == "checkered":
        return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period) * 2, 0, 1)
    if pattern == "dotted":
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        dist = np.sqrt(du**2 + dv**2)
        return np.clip((0.3 * period - dist) + 0.5, 0.0, 1.0)
    raise ValueError(f"unknown pattern {pattern!r}")


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _dull_colour(rng: np.random.Generator, value: float) -> tuple[int, int, int]:
    rgb = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.25), float(np.clip(value, 0.05, 0.95)))
    return tuple(int(c * 255) for c in rgb)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cluttered, low-saturation background, (size, size, 3) floats in [0, 1]."""
    value = rng.uniform(0.3, 0.8)
    base = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.2), value)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (x * math.cos(theta) + y * math.sin(theta)) * rng.uniform(0.0, 0.35)
    img = np.clip(base[None, None, :] + ramp[..., None], 0, 1)
    canvas = Image.fromarray((img * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(4, 11))):
        colour = _dull_colour(rng, value + rng.uniform(-0.35, 0.35))
        x0, y0, x1, y1 = (rng.uniform(-0.1, 1.1, size=4) * size).tolist()
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=1)
        elif kind == 2:
            draw.ellipse([x0, y0, x0 + (x1 - x0) / 2, y0 + (y1 - y0) / 2], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3], fill=colour)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def object_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour (floats in [0, 1]) of the colour category ``name``."""
    hue, half_width, saturation, value = COLOUR_HSV[name]
    h = ((hue + rng.uniform(-half_width, half_width)) % 360) / 360
    return _hsv_to_rgb(h, rng.uniform(*saturation), rng.uniform(*value))


def render(obj: ObjectSpec, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw ``obj`` on a fresh cluttered background: (size, size, 3) uint8."""
    background = _background(rng, size)
    if obj.size == "small":
        radius = rng.uniform(0.12, 0.2) * size
    else:
        radius = rng.uniform(0.24, 0.36) * size
    margin = radius * 1.2 + 1
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(-0.26, 0.26) if obj.shape != "crescent" else rng.uniform(0, 2 * np.pi)
    mask = _shape_mask(obj.shape, cx, cy, radius, angle, size)[..., None]

    colour = object_colour(obj.colour, rng)
    dark = colour * 0.3
    weight = _pattern_weight(obj.pattern, size, rng)[..., None]
    fill = colour[None, None, :] * (1 - weight) + dark[None, None, :] * weight

    image = background * (1 - mask) + fill * mask
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def image_rng(seed: int, part: str, index: int) -> np.random.Generator:
    """One generator per (world seed, part, image index): parts rebuild independently."""
    part_key = int.from_bytes(hashlib.sha256(part.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, part_key, index])


def sample_object(rng: np.random.Generator, **fixed: str) -> ObjectSpec:
    """A uniformly random object; attributes given in ``fixed`` are kept as given."""
    values = {a: fixed.get(a) or VALUES[a][int(rng.integers(len(VALUES[a])))] for a in ATTRIBUTES}
    return ObjectSpec(**values)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding with fixed settings (same array, same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
