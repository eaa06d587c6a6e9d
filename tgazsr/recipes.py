"""Recipes: a YAML file of fields plus command-line overrides.

    python -m tgazsr.train recipes/tga_zsr.yaml --learning_rate 5e-5 --max_steps 100

The YAML is flat (``field: value``). Command-line flags win over the YAML. An unknown key, in
either place, is an error naming the key and the closest valid fields; so is a key given twice in
the YAML, or a flag given twice on the command line (``--a_b`` and ``--a-b`` are one flag), naming
both values. A value a settings class refuses (its ``__post_init__`` raises ``ValueError``) is a
``RecipeError`` that names the field. ``--help`` lists every field with its help text.

After parsing, every parsed object with a ``check_recipe(parsed)`` method is given the whole tuple,
so checks that span several groups (the method and the attention kernel, the method and its
prompts) run before anything is loaded.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import types
import re
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import yaml
from transformers import HfArgumentParser

from .registry import close_matches
from .errors import UserError
from .limits import LIMITS_KEY, problems as limit_problems


class RecipeError(ValueError, UserError):
    """A recipe or command line that names something that does not exist, gives a key twice, or
    sets a value the settings refuse. The message names the key and says how to fix it."""


#: The ``tgazsr`` subcommand being run, for the usage line of ``--help``: set for the duration of one
#: command by :func:`running_command` (``tgazsr.cli``), never assigned from outside.
_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("tgazsr_command", default=None)


@contextlib.contextmanager
def running_command(name: str):
    """Within this block ``--help`` reads ``usage: tgazsr <name> ...``."""
    token = _COMMAND.set(name)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def _prog() -> str | None:
    """The command as typed, for the usage line: ``tgazsr train`` or ``python -m tgazsr.train``."""
    if _COMMAND.get():
        return f"tgazsr {_COMMAND.get()}"
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    package = os.path.dirname(os.path.abspath(__file__))
    if script.startswith(package + os.sep) and script.endswith(".py"):
        module = os.path.relpath(script[:-3], os.path.dirname(package)).replace(os.sep, ".")
        return f"python -m {module.removesuffix('.__main__')}"
    return None  # argparse's default: the script's name


class _Parser(HfArgumentParser):
    """argparse's own errors (a missing value, a value of the wrong type, an invalid choice) as a
    ``RecipeError``: one line, not the usage of every field followed by the error."""

    def error(self, message: str):
        message = message.rstrip(".")
        raise RecipeError(f"{message[:1].upper()}{message[1:]}. Run with --help to list every field.")

    @staticmethod
    def _parse_dataclass_field(parser, field):
        """argparse takes the metadata as keyword arguments: the declared limits (tgazsr.limits) are
        ours, shown in the help text and checked after parsing, not argparse's."""
        if LIMITS_KEY in field.metadata:
            field = copy.copy(field)
            field.metadata = types.MappingProxyType({k: v for k, v in field.metadata.items() if k != LIMITS_KEY})
        HfArgumentParser._parse_dataclass_field(parser, field)


def _valid_fields(parser: HfArgumentParser) -> list[str]:
    return sorted({a.dest for a in parser._actions if a.dest != "help"})


def _unknown_key_error(keys: Sequence[str], valid: Sequence[str], where: str) -> RecipeError:
    lines = []
    for key in keys:
        close = close_matches(key.replace("-", "_"), valid, n=3, cutoff=0.6)
        hint = f" Closest valid fields: {', '.join(close)}." if close else ""
        lines.append(f"Unknown field {key!r} in {where}.{hint}")
    lines.append("Run with --help to list every field.")
    return RecipeError("\n".join(lines))


# --- the YAML file ----------------------------------------------------------------------------

class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first, second, first_line: int, second_line: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.second = key, first, second
        self.first_line, self.second_line = first_line, second_line


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently). Keys brought in by a merge (``<<``) may be overridden, as YAML says."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except Exception:  # noqa: BLE001 - an unhashable key: the constructor says so below
                    continue
                if key in seen:
                    first_key, first_value = seen[key]
                    first_shown = self.construct_object(first_value, deep=True)
                    second_shown = self.construct_object(value_node, deep=True)
                    raise _DuplicateKey(key, first_shown, second_shown, first_key.start_mark.line + 1,
                                        key_node.start_mark.line + 1)
                seen[key] = (key_node, value_node)
        return super().construct_mapping(node, deep=deep)


