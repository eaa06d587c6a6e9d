"""Which images, names and prompts each ``--datasets`` entry means.

An entry is a registry name (``cifar10``), a collection (``tga16``), ``NAME=PATH`` (a registry
dataset read from a local copy, or a named local dataset), a local path (image folder,
save_to_disk, parquet, webdataset tar) or a Hub id ``ORG/NAME``. Each resolves to one
:class:`EvalDataset`: decoded [0,1] images with integer labels, class names in label order,
prompt templates, the split it came from and a fingerprint of its data.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import prepare_classification_data, registry
from ..errors import UserError
from ..data.loading import with_pixels
from ..data.order import select_samples
from .arguments import DEFAULT_TEMPLATE, LOCAL_METADATA_FILE, EvalArguments


class DatasetUnavailable(RuntimeError, UserError):
    """A dataset that cannot be loaded; the message names it and says how to use a local copy."""


@dataclass
class EvalDataset:
    """One dataset ready for evaluation."""

    name: str  # key in results.json
    display_name: str
    source: str  # Hub id or local path
    split: str
    dataset: Any  # yields {"pixel_values": (3,H,W) in [0,1], "labels": int}
    class_names: list[str]
    templates: list[str]
    data_fingerprint: str
    samples: str = ""  # which samples: all, the first N, or CLIP_benchmark's N (tgazsr.data.order)

    def __len__(self) -> int:
        return len(self.dataset)

    def identity(self) -> dict:
        return dict(name=self.name, source=self.source, split=self.split, num_samples=len(self),
                    class_names=self.class_names, templates=self.templates, data=self.data_fingerprint)


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _fingerprint_of(ds) -> str:
    return str(getattr(ds, "_fingerprint", None) or _hash_json([len(ds), list(ds.column_names)]))


def _local_hint(name: str, hub_id: str | None, split: str | None) -> str:
    fetch = (
        f"datasets.load_dataset({hub_id!r}, split={split!r}).save_to_disk('DIR') on a machine that can reach "
        "the Hub (or an image folder / parquet files of the same split)"
        if hub_id else "a save_to_disk folder, an image folder, parquet or webdataset files"
    )
    return (
        f"To evaluate {name!r} from a local copy, make one with {fetch}, then pass "
        f"--datasets {name}=DIR (or put it at DATA_DIR/{name} and pass --data_dir DATA_DIR)."
    )


def _read_local_metadata(path: str) -> dict:
    meta = Path(path) / LOCAL_METADATA_FILE if os.path.isdir(path) else None
    if meta is not None and meta.is_file():
        return json.loads(meta.read_text(encoding="utf-8"))
    return {}


def _lookup_benchmark(entry: str):
    try:
        return registry.get_benchmark(entry)
    except ValueError:
        return None


def expand_entries(entries: list[str]) -> list[str]:
    """Collections (``tga16``, ``fare``, ...) replaced by their datasets, duplicates dropped."""
    out: list[str] = []
    for entry in entries:
        members = registry.collection(entry) if hasattr(registry, "collection") and "=" not in entry else None
        for item in members or [entry]:
            if item not in out:
                out.append(item)
    return out


def resolve_entry(entry: str, args: EvalArguments) -> tuple[str, str, str]:
    """``(kind, name, source)`` of a --datasets entry: kind 'registry', 'local' or 'hub'."""
    if "=" in entry and not os.path.exists(entry):
        name, path = entry.split("=", 1)
        path = os.path.expanduser(path)
        spec = _lookup_benchmark(name)
        if spec is not None:
            return "registry", spec.name, path
        return "local", name, path
    path = os.path.expanduser(entry)
    if os.path.exists(path):
        return "local", os.path.basename(os.path.normpath(path)), path
    spec = _lookup_benchmark(entry)
    if spec is None:
        if entry.count("/") == 1 and not entry.startswith((".", "/", "~")):
            return "hub", entry, entry  # a Hub dataset id: loaded with split, class_names, prompt_template
        try:
            registry.get_benchmark(entry)
        except ValueError as err:
            raise DatasetUnavailable(f"{err} A local dataset path must exist ({entry!r} does not).") from None
    if args.data_dir and os.path.exists(os.path.join(args.data_dir, spec.name)):
        return "registry", spec.name, os.path.join(args.data_dir, spec.name)
    if not spec.hub_id:
        raise DatasetUnavailable(f"{spec.name!r} has no Hub copy: pass it as {spec.name}=PATH to its local copy.")
    return "registry", spec.name, spec.hub_id


def entry_problems(entries: list[str], args: EvalArguments, require_local: bool = False) -> list[str]:
    """What is wrong with each --datasets entry, found before any model or data is loaded: a local
    path (or ``NAME=PATH`` copy) that does not exist, a name that means nothing. With
    ``require_local`` (the Hub is offline) an entry that would need the Hub is a problem too."""
    from ..model_checks import looks_local

    problems = []
    for entry in expand_entries(list(entries)):
        name, _, path = entry.partition("=") if "=" in entry and not os.path.exists(entry) else ("", "", entry)
        if not os.path.exists(os.path.expanduser(path)) and (name or looks_local(path)):
            what = f"The local copy {path} of {name!r}" if name else f"The dataset path {path}"
            problems.append(
                f"{what} does not exist. Pass an existing folder (save_to_disk dataset, image folder, parquet or "
                "webdataset files) or .parquet/.tar file, a registry name such as cifar10, or a Hub id ORG/NAME."
            )
            continue
        try:
            _, resolved, source = resolve_entry(entry, args)
        except DatasetUnavailable as err:
            problems.append(str(err))
            continue
        if require_local and not os.path.exists(source):
            problems.append(f"The entry {entry!r} needs the Hub ({source}), but the Hub is offline "
                            f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): pass a local copy as {resolved}=PATH.")
    return problems


def _prepare_registry(name: str, source: str, args: EvalArguments, image_size: int) -> EvalDataset:
    """The protocol's own source (``spec.source_for(protocol)``: every split the reference evaluated,
    CLIP_benchmark's copy for FARE), or its local copy at ``source``; labels checked by name (the
    data's ClassLabel, names file or class-name column) before any image is scored."""
    from ..data.sources import load_protocol_data

    spec = registry.get_benchmark(name)
    protocol = args.protocol
    data = load_protocol_data(spec, protocol, source if os.path.exists(source) else None)
    names = registry.class_names(spec, protocol, data.label_names)
    templates = registry.prompt_templates(spec, protocol, fix_typos=bool(args.fix_prompt_typos))
    mapping = registry.label_map(spec, protocol, data.label_names)
    ds, label_col = data.dataset, data.label_column
    if mapping is not None:
        ds = ds.filter(lambda y: mapping[int(y)] >= 0, input_columns=[label_col])
    ds, samples = select_samples(ds, args.sample_order, args.max_samples, seed=args.seed)
    fingerprint = _fingerprint_of(ds)
    pixels = with_pixels(ds, data.image_column, label_col, len(names), image_size, spec.resize, mapping)
    return EvalDataset(spec.name, spec.display_name, data.source, data.split, pixels, names, templates, fingerprint,
                       samples)


