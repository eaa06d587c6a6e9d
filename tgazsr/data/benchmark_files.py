"""Benchmark files: one YAML file per benchmark, read and checked into a :class:`BenchmarkDataset`.

A benchmark file (``tgazsr/data/benchmarks/<name>.yaml``, or one in a directory given to
``tgazsr.data.registry.add_benchmark_dir``) names the benchmark and, per protocol (``tga``,
``fare``), where its images are and how its text classifier is built::

    name: cifar100                  # the file's own name, without .yaml
    display_name: CIFAR-100
    aliases: [cifar-hundred]        # optional: other spellings --datasets accepts
    resize: square                  # or shorter_side_crop
    reference_images: 10000         # images the reference evaluated (null: not known)
    gated: false                    # optional: the Hub copy needs an accepted licence
    protocols:
      tga:
        source:
          repository: uoft-cs/cifar100   # Hub dataset id; null: only ever read from a local copy
          revision: null                 # a full commit id, or null (then ``pin`` says why)
          config: null                   # optional Hub config
          splits: [test]                 # several are concatenated
          split_sizes: {train: 50000, test: 10000}   # optional, rows per split
          image_column: img
          label_column: fine_label
          data_files: null               # optional, per split ("{split}/*.tar")
          names_file: null               # optional, the repository's file of class names
          label_text_column: null        # optional, a per-example class-name column
          verified: true                 # the cited pages show the id, splits and sizes
        num_classes: 100                 # classes of the text classifier
        class_names: {file: cifar100.txt, clean_chars: "_-/", wordnet_ids: false}
        templates: ["This is a photo of a {}"]     # or {file: clip_benchmark.json, key: cifar}
        templates_fixed: []              # optional, tga only: the templates with typos fixed
        label_check:
          method: names                  # names | positional | count
          compare_with: tga              # optional, tga only: which protocol's list the data's names meet
          aliases: {cra: crab}           # optional, tga only: the data's spelling -> the list's
          exclude_label_ids: []          # optional, tga only: data label ids dropped
          strip: ""                      # optional: regular expression removed from the data's names
        pin: "Not pinned: ..."           # why this revision, or why none
        provenance:                      # the public pages that confirm the source
          - url: https://huggingface.co/datasets/uoft-cs/cifar100/tree/main
            shows: the head of main ...
        notes: "..."                     # what else is known, and what is not confirmed
      fare:
        source: {same_as: tga, splits: [test]}   # or a source of its own, as above
        ...

A ``fare`` section whose source is ``same_as: tga`` reads one of the TGA source's splits with the
TGA label check (it has no ``num_classes``, ``label_check``, ``pin`` or ``provenance`` of its own).
Class-name files are read from the benchmark file's directory when they are there, else from the
shipped ``tgazsr/data/classnames/``; template files from ``tgazsr/data/templates/``.

Every field is checked when the file is read: an unknown, missing or ill-typed field, a class-name
file that does not exist, a template key the file lacks, a revision that is not a full commit id,
or an entry the registry's types refuse is a :class:`BenchmarkFileError` naming the file and the
field. ``collections.yaml`` in the same directory names groups of benchmarks
(:func:`read_collections`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..yaml_sections import Section, read_yaml
from .benchmark import HUB_CHECKS, PROTOCOLS, RESIZE_MODES, BenchmarkDataset, HubSource
from .task import template_problem

__all__ = [
    "BENCHMARKS_DIR",
    "CLASSNAMES_DIR",
    "COLLECTIONS_FILE",
    "TEMPLATES_DIR",
    "BenchmarkFile",
    "BenchmarkFileError",
    "benchmark_paths",
    "read_benchmark",
    "read_collections",
    "read_templates",
]

_DATA = Path(__file__).resolve().parent
#: The shipped benchmark files.
BENCHMARKS_DIR = _DATA / "benchmarks"
#: The shipped class-name lists.
CLASSNAMES_DIR = _DATA / "classnames"
#: The shipped prompt-template files.
TEMPLATES_DIR = _DATA / "templates"
#: The file of a benchmark directory that names its collections.
COLLECTIONS_FILE = "collections.yaml"

_COMMIT = re.compile(r"[0-9a-f]{40}")


class BenchmarkFileError(ValueError, UserError):
    """A benchmark or collections file that cannot be used as written; the message names the file
    and the field."""


@dataclass(frozen=True)
class BenchmarkFile:
    """One benchmark file, read and checked."""

    path: Path
    spec: BenchmarkDataset
    aliases: tuple[str, ...] = ()


def read_templates(name: str) -> dict[str, tuple[str, ...]]:
    """A template file ``templates/<name>`` (``.json`` added when missing): key -> templates."""
    path = TEMPLATES_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"No shipped template file {path.name!r} in {TEMPLATES_DIR}.")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        raise ValueError(f"{path}: expected an object mapping each key to a non-empty list of templates.")
    for key, templates in data.items():
        problems = [template_problem(t) for t in templates]
        if any(problems):
            raise ValueError(f"{path}: key {key!r}: {next(p for p in problems if p)}")
    return {str(k): tuple(v) for k, v in data.items()}


class _Section(Section):
    """One mapping of a benchmark or collections file (:class:`tgazsr.yaml_sections.Section`)."""

    error = BenchmarkFileError


def _names_file(path: Path, section: _Section, key: str) -> str:
    """The class-name file named at ``key``: beside the benchmark file (absolute path), else shipped."""
    name = section.text(key)
    local = path.parent / name
    if local.is_file():
        return str(local.resolve())
    if (CLASSNAMES_DIR / name).is_file():
        return name
    section.fail(key, f"no class-name file {name!r} beside the file nor in {CLASSNAMES_DIR}")


def _templates(section: _Section, key: str) -> tuple[str, ...]:
    """A list of templates, or ``{file: <template file>, key: <its key>}``."""
    value = section.get(key, (list, dict))
    if isinstance(value, list):
        templates = section.texts(key)
        for template in templates:
            problem = template_problem(template)
            if problem:
                section.fail(key, problem.rstrip("."))
        return templates
    ref = _Section(section.path, section.field(key), value)
    file, entry = ref.text("file"), ref.text("key")
    ref.done()
    try:
        templates = read_templates(file)
    except (FileNotFoundError, ValueError) as err:
        ref.fail("file", str(err).rstrip("."))
    if entry not in templates:
        ref.fail("key", f"{file} has no key {entry!r} (its keys: {', '.join(templates)})")
    return templates[entry]


def _source(section: _Section) -> dict[str, Any]:
    """The fields of a ``source`` mapping (a Hub repository or a local-only dataset)."""
    repository = section.text("repository", none=True)
    revision = section.text("revision", None, none=True)
    if revision is not None and not _COMMIT.fullmatch(revision):
        section.fail("revision", f"expected a full commit id (40 hex digits), got {revision!r}")
    if revision is not None and repository is None:
        section.fail("revision", "a local-only dataset (repository: null) has no revision")
    splits = section.texts("splits")
    if not splits or len(set(splits)) != len(splits):
        section.fail("splits", f"expected distinct split names, got {list(splits)!r}")
    sizes = section.get("split_sizes", dict, {})
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
               for k, v in sizes.items()):
        section.fail("split_sizes", f"expected split name -> positive row count, got {sizes!r}")
    fields = dict(
        hub_id=repository, revision=revision, config_name=section.text("config", None, none=True), splits=splits,
        split_sizes=tuple(sizes.items()), image_column=section.text("image_column"),
        label_column=section.text("label_column"), data_files=section.text("data_files", None, none=True),
        names_file=section.text("names_file", None, none=True),
        label_text_column=section.text("label_text_column", None, none=True),
        verified=section.get("verified", bool, False),
    )
    section.done()
    return fields


def _provenance(protocol: _Section, repository: str | None, revision: str | None) -> str:
    """``pin``, the cited pages and ``notes`` as one text (the source's ``notes``)."""
    pin = protocol.text("pin", None if repository is None else ...)
    pages = protocol.get("provenance", list, [])
    sentences = []
    for i, page in enumerate(pages):
        item = _Section(protocol.path, protocol.field(f"provenance[{i}]"), page)
        url, shows = item.text("url"), item.text("shows")
        item.done()
        if not url.startswith("https://"):
            item.fail("url", f"expected a public https:// address, got {url!r}")
        sentences.append(f"{url} shows {shows.rstrip('.')}.")
    if revision is not None:
        if not pin or not pin.startswith("Pinned " + revision[:7]):
            protocol.fail("pin", f"a pinned source says why: 'Pinned {revision[:7]} ...'")
        if not pages:
            protocol.fail("provenance", "a pinned source cites the pages that show its revision")
    elif pin is not None and not pin.startswith("Not pinned"):
        protocol.fail("pin", "without a revision, pin says why: 'Not pinned: ...'")
    notes = protocol.text("notes", "", empty=True)
    return " ".join(part.strip() for part in (pin or "", *sentences, notes) if part and part.strip())


def _label_check(protocol: _Section, tga: bool) -> dict[str, Any]:
    check = protocol.section("label_check")
    method = check.text("method")
    if method not in HUB_CHECKS:
        check.fail("method", f"expected one of {', '.join(HUB_CHECKS)}, got {method!r}")
    fields: dict[str, Any] = dict(method=method, strip=check.text("strip", "", empty=True))
    if fields["strip"]:
        try:
            re.compile(fields["strip"])
        except re.error as err:
            check.fail("strip", f"not a regular expression: {err}")
    if tga:
        fields["compare_with"] = check.text("compare_with", "tga")
        if fields["compare_with"] not in PROTOCOLS:
            check.fail("compare_with", f"expected one of {', '.join(PROTOCOLS)}")
        aliases = check.get("aliases", dict, {})
        if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in aliases.items()):
            check.fail("aliases", f"expected the data's name -> the list's name, got {aliases!r}")
        fields["aliases"] = tuple(aliases.items())
        excluded = check.get("exclude_label_ids", list, [])
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in excluded):
            check.fail("exclude_label_ids", f"expected label ids (integers >= 0), got {excluded!r}")
        fields["exclude_label_ids"] = tuple(excluded)
    check.done()
    return fields