def read_recipe(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            f"Recipe file {str(path)!r} does not exist. The first argument, when it is not a flag, is a YAML "
            "recipe (e.g. recipes/tga_zsr.yaml); pass an existing file or only --field value flags."
        )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader) or {}
    except _DuplicateKey as dup:
        raise RecipeError(
            f"Key {dup.key!r} is given twice in recipe {path}: {_show(dup.first)} (line {dup.first_line}) and "
            f"{_show(dup.second)} (line {dup.second_line}). Keep one of them (to override a recipe value, pass "
            f"--{dup.key} on the command line instead)."
        ) from None
    except yaml.YAMLError as err:
        raise RecipeError(f"Recipe {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise RecipeError(f"Recipe {path} must be a mapping of field: value, got {type(data).__name__}.")
    return data


def _as_cli(value) -> list[str]:
    """A YAML value as command-line strings, so argparse converts it as it converts flags."""
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, dict):
        import json

        return [json.dumps(value)]
    return [str(value)]


# --- the command line ---------------------------------------------------------------------------

def _canonical(name: str, valid: Sequence[str]) -> str | None:
    """The field a flag name sets (``a-b`` is ``a_b``, ``no_a``/``no-a`` is ``a``), or None."""
    for candidate in (name, name.replace("-", "_")):
        if candidate in valid:
            return candidate
        if candidate.startswith("no_") and candidate[3:] in valid:
            return candidate[3:]
    return None


