"""The offline world: generated image-text data and a tiny CLIP pretrained on it.

Nothing in tgazsr's tests, quickstart or CI may download weights or datasets, yet every
method needs a *pretrained* CLIP with real zero-shot skill and real adversarial fragility,
a many-class training set and several zero-shot benchmarks. This module builds all of that
on a CPU in a few minutes, deterministically from a seed, and caches it on disk in the same
formats as the real thing, so the rest of the package cannot tell the difference.

The world
---------
Every image shows one object on a cluttered background. An object has four attributes:

- shape:   circle, square, triangle, star, cross, diamond, hexagon, crescent
- colour:  red, orange, yellow, green, cyan, blue, purple, pink
- pattern: plain, striped, dotted, checkered (stripes, dots or checks in a dark shade
           of the object's colour)
- size:    small, large

The background is a low-saturation colour gradient with random lines, rectangles and
ellipses (clutter); saturated colour belongs to the object only. Each colour word covers a
broad region of HSV (dark reds, pale greens...; see ``COLOUR_HSV``), sizes are radius
ranges with a small gap (12-20% and 24-36% of the image), shapes are slightly rotated.
Images are 56 x 56 pixels and the vision tower uses 8 x 8 patches, so the token grid is
7 x 7, the same as ViT-B/32 at 224 pixels: the world is a quarter-scale copy of the real
setting (224 / 4 = 56, 32 / 4 = 8), and text-guided attention maps have the real shape.

What is built (under ``root``, see ``build_world``):

- ``pretrain/``: image-caption pairs (``image``, ``caption`` and the four attribute
  columns). Captions name a random subset of the attributes inside a random frame
  ("a photo of a {}.", "a drawing of a {}.", "something coloured {}.", ...).
- ``train/``: the stand-in for Tiny-ImageNet: 48 classes named "<colour> <shape>"
  (all 64 colour-shape pairs except 16 held-out pairs), training prompt
  "This is a photo of a {}".
- ``eval/<name>/``: zero-shot benchmarks, each with a ``tgazsr_eval.json`` holding its
  class names and prompts (see ``EVAL_SETS``):

  ============  =======================================  =========  ==========
  name          prompt                                   classes    held out
  ============  =======================================  =========  ==========
  objects       "This is a photo of a {}"                48 pairs   no (the Tiny-ImageNet test split)
  shapes        "a drawing of a {}."                     8 shapes   yes
  colours       "something coloured {}."                 8 colours  yes
  textures      "a surface with a {} texture."           4 patterns yes (the DTD analogue)
  novel_pairs   "a photo of a {}."                       16 pairs   yes (pairs never in ``train/``)
  sizes         two fixed prompts, one per class         2 sizes    yes (the PCAM analogue)
  ============  =======================================  =========  ==========

  The held-out sets classify with vocabularies and prompts that are never labels of
  ``train/``; their words do occur in the pretraining captions, as "photo of a dog"
  occurs in CLIP's web data.
- ``model/``: a ``CLIPModel`` (safetensors) with its tokenizer and image processor, saved
  with ``CLIPProcessor`` so that ``CLIPModel.from_pretrained``, ``AutoTokenizer`` and
  ``pipeline("zero-shot-image-classification", model=...)`` all work on the directory.

Every dataset has ``image`` (a ``datasets.Image`` feature, PNG) and ``label`` (a
``datasets.ClassLabel`` with the class names) and loads with ``datasets.load_from_disk``.

The model
---------
A ViT CLIP (0.6 M parameters): vision 56 px, patch 8, width 96, 4 layers; text width 64,
2 layers, causal, 77 positions; projection 64 (``WorldSpec`` holds every size). The
tokenizer is a character-level ``CLIPTokenizer``: the 256 byte-level symbols, their
``</w>`` (end of word) forms and ``<|startoftext|>`` (512), ``<|endoftext|>`` (513), with
no merges (transformers 5 takes them as ``vocab=``/``merges=``; the old ``vocab_file=``
keyword is silently ignored there). The text config carries these real ids
(bos 512, eos = pad 513): transformers pools the text tower at ``argmax(input_ids)`` only
for the legacy ``eos_token_id == 2``, and at the first EOS token otherwise, which is the
right place here.

Pretraining is CLIP's symmetric contrastive loss over the batch, with one change: since a
caption names only some attributes, several images of a batch can fit it ("a drawing of a
star." fits every star). The targets of each row are therefore spread uniformly over every
pair the caption truly describes (multi-positive contrastive learning) instead of being one
hot; with one-hot targets those true matches would be pushed apart as negatives.
A second, "attribute-contrast" term (``_attribute_contrast``) sets each image against one
caption per value of each attribute (hard negatives that differ in that attribute only) and
each such caption against a paraphrase of it; without it the text tower starts out unable to
tell "a drawing of a star." from "a drawing of a cross.", and shapes are never learned.

Pretraining runs 600 steps of batch 256 over 25,600 images (6 epochs, a fresh caption per
image and epoch) with AdamW and a cosine schedule: 245 s of wall time on 2 threads of an
otherwise idle 2-core machine (481 s of CPU time), about 470 s on one thread. The number of
threads follows the idle cores (``default_threads``): torch's two intra-op threads wait for
each other at every operation, so when a neighbour holds one core they run many times slower
than one thread does.

The attack budget ``eps``
-------------------------
The real benchmark attacks at eps = 1/255 on 224 px images, where CLIP ViT-B/32 falls from
about 64% to about 5% (robust / clean about 0.08), and adversarial fine-tuning at the same
eps recovers 30-45%. An L-inf budget's power grows with the number of pixels it acts on
(for a linear score the worst change is eps times the L1 norm of the gradient), and our
56 px images have 16 times fewer pixels than 224 px ones, so 1/255 is a much weaker attack
here. Worse, two of the held-out vocabularies (colour, size) are read from large uniform
regions that small budgets barely move. The world's budget is therefore ``WORLD_EPS`` =
8/255, the classic budget of small-image robustness: on the default world (seed 0) PGD-20
at 8/255 brings the pretrained model from 77.0% clean to 14.2% robust zero-shot accuracy
averaged over the held-out sets (shapes 0.0, textures 8.0, novel pairs 3.5; colours 33.5 and
sizes 26.2 keep some robustness), below a third of clean as in the real setting, while
PGD-10 at 4/255 and 6/255 leaves 41.4% and 27.3% standing. TGA-ZSR at this eps wins a good part back (the
quickstart prints the comparison). ``world_report`` measures this; run
``python -m tgazsr.synthetic`` to print the numbers for a given build.

Determinism
-----------
Each image is drawn from its own ``numpy`` generator seeded by (world seed, part, index),
so a part can be rebuilt alone and comes out byte-identical; pretraining is seeded by
``torch.manual_seed`` (on CPU the result may still vary in the last bits with the number of
threads).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

WORLD_VERSION = "v1"
#: The world's attack budget, in 1/255 units (see the module docstring for the reason).
WORLD_EPS = 8.0
IMAGE_SIZE = 56
PATCH_SIZE = 8

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "crescent")
#: Colour categories as ranges in HSV: hue centre and half-width (degrees), saturation
#: range, value range. The ranges are broad (dark reds, pale greens...) as real colour
#: words are; neighbouring categories leave a gap of 10-30 degrees of hue.
COLOUR_HSV = {
    "red": (0, 10, (0.6, 1.0), (0.55, 0.95)),
    "orange": (28, 7, (0.7, 1.0), (0.7, 1.0)),
    "yellow": (54, 6, (0.65, 1.0), (0.75, 1.0)),
    "green": (120, 22, (0.55, 1.0), (0.45, 0.9)),
    "cyan": (185, 10, (0.6, 1.0), (0.65, 1.0)),
    "blue": (225, 12, (0.6, 1.0), (0.55, 1.0)),
    "purple": (278, 14, (0.5, 0.9), (0.45, 0.85)),
    "pink": (330, 10, (0.3, 0.6), (0.85, 1.0)),
}
COLOURS = tuple(COLOUR_HSV)
PATTERNS = ("plain", "striped", "dotted", "checkered")
SIZES = ("small", "large")
ATTRIBUTES = ("shape", "colour", "pattern", "size")
VALUES = {"shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS, "size": SIZES}

#: The training prompt of the real recipe (no period), used for ``train/`` and ``objects``.
TRAIN_TEMPLATE = "This is a photo of a {}"


def _held_out_pairs() -> tuple[tuple[str, str], ...]:
    """16 colour-shape pairs kept out of ``train/``: each colour and each shape twice."""
    colours = COLOURS
    pairs = []
    for i, colour in enumerate(colours):
        for k in (0, 1):
            pairs.append((colour, SHAPES[(3 * i + k) % len(SHAPES)]))
    return tuple(pairs)


HELD_OUT_PAIRS = _held_out_pairs()
TRAIN_PAIRS = tuple((c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT_PAIRS)


def pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]} {pair[1]}"


@dataclass(frozen=True)
class ObjectSpec:
    """The four attributes of the one object in an image."""

    shape: str
    colour: str
    pattern: str
    size: str

    def attributes(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------

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


def _rng(seed: int, part: str, index: int) -> np.random.Generator:
    """One generator per (world seed, part, image index): parts rebuild independently."""
    part_key = int.from_bytes(hashlib.sha256(part.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, part_key, index])


def sample_object(rng: np.random.Generator, **fixed: str) -> ObjectSpec:
    """A uniformly random object; attributes given in ``fixed`` are kept as given."""
    values = {a: fixed.get(a) or VALUES[a][int(rng.integers(len(VALUES[a])))] for a in ATTRIBUTES}
    return ObjectSpec(**values)


# ----------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------

#: Frames for a noun phrase made of some attributes ("large red striped star").
CAPTION_FRAMES = (
    "a photo of a {}.",
    "this is a photo of a {}",
    "a drawing of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {} on a cluttered background.",
    "there is a {} here.",
    "a rendering of a {}.",
    "a close-up photo of a {}.",
    "{}",
)
#: Phrasings that name one attribute only.
SINGLE_ATTRIBUTE_FRAMES = {
    "shape": ("a drawing of a {}.", "the shape is a {}.", "a {}."),
    "colour": ("something coloured {}.", "the object is {}.", "a {} thing."),
    "pattern": ("a surface with a {} texture.", "a {} pattern.", "the texture is {}."),
    "size": ("a picture of a {} object.", "the object is {}."),
}
#: Probability that a phrase names each attribute.
MENTION_PROBABILITY = {"size": 0.5, "colour": 0.8, "pattern": 0.5, "shape": 0.8}


def caption(obj: ObjectSpec, rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """A random caption of ``obj`` and the attributes it names (the others are unsaid)."""
    attrs = obj.attributes()
    if rng.uniform() < 0.3:
        name = ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]
        frames = SINGLE_ATTRIBUTE_FRAMES[name]
        return frames[int(rng.integers(len(frames)))].format(attrs[name]), {name: attrs[name]}
    named = {a: attrs[a] for a in ("size", "colour", "pattern", "shape") if rng.uniform() < MENTION_PROBABILITY[a]}
    if not named:
        a = ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]
        named[a] = attrs[a]
    words = [named[a] for a in ("size", "colour", "pattern") if a in named]
    words.append(named.get("shape", ("object", "shape", "thing")[int(rng.integers(3))]))
    frame = CAPTION_FRAMES[int(rng.integers(len(CAPTION_FRAMES)))]
    return frame.format(" ".join(words)), named


# ----------------------------------------------------------------------------------------
# The datasets
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    """A zero-shot benchmark of the world.

    ``label_of`` names the attribute (or "pair" for colour-shape pairs) that is the label;
    ``pairs`` restricts the objects to these colour-shape pairs. ``prompt_templates`` hold
    ``{}``; ``prompts`` (one per class, no ``{}``) replace them for fixed-prompt sets.
    """

    name: str
    class_names: tuple[str, ...]
    label_of: str
    prompt_templates: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    held_out: bool = True
    description: str = ""

    def templates_for_classifier(self) -> list[str]:
        """What ``ZeroShotCLIP.class_embeddings(class_names, templates, tokenizer)`` takes."""
        return list(self.prompts or self.prompt_templates)

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "prompt_template": self.prompt_templates[0] if self.prompt_templates else None,
            "prompt_templates": list(self.prompt_templates),
            "prompts": list(self.prompts),
            "classifier_templates": self.templates_for_classifier(),
            "held_out": self.held_out,
            "label_of": self.label_of,
            "description": self.description,
            "world_version": WORLD_VERSION,
        }


EVAL_SETS: dict[str, EvalSet] = {
    s.name: s
    for s in (
        EvalSet(
            "objects",
            tuple(pair_name(p) for p in TRAIN_PAIRS),
            "pair",
            prompt_templates=(TRAIN_TEMPLATE,),
            pairs=TRAIN_PAIRS,
            held_out=False,
            description="Test split of the training vocabulary (the Tiny-ImageNet analogue).",
        ),
        EvalSet(
            "shapes",
            SHAPES,
            "shape",
            prompt_templates=("a drawing of a {}.",),
            description="Shape only, any colour, pattern and size.",
        ),
        EvalSet(
            "colours",
            COLOURS,
            "colour",
            prompt_templates=("something coloured {}.",),
            description="Colour only, any shape, pattern and size.",
        ),
        EvalSet(
            "textures",
            PATTERNS,
            "pattern",
            prompt_templates=("a surface with a {} texture.",),
            description="Surface pattern only (the DTD analogue).",
        ),
        EvalSet(
            "novel_pairs",
            tuple(pair_name(p) for p in HELD_OUT_PAIRS),
            "pair",
            prompt_templates=("a photo of a {}.",),
            pairs=HELD_OUT_PAIRS,
            description="Colour-shape pairs that never occur in the training set; each colour and shape is in two classes.",
        ),
        EvalSet(
            "sizes",
            SIZES,
            "size",
            prompts=("a picture of a small object.", "a picture of a large object."),
            description="Object size, two fixed prompts (the PCAM analogue).",
        ),
    )
}
HELD_OUT_SETS = tuple(name for name, s in EVAL_SETS.items() if s.held_out)
EVAL_META_FILE = "tgazsr_eval.json"


def _object_for_label(spec_label: int, eval_set: EvalSet | None, pairs: Sequence[tuple[str, str]], rng) -> ObjectSpec:
    if eval_set is None or eval_set.label_of == "pair":
        colour, shape = pairs[spec_label]
        return sample_object(rng, colour=colour, shape=shape)
    return sample_object(rng, **{eval_set.label_of: eval_set.class_names[spec_label]})


def generate_labelled(
    part: str, n: int, seed: int, num_classes: int, make_object, size: int = IMAGE_SIZE
) -> Iterator[tuple[np.ndarray, int, ObjectSpec]]:
    """Class-balanced images: label ``i % num_classes`` in a seeded random order."""
    order = np.random.default_rng([seed, 7]).permutation(n) if n > 0 else np.zeros(0, int)
    labels = np.arange(n) % num_classes
    labels = labels[np.argsort(order, kind="stable")]
    for index in range(n):
        rng = _rng(seed, part, index)
        label = int(labels[index])
        obj = make_object(label, rng)
        yield render(obj, rng, size), label, obj


def generate_pretraining(
    n: int, seed: int, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, list[ObjectSpec], list[str]]:
    """``n`` random objects (every colour-shape pair), their images and one caption each."""
    images = np.zeros((n, size, size, 3), np.uint8)
    objects, captions = [], []
    for index in _progress(range(n), "rendering pretraining images"):
        rng = _rng(seed, "pretrain", index)
        obj = sample_object(rng)
        images[index] = render(obj, rng, size)
        objects.append(obj)
        captions.append(caption(obj, rng)[0])
    return images, objects, captions


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding with fixed settings (same array, same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _progress(iterable, desc: str):
    try:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, leave=False, disable=not logger.isEnabledFor(logging.INFO))
    except ImportError:  # pragma: no cover
        return iterable


def _labelled_dataset(images: list[bytes], labels: list[int], class_names: Sequence[str]):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names))})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in images], "label": labels}, features=features
    )


def build_train_set(n_per_class: int, seed: int, size: int = IMAGE_SIZE):
    """The Tiny-ImageNet analogue: 48 colour-shape classes (a ``datasets.Dataset``)."""
    n = n_per_class * len(TRAIN_PAIRS)
    make = lambda label, rng: _object_for_label(label, None, TRAIN_PAIRS, rng)  # noqa: E731
    images, labels = [], []
    for image, label, _ in _progress(generate_labelled("train", n, seed, len(TRAIN_PAIRS), make, size), "train set"):
        images.append(png_bytes(image))
        labels.append(label)
    return _labelled_dataset(images, labels, [pair_name(p) for p in TRAIN_PAIRS])


def build_eval_set(name: str, n: int, seed: int, size: int = IMAGE_SIZE):
    """One zero-shot benchmark (a ``datasets.Dataset``)."""
    eval_set = EVAL_SETS[name]
    make = lambda label, rng: _object_for_label(label, eval_set, eval_set.pairs, rng)  # noqa: E731
    images, labels = [], []
    for image, label, _ in _progress(
        generate_labelled(f"eval/{name}", n, seed, len(eval_set.class_names), make, size), f"eval {name}"
    ):
        images.append(png_bytes(image))
        labels.append(label)
    return _labelled_dataset(images, labels, eval_set.class_names)


def build_pretraining_set(images: np.ndarray, objects: Sequence[ObjectSpec], captions: Sequence[str]):
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "caption": datasets.Value("string")}
        | {a: datasets.Value("string") for a in ATTRIBUTES}
    )
    columns = {
        "image": [{"bytes": png_bytes(im), "path": None} for im in _progress(images, "encoding pretraining images")],
        "caption": list(captions),
    }
    for a in ATTRIBUTES:
        columns[a] = [getattr(o, a) for o in objects]
    return datasets.Dataset.from_dict(columns, features=features)


# ----------------------------------------------------------------------------------------
# Tokenizer, image processor, model
# ----------------------------------------------------------------------------------------

BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
MAX_TEXT_LENGTH = 77


def _byte_symbols() -> list[str]:
    """The 256 printable symbols that byte-level BPE uses for the bytes 0..255, in byte order."""
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # older/newer layouts: rebuild the standard table
        bytes_to_unicode = None
    if bytes_to_unicode is not None:
        table = bytes_to_unicode()
        return [table[b] for b in range(256)]
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def character_vocab() -> dict[str, int]:
    """256 byte symbols (ids 0..255), their ``</w>`` forms (256..511), BOS 512, EOS 513."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab[BOS_TOKEN] = 512
    vocab[EOS_TOKEN] = 513
    return vocab


