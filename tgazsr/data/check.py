"""Check the benchmark's data without evaluating it: every source loads, every label is checked.

:func:`check_data` visits registry entries and, for the chosen protocol, reads only metadata and a
few rows of each source (streamed from the Hub, or from a local copy at ``DATA_DIR/<name>``):
the splits the protocol evaluates must exist with the sizes the registry records, the data's label
names (ClassLabel, names file, class-name column) must match the registered names in the
registered way, and the label values must fit the classes. :func:`format_check_table` writes the
result as a markdown table. Nothing is downloaded beyond the metadata and the rows read, except
that a local copy is opened whole (memory-mapped for ``save_to_disk`` copies).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Sequence

from ..limits import setting, with_limits_in_help
from . import registry
from .sources import image_column, label_column, label_names, load_splits, source_label

__all__ = ["check_data", "check_entry", "format_check_table"]

OK, FAILED, UNREACHABLE = "ok", "failed", "unreachable"


class _Unreachable(RuntimeError):
    """The Hub (or the repository) could not be reached; nothing was checked."""


@dataclass
class _Peek:
    features: Any
    split_rows: dict[str, int | None]  # rows per split, None where the metadata does not say
    rows: list[dict] = field(default_factory=list)
    names: list[str] | None = None
    names_origin: str = "none"


def _unreachable_types() -> tuple[type, ...]:
    kinds: list[type] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub import errors as hub_errors

        kinds += [hub_errors.HfHubHTTPError, hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError]
    except (ImportError, AttributeError):
        pass
    try:
        from datasets.exceptions import DatasetNotFoundError

        kinds.append(DatasetNotFoundError)
    except ImportError:
        pass
    return tuple(kinds)


def _peek_local(spec, source: registry.HubSource, path: str, max_rows: int) -> _Peek:
    parts = load_splits(source, path)
    first = next(iter(parts.values()))
    rows = [part[i] for part in parts.values() for i in range(min(max_rows, len(part)))]
    label_col = label_column(list(first.column_names), source.label_column)
    names, origin = label_names(first.features, label_col, source, path)
    return _Peek(first.features, {name: len(part) for name, part in parts.items()}, rows, names, origin)


def _peek_hub(spec, source: registry.HubSource, max_rows: int) -> _Peek:
    import datasets

    try:
        patterns = {s: source.file_pattern(s) for s in source.splits} if source.data_files else None
        builder = datasets.load_dataset_builder(
            source.hub_id, source.config_name, revision=source.revision, data_files=patterns
        )
        known = dict((builder.info.splits or {}).items())
        listed = list(builder.config.data_files or {}) if builder.config.data_files else list(known)
        missing = [s for s in source.splits if listed and s not in listed]
        if missing:
            raise ValueError(f"{source.hub_id} has no split {missing[0]!r}; its splits are {sorted(listed)}.")
        streams = load_splits(source, None, streaming=True)
        rows = [row for stream in streams.values() for row in islice(iter(stream), max_rows)]
        features = next(iter(streams.values())).features or builder.info.features
        if features is None and rows:  # typed from the rows read: decoded images are PIL images
            features = {k: datasets.Image() if hasattr(v, "mode") and hasattr(v, "size") else None
                        for k, v in rows[0].items()}
        label_col = label_column(list(features or {}), source.label_column)
        names, origin = label_names(features, label_col, source, None)
    except _unreachable_types() as err:
        raise _Unreachable(f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}") from err
    sizes = {s: (known[s].num_examples if s in known and known[s].num_examples else None) for s in source.splits}
    return _Peek(features, sizes, rows, names, origin)


def _verify(spec, protocol: str, source: registry.HubSource, peek: _Peek) -> str:
    """Checks of the peeked metadata and rows; raises ValueError, returns what was checked."""
    notes = []
    expected = dict(source.split_sizes)
    if source.split_label in peek.split_rows and source.split_label not in source.splits:  # an unnamed copy
        expected = {source.split_label: source.expected_rows()} if source.expected_rows() else {}
    for split, rows in peek.split_rows.items():
        want = expected.get(split)
        if rows is not None and want is not None and rows != want:
            raise ValueError(f"split {split!r} has {rows:,} rows, the registry expects {want:,}.")
    if all(rows is not None for rows in peek.split_rows.values()):
        total = sum(peek.split_rows.values())
        notes.append(f"{total:,} images")
    else:
        unknown = [s for s, rows in peek.split_rows.items() if rows is None]
        notes.append(f"size of {', '.join(unknown)} not in the metadata (registry: "
                     f"{source.expected_rows():,})" if source.expected_rows() else
                     f"size of {', '.join(unknown)} not in the metadata nor the registry")
    if protocol == "tga" and spec.reference_images:
        total = source.expected_rows()
        if total is not None and total != spec.reference_images:
            notes.append(f"reference {spec.reference_images:,} ({total - spec.reference_images:+,})")
        elif total is not None:
            notes.append("= the reference's count")
    image_column(peek.features, source.image_column)
    label_col = label_column(list(peek.features or {}), source.label_column)
    labels = registry.resolve_labels(spec, protocol, peek.names)  # names, order and count: ValueError on a mismatch
    values = [int(row[label_col]) for row in peek.rows if row.get(label_col) is not None]
    outside = [v for v in values if not 0 <= v < source.num_classes]
    if outside:
        raise ValueError(f"label values {outside[:5]} are outside the {source.num_classes} classes.")
    text = source.label_text_column
    if text:
        if peek.rows and text not in peek.rows[0]:
            raise ValueError(f"the class-name column {text!r} is missing.")
        pairs = [(r[label_col], r[text]) for r in peek.rows]
        checked = registry.check_label_texts(spec, protocol, pairs, labels=labels)
        notes.append(f"names by the {text!r} column ({checked} label ids read)")
    elif peek.names is not None:
        notes.append(f"{len(peek.names)} names by {peek.names_origin}, {source.hub_check} check")
    else:
        notes.append(f"count only: the data names no classes ({source.num_classes} expected)")
    return "; ".join(notes)


def check_entry(spec, protocol: str = "tga", local_path: str | None = None, max_rows: int = 8) -> dict:
    """One row of :func:`check_data` for one registry entry."""
    spec = registry.get_benchmark(spec)
    source = spec.source_for(protocol)
    row = dict(name=spec.name, protocol=protocol, source=local_path or source_label(source),
               split=source.split_label, status=OK, message="")
    try:
        peek = _peek_local(spec, source, local_path, max_rows) if local_path else _peek_hub(spec, source, max_rows)
        row["message"] = _verify(spec, protocol, source, peek)
    except _Unreachable as err:
        row.update(status=UNREACHABLE, message=str(err))
    except Exception as err:  # a wrong split, size, name, order or column: what the check is for
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        row.update(status=FAILED, message=f"{type(err).__name__}: {first}")
    return row


def check_data(
    names: Sequence[str] | None = None,
    protocol: str = "tga",
    data_dir: str | None = None,
    max_rows: int = 8,
) -> list[dict]:
    """Check registry entries' data for ``protocol``: one row per entry (name, protocol, source,
    split, status ``ok`` / ``failed`` / ``unreachable``, message).

    ``names`` are registry names or collections (default: the 16 of the TGA table); an entry with a
    folder ``DATA_DIR/<name>`` is read from it, the others from the Hub (metadata and ``max_rows``
    streamed rows per split).
    """
    registry.check_protocol(protocol)
    wanted: list[str] = []
    for name in ([names] if isinstance(names, str) else names) or registry.TGA16:
        for item in registry.collection(name) or [registry.get_benchmark(name).name]:
            if item not in wanted:
                wanted.append(item)
    rows = []
    for name in wanted:
        local = os.path.join(data_dir, name) if data_dir else None
        rows.append(check_entry(name, protocol, local if local and os.path.exists(local) else None, max_rows))
    return rows


def format_check_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`check_data` as a markdown table."""
    lines = ["| dataset | protocol | source | split(s) | status | message |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["name"], r["protocol"], r["source"], r["split"], r["status"], r["message"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


@with_limits_in_help
@dataclass
class CheckArguments:
    datasets: list[str] = setting(default_factory=list, help="Registry names or collections (default: tga16; also as "
                                  "leading positional arguments: tgazsr data cifar10 stl10).")
    protocol: str = setting("tga", "'tga' or 'fare': which source, names and splits to check.",
                            choices=registry.PROTOCOLS)
    data_dir: str | None = setting(None, "Local copies at DATA_DIR/<name> are checked instead of the Hub.")
    max_rows: int = setting(8, "Rows read per split.", ge=1)


def names_as_flag(argv: Sequence[str]) -> list[str]:
    """``cifar10 stl10 --flag ...`` (benchmark names first, as ``tgazsr data`` takes them) as
    ``--datasets cifar10 stl10 --flag ...``; a leading ``*.yaml`` / ``*.yml`` stays the recipe."""
    argv = list(argv)
    names = []
    while argv and not argv[0].startswith("-") and not argv[0].endswith((".yaml", ".yml")):
        names.append(argv.pop(0))
    return (["--datasets", *names] if names else []) + argv


def main(argv: Sequence[str] | None = None) -> int:
    """``tgazsr data``: the check table; exit 1 when a check failed (unreachable sources are listed).
    An unknown name is one error with the closest registered names, before anything is read."""
    import sys

    from .. import world  # noqa: F401 - the command's own choice: the world's sets (world_shapes, "world") can be named
    from ..recipes import parse_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    (args,) = parse_recipe((CheckArguments,), names_as_flag(argv))
    rows = check_data(args.datasets or None, protocol=args.protocol, data_dir=args.data_dir, max_rows=args.max_rows)
    print(format_check_table(rows))
    return 1 if any(r["status"] == FAILED for r in rows) else 0