def _flags(argv: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """``(name, as written, values)`` of every ``--flag`` in ``argv``."""
    found = []
    for i, arg in enumerate(argv):
        if not arg.startswith("--") or len(arg) == 2:
            continue
        name, eq, inline = arg[2:].partition("=")
        if eq:
            values = [inline]
        else:
            values = []
            for nxt in argv[i + 1:]:
                if nxt.startswith("--"):
                    break
                values.append(nxt)
        found.append((name, arg.split("=", 1)[0], values))
    return found


def _check_command_line(argv: Sequence[str], valid: Sequence[str]) -> None:
    flags = _flags(argv)
    unknown = [name for name, _, _ in flags if name != "help" and _canonical(name, valid) is None]
    if unknown:
        raise _unknown_key_error(unknown, valid, "the command line")
    given: dict[str, list[tuple[str, list[str]]]] = {}
    for name, written, values in flags:
        if name != "help":
            given.setdefault(_canonical(name, valid), []).append((written, values))
    for field_name, uses in given.items():
        if len(uses) > 1:
            shown = " and ".join(
                f"{' '.join(values) if values else '(no value)'} (as {written})" for written, values in uses
            )
            raise RecipeError(
                f"--{field_name} is given {len(uses)} times on the command line: {shown}. Give it once; the "
                "command line overrides the recipe's value, so one flag is enough."
            )


# --- values the settings refuse -----------------------------------------------------------------

def raise_problems(problems: Sequence[str]) -> None:
    """Raise a :class:`RecipeError`: one problem, its message; several, all of them, one per line."""
    if len(problems) == 1:
        raise RecipeError(problems[0])
    if problems:
        raise RecipeError(f"{len(problems)} problems in the settings:\n" + "\n".join(f"- {p}" for p in problems))


def _raising_class(err: BaseException) -> str | None:
    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__post_init__" and "self" in frame.f_locals:
            return type(frame.f_locals["self"]).__name__
        tb = tb.tb_next
    return None


def as_recipe_error(err: ValueError, fields: Iterable[str]) -> RecipeError:
    """A settings class's ``ValueError`` as a ``RecipeError`` that names the field(s) it is about."""
    if isinstance(err, RecipeError):
        return err
    message = str(err).strip() or type(err).__name__
    named = [f for f in sorted(set(fields), key=len, reverse=True)
             if re.search(rf"(?<![\w]){re.escape(f)}(?![\w])", message)]
    owner = _raising_class(err)
    if named:
        head = f"Invalid {', '.join('--' + f for f in named[:3])}"
    else:
        head = f"Invalid settings of {owner}" if owner else "Invalid settings"
    return RecipeError(f"{head}: {message}")


@contextlib.contextmanager
def refused_settings(fields: Iterable[str]):
    """Turn a ``ValueError`` raised inside into a :class:`RecipeError` naming the field."""
    try:
        yield
    except RecipeError:
        raise
    except ValueError as err:
        raise as_recipe_error(err, list(fields)) from err


def _take_config(argv: list[str]) -> str | None:
    """The recipe path: a first positional argument or ``--config PATH`` (trl's spelling), not both."""
    path = None
    if argv and not argv[0].startswith("-"):
        path = argv.pop(0)
    for i, arg in enumerate(list(argv)):
        if arg == "--config" or arg.startswith("--config="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
            if not value or value.startswith("--"):
                raise RecipeError("--config needs the path of a YAML recipe, e.g. --config recipes/tga_zsr.yaml.")
            if path is not None:
                raise RecipeError(f"Two recipes were given ({path} and --config {value}): give one.")
            del argv[i: i + (1 if "=" in arg else 2)]
            path = value
            break
    return path


def apply_env(recipe: dict, recipe_path: str) -> None:
    """A recipe's ``env:`` block (as in trl's recipes) sets environment variables for the run."""
    env = recipe.pop("env", None)
    if env is None:
        return
    if not isinstance(env, dict):
        raise RecipeError(f"The env block of {recipe_path} must map variable names to values, e.g. env: {{WANDB_PROJECT: robust-clip}}.")
    for key, value in env.items():
        os.environ[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)


def recipe_groups(dataclass_types: Sequence[type]) -> list[type]:
    """``dataclass_types`` and the groups they bring along: a group with a classmethod
    ``extra_recipe_groups()`` is parsed with those too (training brings every method's settings);
    their instances reach the groups' ``check_recipe`` but are not returned."""
    groups = list(dataclass_types)
    for group in dataclass_types:
        extra = getattr(group, "extra_recipe_groups", None)
        if callable(extra):
            groups += [g for g in extra() if g not in groups]
    return groups


def parse_recipe(dataclass_types: Sequence[type], argv: Sequence[str] | None = None):
    """Parse ``[recipe.yaml | --config recipe.yaml] [--field value ...]`` into instances of ``dataclass_types``.

    Keys and flags may be spelled with dashes or underscores; a recipe's ``env:`` block sets
    environment variables; unknown keys and keys given twice are errors. Groups that
    ``dataclass_types`` bring along (:func:`recipe_groups`) are parsed too and handed to their
    ``check_recipe``; one instance per type of ``dataclass_types`` is returned, in order."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(recipe_groups(dataclass_types), prog=_prog())
    valid = _valid_fields(parser)
    recipe_args: list[str] = []
    recipe_path = _take_config(argv)
    if recipe_path is not None:
        recipe = read_recipe(recipe_path)
        apply_env(recipe, recipe_path)
        recipe = {(_canonical(str(k), valid) or str(k)): v for k, v in recipe.items()}
        unknown = [k for k in recipe if k not in valid]
        if unknown:
            raise _unknown_key_error(unknown, valid, f"recipe {recipe_path}")
        for key, value in recipe.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)) and not value:
                continue
            recipe_args += [f"--{key}", *_as_cli(value)]
    _check_command_line(argv, valid)
    # The recipe's flags come first, so command-line flags given after them win.
    with refused_settings(valid):
        outputs = parser.parse_args_into_dataclasses(args=recipe_args + argv, return_remaining_strings=True)
    *parsed, remaining = outputs
    if remaining:
        raise RecipeError(f"Could not parse these arguments: {remaining}. Flags look like --field value.")
    # Every declared limit of every group (tgazsr.limits), before anything is loaded; a group whose
    # __post_init__ checked them already finds nothing new here.
    raise_problems([p for obj in parsed for p in limit_problems(obj)])
    for obj in parsed:  # checks across groups, before anything is loaded
        check = getattr(obj, "check_recipe", None)
        if callable(check):
            with refused_settings(valid):
                check(tuple(parsed))
    return tuple(parsed[: len(dataclass_types)])