def _prepare_local(name: str, path: str, args: EvalArguments, image_size: int) -> EvalDataset:
    meta = _read_local_metadata(path)
    class_names = args.class_names or meta.get("class_names")
    data = prepare_classification_data(
        path, args.split, image_size, args.image_column or "image", args.label_column or "label", class_names,
        args.resize_mode, None, args.max_samples, sample_order=args.sample_order, seed=args.seed,
    )
    if args.prompt_template:
        templates = [args.prompt_template]
    else:
        templates = list(meta.get("classifier_templates") or [DEFAULT_TEMPLATE])
    return EvalDataset(name, meta.get("name") or name, path, data.split, data.dataset, list(data.class_names),
                       templates, _fingerprint_of(data.dataset), data.samples)


def prepare_dataset(entry: str, args: EvalArguments, image_size: int) -> EvalDataset:
    """Load one --datasets entry, or raise DatasetUnavailable with one clear message."""
    kind, name, source = resolve_entry(entry, args)
    try:
        if kind == "registry":
            return _prepare_registry(name, source, args, image_size)
        return _prepare_local(name, source, args, image_size)
    except Exception as err:  # unreachable Hub, gated repo, missing files or split, wrong columns or names
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hub_id, split = (None, args.split or "test")
        if kind == "registry":
            source_of = _lookup_benchmark(name).source_for(args.protocol)
            hub_id, split = source_of.hub_id, ",".join(source_of.splits)
        elif kind == "hub":
            hub_id = name
        raise DatasetUnavailable(
            f"Dataset {name!r} could not be loaded from {source!r}: {type(err).__name__}: {first}\n"
            + _local_hint(name, hub_id, split)
        ) from err
