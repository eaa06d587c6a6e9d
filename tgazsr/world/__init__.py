"""The offline world: generated image-text data and a tiny CLIP (or SigLIP) pretrained on it.

Nothing in tgazsr's tests, quickstart or CI may download weights or datasets, yet every
method needs a *pretrained* CLIP with real zero-shot skill and real adversarial fragility,
a many-class training set and several zero-shot benchmarks. This package builds all of that
on a CPU in minutes, deterministically from a seed, and caches it on disk in the same
formats as the real thing, so the rest of the package cannot tell the difference::

    from tgazsr.world import build_world
    paths = build_world()             # or build_world(small=True): the unit-test world, seconds
    paths.model                       # a CLIP model directory (transformers)
    paths.train                       # DatasetDict({"train": ...}), 48 classes
    paths.eval_entries()              # ["world_shapes=/.../eval/shapes", ...] for the harness

``python -m tgazsr.world`` builds it, prints where everything is and reports the base model's
clean and PGD accuracy through the evaluation harness (``tgazsr.evaluation``).

The world
---------
Every image shows one object on a cluttered background. An object has four attributes:

- shape:   circle, square, triangle, star, cross, diamond, hexagon, crescent
- colour:  red, orange, yellow, green, cyan, blue, purple, pink
- pattern: plain, striped, dotted, checkered (stripes, dots or checks in a dark shade
           of the object's colour)
- size:    small, large

Images are 56 x 56 pixels and the vision tower uses 8 x 8 patches, so the token grid is
7 x 7, the same as ViT-B/32 at 224 pixels: the world is a quarter-scale copy of the real
setting, and text-guided attention maps have the real shape (:mod:`.spec`, :mod:`.rendering`).

What is built (:mod:`.build`; the sets are in :mod:`.sets`):

- ``pretrain/``: image-caption pairs. Captions name a random subset of the attributes inside
  a random frame ("a photo of a {}.", "a drawing of a {}.", "something coloured {}.", ...).
- ``train/``: the stand-in for Tiny-ImageNet: 48 classes named "<colour> <shape>" (all 64
  colour-shape pairs except 16 held-out pairs), training prompt "This is a photo of a {}".
- ``eval/<set>/``: zero-shot benchmarks, each registered in the benchmark registry as
  ``world_<set>`` when this package is imported (class names, prompts, resize;
  ``tgazsr.data.registry``, which never imports the world itself): ``objects`` (the
  training vocabulary's test split) and the held-out ``shapes``, ``colours``, ``textures``,
  ``novel_pairs`` and ``sizes`` (registry collection ``"world"``). The held-out sets classify
  with vocabularies and prompts that are never labels of ``train/``; their words do occur in
  the pretraining captions, as "photo of a dog" occurs in CLIP's web data.
- ``model/``: a CLIP (transformers, safetensors) with its character-level tokenizer and image
  processor (:mod:`.tokenizer`), saved with ``CLIPProcessor`` so that
  ``from_pretrained`` of the CLIP class, ``AutoTokenizer`` and
  ``pipeline("zero-shot-image-classification", model=...)`` all work on the directory. It is
  pretrained contrastively on ``pretrain/`` (:mod:`.pretraining`).

A SigLIP world (``build_world(backbone="siglip")``, ``tgazsr world --backbone siglip``) has the
same images, sets and captions and a tiny SigLIP in ``model/`` instead, pretrained with SigLIP's
sigmoid loss (logit scale and bias initialised to log 10 and -10) and saved with ``SiglipProcessor``
(the same character tokenizer, prompts padded to 64 tokens; SigLIP's image processor, mean = std =
0.5), so that tgazsr's SigLIP backbone and the zero-shot pipeline load it. It lives in its own root
(``world-v2-seed0-siglip``) and is always pretrained here: only the CLIP is shipped.

Every dataset is a ``DatasetDict`` with named splits, has ``image`` (a ``datasets.Image``
feature, PNG) and ``label`` (a ``datasets.ClassLabel`` with the class names) or captions, and
loads with ``datasets.load_from_disk``.

The attack budget ``eps``
-------------------------
The real benchmark attacks at eps = 1/255 on 224 px images, where CLIP ViT-B/32 falls from
about 64% to about 5% zero-shot accuracy (robust / clean about 0.08), and adversarial
fine-tuning at the same eps recovers 30-45%. An L-inf budget's power grows with the number of
pixels it acts on (for a linear score the worst change is eps times the L1 norm of the
gradient), and the world's 56 px images have 16 times fewer pixels than 224 px ones, so 1/255
is a much weaker attack here. Worse, two of the held-out vocabularies (colour, size) are read
from large uniform regions that small budgets barely move. The world's budget is therefore
``WORLD_EPS`` = 8/255, the classic budget of small-image robustness: PGD at 8/255 brings the
pretrained model's held-out accuracy well below a third of its clean accuracy, as in the real
setting, and leaves room for robust fine-tuning to win a good part back. (Measured numbers
live in BENCHMARKS.md; ``python -m tgazsr.world`` prints them for a given build.)

Determinism
-----------
Each image is drawn from its own ``numpy`` generator seeded by (world seed, part, index),
so a part can be rebuilt alone and comes out byte-identical; pretraining is seeded by
``torch.manual_seed`` (on CPU the result may still vary in the last bits with the number of
threads).
"""

