"""``tgazsr``: one command, one subcommand per task.

    tgazsr train recipes/tga_zsr.yaml --max_steps 100          (or --config recipes/tga_zsr.yaml)
    tgazsr evaluate recipes/eval_tga16.yaml --model_name_or_path outputs/clip-vit-b32-tga-zsr
    tgazsr plot eval/clip/results.json eval/tga_zsr/results.json --output tradeoff.png
    tgazsr leaderboard eval/*/results.json --output leaderboard.md
    tgazsr visualize --model_name_or_path M --image dog.jpg --label dog --class_names dog,cat,bird
    tgazsr world                                                (build the offline world, report its model)

Every subcommand is also ``python -m tgazsr.<subcommand>`` and runs under ``accelerate launch -m
tgazsr.cli <subcommand> ...`` or ``torchrun -m tgazsr.cli <subcommand> ...``. Recipes and flags
follow trl's conventions: a positional recipe or ``--config``, an ``env:`` block, dashes or
underscores, unknown keys named as errors. A bad input prints one ``error:`` line and exits 2
(``--debug`` shows the traceback); Ctrl-C or SIGTERM prints one line saying what was kept and exits
130 or 143 (``tgazsr.errors.run_command``, for every subcommand).
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from .registry import close_matches
from .errors import USAGE_EXIT, run_command

#: subcommand -> (module with ``main(argv)``, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("tgazsr.train", "train a robust CLIP from a recipe (one YAML per method)"),
    "evaluate": ("tgazsr.evaluation.cli", "zero-shot clean and robust accuracy over benchmark datasets"),
    "data": ("tgazsr.data.check", "check the benchmark datasets' names, order, counts and splits (no model)"),
    "plot": ("tgazsr.evaluation.plot", "robust-versus-clean plot of several results.json files"),
    "leaderboard": ("tgazsr.evaluation.leaderboard", "several results.json files in one ranked table"),
    "visualize": ("tgazsr.evaluation.visualize", "clean and adversarial text-guided attention of one image"),
    "world": ("tgazsr.world.__main__", "build the offline synthetic world and report its base model"),
    "convert": ("tgazsr.convert", "OpenAI-CLIP / open_clip checkpoints and published robust CLIPs as transformers model folders"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tgazsr <command> [recipe.yaml | --config recipe.yaml] [--field value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "tgazsr <command> --help lists every field of a command with its help text."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"tgazsr {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(f"error: unknown command {name!r}.{hint}\n\n{usage()}", file=sys.stderr)
        return USAGE_EXIT
    module = importlib.import_module(COMMANDS[name][0])
    from .recipes import running_command

    with running_command(name):  # `--help` then reads "usage: tgazsr <name> ..."
        return run_command(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
