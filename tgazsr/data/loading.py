"""Loading image classification data the ordinary `datasets` way.

``dataset_name`` may be a Hub id, or a local path to
- a ``save_to_disk`` dataset (a ``Dataset`` or a ``DatasetDict``),
- an image folder with one sub-folder per class (optionally under ``train/``, ``test/``...),
- parquet files (a file, or a folder of them),
- webdataset ``.tar`` shards (a file, or a folder of them).
Everything goes through ``datasets.load_dataset`` / ``load_from_disk``, which work offline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import datasets
import torch

from .errors import DataError
from .order import select_samples
from .registry import clean_class_name, resolve_class_names
from .images import decode_image, describe_row
from .task import check_task
from .transforms import ImageTransform

logger = logging.getLogger(__name__)

IMAGE_COLUMN_GUESSES = ("image", "img", "jpg", "png", "jpeg", "webp")
LABEL_COLUMN_GUESSES = ("label", "labels", "fine_label", "cls", "class", "target")


#: A single class name ending like this is taken for a file of class names, which must exist.
CLASS_NAME_FILE_SUFFIXES = (".txt", ".csv", ".names", ".lst", ".list")


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "state.json"))


def select_split(
    loaded: datasets.Dataset | datasets.DatasetDict, split: str | None, source: str, accept_unnamed: bool = True
) -> tuple[datasets.Dataset, str | None]:
    """The split ``split`` of ``loaded`` and its name; never another split in its place.

    ``split=None`` means 'test', or the only split of a dataset that has one. A dataset saved
    without splits (a plain ``Dataset``, a single parquet file or tar shard) is one unnamed
    split: with ``accept_unnamed`` it stands for whichever split the caller pointed it at;
    without, asking it for a named split is an error (the end-of-training check must never
    score the training images under another split's name).
    """
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if "test" in loaded:
                return loaded["test"], "test"
            if len(loaded) == 1:
                (only,) = loaded.keys()
                return loaded[only], only
            raise DataError(f"{source} has several splits {sorted(loaded)} and none is named 'test': name one.")
        if split in loaded:
            return loaded[split], split
        raise DataError(
            f"{source} has no split {split!r}; its splits are {sorted(loaded)}. Name one of them "
            "(a folder without split sub-folders is read as the single split 'train')."
        )
    recorded = str(loaded.split) if getattr(loaded, "split", None) is not None else None
    if split is None or recorded == split:
        return loaded, recorded or split
    if recorded is None and accept_unnamed:
        return loaded, split
    what = f"the single split {recorded!r}" if recorded else "one dataset without split names"
    raise DataError(
        f"{source} holds {what}, not split {split!r}. Point the split setting at what it holds, or save the "
        f"split you mean with its name (datasets.DatasetDict({{{split!r}: ds}}).save_to_disk(...))."
    )


def load_image_dataset(
    name_or_path: str,
    split: str | None = "train",
    config_name: str | None = None,
    accept_unnamed: bool = True,
    return_split: bool = False,
):
    """Load one split of an image dataset from the Hub or from a local path (see ``select_split``).

    Returns the ``Dataset``, or ``(Dataset, split name)`` with ``return_split``.
    """
    ds, name = _load_split(name_or_path, split, config_name, accept_unnamed)
    return (ds, name) if return_split else ds


def _load_split(name_or_path: str, split: str | None, config_name: str | None, accept_unnamed: bool):
    path = Path(os.path.expanduser(name_or_path))
    if path.exists():
        if _is_saved_dataset(path):
            return select_split(datasets.load_from_disk(str(path)), split, str(path), accept_unnamed)
        if path.is_file():
            suffix = path.suffix.lower()
            builder = {".parquet": "parquet", ".tar": "webdataset"}.get(suffix)
            if builder is None:
                raise DataError(
                    f"Don't know how to read {path}: expected a .parquet file, a .tar webdataset shard, "
                    "a save_to_disk folder or an image folder."
                )
            ds = load_dataset_checked(builder, split="train", data_files=str(path))
            if split not in (None, "train") and not accept_unnamed:
                raise DataError(f"{path} is a single file, read as split 'train', not split {split!r}.")
            return ds, split or "train"
        # A folder: let datasets infer the format (imagefolder / parquet / webdataset) and splits.
        return select_split(load_dataset_checked(str(path)), split, str(path), accept_unnamed)
    if os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")):
        raise DataError(
            f"Local dataset path {str(path)!r} does not exist. Point dataset_name at an existing folder "
            "(save_to_disk dataset, image folder, parquet or webdataset files), or at a Hub dataset id."
        )
    try:
        return load_dataset_checked(name_or_path, config_name, split=split or "test"), split or "test"
    except Exception as err:  # network, gated repo, missing repo or split: one clear message
        raise DataError(
            f"Could not load dataset {name_or_path!r} (split {split or 'test'!r}): {type(err).__name__}: {err}\n"
            "Without access to the Hub, download it elsewhere and point dataset_name at a local copy: "
            "a folder saved with Dataset.save_to_disk, an image folder with one sub-folder per class, "
            "or parquet/webdataset files."
        ) from err


def load_dataset_checked(*args, **kwargs):
    try:
        return datasets.load_dataset(*args, **kwargs)
    except FileNotFoundError as err:
        raise DataError(f"No data found for {args[0]!r}: {err}") from err


def find_column(ds: datasets.Dataset, wanted: str | None, guesses: Sequence[str], kind: str) -> str:
    columns = list(ds.column_names)
    if wanted and wanted in columns:
        return wanted
    if wanted and wanted != guesses[0]:
        raise DataError(f"The dataset has no {kind} column {wanted!r}; its columns are {columns}.")
    for guess in guesses:
        if guess in columns:
            return guess
    if kind == "image":
        for name, feature in ds.features.items():
            if isinstance(feature, datasets.Image):
                return name
    raise DataError(f"Could not find the {kind} column among {columns}; set {kind}_column to the right one.")


def read_class_names(class_names: str | Sequence[str] | None) -> list[str] | None:
    """A list, a comma-separated string, or a text file with one name per line ('#' comments)."""
    if class_names is None or class_names == "" or class_names == []:
        return None
    if not isinstance(class_names, str) and len(class_names) == 1 and os.path.isfile(os.path.expanduser(str(class_names[0]))):
        class_names = str(class_names[0])  # --class_names FILE on the command line arrives as a one-item list
    if not isinstance(class_names, str) and len(class_names) == 1:
        _missing_class_name_file(str(class_names[0]))
    if isinstance(class_names, str):
        path = Path(os.path.expanduser(class_names))
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            names = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
            if not names:
                raise DataError(
                    f"The class_names file {str(path)!r} holds no names: write one name per line, in label order."
                )
            return names
        _missing_class_name_file(class_names)
        return [c.strip() for c in class_names.split(",") if c.strip()]
    return [str(c) for c in class_names]


def _missing_class_name_file(value: str) -> None:
    """A lone class name that reads like a file name (``classes.txt``) is a file that does not exist."""
    path = Path(os.path.expanduser(value))
    if not path.is_file() and path.suffix.lower() in CLASS_NAME_FILE_SUFFIXES and "," not in value:
        raise DataError(
            f"The class_names file {value!r} does not exist. Pass an existing text file with one name per line in "
            "label order, or the names themselves (a list, or comma-separated)."
        )


def dataset_class_names(
    ds: datasets.Dataset, label_column: str, override: str | Sequence[str] | None = None
) -> list[str]:
    """Class names for prompts: the override if given, else the label column's ClassLabel names.
    WordNet ids are mapped to names, then names are cleaned (lowercase, ``_-/`` to spaces)."""
    names = read_class_names(override)
    if names is None:
        feature = ds.features.get(label_column)
        if not isinstance(feature, datasets.ClassLabel):
            raise DataError(
                f"The label column {label_column!r} carries no class names ({feature}). "
                "Pass class_names: a list, or a text file with one name per line in label order."
            )
        names = list(feature.names)
    return [clean_class_name(n) for n in resolve_class_names(names)]


@dataclass
class ClassificationData:
    """A split ready for training or evaluation: decoded lazily to [0,1] tensors."""

    dataset: DecodedRows
    class_names: list[str]
    image_column: str
    label_column: str
    split: str | None = None
    samples: str = ""  # which samples were kept (all, the first N, CLIP_benchmark's N)
    skipped_images: int = 0  # unreadable images left out (skip_unreadable_images)

    def __len__(self) -> int:
        return len(self.dataset)


def prepare_classification_data(
    name_or_path: str,
    split: str,
    image_size: int,
    image_column: str | None = "image",
    label_column: str | None = "label",
    class_names: str | Sequence[str] | None = None,
    resize_mode: str = "shorter_side_crop",
    config_name: str | None = None,
    max_samples: int | None = None,
    accept_unnamed: bool = True,
    sample_order: str = "stored",
    seed: int = 0,
    skip_unreadable_images: bool = False,
) -> ClassificationData:
    """One split of an image classification dataset, decoded lazily to [0,1] tensors.
    ``class_names`` (a list, a comma-separated string or a file) must match the labels' count.
    ``max_samples`` samples are kept, chosen by ``sample_order`` (``tgazsr.data.order``); with
    ``skip_unreadable_images`` the images that do not decode are left out first, and counted.
    The data is checked as a classification task (``tgazsr.data.task.check_task``)."""
    ds, split = load_image_dataset(name_or_path, split, config_name, accept_unnamed, return_split=True)
    image_col = find_column(ds, image_column, IMAGE_COLUMN_GUESSES, "image")
    try:
        label_col = find_column(ds, label_column, LABEL_COLUMN_GUESSES, "label")
    except DataError:
        only = _single_class_folder(ds, image_col, name_or_path, split)
        if only is not None:  # datasets reads an image folder of one class folder without labels
            check_task(name_or_path, ds, image_col, image_col, [only])
        raise
    names = dataset_class_names(ds, label_col, class_names)
    ds, samples = select_samples(ds, sample_order, max_samples, seed=seed)
    feature = ds.features.get(label_col)
    if class_names is not None and isinstance(feature, datasets.ClassLabel) and feature.num_classes != len(names):
        given = read_class_names(class_names)
        single = class_names if isinstance(class_names, str) else str(class_names[0]) if len(class_names) == 1 else ""
        source = f" (from the file {single!r})" if single and os.path.isfile(os.path.expanduser(single)) else ""
        shown = ", ".join(given[:5]) + (", ..." if len(given) > 5 else "")
        raise DataError(
            f"{len(names)} class names were given{source} for {name_or_path} ({shown}), whose label column "
            f"{label_col!r} has {feature.num_classes} classes ({', '.join(feature.names[:5])}"
            f"{', ...' if feature.num_classes > 5 else ''}): give one name per class, in label order."
        )
    ds, skipped = drop_unreadable(ds, image_col, name_or_path, skip_unreadable_images)
    check_task(name_or_path, ds, image_col, label_col, names, raw_names=_raw_names(ds, label_col, class_names))
    ds = with_pixels(ds, image_col, label_col, len(names), image_size, resize_mode, source=name_or_path,
                     skipped=skipped)
    return ClassificationData(ds, names, image_col, label_col, split, samples, skipped)


def _single_class_folder(ds: datasets.Dataset, image_col: str, root: str, split: str | None) -> str | None:
    """The class of an image folder whose images all sit in one class folder, or None."""
    if not os.path.isdir(os.path.expanduser(root)) or not isinstance(ds.features.get(image_col), datasets.Image):
        return None
    values = undecoded(ds.select_columns([image_col]), image_col)[image_col]
    parents = {os.path.dirname(v["path"]) for v in values if isinstance(v, dict) and v.get("path")}
    if len(parents) != 1:
        return None
    parent = os.path.abspath(parents.pop())
    top = os.path.abspath(os.path.expanduser(root))
    if parent == top or not parent.startswith(top + os.sep) or os.path.basename(parent) == split:
        return None
    return os.path.basename(parent)


def _raw_names(ds: datasets.Dataset, label_col: str, override) -> list[str] | None:
    """The class names as given (before WordNet mapping and cleaning), for messages."""
    names = read_class_names(override)
    if names is None and isinstance(ds.features.get(label_col), datasets.ClassLabel):
        names = list(ds.features[label_col].names)
    return names


class DecodedRows(torch.utils.data.Dataset):
    """The rows of an image classification dataset, decoded on access to ``pixel_values`` in [0,1]
    and an integer ``labels``: each image through the one decoder (``tgazsr.data.images``), so an
    unreadable image is an error naming its file (or ``source`` and its row), never a traceback.

    ``rows`` keeps the two columns, its images undecoded; ``label_map`` maps the data's label ids
    to class-name order. Indexable by one row or fetched by batch (``__getitems__``).
    """

    def __init__(self, rows: datasets.Dataset, image_col: str, label_col: str, num_classes: int,
                 transform: ImageTransform, source: str, label_map: Sequence[int] | None = None, skipped: int = 0):
        self.rows, self.image_col, self.label_col = rows, image_col, label_col
        self.num_classes, self.transform, self.source = num_classes, transform, source
        self.label_map = list(label_map) if label_map is not None else None
        self.skipped = skipped  # unreadable images left out on purpose (skip_unreadable_images)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def _fingerprint(self) -> str | None:
        return getattr(self.rows, "_fingerprint", None)

    @property
    def column_names(self) -> list[str]:
        return list(self.rows.column_names)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        indices = [int(i) for i in indices]
        batch = self.rows[indices]
        out = []
        for i, value, y in zip(indices, batch[self.image_col], batch[self.label_col]):
            label = int(y)
            if self.label_map is not None:
                label = self.label_map[label]
            if not 0 <= label < self.num_classes:
                raise DataError(f"{self.source}: label {label} of row {i} is outside the {self.num_classes} class "
                                "names; check class_names and label_column.")
            image = decode_image(value, self.source, i)
            out.append({"pixel_values": self.transform(image, describe_row(value, self.source, i)), "labels": label})
        return out


def undecoded(ds: datasets.Dataset, image_col: str) -> datasets.Dataset:
    """``ds`` with its image column read as ``{"bytes", "path"}``: tgazsr decodes it itself."""
    feature = ds.features[image_col]
    if isinstance(feature, datasets.Image) and not feature.decode:
        return ds
    return ds.cast_column(image_col, datasets.Image(decode=False))


def drop_unreadable(ds: datasets.Dataset, image_col: str, source: str, skip: bool) -> tuple[datasets.Dataset, int]:
    """With ``skip``, ``ds`` without the rows whose image does not decode, and how many those are
    (a warning says so). Without ``skip``, ``ds`` as it is: an unreadable image is an error when
    it is decoded."""
    if not skip:
        return ds, 0
    from .images import readable

    rows = undecoded(ds, image_col)
    keep = [i for i, value in enumerate(rows[image_col]) if readable(value)]
    skipped = len(ds) - len(keep)
    if skipped:
        logger.warning("%s: skipped %d unreadable image(s) of %d (skip_unreadable_images).", source, skipped, len(ds))
        ds = ds.select(keep)
    return ds, skipped


def with_pixels(
    ds: datasets.Dataset,
    image_col: str,
    label_col: str,
    num_classes: int,
    image_size: int,
    resize_mode: str = "shorter_side_crop",
    label_map: Sequence[int] | None = None,
    source: str = "the dataset",
    skipped: int = 0,
) -> DecodedRows:
    """Keep the two columns and decode lazily to ``pixel_values`` in [0,1] and integer ``labels``
    (through ``label_map`` when the dataset's ids differ from the class-name order)."""
    rows = undecoded(ds.select_columns([image_col, label_col]), image_col)
    return DecodedRows(rows, image_col, label_col, num_classes, ImageTransform(image_size, resize_mode), source,
                       label_map, skipped)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long),
    }