def _class_names(path: Path, protocol: _Section, tga: bool) -> dict[str, Any]:
    names = protocol.section("class_names")
    fields = dict(file=_names_file(path, names, "file"), clean_chars=names.text("clean_chars", "", empty=True))
    if tga:
        fields["wordnet_ids"] = names.get("wordnet_ids", bool, False)
    names.done()
    return fields


def read_benchmark(path: str | Path) -> BenchmarkFile:
    """Read and check the benchmark file ``path``."""
    path = Path(path)
    data = read_yaml(path, BenchmarkFileError)
    top = _Section(path, "", data)
    name = top.text("name")
    if name != path.stem:
        top.fail("name", f"{name!r} differs from the file's name {path.stem!r}")
    aliases = top.texts("aliases", ())
    gated = top.get("gated", bool, False)
    display_name, resize = top.text("display_name"), top.text("resize")
    if resize not in RESIZE_MODES:
        top.fail("resize", f"expected one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    reference = top.get("reference_images", int, none=True)
    protocols = top.section("protocols")
    tga, fare = protocols.section("tga"), protocols.section("fare")
    protocols.done()
    top.done()

    source = _source(tga.section("source"))
    num_classes = tga.get("num_classes", int)
    names = _class_names(path, tga, tga=True)
    templates = _templates(tga, "templates")
    fixed = tga.texts("templates_fixed", ())
    check = _label_check(tga, tga=True)
    notes = _provenance(tga, source["hub_id"], source["revision"])
    tga.done()

    fare_source_section = fare.section("source")
    fare_names = _class_names(path, fare, tga=False)
    fare_templates = _templates(fare, "templates")
    if fare_source_section.has("same_as"):
        if fare_source_section.text("same_as") != "tga":
            fare_source_section.fail("same_as", "the one other protocol is 'tga'")
        splits = fare_source_section.texts("splits")
        fare_source_section.done()
        if len(splits) != 1 or splits[0] not in source["splits"]:
            fare_source_section.fail("splits", f"expected one of the TGA source's splits {list(source['splits'])}, "
                                               f"got {list(splits)}")
        split = splits[0]
        fare_notes = fare.text("notes", "", empty=True)
        notes = " ".join(p for p in (notes, fare_notes.strip()) if p)
        fare_source = None
    else:
        fields = _source(fare_source_section)
        split = source["splits"][-1]
        fare_check = _label_check(fare, tga=False)
        fare_source = _make(path, "protocols.fare", HubSource, **fields, num_classes=fare.get("num_classes", int),
                            name_strip=fare_check["strip"], hub_check=fare_check["method"],
                            notes=_provenance(fare, fields["hub_id"], fields["revision"]))
    fare.done()

    spec = _make(
        path, "protocols.tga", BenchmarkDataset,
        name=name, display_name=display_name, hub_id=source["hub_id"], split=split,
        splits=() if source["splits"] == (split,) else source["splits"], image_column=source["image_column"],
        label_column=source["label_column"], num_classes=num_classes, templates=templates,
        fare_templates=fare_templates, class_names_file=names["file"],
        fare_class_names_file=None if fare_names["file"] == names["file"] else fare_names["file"],
        config_name=source["config_name"], resize=resize, wnid_labels=names["wordnet_ids"],
        clean_chars=names["clean_chars"], fare_clean_chars=fare_names["clean_chars"], hub_check=check["method"],
        hub_key=check["compare_with"], hub_aliases=check["aliases"], exclude_label_ids=check["exclude_label_ids"],
        label_text_column=source["label_text_column"], gated=gated, hub_verified=source["verified"], notes=notes,
        split_sizes=source["split_sizes"], reference_images=reference, hub_revision=source["revision"],
        hub_data_files=source["data_files"], hub_names_file=source["names_file"], hub_name_strip=check["strip"],
        fixed_templates=fixed, fare_source=fare_source,
    )
    return BenchmarkFile(path, spec, aliases)


def _make(path: Path, where: str, kind: type, **fields):
    """``kind(**fields)``, its own checks' ValueError turned into an error naming the file."""
    try:
        return kind(**fields)
    except ValueError as err:
        raise BenchmarkFileError(f"{path}: {where}: {err}") from None


def benchmark_paths(directory: str | Path) -> list[Path]:
    """The benchmark files of ``directory`` (``*.yaml`` but ``collections.yaml``), by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BenchmarkFileError(f"{directory}: not a directory of benchmark files.")
    return sorted(p for p in directory.glob("*.yaml") if p.name != COLLECTIONS_FILE)


def read_collections(directory: str | Path) -> dict[str, tuple[str, ...]]:
    """``collections.yaml`` of ``directory`` (none: no collections): name -> members, in order.

    The file maps each collection's name to ``{description: ..., members: [...]}``.
    """
    path = Path(directory) / COLLECTIONS_FILE
    if not path.is_file():
        return {}
    data = read_yaml(path, BenchmarkFileError)
    top = _Section(path, "", data)
    out = {}
    for name in list(top.items):
        if not isinstance(name, str) or not name:
            top.fail(str(name), "a collection needs a non-empty name")
        entry = top.section(name)
        entry.text("description")
        members = entry.texts("members")
        if not members:
            entry.fail("members", "a collection has at least one member")
        entry.done()
        out[name] = members
    top.done()
    return out
