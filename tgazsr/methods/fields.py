"""The method fields of a training recipe, taken from the registry.

Each method declares its own settings as a dataclass (``Method.config``). ``tgazsr train``
parses them as one more group of its recipe, :func:`method_arguments`, built from the registry
when the recipe is parsed, so a method registered anywhere (a test, a plugin) brings its fields
to the recipe, the command line and ``--help`` with no other change:

- one field per name, however many methods read it (TGA-ZSR, Comp-TGA and the vision variant
  share ``alpha``), left empty by default: empty means the chosen method's own default;
- its help text is the first declaring method's, followed by the methods that read it and each
  one's default; its declared limits (``tgazsr.limits``) are that method's, so a value out of
  range is an error before anything is loaded.

:func:`method_config` turns the parsed group into the chosen method's settings. A field given
that the chosen method does not read is an error naming the methods that do: a recipe never
carries a setting that silently does nothing.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Optional

from ..limits import LIMITS_KEY, limits_of, with_limits_in_help
from .base import METHODS, Method

#: The attribute that marks the parsed group of method fields.
MARKER = "__method_fields__"


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _declarations(methods: typing.Iterable[Method]) -> dict[str, list[tuple[Method, dataclasses.Field, Any]]]:
    """Field name -> [(method, field, resolved type)], in registry order."""
    out: dict[str, list] = {}
    for method in methods:
        if method.config is None:
            continue
        hints = typing.get_type_hints(method.config)
        for f in dataclasses.fields(method.config):
            if f.init:
                out.setdefault(f.name, []).append((method, f, hints[f.name]))
    return out


def method_arguments(reserved: Mapping[str, str] | None = None) -> type:
    """A dataclass with every registered method's fields, each optional (None: the method's
    default). ``reserved`` maps names other groups of the recipe own to the group's name: a
    method may not declare them."""
    reserved = reserved or {}
    specs = []
    for name, uses in _declarations(METHODS.values()).items():
        first_method, first, kind = uses[0]
        if name in reserved:
            raise ValueError(f"Method {first_method.name!r} declares the setting {name!r}, which is already a field "
                             f"of {reserved[name]}: give the method's setting another name.")
        other = [m.name for m, _, t in uses if t != kind]
        if other:
            raise ValueError(f"The setting {name!r} has type {kind} in method {first_method.name!r} but another type "
                             f"in {', '.join(repr(o) for o in other)}: methods sharing a setting must agree on its "
                             "type (or name it differently).")
        readers = ", ".join(f"{m.name} {_shown(_default(f))}" for m, f, _ in uses)
        help_text = f"{first.metadata.get('help', '').strip()} Empty: the method's default ({readers})."
        metadata = {"help": help_text}
        if limits_of(first) is not None:
            metadata[LIMITS_KEY] = limits_of(first)
        specs.append((name, Optional[kind], dataclasses.field(default=None, metadata=metadata)))
    cls = dataclasses.make_dataclass("MethodArguments", specs)
    cls.__doc__ = "The settings of every registered training method (tgazsr.methods), each empty by default."
    setattr(cls, MARKER, True)
    return with_limits_in_help(cls)


def readers(name: str) -> list[str]:
    """The registered methods whose settings include ``name``."""
    return [m.name for m in METHODS.values() if name in m.fields]


def foreign_fields_problems(method: Method, given: Mapping[str, Any]) -> list[str]:
    """One message per field in ``given`` that ``method`` does not read."""
    own = ", ".join(method.fields) or "none"
    out = []
    for name in given:
        if name in method.fields:
            continue
        who = readers(name)
        fix = f", or choose a method that reads it (--method {who[0]})" if who else ""
        out.append(f"{name} is a setting of {', '.join(who) or 'no registered method'}, not of method {method.name} "
                   f"(its settings: {own}). Remove --{name} from the recipe and the command line{fix}.")
    return out


def method_config(method: Method, given: Mapping[str, Any]) -> Any:
    """The settings of ``method``: its defaults, updated by the fields of ``given`` that are not None.
    A field that ``method`` does not read is an error (``RecipeError``) naming the methods that do."""
    from ..recipes import raise_problems

    given = {k: v for k, v in given.items() if v is not None}
    raise_problems(foreign_fields_problems(method, given))
    return method.make_config(**given)


def is_method_arguments(obj: Any) -> bool:
    return bool(getattr(type(obj), MARKER, False))
