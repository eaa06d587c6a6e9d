"""The images a benchmark protocol evaluates, with every label checked before one is scored.

:func:`load_protocol_data` reads the source ``BenchmarkDataset.source_for(protocol)`` names, from
the Hub or from a local copy of it, concatenates its splits (the TGA protocol evaluates the
datasets the reference evaluated whole on every split of their Hub copy), and checks its labels
against the registry: the data's own label names (ClassLabel, or a names file such as
CLIP_benchmark's ``classnames.txt``) by name or in order, a per-example class-name column (every
label id's name), and the label values (the number of classes only where the data names none).
Any mismatch is an error here, before the evaluation sees an image.

:func:`load_splits` and :func:`label_names` are shared with the data check (``tgazsr.data.check``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from . import registry
from .loading import LABEL_COLUMN_GUESSES, DataError, load_dataset_checked, load_image_dataset

__all__ = [
    "ProtocolData",
    "check_labels",
    "image_column",
    "label_column",
    "label_names",
    "load_protocol_data",
    "load_splits",
    "read_names_file",
    "source_label",
]


@dataclass
class ProtocolData:
    """One protocol's evaluation images of a registry dataset, labels checked."""

    dataset: datasets.Dataset  # the evaluated splits, concatenated
    source: str  # Hub id (``@revision`` when pinned) or local path
    split: str  # "test", or "train+validation+test" for several splits
    image_column: str
    label_column: str
    label_names: list[str] | None  # the data's own label names (None: it names no classes)
    names_origin: str  # "ClassLabel", the names file, or "none"
    split_rows: dict[str, int]  # rows per split as loaded
    labels: registry.ResolvedLabels  # the protocol's class names and label map for this data, checked once


def source_label(source: registry.HubSource) -> str:
    """``hub_id``, with ``@revision`` when it is pinned."""
    if source.hub_id is None:
        return "a local copy"
    return f"{source.hub_id}@{source.revision[:12]}" if source.revision else source.hub_id


def image_column(features: Any, wanted: str | None) -> str:
    """``wanted`` when the data has it, else its one Image column (webdataset repos name the image
    column after the file type)."""
    columns = list(features or {})
    if wanted and wanted in columns:
        return wanted
    images = [name for name, feature in (features or {}).items() if isinstance(feature, datasets.Image)]
    if len(images) == 1:
        return images[0]
    raise DataError(f"No image column {wanted!r} among {columns}, and {len(images)} Image columns to choose from.")


def label_column(columns: list[str], wanted: str) -> str:
    """``wanted`` when the data has it, else the first usual label column name."""
    for name in (wanted, *LABEL_COLUMN_GUESSES):
        if name in columns:
            return name
    raise DataError(f"No label column {wanted!r} among {columns}.")


def read_names_file(source: registry.HubSource, local_path: str | None = None) -> list[str] | None:
    """The class names of ``source.names_file`` (one per line), from the local copy's folder or the
    Hub repository; None when the source declares no names file or the local copy has none."""
    if not source.names_file:
        return None
    if local_path is not None:
        path = Path(local_path) / source.names_file
        if not path.is_file():
            return None
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(source.hub_id, source.names_file, repo_type="dataset", revision=source.revision))
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def label_names(
    features: Any, label_col: str, source: registry.HubSource, local_path: str | None = None
) -> tuple[list[str] | None, str]:
    """The data's own label names and where they come from: the ClassLabel, the names file, or none."""
    feature = (features or {}).get(label_col)
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), "ClassLabel"
    names = read_names_file(source, local_path)
    if names is not None:
        return names, source.names_file
    return None, "none"


def _hub_split(source: registry.HubSource, split: str, streaming: bool):
    kwargs: dict[str, Any] = dict(split=split, revision=source.revision, streaming=streaming)
    pattern = source.file_pattern(split)
    if pattern:
        kwargs["data_files"] = {split: pattern}
    try:
        return load_dataset_checked(source.hub_id, source.config_name, **kwargs)
    except ValueError as err:
        if "unknown split" in str(err).lower() and not isinstance(err, DataError):
            raise DataError(f"{source.hub_id} has no split {split!r}: {err}") from err
        raise


def _local_wds(source: registry.HubSource, path: Path) -> dict[str, datasets.Dataset] | None:
    """The splits of a local copy laid out like the Hub repository (``test/0.tar`` ...), or None."""
    if not source.data_files or not path.is_dir():
        return None
    files = {s: sorted(glob.glob(str(path / source.file_pattern(s)))) for s in source.splits}
    if not any(files.values()):
        return None
    missing = [s for s, found in files.items() if not found]
    if missing:
        raise DataError(f"{path} has no split {missing[0]!r} (no files match {source.file_pattern(missing[0])!r}).")
    return {s: load_dataset_checked("webdataset", data_files={s: found}, split=s) for s, found in files.items()}


