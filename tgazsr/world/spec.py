"""What the world is made of: its vocabularies, image size, attack budget and ``WorldSpec``.

Every image shows one object with four attributes (shape, colour, pattern, size) on a
cluttered, low-saturation background. Images are ``IMAGE_SIZE`` = 56 pixels and the vision
tower uses ``PATCH_SIZE`` = 8 pixel patches, so the token grid is 7 x 7, the same as ViT-B/32 at
224 pixels: the world is a quarter-scale copy of the real setting (224 / 4 = 56, 32 / 4 = 8).

``WORLD_EPS`` is the world's L-inf attack budget in 1/255 units; the package docstring
(``tgazsr.world``) explains why it is 8/255 rather than the real benchmark's 1/255.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

#: Version of what gets written to disk; part of the default root and of the fingerprint.
#: v2: every dataset is a ``DatasetDict`` with named splits and the evaluation sets are
#: described by registry entries (no ``tgazsr_eval.json`` side file).
WORLD_VERSION = "v2"
#: The world's attack budget, in 1/255 units (see the ``tgazsr.world`` docstring for the reason).
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

#: The model families the world pretrains: CLIP (softmax contrastive loss) or SigLIP (sigmoid loss).
BACKBONES = ("clip", "siglip")

#: The training prompt of the real recipe (no period), used for ``train/`` and ``objects``.
TRAIN_TEMPLATE = "This is a photo of a {}"


def _held_out_pairs() -> tuple[tuple[str, str], ...]:
    """16 colour-shape pairs kept out of ``train/``: each colour and each shape twice."""
    pairs = []
    for i, colour in enumerate(COLOURS):
        for k in (0, 1):
            pairs.append((colour, SHAPES[(3 * i + k) % len(SHAPES)]))
    return tuple(pairs)


HELD_OUT_PAIRS = _held_out_pairs()
TRAIN_PAIRS = tuple((c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT_PAIRS)


def pair_name(pair: tuple[str, str]) -> str:
    """The class name of a colour-shape pair: ``("red", "star")`` -> ``"red star"``."""
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


@dataclass
class WorldSpec:
    """Sizes of the world, of the model and of its pretraining, and the model's family.

    ``backbone`` is ``"clip"`` (a CLIP pretrained with CLIP's contrastive loss) or ``"siglip"`` (a
    SigLIP pretrained with SigLIP's sigmoid loss; :mod:`.pretraining`). The images, captions and sets
    are the same for both. A SigLIP has no projection: its joint space is ``vision_width`` wide and
    ``projection_dim`` is CLIP's only.
    """

    backbone: str = "clip"
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
    threads: int | None = None  # None: the idle cores (see pretraining.default_threads)
    # robustness check
    eps: float = WORLD_EPS
    report_steps: int = 20

    @classmethod
    def default(cls, small: bool = False, backbone: str = "clip") -> "WorldSpec":
        """The default world (``small``: the reduced one) of ``backbone``'s family."""
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown world backbone {backbone!r}: choose one of {', '.join(BACKBONES)}.")
        return dataclasses.replace(cls.reduced() if small else cls(), backbone=backbone)

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
        """Identifies what gets built: the attack budget and the report do not change the world.

        ``backbone`` enters it for a SigLIP world only, so that a CLIP world's fingerprint (the key of
        the shipped model, :mod:`.shipped`) is the one it had before SigLIP worlds existed."""
        built = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("eps", "report_steps", "threads")}
        if built["backbone"] == "clip":
            del built["backbone"]
        payload = json.dumps(built | {"version": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
