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

from .registry import clean_class_name, resolve_class_names
from .transforms import ImageTransform

logger = logging.getLogger(__name__)

IMAGE_COLUMN_GUESSES = ("image", "img", "jpg", "png", "jpeg", "webp")
LABEL_COLUMN_GUESSES = ("label", "labels", "fine_label", "cls", "class", "target")


class DataError(ValueError):
    """A dataset that cannot be used as given; the message says how to fix it."""


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "state.json"))


def _pick_split(dd: datasets.DatasetDict, split: str, source: str) -> datasets.Dataset:
    if split in dd:
        return dd[split]
    if len(dd) == 1:
        (only,) = dd.keys()
        logger.info("%s has a single split %r; using it for split %r.", source, only, split)
        return dd[only]
    raise DataError(f"{source} has no split {split!r}; its splits are {sorted(dd)}. Set the split field to one of them.")


def load_image_dataset(name_or_path: str, split: str = "train", config_name: str | None = None) -> datasets.Dataset:
    """Load one split of an image dataset from the Hub or from a local path."""
    path = Path(os.path.expanduser(name_or_path))
    if path.exists():
        if _is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                return _pick_split(loaded, split, str(path))
            return loaded
        if path.is_file():
            suffix = path.suffix.lower()
            builder = {".parquet": "parquet", ".tar": "webdataset"}.get(suffix)
            if builder is None:
                raise DataError(
                    f"Don't know how to read {path}: expected a .parquet file, a .tar webdataset shard, "
                    "a save_to_disk folder or an image folder."
                )
            return load_dataset_checked(builder, split="train", data_files=str(path))
        # A folder: let datasets infer the format (imagefolder / parquet / webdataset) and splits.
        return _pick_split(load_dataset_checked(str(path)), split, str(path))
    if os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")):
        raise DataError(
            f"Local dataset path {str(path)!r} does not exist. Point dataset_name at an existing folder "
            "(save_to_disk dataset, image folder, parquet or webdataset files), or at a Hub dataset id."
        )
    try:
        return load_dataset_checked(name_or_path, config_name, split=split)
    except Exception as err:  # network, gated repo, missing repo: one clear message
        raise DataError(
            f"Could not load dataset {name_or_path!r} (split {split!r}): {type(err).__name__}: {err}\n"
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
    if isinstance(class_names, str):
        path = Path(os.path.expanduser(class_names))
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        return [c.strip() for c in class_names.split(",") if c.strip()]
    return [str(c) for c in class_names]


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

    dataset: datasets.Dataset
    class_names: list[str]
    image_column: str
    label_column: str

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
) -> ClassificationData:
    ds = load_image_dataset(name_or_path, split, config_name)
    image_col = find_column(ds, image_column, IMAGE_COLUMN_GUESSES, "image")
    label_col = find_column(ds, label_column, LABEL_COLUMN_GUESSES, "label")
    names = dataset_class_names(ds, label_col, class_names)
    if max_samples is not None and max_samples < len(ds):
        ds = ds.select(range(max_samples))
    ds = with_pixels(ds, image_col, label_col, len(names), image_size, resize_mode)
    return ClassificationData(ds, names, image_col, label_col)


def with_pixels(
    ds: datasets.Dataset,
    image_col: str,
    label_col: str,
    num_classes: int,
    image_size: int,
    resize_mode: str = "shorter_side_crop",
    label_map: Sequence[int] | None = None,
) -> datasets.Dataset:
    """Keep the two columns and decode lazily to ``pixel_values`` in [0,1] and integer ``labels``
    (through ``label_map`` when the dataset's ids differ from the class-name order)."""
    ds = ds.select_columns([image_col, label_col])
    if not isinstance(ds.features[image_col], datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image())
    transform = ImageTransform(image_size, resize_mode)

    def decode(batch):
        labels = [int(y) for y in batch[label_col]]
        if label_map is not None:
            labels = [label_map[y] for y in labels]
        bad = [y for y in labels if not 0 <= y < num_classes]
        if bad:
            raise DataError(f"Label {bad[0]} is outside the {num_classes} class names; check class_names.")
        return {"pixel_values": [transform(im) for im in batch[image_col]], "labels": labels}

    return ds.with_transform(decode)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long),
    }