def _local_splits(source: registry.HubSource, local_path: str) -> dict[str, datasets.Dataset]:
    path = Path(os.path.expanduser(local_path))
    wds = _local_wds(source, path)
    if wds is not None:
        return wds
    if path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "state.json")):
        loaded = datasets.load_from_disk(str(path))
    elif path.is_file():
        loaded = load_image_dataset(str(path), None)  # one file: one unnamed split
        loaded = datasets.Dataset(loaded.data, info=loaded.info)  # forget the 'train' it was read as
    else:
        loaded = load_dataset_checked(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        missing = [s for s in source.splits if s not in loaded]
        if missing:
            raise DataError(
                f"{path} has no split {missing[0]!r}; its splits are {sorted(loaded)}. The protocol reads "
                f"{source.split_label}: save every one of these splits (DatasetDict.save_to_disk)."
            )
        return {s: loaded[s] for s in source.splits}
    recorded = str(loaded.split) if getattr(loaded, "split", None) is not None else None
    if recorded is None or source.splits == (recorded,):
        return {recorded or source.split_label: loaded}  # an unnamed copy stands for all the splits read
    raise DataError(f"{path} holds the single split {recorded!r}, not {source.split_label}.")


def load_splits(
    source: registry.HubSource, local_path: str | None = None, streaming: bool = False
) -> dict[str, Any]:
    """Each split ``source`` evaluates, by name, from ``local_path`` or the Hub.

    A local copy is a ``save_to_disk`` folder, parquet / image folders, or webdataset shards laid
    out like the Hub repository; a copy saved without split names stands for all the splits read
    (one entry, keyed ``source.split_label``). A missing split is a ``DataError``.
    """
    if local_path is not None:
        return _local_splits(source, local_path)
    if source.hub_id is None:
        raise DataError("This dataset has no Hub copy: give its local copy.")
    return {s: _hub_split(source, s, streaming) for s in source.splits}


def check_labels(
    spec: registry.BenchmarkDataset,
    protocol: str,
    ds: datasets.Dataset,
    label_col: str,
    names: list[str] | None,
) -> registry.ResolvedLabels:
    """Check the labels of the whole of ``ds`` against the registry, once; returns the protocol's
    class names and label map for this data (:func:`tgazsr.data.registry.resolve_labels`).

    The data's names (ClassLabel or names file) by the source's ``hub_check``; the class-name
    column, every label id; the label values within the classes (and, where the data names no
    classes, every class present: a count-only check).
    """
    source = spec.source_for(protocol)
    labels = registry.resolve_labels(spec, protocol, names)  # count, names, order: ValueError on a mismatch
    values = sorted({int(v) for v in ds.unique(label_col)})
    outside = [v for v in values if not 0 <= v < source.num_classes]
    if outside:
        raise DataError(f"{spec.name}: label values {outside[:5]} are outside the {source.num_classes} classes.")
    text = source.label_text_column
    if text:
        if text not in ds.column_names:
            raise DataError(f"{spec.name}: the class-name column {text!r} is missing (columns {ds.column_names}).")
        table = ds.select_columns([label_col, text]).to_dict()
        registry.check_label_texts(spec, protocol, zip(table[label_col], table[text]), labels=labels)
    elif names is None and len(values) != source.num_classes:
        raise DataError(
            f"{spec.name}: {len(values)} label values occur, the registry expects {source.num_classes} classes."
        )
    return labels


def load_protocol_data(
    spec: registry.BenchmarkDataset | str, protocol: str = "tga", local_path: str | None = None
) -> ProtocolData:
    """Load what ``protocol`` evaluates of ``spec`` (from ``local_path`` when given) and check its
    labels (:func:`check_labels`); raises ``DataError`` or ``ValueError`` on any mismatch."""
    spec = registry.get_benchmark(spec)
    source = spec.source_for(protocol)
    parts = load_splits(source, local_path)
    ds = next(iter(parts.values())) if len(parts) == 1 else datasets.concatenate_datasets(list(parts.values()))
    image_col = image_column(ds.features, source.image_column)
    label_col = label_column(list(ds.column_names), source.label_column)
    names, origin = label_names(ds.features, label_col, source, local_path)
    labels = check_labels(spec, protocol, ds, label_col, names)
    return ProtocolData(
        dataset=ds, source=local_path or source_label(source), split=source.split_label, image_column=image_col,
        label_column=label_col, label_names=names, names_origin=origin,
        split_rows={name: len(part) for name, part in parts.items()}, labels=labels,
    )
