"""The checked reading of a YAML data file, field by field (the benchmark files, the conversion zoo).

A :class:`Section` is one mapping of a file. Each field is read once with its expected type; a
field that is missing, of the wrong type, or left unread when :meth:`Section.done` is called is an
error of the section's ``error`` class whose message names the file and the field
(``path: protocols.tga.num_classes: expected int, got 'ten'.``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: The C parser where PyYAML has it.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """The parsed contents of ``path``; an unreadable file or bad YAML is ``error`` naming the file."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=LOADER)
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{path}: not a readable YAML file: {err}") from None


class Section:
    """The fields of one mapping of a file, read one by one; whatever is left unread is an error.

    Subclasses set ``error``, the exception class of their files."""

    error: type[Exception] = ValueError

    def __init__(self, path: Path, where: str, value: Any):
        self.path, self.where = path, where
        if not isinstance(value, dict):
            self.fail(None, f"expected a mapping, got {type(value).__name__}")
        self.items = dict(value)
        self.read: set[str] = set()

    def field(self, key: str | None) -> str:
        return ".".join(p for p in (self.where, key) if p) or "(top level)"

    def fail(self, key: str | None, problem: str):
        raise self.error(f"{self.path}: {self.field(key)}: {problem}.")

    def has(self, key: str) -> bool:
        return key in self.items

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., none: bool = False) -> Any:
        self.read.add(key)
        if key not in self.items:
            if default is ...:
                self.fail(key, "missing")
            return default
        value = self.items[key]
        if value is None and none:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in kinds) + (" or null" if none else "")
            self.fail(key, f"expected {names}, got {value!r}")
        return value

    def text(self, key: str, default: Any = ..., none: bool = False, empty: bool = False) -> str | None:
        value = self.get(key, str, default, none)
        if isinstance(value, str) and not empty and not value.strip():
            self.fail(key, "must not be empty")
        return value

    def texts(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"expected a list of non-empty strings, got {value!r}")
        return tuple(value)

    def section(self, key: str, default: Any = ...) -> "Section | None":
        value = self.get(key, dict, default)
        return None if value is None else type(self)(self.path, self.field(key), value)

    def done(self) -> None:
        unknown = [k for k in self.items if k not in self.read]
        if unknown:
            self.fail(unknown[0], f"unknown field; the fields here are {', '.join(sorted(self.read))}")
