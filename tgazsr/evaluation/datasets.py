"""Which images, names and prompts each ``--datasets`` entry means.

An entry is a registry name (``cifar10``), a collection (``tga16``), ``NAME=PATH`` (a registry
dataset read from a local copy, or a named local dataset), a local path (image folder,
save_to_disk, parquet, webdataset tar) or a Hub id ``ORG/NAME``.

Once per run, :func:`resolve_entries` turns the entries (collections expanded) into one
:class:`ResolvedEntry` each: what it names (the registry entry, the local copy or Hub id) and its
prompt templates. Every later step takes that object: the evaluation command checks the entries
with it, the harness evaluates it, and :func:`prepare_dataset` loads its data, checks the data's
labels against the registry once (``tgazsr.data.registry.resolve_labels``: class names, label
order, label map) and gives one :class:`EvalDataset`: decoded [0,1] images with integer labels,
class names in label order, prompt templates, the split it came from and a fingerprint of its data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import prepare_classification_data, registry
from ..errors import UserError
from ..data.images import UnreadableImageError
from ..data.loading import drop_unreadable, with_pixels
from ..data.order import select_samples
from ..data.task import TaskError, check_task, check_templates
from .cache import hash_json
from .arguments import DEFAULT_TEMPLATE, LOCAL_METADATA_FILE, EvalArguments


class DatasetUnavailable(RuntimeError, UserError):
    """A dataset that cannot be loaded; the message names it and says how to use a local copy."""


@dataclass(frozen=True)
class ResolvedEntry:
    """One ``--datasets`` entry, resolved once per run (:func:`resolve_entries`)."""

    entry: str  # as given (a collection's member: its registry name)
    kind: str  # "registry", "local" or "hub"
    name: str  # key in results.json
    source: str  # the local copy's path, or the Hub id
    templates: tuple[str, ...]  # the prompt templates (``{}`` = class name; no ``{}``: one per class)
    spec: registry.BenchmarkDataset | None = None  # the registry entry (kind "registry")
    metadata: dict | None = None  # a local folder's tgazsr_eval.json

    @property
    def error_key(self) -> str:
        """The name an error of this entry is reported under in results.json."""
        return self.entry.split("=", 1)[0] if "=" in self.entry and not os.path.exists(self.entry) else self.entry


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
    skipped_images: int = 0  # unreadable images left out on purpose (skip_unreadable_images)

    def __len__(self) -> int:
        return len(self.dataset)

    def identity(self) -> dict:
        return dict(name=self.name, source=self.source, split=self.split, num_samples=len(self),
                    class_names=self.class_names, templates=self.templates, data=self.data_fingerprint)




def _fingerprint_of(ds) -> str:
    return str(getattr(ds, "_fingerprint", None) or hash_json([len(ds), list(ds.column_names)]))


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
        members = registry.collection(entry) if "=" not in entry else None
        for item in members or [entry]:
            if item not in out:
                out.append(item)
    return out


def _registry_entry(entry: str, spec, source: str, args: EvalArguments) -> ResolvedEntry:
    templates = registry.prompt_templates(spec, args.protocol, fix_typos=bool(args.fix_prompt_typos))
    return ResolvedEntry(entry, "registry", spec.name, source, tuple(templates), spec=spec)


def _local_entry(entry: str, kind: str, name: str, path: str, args: EvalArguments) -> ResolvedEntry:
    try:
        meta = _read_local_metadata(path)
    except (OSError, ValueError) as err:
        raise DatasetUnavailable(f"{path}: its {LOCAL_METADATA_FILE} cannot be read: {err}") from None
    if args.prompt_template:
        templates = [args.prompt_template]
    else:
        templates = list(meta.get("classifier_templates") or [DEFAULT_TEMPLATE])
        try:
            check_templates(templates, f"{path}: {LOCAL_METADATA_FILE} classifier_templates")
        except TaskError as err:
            raise DatasetUnavailable(str(err)) from None
    return ResolvedEntry(entry, kind, name, path, tuple(templates), metadata=meta)


def resolve_entry(entry: str, args: EvalArguments) -> ResolvedEntry:
    """What one --datasets entry (not a collection) names: a registry entry (from its Hub copy,
    ``DATA_DIR/<name>`` or ``NAME=PATH``), a local dataset or a Hub id; raises DatasetUnavailable
    for a name that means nothing."""
    if "=" in entry and not os.path.exists(entry):
        name, path = entry.split("=", 1)
        path = os.path.expanduser(path)
        spec = _lookup_benchmark(name)
        if spec is not None:
            return _registry_entry(entry, spec, path, args)
        return _local_entry(entry, "local", name, path, args)
    path = os.path.expanduser(entry)
    if os.path.exists(path):
        return _local_entry(entry, "local", os.path.basename(os.path.normpath(path)), path, args)
    spec = _lookup_benchmark(entry)
    if spec is None:
        if entry.count("/") == 1 and not entry.startswith((".", "/", "~")):
            return _local_entry(entry, "hub", entry, entry, args)  # a Hub dataset id: split, class_names, prompt
        try:
            registry.get_benchmark(entry)
        except ValueError as err:
            raise DatasetUnavailable(f"{err} A local dataset path must exist ({entry!r} does not).") from None
    if args.data_dir and os.path.exists(os.path.join(args.data_dir, spec.name)):
        return _registry_entry(entry, spec, os.path.join(args.data_dir, spec.name), args)
    if not spec.hub_id:
        raise DatasetUnavailable(f"{spec.name!r} has no Hub copy: pass it as {spec.name}=PATH to its local copy.")
    return _registry_entry(entry, spec, spec.hub_id, args)


def resolve_entries(
    entries: list[str], args: EvalArguments, require_local: bool = False
) -> tuple[list[ResolvedEntry], list[str]]:
    """Each --datasets entry (collections expanded, duplicates dropped) resolved once, and what is
    wrong with the others, found before any model or data is loaded: a local path (or
    ``NAME=PATH`` copy) that does not exist, a name that means nothing. With ``require_local``
    (the Hub is offline) an entry that would need the Hub is a problem too."""
    from ..model_checks import looks_local

    resolved, problems = [], []
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
            item = resolve_entry(entry, args)
        except DatasetUnavailable as err:
            problems.append(str(err))
            continue
        if require_local and not os.path.exists(item.source):
            problems.append(f"The entry {entry!r} needs the Hub ({item.source}), but the Hub is offline "
                            f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): pass a local copy as {item.name}=PATH.")
            continue
        resolved.append(item)
    return resolved, problems


def entry_problems(entries: list[str], args: EvalArguments, require_local: bool = False) -> list[str]:
    """What is wrong with each --datasets entry (:func:`resolve_entries`), nothing else."""
    return resolve_entries(entries, args, require_local)[1]


def _prepare_registry(item: ResolvedEntry, args: EvalArguments, image_size: int) -> EvalDataset:
    """The protocol's own source (``spec.source_for(protocol)``: every split the reference evaluated,
    CLIP_benchmark's copy for FARE), or its local copy at ``item.source``; labels checked once by
    name (the data's ClassLabel, names file or class-name column) before any image is scored, and
    that check's class names and label map used."""
    from ..data.sources import load_protocol_data

    spec, source = item.spec, item.source
    data = load_protocol_data(spec, args.protocol, source if os.path.exists(source) else None)
    names, templates = list(data.labels.class_names), list(item.templates)
    mapping = list(data.labels.label_map) if data.labels.label_map is not None else None
    ds, label_col = data.dataset, data.label_column
    if mapping is not None:
        ds = ds.filter(lambda y: mapping[int(y)] >= 0, input_columns=[label_col])
    ds, samples = select_samples(ds, args.sample_order, args.max_samples, seed=args.seed)
    ds, skipped = drop_unreadable(ds, data.image_column, spec.name, args.skip_unreadable_images)
    check_task(spec.name, ds, data.image_column, label_col, names, label_map=mapping)
    fingerprint = _fingerprint_of(ds)
    pixels = with_pixels(ds, data.image_column, label_col, len(names), image_size, spec.resize, mapping,
                         source=spec.name, skipped=skipped)
    return EvalDataset(spec.name, spec.display_name, data.source, data.split, pixels, names, templates, fingerprint,
                       samples, skipped)


def _prepare_local(item: ResolvedEntry, args: EvalArguments, image_size: int) -> EvalDataset:
    meta = item.metadata or {}
    class_names = args.class_names or meta.get("class_names")
    data = prepare_classification_data(
        item.source, args.split, image_size, args.image_column or "image", args.label_column or "label",
        class_names, args.resize_mode, None, args.max_samples, sample_order=args.sample_order, seed=args.seed,
        skip_unreadable_images=args.skip_unreadable_images,
    )
    return EvalDataset(item.name, meta.get("name") or item.name, item.source, data.split, data.dataset,
                       list(data.class_names), list(item.templates), _fingerprint_of(data.dataset), data.samples,
                       data.skipped_images)


def prepare_dataset(entry: str | ResolvedEntry, args: EvalArguments, image_size: int) -> EvalDataset:
    """Load one --datasets entry (resolved by :func:`resolve_entries`, or a string, resolved here),
    or raise DatasetUnavailable with one clear message."""
    item = resolve_entry(entry, args) if isinstance(entry, str) else entry
    try:
        if item.kind == "registry":
            return _prepare_registry(item, args, image_size)
        return _prepare_local(item, args, image_size)
    except (TaskError, UnreadableImageError) as err:  # the data loaded but cannot be used: no local-copy hint
        named = str(err).startswith((item.source, item.name))
        raise DatasetUnavailable(f"Dataset {item.name!r}: {err}" if named else
                                 f"Dataset {item.name!r} ({item.source}): {err}") from err
    except Exception as err:  # unreachable Hub, gated repo, missing files or split, wrong columns or names
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hub_id, split = (None, args.split or "test")
        if item.kind == "registry":
            source_of = item.spec.source_for(args.protocol)
            hub_id, split = source_of.hub_id, ",".join(source_of.splits)
        elif item.kind == "hub":
            hub_id = item.name
        raise DatasetUnavailable(
            f"Dataset {item.name!r} could not be loaded from {item.source!r}: {type(err).__name__}: {first}\n"
            + _local_hint(item.name, hub_id, split)
        ) from err
