"""Declared limits of settings fields, and the one checker that enforces them.

A field declares its valid values in its dataclass metadata:

    train_numsteps: int = setting(2, "Training attack: number of PGD steps.", ge=0)
    kl_reduction: str = setting("sum", "PMG-AFT's KL reduction.", choices=("sum", "mean"))
    prompt_template: str = setting("This is a photo of a {}", "...", placeholders=1)

:func:`problems` checks an instance against every declared limit (the field's type included: an
``int`` field refuses ``2.5``, a ``float`` field refuses NaN and infinities unless it says
``finite=False``) and returns one message per bad field, naming the field, its value and the valid
values. The recipe parser runs it on every parsed group before anything is loaded, so a new field
is checked as soon as it declares its limits; ``--help`` shows them (:func:`describe`).

Fields a class inherits and cannot annotate (``transformers.TrainingArguments``'s) get limits with
:func:`declare_limits`, which gives the subclass its own copy of those fields.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import string
import types
import typing
from dataclasses import dataclass
from typing import Any, Sequence

LIMITS_KEY = "limits"


@dataclass(frozen=True)
class Limits:
    """Valid values of one field. ``ge``/``gt``/``le``/``lt``: bounds of a number; ``choices``: the
    allowed values; ``placeholders``: how many ``{}`` a format string must hold; ``finite``: NaN and
    infinities are refused (numbers); ``also``: values accepted besides the bounds (``max_steps``'s
    ``-1``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    placeholders: int | None = None
    finite: bool = True
    also: tuple = ()
    hint: str = ""  # appended to the message: what the value means, and the usual fix

    def text(self) -> str:
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(str(c) for c in self.choices))
        bounds = [f"{op} {_num(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if v is not None]
        if bounds:
            parts.append(" and ".join(bounds))
        if self.also:
            parts[-1:] = [(parts[-1] + " or " if parts else "") + " or ".join(_num(a) for a in self.also)]
        if self.placeholders is not None:
            parts.append(f"exactly {self.placeholders} '{{}}'")
        return "; ".join(parts)


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def setting(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
            **limits) -> Any:
    """``dataclasses.field`` with a help text and declared :class:`Limits` (keyword arguments)."""
    metadata = {"help": help, LIMITS_KEY: Limits(**{k: (tuple(v) if k in ("choices", "also") else v)
                                                    for k, v in limits.items()})}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declare_limits(cls: type, **limits: Limits) -> type:
    """Give ``cls`` its own copies of inherited fields with these limits (the base class is not
    changed). Use on a dataclass subclass, e.g. for ``TrainingArguments``' fields."""
    own = dict(cls.__dataclass_fields__)
    for name, lim in limits.items():
        if name not in own:
            raise KeyError(f"{cls.__name__} has no field {name!r} to declare limits for.")
        f = copy.copy(own[name])
        f.metadata = types.MappingProxyType({**f.metadata, LIMITS_KEY: lim})
        own[name] = f
    cls.__dataclass_fields__ = own
    return cls


def limits_of(f: dataclasses.Field) -> Limits | None:
    return f.metadata.get(LIMITS_KEY)


def describe(f: dataclasses.Field) -> str:
    """The limits of a field as ``--help`` shows them: ``[int; >= 0]``."""
    lim = limits_of(f)
    if lim is None:
        return ""
    kind = _kind(f.type)
    shown = [p for p in (kind.__name__ if kind else "", lim.text()) if p]
    return f"[{', '.join(shown)}]" if shown else ""


def with_limits_in_help(cls: type) -> type:
    """Append each declared field's limits to its help text (what ``--help`` prints)."""
    own = dict(cls.__dataclass_fields__)
    for name, f in own.items():
        shown = describe(f)
        if shown and shown not in f.metadata.get("help", ""):
            g = copy.copy(f)
            g.metadata = types.MappingProxyType({**f.metadata, "help": f"{f.metadata.get('help', '')} {shown}".strip()})
            own[name] = g
    cls.__dataclass_fields__ = own
    return cls


# --- the checker ------------------------------------------------------------------------------

def _kind(annotation) -> type | None:
    """The scalar type a field holds (int, float, str, bool), None for anything else."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(
            annotation.replace(" ", "").replace("|None", "").replace("Optional[", "").rstrip("]"), None)
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(args[0]) if len(args) == 1 else None
    if annotation in (int, float, str, bool):
        return annotation
    return None


def _placeholder_count(template: str) -> int | None:
    """How many ``{}`` fields a format string holds; None if it is not a valid format string or holds
    named or numbered fields."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return None
    if any(name != "" for name in fields):
        return None
    return len(fields)


def value_problem(name: str, value: Any, annotation, lim: Limits) -> str | None:
    """What is wrong with ``value`` for a field declared with ``lim`` (with the field's hint), or None."""
    problem = _value_problem(name, value, annotation, lim)
    return f"{problem} {lim.hint}" if problem and lim.hint else problem


def _value_problem(name: str, value: Any, annotation, lim: Limits) -> str | None:
    if value is None:
        return None  # optional fields: None means "unset", checked where it is used
    kind = _kind(annotation)
    shown = repr(value)
    valid = lim.text()
    where = f"{name} = {shown}"
    if kind is bool and not isinstance(value, bool):
        return f"{where} is not a boolean: write true or false."
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{where} is not an integer: write a whole number ({valid})." if valid else \
            f"{where} is not an integer: write a whole number."
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{where} is not a number ({valid})." if valid else f"{where} is not a number."
    if kind is str and not isinstance(value, str):
        return f"{where} is not a string."
    if value in lim.also:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lim.finite and not math.isfinite(value):
            return f"{where} is not a finite number: set it to a value {valid}." if valid else \
                f"{where} is not a finite number."
        for op, bound, ok in (
            (">=", lim.ge, lambda v, b: v >= b), (">", lim.gt, lambda v, b: v > b),
            ("<=", lim.le, lambda v, b: v <= b), ("<", lim.lt, lambda v, b: v < b),
        ):
            if bound is not None and not ok(value, bound):
                return f"{where} is out of range: it must be {valid}."
    if lim.choices is not None and value not in lim.choices:
        return f"{where}: choose {valid}."
    if lim.placeholders is not None and isinstance(value, str):
        count = _placeholder_count(value)
        if count == 0:
            return f"{where} has no '{{}}' for the class name: every class would get the same prompt."
        if count != lim.placeholders:
            found = "no valid format string" if count is None else f"{count} '{{}}'"
            return (f"{where} holds {found}; it needs exactly {lim.placeholders} '{{}}' for the class name "
                    "(and no other braces: write a literal brace as '{{' or '}}').")
    return None


def problems(obj, names: Sequence[str] | None = None) -> list[str]:
    """Every declared limit that ``obj`` (a dataclass instance) breaks, one message each."""
    out = []
    for f in dataclasses.fields(obj):
        lim = limits_of(f)
        if lim is None or (names is not None and f.name not in names):
            continue
        value = getattr(obj, f.name, None)
        values = value if isinstance(value, (list, tuple)) and _kind(f.type) is None else [value]
        for v in values:
            problem = value_problem(f.name, getattr(v, "value", v), f.type if values == [value] else _item(f.type), lim)
            if problem:
                out.append(problem)
                break
    return out


def _item(annotation):
    """The item type of ``list[X] | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _item(args[0]) if len(args) == 1 else None
    args = typing.get_args(annotation)
    return args[0] if origin in (list, tuple) and args else None


def declared_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that declare limits."""
    return [f for f in dataclasses.fields(cls) if limits_of(f) is not None]
