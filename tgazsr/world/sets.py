"""The world's datasets: captions, the pretraining set, the training set and the evaluation sets.

Each evaluation set is described, for the evaluation harness, by a registry entry
(:class:`tgazsr.data.registry.BenchmarkDataset` registered as ``world_<name>``: class names,
prompt templates, resize, split and columns) and, for generation, by an :class:`EvalSet`
(which attribute is the label, which colour-shape pairs may appear). The registry collection
``"world"`` lists the held-out sets. Importing this module (it is imported with the package
``tgazsr.world``) registers them through ``register_benchmark`` and ``register_collection``, the
calls any other benchmark uses; looking a name up in the registry never imports the world, so
whoever needs these names imports ``tgazsr.world`` first (the evaluation command does).

============  =======================================  =========  ==========
set           prompt                                   classes    held out
============  =======================================  =========  ==========
objects       "This is a photo of a {}"                48 pairs   no (the Tiny-ImageNet test split)
shapes        "a drawing of a {}."                     8 shapes   yes
colours       "something coloured {}."                 8 colours  yes
textures      "a surface with a {} texture."           4 patterns yes (the DTD analogue)
novel_pairs   "a photo of a {}."                       16 pairs   yes (pairs never in ``train/``)
sizes         two fixed prompts, one per class         2 sizes    yes (the PCAM analogue)
============  =======================================  =========  ==========
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..data.registry import SQUARE, BenchmarkDataset, register_benchmark, register_collection
from .rendering import image_rng, png_bytes, render, sample_object
from .spec import (
    ATTRIBUTES,
    COLOURS,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    PATTERNS,
    SHAPES,
    SIZES,
    TRAIN_PAIRS,
    TRAIN_TEMPLATE,
    ObjectSpec,
    pair_name,
)

logger = logging.getLogger(__name__)

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
# The evaluation sets
# ----------------------------------------------------------------------------------------

#: Prefix of the world's registry names (``world_shapes``, ...).
REGISTRY_PREFIX = "world_"
#: The registry collection of the held-out sets.
WORLD_COLLECTION = "world"
#: The split name under which every evaluation set is saved.
EVAL_SPLIT = "test"
#: The split name of the training and pretraining sets.
TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class EvalSet:
    """A zero-shot benchmark of the world: how it is generated, and its registry entry.

    ``label_of`` names the attribute (or ``"pair"`` for colour-shape pairs) that is the label;
    ``pairs`` restricts the objects to these colour-shape pairs. Class names, prompts and
    everything the evaluation needs are in ``benchmark`` (registered as ``world_<name>``).
    """

    name: str
    benchmark: BenchmarkDataset
    label_of: str
    pairs: tuple[tuple[str, str], ...] = ()
    held_out: bool = True

    @property
    def registry_name(self) -> str:
        return self.benchmark.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.benchmark.class_names

    @property
    def templates(self) -> tuple[str, ...]:
        """Prompt templates with ``{}``, or fixed prompts (one per class, no ``{}``)."""
        return self.benchmark.templates

    @property
    def description(self) -> str:
        return self.benchmark.notes

    def templates_for_classifier(self) -> list[str]:
        """What ``ZeroShotCLIP.class_embeddings(class_names, templates, tokenizer)`` takes."""
        return list(self.templates)


def _eval_set(
    name: str,
    class_names: Sequence[str],
    label_of: str,
    templates: Sequence[str],
    description: str,
    pairs: tuple[tuple[str, str], ...] = (),
    held_out: bool = True,
) -> EvalSet:
    benchmark = BenchmarkDataset(
        name=REGISTRY_PREFIX + name,
        display_name="World " + name.replace("_", " "),
        hub_id=None,  # generated locally: always given as world_<name>=PATH
        split=EVAL_SPLIT,
        image_column="image",
        label_column="label",
        num_classes=len(class_names),
        templates=tuple(templates),
        class_names=tuple(class_names),
        resize=SQUARE,  # the 56 px images at their native size (the model's), no crop
        notes=description + " Generated by tgazsr.world (python -m tgazsr.world).",
    )
    return EvalSet(name, benchmark, label_of, pairs=pairs, held_out=held_out)


EVAL_SETS: dict[str, EvalSet] = {
    s.name: s
    for s in (
        _eval_set(
            "objects",
            [pair_name(p) for p in TRAIN_PAIRS],
            "pair",
            (TRAIN_TEMPLATE,),
            "Test split of the training vocabulary (the Tiny-ImageNet analogue).",
            pairs=TRAIN_PAIRS,
            held_out=False,
        ),
        _eval_set("shapes", SHAPES, "shape", ("a drawing of a {}.",), "Shape only, any colour, pattern and size."),
        _eval_set(
            "colours", COLOURS, "colour", ("something coloured {}.",), "Colour only, any shape, pattern and size."
        ),
        _eval_set(
            "textures",
            PATTERNS,
            "pattern",
            ("a surface with a {} texture.",),
            "Surface pattern only (the DTD analogue).",
        ),
        _eval_set(
            "novel_pairs",
            [pair_name(p) for p in HELD_OUT_PAIRS],
            "pair",
            ("a photo of a {}.",),
            "Colour-shape pairs that never occur in the training set; each colour and shape is in two classes.",
            pairs=HELD_OUT_PAIRS,
        ),
        _eval_set(
            "sizes",
            SIZES,
            "size",
            ("a picture of a small object.", "a picture of a large object."),
            "Object size, two fixed prompts (the PCAM analogue).",
        ),
    )
}
HELD_OUT_SETS = tuple(name for name, s in EVAL_SETS.items() if s.held_out)

for _set in EVAL_SETS.values():
    register_benchmark(_set.benchmark)
register_collection(WORLD_COLLECTION, [EVAL_SETS[name].registry_name for name in HELD_OUT_SETS])
del _set


def eval_set(name: str) -> EvalSet:
    """The evaluation set called ``name`` (``"shapes"``) or by its registry name (``"world_shapes"``)."""
    if name in EVAL_SETS:
        return EVAL_SETS[name]
    if name.startswith(REGISTRY_PREFIX) and name[len(REGISTRY_PREFIX):] in EVAL_SETS:
        return EVAL_SETS[name[len(REGISTRY_PREFIX):]]
    valid = ", ".join(list(EVAL_SETS) + [s.registry_name for s in EVAL_SETS.values()])
    from ..recipes import RecipeError

    raise RecipeError(f"Unknown world evaluation set {name!r}; name one of {valid}.")


# ----------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------


def progress(iterable, desc: str):
    """A tqdm bar over ``iterable`` while INFO logging is on (the iterable itself otherwise)."""
    try:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, leave=False, disable=not logger.isEnabledFor(logging.INFO))
    except ImportError:  # pragma: no cover
        return iterable


def _object_for_label(label: int, eval_set: EvalSet | None, pairs: Sequence[tuple[str, str]], rng) -> ObjectSpec:
    if eval_set is None or eval_set.label_of == "pair":
        colour, shape = pairs[label]
        return sample_object(rng, colour=colour, shape=shape)
    return sample_object(rng, **{eval_set.label_of: eval_set.class_names[label]})


def generate_labelled(
    part: str,
    n: int,
    seed: int,
    num_classes: int,
    make_object: Callable[[int, np.random.Generator], ObjectSpec],
    size: int = IMAGE_SIZE,
) -> Iterator[tuple[np.ndarray, int, ObjectSpec]]:
    """Class-balanced images: label ``i % num_classes`` in a seeded random order."""
    order = np.random.default_rng([seed, 7]).permutation(n) if n > 0 else np.zeros(0, int)
    labels = np.arange(n) % num_classes
    labels = labels[np.argsort(order, kind="stable")]
    for index in range(n):
        rng = image_rng(seed, part, index)
        label = int(labels[index])
        obj = make_object(label, rng)
        yield render(obj, rng, size), label, obj


def generate_pretraining(
    n: int, seed: int, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, list[ObjectSpec], list[str]]:
    """``n`` random objects (every colour-shape pair), their images and one caption each."""
    images = np.zeros((n, size, size, 3), np.uint8)
    objects, captions = [], []
    for index in progress(range(n), "rendering pretraining images"):
        rng = image_rng(seed, "pretrain", index)
        obj = sample_object(rng)
        images[index] = render(obj, rng, size)
        objects.append(obj)
        captions.append(caption(obj, rng)[0])
    return images, objects, captions


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
    for image, label, _ in progress(generate_labelled("train", n, seed, len(TRAIN_PAIRS), make, size), "train set"):
        images.append(png_bytes(image))
        labels.append(label)
    return _labelled_dataset(images, labels, [pair_name(p) for p in TRAIN_PAIRS])


def build_eval_set(name: str, n: int, seed: int, size: int = IMAGE_SIZE):
    """One zero-shot benchmark (a ``datasets.Dataset``; its ClassLabel names are the registry's)."""
    es = eval_set(name)
    make = lambda label, rng: _object_for_label(label, es, es.pairs, rng)  # noqa: E731
    images, labels = [], []
    for image, label, _ in progress(
        generate_labelled(f"eval/{es.name}", n, seed, len(es.class_names), make, size), f"eval {es.name}"
    ):
        images.append(png_bytes(image))
        labels.append(label)
    return _labelled_dataset(images, labels, es.class_names)


def build_pretraining_set(images: np.ndarray, objects: Sequence[ObjectSpec], captions: Sequence[str]):
    """Image-caption pairs with the four attribute columns (a ``datasets.Dataset``)."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "caption": datasets.Value("string")}
        | {a: datasets.Value("string") for a in ATTRIBUTES}
    )
    columns = {
        "image": [{"bytes": png_bytes(im), "path": None} for im in progress(images, "encoding pretraining images")],
        "caption": list(captions),
    }
    for a in ATTRIBUTES:
        columns[a] = [getattr(o, a) for o in objects]
    return datasets.Dataset.from_dict(columns, features=features)