def make_tokenizer():
    """A character-level ``CLIPTokenizer`` (byte-level symbols, no merges), built offline.

    In transformers 5 the constructor takes the vocabulary and merges themselves
    (``vocab=``, ``merges=``); the old ``vocab_file=``/``merges_file=`` keywords are
    silently ignored there, which would leave a 3-token vocabulary.
    """
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(vocab=character_vocab(), merges=[], model_max_length=MAX_TEXT_LENGTH)
    assert len(tokenizer) == 514 and tokenizer.eos_token_id == 513 and tokenizer.bos_token_id == 512
    return tokenizer


def make_image_processor(size: int = IMAGE_SIZE):
    """``CLIPImageProcessor`` for the world's images: resize/crop to ``size``, CLIP mean/std."""
    from transformers import CLIPImageProcessor

    from tgazsr.modeling import CLIP_MEAN, CLIP_STD

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": size},
        resample=Image.BICUBIC,
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


@dataclass
class WorldSpec:
    """Sizes of the world, of the model and of its pretraining."""

    image_size: int = IMAGE_SIZE
    patch_size: int = PATCH_SIZE
    n_pretrain: int = 25600
    n_train_per_class: int = 100
    n_eval: int = 400
    # model
    vision_width: int = 96
    vision_layers: int = 4
    text_width: int = 64
    text_layers: int = 2
    heads: int = 4
    projection_dim: int = 64
    # pretraining
    epochs: int = 6
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    multi_positive: bool = True
    attribute_loss_weight: float = 1.0
    threads: int | None = None  # None: the idle cores (see default_threads)
    # robustness check
    eps: float = WORLD_EPS
    report_steps: int = 20

    @classmethod
    def reduced(cls) -> "WorldSpec":
        """The unit-test world: a few hundred images, a tiny model, seconds of pretraining."""
        return cls(
            n_pretrain=768,
            n_train_per_class=2,
            n_eval=48,
            vision_width=32,
            vision_layers=2,
            text_width=32,
            text_layers=2,
            heads=2,
            projection_dim=32,
            epochs=2,
            batch_size=128,
            lr=2e-3,
            report_steps=3,
            threads=1,  # tiny matrices: one thread is as fast and immune to busy neighbours
        )

    def fingerprint(self) -> str:
        """Identifies what gets built: the attack budget and the report do not change the world."""
        built = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("eps", "report_steps", "threads")}
        payload = json.dumps(built | {"version": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_clip_config(spec: WorldSpec):
    from transformers import CLIPConfig

    tokenizer_ids = {"bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513}
    return CLIPConfig(
        text_config=dict(
            vocab_size=514,
            hidden_size=spec.text_width,
            intermediate_size=4 * spec.text_width,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.heads,
            max_position_embeddings=MAX_TEXT_LENGTH,
            projection_dim=spec.projection_dim,
            **tokenizer_ids,
        ),
        vision_config=dict(
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            hidden_size=spec.vision_width,
            intermediate_size=4 * spec.vision_width,
            num_hidden_layers=spec.vision_layers,
            num_attention_heads=spec.heads,
            projection_dim=spec.projection_dim,
        ),
        projection_dim=spec.projection_dim,
        **tokenizer_ids,
    )


def default_threads() -> int:
    """Cores not busy with other processes (by the 1-minute load average), at least one.

    Torch's intra-op threads wait for each other at every operation; when another process
    holds one of two cores, two threads run many times slower than one (measured: 20x on
    the reduced world), so only idle cores are used.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on POSIX
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextlib.contextmanager
def _torch_threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n or default_threads()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _attribute_codes(objects: Sequence[ObjectSpec]) -> np.ndarray:
    """(N, 4) integer codes of the attributes of each object."""
    return np.array([[VALUES[a].index(getattr(o, a)) for a in ATTRIBUTES] for o in objects], np.int64)


def _caption_codes(named: dict[str, str]) -> list[int]:
    """Attribute codes of a caption, -1 where the caption does not say."""
    return [VALUES[a].index(named[a]) if a in named else -1 for a in ATTRIBUTES]


def contrastive_loss(logits, image_codes=None, caption_codes=None):
    """CLIP's symmetric cross-entropy over a batch; multi-positive when codes are given.

    ``logits[i, j]`` scores image i against caption j. With ``image_codes`` (B, A) and
    ``caption_codes`` (B, A; -1 = not said), caption j is a positive of image i whenever
    every attribute the caption names matches the image, and each row's target is uniform
    over its positives (the diagonal always is one).
    """
    import torch
    import torch.nn.functional as F

    if image_codes is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    said = caption_codes[None, :, :] >= 0
    agree = caption_codes[None, :, :] == image_codes[:, None, :]
    positive = (agree | ~said).all(-1).float()  # (images, captions)
    image_to_text = -(positive / positive.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    positive_t = positive.t()
    text_to_image = -(positive_t / positive_t.sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def attribute_prompts(rng: np.random.Generator) -> dict[str, list[str]]:
    """For each attribute, one caption per value in one randomly chosen frame.

    These are the candidate captions of the attribute-contrast term of pretraining.
    """
    prompts = {}
    for a in ATTRIBUTES:
        if a == "shape":
            phrases = {v: v for v in VALUES[a]}
        else:
            noun = ("object", "shape", "thing")[int(rng.integers(3))]
            phrases = {v: f"{v} {noun}" for v in VALUES[a]}
        if rng.uniform() < 0.5:
            frames = SINGLE_ATTRIBUTE_FRAMES[a]
            frame = frames[int(rng.integers(len(frames)))]
            prompts[a] = [frame.format(v) for v in VALUES[a]]
        else:
            frame = CAPTION_FRAMES[int(rng.integers(len(CAPTION_FRAMES)))]
            prompts[a] = [frame.format(phrases[v]) for v in VALUES[a]]
    return prompts


def _attribute_contrast(model, image_embeds, image_codes, prompts, paraphrases, tokenizer):
    """Two contrastive terms against curated captions, averaged over the four attributes.

    - image -> caption: each image against one caption per value of the attribute (the
      captions differ only in that attribute, so they are hard negatives of each other);
    - caption -> paraphrase: each of those captions against the same values in another
      frame (``paraphrases``), a text-only term that makes the text tower tell the values
      apart from the first steps on. Without it the freshly initialized text tower gives
      nearly the same embedding to "a drawing of a star." and "a drawing of a cross.", the
      image tower then gets no signal to learn shapes, and neither side ever starts.

    ``image_embeds`` are normalized; the captions are encoded here, with gradients.
    """
    import torch
    import torch.nn.functional as F

    texts = [t for group in (prompts, paraphrases) for a in ATTRIBUTES for t in group[a]]
    tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    text = F.normalize(text if isinstance(text, torch.Tensor) else text.pooler_output, dim=-1)
    half = len(texts) // 2
    first, second = text[:half], text[half:]
    scale = model.logit_scale.exp()
    loss, start = 0.0, 0
    for k, a in enumerate(ATTRIBUTES):
        n = len(VALUES[a])
        block = slice(start, start + n)
        loss = loss + F.cross_entropy(scale * image_embeds @ first[block].t(), image_codes[:, k])
        target = torch.arange(n)
        text_logits = scale * first[block] @ second[block].t()
        loss = loss + (F.cross_entropy(text_logits, target) + F.cross_entropy(text_logits.t(), target)) / 2
        start += n
    return loss / len(ATTRIBUTES)


def pretrain_clip(
    images: np.ndarray, objects: Sequence[ObjectSpec], spec: WorldSpec, seed: int = 0, tokenizer=None
):
    """Contrastive pretraining of a fresh CLIP on the world's images.

    Every epoch draws a new caption for every image (the seed fixes which), so the model sees
    many phrasings of each object. Returns ``(model, info)``, ``info`` holding the
    wall time of the optimization loop alone and the last losses.
    """
    import torch
    from transformers import CLIPModel

    from tgazsr.modeling import CLIP_MEAN, CLIP_STD

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    model = CLIPModel(make_clip_config(spec))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.98),
    )
    n = len(images)
    steps_per_epoch = max(1, n // spec.batch_size)
    total = steps_per_epoch * spec.epochs
    warmup = max(1, int(spec.warmup_fraction * total))
    schedule = lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, S, S)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    image_codes = torch.from_numpy(_attribute_codes(objects))
    max_logit_scale = math.log(100.0)
    losses: list[float] = []

    with _torch_threads(spec.threads):
        threads = torch.get_num_threads()
        logger.info("pretraining on %d thread(s)", threads)
        start, cpu_start = time.perf_counter(), time.process_time()
        bar = _progress(range(total), "pretraining CLIP")
        step_iter = iter(bar)
        for epoch in range(spec.epochs):
            order_rng = np.random.default_rng([seed, 11, epoch])
            order = order_rng.permutation(n)
            caption_rng = np.random.default_rng([seed, 13, epoch])
            for b in range(steps_per_epoch):
                next(step_iter, None)
                idx = order[b * spec.batch_size : (b + 1) * spec.batch_size]
                texts, codes = [], []
                for i in idx:
                    text, named = caption(objects[i], caption_rng)
                    texts.append(text)
                    codes.append(_caption_codes(named))
                tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                x = pixels[torch.from_numpy(idx)].float() / 255.0
                flip = torch.from_numpy(order_rng.random(len(idx)) < 0.5)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                out = model(
                    input_ids=tokens["input_ids"],
                    attention_mask=tokens["attention_mask"],
                    pixel_values=(x - mean) / std,
                )
                batch_codes = image_codes[torch.from_numpy(idx)]
                if spec.multi_positive:
                    loss = contrastive_loss(out.logits_per_image, batch_codes, torch.tensor(codes))
                else:
                    loss = contrastive_loss(out.logits_per_image)
                if spec.attribute_loss_weight > 0:
                    loss = loss + spec.attribute_loss_weight * _attribute_contrast(
                        model,
                        out.image_embeds,
                        batch_codes,
                        attribute_prompts(caption_rng),
                        attribute_prompts(caption_rng),
                        tokenizer,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, max_logit_scale)
                losses.append(loss.item())
                if hasattr(bar, "set_postfix") and len(losses) % 10 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        if hasattr(bar, "close"):
            bar.close()
    model.eval()
    info = {
        "pretrain_seconds": seconds,
        "pretrain_cpu_seconds": cpu_seconds,
        "steps": total,
        "threads": threads,
        "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "logit_scale": float(model.logit_scale.exp().item()),
    }
    logger.info("pretrained CLIP: %d steps in %.1f s, loss %.3f", total, seconds, info["final_loss"])
    return model, info


def save_model(model, directory: str | os.PathLike, spec: WorldSpec, tokenizer=None) -> None:
    """A plain ``CLIPModel`` directory: safetensors weights, tokenizer, image processor."""
    from transformers import CLIPProcessor

    tokenizer = tokenizer or make_tokenizer()
    model.save_pretrained(directory, safe_serialization=True)
    CLIPProcessor(image_processor=make_image_processor(spec.image_size), tokenizer=tokenizer).save_pretrained(directory)


# ----------------------------------------------------------------------------------------
# Building and caching
# ----------------------------------------------------------------------------------------

COMPLETE_MARKER = "WORLD_COMPLETE.json"


@dataclass
class WorldPaths:
    """Where a built world lives. ``eps`` is the world's attack budget in 1/255 units."""

    root: str
    model: str
    train: str
    pretrain: str
    eval: dict[str, str] = field(default_factory=dict)
    eps: float = WORLD_EPS
    image_size: int = IMAGE_SIZE
    held_out: tuple[str, ...] = HELD_OUT_SETS

    @classmethod
    def under(cls, root: str | os.PathLike, spec: WorldSpec) -> "WorldPaths":
        root = str(root)
        return cls(
            root=root,
            model=os.path.join(root, "model"),
            train=os.path.join(root, "train"),
            pretrain=os.path.join(root, "pretrain"),
            eval={name: os.path.join(root, "eval", name) for name in EVAL_SETS},
            eps=spec.eps,
            image_size=spec.image_size,
        )


def default_root(seed: int = 0, small: bool = False) -> str:
    """``$TGAZSR_HOME`` (or ``$XDG_CACHE_HOME/tgazsr``, ``~/.cache/tgazsr``) / world-<version>-seed<seed>[-small]."""
    base = os.environ.get("TGAZSR_HOME")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "tgazsr")
    return os.path.join(base, f"world-{WORLD_VERSION}-seed{seed}" + ("-small" if small else ""))


def load_eval_metadata(path: str | os.PathLike) -> dict:
    """The ``tgazsr_eval.json`` of an evaluation set directory."""
    with open(os.path.join(path, EVAL_META_FILE)) as f:
        return json.load(f)


@contextlib.contextmanager
def _file_lock(path: str):
    """An exclusive lock on ``path`` (POSIX ``flock``; a no-op where that is missing)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _put_atomically(final: str, write) -> None:
    """Let ``write(tmp_dir)`` fill a temporary directory beside ``final``, then rename it."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(final)}-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the world is a shared cache
    try:
        write(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _is_complete(paths: WorldPaths, spec: WorldSpec) -> bool:
    marker = os.path.join(paths.root, COMPLETE_MARKER)
    if not os.path.exists(marker):
        return False
    try:
        with open(marker) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    needed = [paths.model, paths.train, paths.pretrain, *paths.eval.values()]
    return info.get("fingerprint") == spec.fingerprint() and all(os.path.isdir(p) for p in needed)


def build_world(
    root: str | os.PathLike | None = None,
    seed: int = 0,
    small: bool = False,
    force: bool = False,
    spec: WorldSpec | None = None,
) -> WorldPaths:
    """Build (or reuse) the offline world and return where its parts are.

    ``root`` defaults to ``default_root(seed, small)``. Parts already on disk are reused
    (each part is written to a temporary directory and renamed into place, so a part that
    exists is whole); a completion marker is written last. A file lock beside the root keeps
    two processes from building the same world at once. ``force`` rebuilds everything.
    ``small`` builds the reduced unit-test world (seconds).
    """
    spec = spec or (WorldSpec.reduced() if small else WorldSpec())
    root = os.path.abspath(str(root) if root is not None else default_root(seed, small))
    paths = WorldPaths.under(root, spec)
    with _file_lock(root.rstrip(os.sep) + ".lock"):
        if force and os.path.exists(root):
            logger.info("removing %s (force)", root)
            shutil.rmtree(root)
        if _is_complete(paths, spec):
            logger.info("reusing the world at %s", root)
            return paths
        marker = os.path.join(root, COMPLETE_MARKER)
        if os.path.exists(marker):  # built from another spec: start again
            logger.info("world at %s was built with another spec; rebuilding", root)
            shutil.rmtree(root)
        os.makedirs(root, exist_ok=True)
        info: dict = {"fingerprint": spec.fingerprint(), "version": WORLD_VERSION, "seed": seed, "spec": dataclasses.asdict(spec)}

        if not os.path.isdir(paths.train):
            logger.info("building the training set")
            ds = build_train_set(spec.n_train_per_class, seed, spec.image_size)
            _put_atomically(paths.train, ds.save_to_disk)
        for name, path in paths.eval.items():
            if os.path.isdir(path):
                continue
            logger.info("building the evaluation set %s", name)
            ds = build_eval_set(name, spec.n_eval, seed, spec.image_size)

            def write(tmp, ds=ds, name=name):
                ds.save_to_disk(tmp)
                with open(os.path.join(tmp, EVAL_META_FILE), "w") as f:
                    json.dump(EVAL_SETS[name].metadata(), f, indent=2)

            _put_atomically(path, write)

        need_pretrain = not os.path.isdir(paths.pretrain)
        need_model = not os.path.isdir(paths.model)
        if need_pretrain or need_model:
            images, objects, captions = generate_pretraining(spec.n_pretrain, seed, spec.image_size)
            if need_pretrain:
                ds = build_pretraining_set(images, objects, captions)
                _put_atomically(paths.pretrain, ds.save_to_disk)
            if need_model:
                tokenizer = make_tokenizer()
                model, train_info = pretrain_clip(images, objects, spec, seed=seed, tokenizer=tokenizer)
                info["pretraining"] = train_info

                def write_model(tmp):
                    save_model(model, tmp, spec, tokenizer)
                    with open(os.path.join(tmp, "pretraining.json"), "w") as f:
                        json.dump(train_info, f, indent=2)

                _put_atomically(paths.model, write_model)
        with open(marker + ".tmp", "w") as f:
            json.dump(info, f, indent=2)
        os.replace(marker + ".tmp", marker)
    return paths


# ----------------------------------------------------------------------------------------
# A minimal zero-shot / PGD check
# ----------------------------------------------------------------------------------------


def load_images(path: str | os.PathLike, limit: int | None = None):
    """``(pixels in [0,1] as (N,3,H,W) float tensor, labels)`` of a world dataset."""
    import datasets
    import torch

    ds = datasets.load_from_disk(str(path))
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    arrays = np.stack([np.asarray(im.convert("RGB")) for im in ds["image"]])
    pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    return pixels, torch.tensor(ds["label"])


def pgd_linf(classify, pixels, labels, eps: float, steps: int, step_size: float | None = None, seed: int = 0):
    """PGD L-inf with a uniform random start (cross-entropy, sign steps, projection)."""
    import torch
    import torch.nn.functional as F

    step_size = eps / 4 if step_size is None else step_size
    generator = torch.Generator().manual_seed(seed)
    delta = (torch.rand(pixels.shape, generator=generator) * 2 - 1) * eps
    delta = ((pixels + delta).clamp(0, 1) - pixels).requires_grad_(True)
    for _ in range(steps):
        loss = F.cross_entropy(classify(pixels + delta), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += step_size * grad.sign()
            delta.clamp_(-eps, eps)
            delta.copy_((pixels + delta).clamp(0, 1) - pixels)
    return (pixels + delta).detach()


def world_report(
    paths: WorldPaths | str,
    eps: float | None = None,
    steps: int | None = None,
    limit: int | None = None,
    batch_size: int = 200,
    threads: int | None = None,
) -> dict:
    """Clean and PGD-robust zero-shot accuracy (%) of the world's model on each eval set.

    ``eps`` is in 1/255 units (default: the world's), PGD uses ``steps`` steps of eps/4
    with a random start. Returns ``{"eps":, "steps":, "sets": {name: {"clean":, "robust":,
    "held_out":}}, "held_out_mean": {"clean":, "robust":}}``.
    """
    import torch
    from transformers import AutoTokenizer

    from tgazsr.modeling import ZeroShotCLIP, load_clip

    if isinstance(paths, str):
        spec = WorldSpec()
        paths = WorldPaths.under(paths, spec)
    eps = paths.eps if eps is None else eps
    steps = steps if steps is not None else 20
    model = ZeroShotCLIP(load_clip(paths.model)).eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(paths.model)
    report = {"eps": eps, "steps": steps, "sets": {}}
    with _torch_threads(threads):
        for name, path in paths.eval.items():
            meta = load_eval_metadata(path)
            text = model.class_embeddings(meta["class_names"], meta["classifier_templates"], tokenizer)
            pixels, labels = load_images(path, limit)
            classify = lambda x, text=text: model.classify(x, text)  # noqa: E731
            clean = robust = 0
            for i in range(0, len(labels), batch_size):
                x, y = pixels[i : i + batch_size], labels[i : i + batch_size]
                with torch.no_grad():
                    clean += (classify(x).argmax(1) == y).sum().item()
                x_adv = pgd_linf(classify, x, y, eps / 255, steps, seed=i) if eps > 0 else x
                with torch.no_grad():
                    robust += (classify(x_adv).argmax(1) == y).sum().item()
            report["sets"][name] = {
                "clean": 100.0 * clean / len(labels),
                "robust": 100.0 * robust / len(labels),
                "held_out": bool(meta["held_out"]),
                "n": len(labels),
            }
    held = [v for v in report["sets"].values() if v["held_out"]]
    report["held_out_mean"] = {
        "clean": float(np.mean([v["clean"] for v in held])) if held else float("nan"),
        "robust": float(np.mean([v["robust"] for v in held])) if held else float("nan"),
    }
    return report


def format_report(report: dict) -> str:
    lines = [f"zero-shot accuracy (%), PGD-{report['steps']} L-inf eps {report['eps']:g}/255", ""]
    lines.append(f"{'set':<14}{'held out':>9}{'clean':>8}{'robust':>8}")
    for name, v in report["sets"].items():
        lines.append(f"{name:<14}{'yes' if v['held_out'] else 'no':>9}{v['clean']:8.1f}{v['robust']:8.1f}")
    m = report["held_out_mean"]
    lines.append(f"{'held-out mean':<14}{'':>9}{m['clean']:8.1f}{m['robust']:8.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Build the offline world (data + tiny CLIP) and report its accuracy.")
    parser.add_argument("--root", default=None, help="where to build (default: $TGAZSR_HOME/world-<version>-seed<seed>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="the reduced unit-test world")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete world exists")
    parser.add_argument("--eps", type=float, default=None, nargs="*", help="budgets in 1/255 units (default: the world's)")
    parser.add_argument("--steps", type=int, default=None, help="PGD steps of the report (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the idle cores)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    spec = WorldSpec.reduced() if args.small else WorldSpec()
    if args.threads:
        spec = dataclasses.replace(spec, threads=args.threads)
    paths = build_world(args.root, seed=args.seed, small=args.small, force=args.force, spec=spec)
    print(f"root:     {paths.root}")
    print(f"model:    {paths.model}")
    print(f"train:    {paths.train}")
    print(f"pretrain: {paths.pretrain}")
    for name, path in paths.eval.items():
        print(f"eval/{name}: {path}")
    print(f"eps:      {paths.eps:g}/255")
    info_path = os.path.join(paths.model, "pretraining.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        print(
            f"pretraining: {info['steps']} steps, {info['pretrain_seconds']:.1f} s wall "
            f"({info.get('pretrain_cpu_seconds', float('nan')):.1f} s CPU) on {info['threads']} thread(s)"
        )
    reports = {}
    if not args.no_report:
        steps = args.steps if args.steps is not None else (3 if args.small else 20)
        for eps in args.eps or [paths.eps]:
            report = world_report(paths, eps=eps, steps=steps, threads=args.threads)
            reports[eps] = report
            print()
            print(format_report(report))
        with open(os.path.join(paths.root, "report.json"), "w") as f:
            json.dump({str(k): v for k, v in reports.items()}, f, indent=2)
    return reports


if __name__ == "__main__":
    main()
