"""Recipes: a YAML file of fields plus command-line overrides.

    python -m tgazsr.train recipes/tga_zsr.yaml --learning_rate 5e-5 --max_steps 100

The YAML is flat (``field: value``). Command-line flags win over the YAML. An unknown key, in
either place, is an error naming the key and the closest valid fields. ``--help`` lists every
field with its help text.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Sequence

import yaml
from transformers import HfArgumentParser


class RecipeError(ValueError):
    """A recipe or command line that names something that does not exist."""


def _valid_fields(parser: HfArgumentParser) -> list[str]:
    return sorted({a.dest for a in parser._actions if a.dest != "help"})


def _unknown_key_error(keys: Sequence[str], valid: Sequence[str], where: str) -> RecipeError:
    lines = []
    for key in keys:
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        hint = f" Closest valid fields: {', '.join(close)}." if close else ""
        lines.append(f"Unknown field {key!r} in {where}.{hint}")
    lines.append("Run with --help to list every field.")
    return RecipeError("\n".join(lines))


def read_recipe(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"Recipe file {str(path)!r} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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


def parse_recipe(dataclass_types: Sequence[type], argv: Sequence[str] | None = None):
    """Parse ``[recipe.yaml] [--field value ...]`` into instances of ``dataclass_types``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(list(dataclass_types))
    valid = _valid_fields(parser)
    recipe_args: list[str] = []
    if argv and not argv[0].startswith("-"):
        recipe_path = argv.pop(0)
        recipe = read_recipe(recipe_path)
        unknown = [k for k in recipe if k not in valid]
        if unknown:
            raise _unknown_key_error(unknown, valid, f"recipe {recipe_path}")
        for key, value in recipe.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)) and not value:
                continue
            recipe_args += [f"--{key}", *_as_cli(value)]
    flags = [a.split("=", 1)[0][2:] for a in argv if a.startswith("--")]
    unknown = [f for f in flags if f not in valid and f != "help" and not (f.startswith("no_") and f[3:] in valid)]
    if unknown:
        raise _unknown_key_error(unknown, valid, "the command line")
    # The recipe's flags come first, so command-line flags given after them win.
    outputs = parser.parse_args_into_dataclasses(args=recipe_args + argv, return_remaining_strings=True)
    *parsed, remaining = outputs
    if remaining:
        raise RecipeError(f"Could not parse these arguments: {remaining}. Flags look like --field value.")
    return tuple(parsed)