from __future__ import annotations

from .build import COMPLETE_MARKER, WorldPaths, build_world, default_root, is_complete
from .pretraining import (
    contrastive_loss,
    default_threads,
    make_clip_config,
    make_siglip_config,
    new_model,
    pretrain_clip,
    pretrain_model,
    pretrain_siglip,
    save_model,
    sigmoid_loss,
    torch_threads,
)
from .rendering import image_rng, png_bytes, render, sample_object
from .sets import (
    EVAL_SETS,
    EVAL_SPLIT,
    HELD_OUT_SETS,
    REGISTRY_PREFIX,
    TRAIN_SPLIT,
    WORLD_COLLECTION,
    EvalSet,
    build_eval_set,
    build_pretraining_set,
    build_train_set,
    caption,
    eval_set,
    generate_pretraining,
)
from .spec import (
    ATTRIBUTES,
    BACKBONES,
    COLOURS,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    PATCH_SIZE,
    PATTERNS,
    SHAPES,
    SIZES,
    TRAIN_PAIRS,
    TRAIN_TEMPLATE,
    VALUES,
    WORLD_EPS,
    WORLD_VERSION,
    ObjectSpec,
    WorldSpec,
    pair_name,
)
from .tokenizer import character_vocab, make_image_processor, make_siglip_image_processor, make_tokenizer

__all__ = [
    "ATTRIBUTES",
    "BACKBONES",
    "COLOURS",
    "COMPLETE_MARKER",
    "EVAL_SETS",
    "EVAL_SPLIT",
    "EvalSet",
    "HELD_OUT_PAIRS",
    "HELD_OUT_SETS",
    "IMAGE_SIZE",
    "ObjectSpec",
    "PATCH_SIZE",
    "PATTERNS",
    "REGISTRY_PREFIX",
    "SHAPES",
    "SIZES",
    "TRAIN_PAIRS",
    "TRAIN_SPLIT",
    "TRAIN_TEMPLATE",
    "VALUES",
    "WORLD_COLLECTION",
    "WORLD_EPS",
    "WORLD_VERSION",
    "WorldPaths",
    "WorldSpec",
    "build_eval_set",
    "build_pretraining_set",
    "build_train_set",
    "build_world",
    "caption",
    "character_vocab",
    "contrastive_loss",
    "default_root",
    "default_threads",
    "eval_set",
    "generate_pretraining",
    "image_rng",
    "is_complete",
    "make_clip_config",
    "make_image_processor",
    "make_siglip_config",
    "make_siglip_image_processor",
    "make_tokenizer",
    "new_model",
    "pair_name",
    "png_bytes",
    "pretrain_clip",
    "pretrain_model",
    "pretrain_siglip",
    "render",
    "sample_object",
    "save_model",
    "sigmoid_loss",
    "torch_threads",
]
