"""Bad inputs, and how a command reports them.

A :class:`UserError` is a bad input: a recipe, a flag, a folder or a dataset that cannot be used as
given. Its message says what is wrong, where, and how to fix it, so a command prints that message
alone (``error: ...``) and exits with status 2. Every other exception is a fault of the program or
of the machine: it keeps its traceback and exits with status 1.

The user-facing error classes of the package derive from it (and keep their older base classes,
so ``except ValueError`` still catches a ``RecipeError``): ``tgazsr.recipes.RecipeError``,
``tgazsr.data.DataError``, ``tgazsr.evaluation.DatasetUnavailable`` and
:class:`ModelFolderError` (a model or tokenizer folder that is not what it should be).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

#: A bare ``--debug`` on the command line (no value after it) shows the traceback of a UserError.
DEBUG_FLAG = "--debug"
#: ``TGAZSR_DEBUG=1`` does the same for every command.
DEBUG_ENV = "TGAZSR_DEBUG"
#: The exit status of a bad input (the status argparse uses for a malformed command line).
USAGE_EXIT = 2


class UserError(Exception):
    """A bad input. The message says what is wrong, where, and how to fix it."""


class ModelFolderError(OSError, UserError):
    """A model or tokenizer folder that is not what it should be (not a model directory of a registered backbone, no
    config.json, no tokenizer files). An ``OSError`` too, as transformers' loading errors are."""


class PromptError(ValueError, UserError):
    """Prompts that cannot tell the classes apart (e.g. identical once truncated)."""


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without a bare ``--debug``, and whether there was one.

    ``--debug VALUE`` (a value that is not a flag after it) is left alone: ``TrainingArguments``
    has a ``debug`` field of its own (``--debug underflow_overflow``).
    """
    out, debug = [], False
    for i, arg in enumerate(argv):
        if arg == DEBUG_FLAG and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            debug = True
            continue
        out.append(arg)
    return out, debug


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """Whether a traceback was asked for: ``TGAZSR_DEBUG`` set to anything but ''/0/false/no, or a
    bare ``--debug`` in ``argv``."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return env not in ("", "0", "false", "no") or (argv is not None and _take_debug_flag(list(argv))[1])


def format_error(err: BaseException) -> str:
    """``error: <message>`` (every line of a multi-line message kept), as a command prints it."""
    message = str(err).strip() or type(err).__name__
    return f"error: {message}"


def run_command(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main(argv)`` and turn its outcome into an exit status.

    - ``argv`` defaults to ``sys.argv[1:]``. A bare ``--debug`` anywhere in it is removed before
      ``main`` sees it (``--debug VALUE`` is left for ``TrainingArguments.debug``).
    - ``main`` returns normally: its return value is the status when it is an ``int`` (``True``
      and ``False`` are not), 0 otherwise (a results dict, ``None``).
    - ``main`` raises a :class:`UserError` (a bad recipe, flag, folder or dataset; the recipe
      parser turns the ``ValueError`` of a settings check into a ``RecipeError`` naming the
      field): its message alone is printed to stderr as ``error: <message>``, with no traceback,
      and the status is 2.
    - with ``--debug`` or ``TGAZSR_DEBUG=1``, a :class:`UserError` is re-raised instead, so the
      traceback shows (and the interpreter exits with status 1).
    - any other exception is re-raised: its traceback shows and the interpreter exits with
      status 1. ``SystemExit`` (``--help``; a ``SystemExit`` subclass with its own status) and
      ``KeyboardInterrupt`` pass through untouched. (argparse's own errors, a value of the wrong
      type or a flag without its value, are ``RecipeError``s when parsed by ``parse_recipe``.)

    Use it as ``if __name__ == "__main__": sys.exit(run_command(main))``.
    """
    argv, flag = _take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    debug = flag or debug_requested()
    try:
        result = main(argv)
    except UserError as err:
        if debug:
            raise
        print(format_error(err), file=sys.stderr, flush=True)
        print(f"(add {DEBUG_FLAG} or set {DEBUG_ENV}=1 to see the traceback)", file=sys.stderr, flush=True)
        return USAGE_EXIT
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return 0


def budget_unit_problem(name: str, value: float, flag: str | None = None,
                        override: str = "--allow_extreme_budget true") -> str | None:
    """What is wrong with a budget in units of 1/255 (an eps or a step size), or None.

    A value in (0, 0.5) looks like a fraction of 1 (0.0039 for 1/255): the pixel change would be
    255 times smaller than meant. A value above 255 exceeds the pixel range [0, 1].
    """
    flag = flag or f"--{name}"
    if 0 < value < 0.5:
        guess = max(round(value * 255), 1)
        return (
            f"{name} = {value:g} looks like a fraction of 1, but budgets are in units of 1/255 (write 1 for 1/255, "
            f"8 for 8/255): as given it is {value:g}/255 in pixels. Write {flag} {guess}; to use {value:g}/255 on "
            f"purpose, add {override}."
        )
    if value > 255:
        return (
            f"{name} = {value:g} exceeds the pixel range: budgets are in units of 1/255 and 255 already spans "
            f"[0, 1]. Write it in units of 1/255 ({flag} 8 for 8/255); to use {value:g} on purpose, add {override}."
        )
    return None
