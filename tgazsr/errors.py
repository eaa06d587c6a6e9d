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
import signal
import sys
from typing import Callable, Sequence

#: A bare ``--debug`` on the command line (no value after it) shows the traceback of a UserError.
DEBUG_FLAG = "--debug"
#: ``TGAZSR_DEBUG=1`` does the same for every command.
DEBUG_ENV = "TGAZSR_DEBUG"
#: The exit status of a bad input (the status argparse uses for a malformed command line).
USAGE_EXIT = 2
#: A command stopped by a signal exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
SIGNAL_EXIT_BASE = 128


class UserError(Exception):
    """A bad input. The message says what is wrong, where, and how to fix it."""


class ModelFolderError(OSError, UserError):
    """A model or tokenizer folder that is not what it should be (not a model directory of a registered backbone, no
    config.json, no tokenizer files). An ``OSError`` too, as transformers' loading errors are."""


class PromptError(ValueError, UserError):
    """Prompts that cannot tell the classes apart (e.g. identical once truncated)."""


class Stopped(BaseException):
    """SIGTERM reached a command run by :func:`run_command` (SIGINT arrives as ``KeyboardInterrupt``).

    A ``BaseException``, as ``KeyboardInterrupt`` is, so an ``except Exception`` on the way up does not
    swallow it; ``signum`` is the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --- what an interrupted command keeps ------------------------------------------------------------

#: What the running command has finished and written so far, by part ("evaluation", "model", ...):
#: the line an interrupted command prints. Parts of a command call :func:`note_kept` as they finish.
_KEPT: dict[str, str] = {}


def note_kept(part: str, what: str) -> None:
    """Record what ``part`` of the running command has finished and written (replacing its earlier note),
    e.g. ``note_kept("evaluation", "results of 2 finished datasets (a, b) in out/results.json")``."""
    _KEPT[part] = what


def kept_line(signame: str) -> str:
    """The one line an interrupted command prints: the signal and what was kept."""
    if not _KEPT:
        return f"interrupted by {signame}: nothing had finished, so nothing was kept."
    return f"interrupted by {signame}: kept {'; '.join(_KEPT.values())}."


def close_progress_bars() -> None:
    """Close the open tqdm bars (each keeps its last state on its own line), so the line printed next
    starts on a fresh line and no bar is redrawn after it."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the message
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


def _say(line: str) -> None:
    """Print a line for the user on stderr, on a line of its own (after closing any progress bar)."""
    close_progress_bars()
    print(line, file=sys.stderr, flush=True)


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _install_sigterm() -> object | None:
    """Turn SIGTERM into :class:`Stopped` while a command runs, if the handler is the default one (a
    command that installs its own, as training does, keeps it). Returns the previous handler."""
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return None
        return signal.signal(signal.SIGTERM, _raise_stopped)
    except (ValueError, AttributeError):  # not the main thread, or no SIGTERM on this platform
        return None


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
    - Ctrl-C (SIGINT, ``KeyboardInterrupt``) or SIGTERM ends the command quietly: one line on
      stderr names the signal and what was kept (what the command recorded with :func:`note_kept`:
      the datasets an evaluation finished, the model training saved), and the status is 130 for
      SIGINT, 143 for SIGTERM (128 + the signal's number). With ``--debug`` the traceback shows.
    - any other exception is re-raised: its traceback shows and the interpreter exits with
      status 1. ``SystemExit`` (``--help``; a ``SystemExit`` subclass with its own status, such as
      training's ``Preempted`` after it saved a checkpoint) passes through untouched. (argparse's own
      errors, a value of the wrong type or a flag without its value, are ``RecipeError``s when
      parsed by ``parse_recipe``.)
    - an ``error:`` or ``interrupted`` line never shares a line with a progress bar: open tqdm bars
      are closed first.

    Use it as ``if __name__ == "__main__": sys.exit(run_command(main))``.
    """
    argv, flag = _take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    debug = flag or debug_requested()
    _KEPT.clear()
    previous = _install_sigterm()
    try:
        result = main(argv)
    except UserError as err:
        if debug:
            raise
        _say(format_error(err))
        print(f"(add {DEBUG_FLAG} or set {DEBUG_ENV}=1 to see the traceback)", file=sys.stderr, flush=True)
        return USAGE_EXIT
    except (KeyboardInterrupt, Stopped) as err:
        if debug:
            raise
        signum = err.signum if isinstance(err, Stopped) else int(signal.SIGINT)
        _say(kept_line(signal.Signals(signum).name))
        return SIGNAL_EXIT_BASE + signum
    finally:
        _KEPT.clear()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
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
