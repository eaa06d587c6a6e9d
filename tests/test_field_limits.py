"""Every declared field limit (tgazsr.limits) of every command that parses a recipe: values outside
the limits and values of the wrong type end in exit status 2 and one ``error:`` line that names the
field, with no traceback and before anything is loaded. The cases are generated from the
declarations, so a new field is covered as soon as it declares its limits."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
from tgazsr.convert import ConvertArguments
from tgazsr.data.check import CheckArguments
from tgazsr.errors import run_command
from tgazsr.evaluation.arguments import EvalArguments, attack_flag_arguments
from tgazsr.evaluation.leaderboard import LeaderboardArguments
from tgazsr.evaluation.plot import PlotArguments
from tgazsr.evaluation.visualize import VisualizeArguments
from tgazsr.limits import Limits, _kind, declared_fields, limits_of, problems, setting
from tgazsr.recipes import recipe_groups
from tgazsr.world.__main__ import WorldArguments

#: command -> (its main, the recipe groups it parses, arguments that make the rest of the recipe valid)
COMMANDS = {
    "train": ("tgazsr.train", recipe_groups((ModelArguments, DataArguments, RobustTrainingConfig)),
              ["recipes/tga_zsr.yaml"]),
    "evaluate": ("tgazsr.evaluation.cli", (EvalArguments, attack_flag_arguments()), ["recipes/eval_tga16.yaml"]),
    "plot": ("tgazsr.evaluation.plot", (PlotArguments,), []),
    "leaderboard": ("tgazsr.evaluation.leaderboard", (LeaderboardArguments,), []),
    "visualize": ("tgazsr.evaluation.visualize", (VisualizeArguments,), []),
    "data": ("tgazsr.data.check", (CheckArguments,), []),
    "world": ("tgazsr.world.__main__", (WorldArguments,), []),
}
COMMANDS["convert"] = ("tgazsr.convert", (ConvertArguments,), [])


def test_every_subcommand_is_covered():
    from tgazsr.cli import COMMANDS as SUBCOMMANDS

    assert set(SUBCOMMANDS) <= set(COMMANDS), set(SUBCOMMANDS) - set(COMMANDS)
    for name, (module, _, _) in COMMANDS.items():
        assert SUBCOMMANDS[name][0] == module, name


def checked_fields(group: type) -> list[dataclasses.Field]:
    """The fields of ``group`` with values to refuse: those that declare limits, and every boolean
    (argparse refuses a value that is not true/false, declared or not)."""
    return [f for f in dataclasses.fields(group) if limits_of(f) is not None or _kind(f.type) is bool]


def bad_values(f: dataclasses.Field) -> list[str]:
    """Command-line values outside the declared limits of ``f``, and one of the wrong type."""
    lim: Limits = limits_of(f) or Limits()
    kind = _kind(f.type)
    out = []
    if kind is bool:
        out.append("maybe")
    if kind in (int, float):
        out.append("not-a-number")
        low = lim.ge if lim.ge is not None else lim.gt
        if low is not None:
            below = low - 1 if lim.ge is not None else low
            if kind is int:
                below = int(math.floor(below))
            out.append(str(below) if below not in lim.also else str(below - 2))
        high = lim.le if lim.le is not None else lim.lt
        if high is not None:
            out.append(str(high + 1 if lim.le is not None else high))
        if kind is float and lim.finite:
            out += ["nan", "inf"]
        if kind is int:
            out.append("2.5")
    if lim.choices is not None:
        out.append("no-such-choice")
    if lim.placeholders is not None:
        out += ["no placeholder", "{} and {}" if lim.placeholders == 1 else "{}"]
    return out


def cases():
    for command, (module, groups, base) in COMMANDS.items():
        seen = set()
        for group in groups:
            for f in checked_fields(group):
                if f.name in seen:
                    continue
                seen.add(f.name)
                for value in bad_values(f):
                    yield pytest.param(module, base, f.name, value, id=f"{command}-{f.name}={value}")


def _main(module: str):
    import importlib

    return importlib.import_module(module).main


@pytest.mark.parametrize("module,base,name,value", list(cases()))
def test_a_value_outside_a_declared_limit_is_one_error_line(module, base, name, value, capsys, monkeypatch):
    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)
    status = run_command(_main(module), [*base, f"--{name}", value])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert name in err, err


def test_every_command_declares_limits():
    for name in ("train", "evaluate"):
        module, groups, _ = COMMANDS[name]
        assert sum(len(declared_fields(g)) for g in groups) >= 15, module
    for name in ("plot", "leaderboard", "visualize", "data", "world"):
        _, groups, _ = COMMANDS[name]
        assert all(limits_of(f) is not None for g in groups for f in dataclasses.fields(g)), name
    # the numbers, choices and templates of the subcommands have limits to refuse values by
    numeric = {f.name for name in ("visualize", "data", "world") for f in declared_fields(COMMANDS[name][1][0])
               if bad_values(f)}
    assert {"eps", "steps", "step_size", "prompt_template", "attention_norm", "max_rows", "protocol", "seed",
            "threads", "max_samples"} <= numeric, numeric


def test_help_shows_the_limits(capsys):
    with pytest.raises(SystemExit):
        run_command(_main("tgazsr.train"), ["--help"])
    out = capsys.readouterr().out
    assert "[int, >= 1]" in out and "one of sum, mean" in out and "exactly 1 '{}'" in out


@dataclasses.dataclass
class _Toy:
    steps: int = setting(3, "Steps.", ge=1)
    scale: float = setting(1.0, "A scale.", gt=0, le=10)
    mode: str = setting("a", "A mode.", choices=("a", "b"))
    template: str = setting("x {}", "A prompt.", placeholders=1)
    optional: int | None = setting(None, "Unset by default.", ge=0)
    budget: int = setting(-1, "Budget.", ge=1, also=(-1,))


@pytest.mark.parametrize("changes,field_name", [
    ({"steps": 0}, "steps"), ({"steps": 2.0}, "steps"), ({"steps": True}, "steps"),
    ({"scale": 0.0}, "scale"), ({"scale": 11.0}, "scale"), ({"scale": float("nan")}, "scale"),
    ({"scale": "1"}, "scale"), ({"mode": "c"}, "mode"), ({"template": "x"}, "template"),
    ({"template": "{} {}"}, "template"), ({"template": "{name}"}, "template"), ({"template": "{"}, "template"),
    ({"optional": -1}, "optional"), ({"budget": 0}, "budget"),
])
def test_the_checker_refuses_each_kind_of_bad_value(changes, field_name):
    found = problems(dataclasses.replace(_Toy(), **changes))
    assert len(found) == 1 and found[0].startswith(field_name + " = ")


def test_the_checker_accepts_valid_values():
    assert problems(_Toy()) == []
    assert problems(_Toy(steps=5, scale=10, mode="b", template="a {} b {{x}}", optional=0, budget=3)) == []
