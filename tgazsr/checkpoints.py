"""Checkpoints that can be trusted, an output folder that holds one run, and clean preemption.

- ``complete_checkpoints`` lists the checkpoints a run can resume from: a checkpoint killed while
  being written lacks ``trainer_state.json`` (the Trainer writes it last) or has weights that do
  not open; it is skipped, and the log says so.
- ``prepare_output_dir`` refuses a folder that holds another run's results unless
  ``overwrite_output_dir`` is set (the Trainer's old convention), and then removes those results,
  so stale evaluations never sit beside new weights.
- ``StopOnSignal`` turns SIGTERM (what SLURM and Kubernetes send on preemption) and a first
  Ctrl-C into "finish this step, save a checkpoint, stop".
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal

from transformers import TrainerCallback

from .errors import UserError

logger = logging.getLogger("tgazsr.train")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
#: What a finished run leaves in output_dir besides checkpoints.
RUN_ARTIFACTS = (
    "model.safetensors", "config.json", "train_results.json", "comparison.md", "README.md", "tgazsr_recipe.json",
    "run_recipe.json", "eval", "eval_base", "eval_check", "lora_adapter", "trainer_state.json",
)


class CheckpointError(ValueError, UserError):
    """A checkpoint or output folder that cannot be used as asked; the message says what to do."""


def weights_file(checkpoint: str) -> str | None:
    for name in ("model.safetensors", os.path.join("lora_adapter", "adapter_model.safetensors")):
        path = os.path.join(checkpoint, name)
        if os.path.isfile(path):
            return path
    return None


def checkpoint_problem(checkpoint: str) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None when it is complete."""
    if not os.path.isfile(os.path.join(checkpoint, "trainer_state.json")):
        return "no trainer_state.json (it was still being written)"
    weights = weights_file(checkpoint)
    if weights is None:
        return "no model.safetensors"
    try:
        from safetensors import safe_open

        with safe_open(weights, framework="pt") as f:
            keys = list(f.keys())
            if keys:
                f.get_tensor(keys[-1])  # the last tensor lies at the end of the file: a truncated file fails here
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same problem to the user
        return f"{weights} cannot be read ({type(err).__name__}: {err}); it is truncated or corrupt"
    return None


def complete_checkpoints(output_dir: str) -> list[str]:
    """Checkpoints in ``output_dir`` that a run can resume from, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = sorted(
        (int(m.group(1)), os.path.join(output_dir, name))
        for name in os.listdir(output_dir)
        if (m := CHECKPOINT_RE.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    good = []
    for _, path in found:
        problem = checkpoint_problem(path)
        if problem:
            logger.warning("Skipping %s: %s.", path, problem)
        else:
            good.append(path)
    return good


def resolve_resume(value, output_dir: str) -> str | None:
    """``resume_from_checkpoint``: a path, or true/latest/auto for the newest complete one in output_dir."""
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("true", "latest", "auto"):
        good = complete_checkpoints(output_dir)
        if not good:
            logger.warning("No complete checkpoint in %s to resume from; starting from scratch.", output_dir)
            return None
        logger.info("Resuming from %s, the newest complete checkpoint.", good[-1])
        return good[-1]
    if not os.path.isdir(value):
        raise CheckpointError(f"resume_from_checkpoint {value!r} is not a directory. Pass a checkpoint-N folder, "
                              "or true for the newest complete checkpoint in output_dir.")
    problem = checkpoint_problem(value)
    if problem:
        others = complete_checkpoints(os.path.dirname(os.path.abspath(value)))
        hint = f" The newest complete one is {others[-1]}." if others else ""
        raise CheckpointError(f"Cannot resume from {value}: {problem}.{hint}")
    logger.info("Resuming from %s.", value)
    return value


def previous_run(output_dir: str) -> list[str]:
    """What in ``output_dir`` belongs to a run: finished results and checkpoints."""
    if not os.path.isdir(output_dir):
        return []
    names = os.listdir(output_dir)
    return sorted(n for n in names if n in RUN_ARTIFACTS or CHECKPOINT_RE.match(n))


def prepare_output_dir(output_dir: str, overwrite: bool, resuming: bool) -> None:
    """Refuse to mix two runs in one folder; with ``overwrite`` remove the old run's files first."""
    found = previous_run(output_dir)
    if not found or resuming:
        return
    if not overwrite:
        shown = ", ".join(found[:6]) + (" ..." if len(found) > 6 else "")
        raise CheckpointError(
            f"output_dir {output_dir} already holds another run ({shown}). Pass --overwrite_output_dir true to "
            "replace it, --resume_from_checkpoint true to continue it, or another --output_dir."
        )
    for name in found:
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    logger.info("Removed the previous run's files from %s (overwrite_output_dir).", output_dir)


class StopOnSignal(TrainerCallback):
    """SIGTERM or a first Ctrl-C: finish the current step, save a checkpoint, stop training.

    A second Ctrl-C interrupts at once (the run's rescue checkpoint then keeps the last finished
    step). ``received`` names the signal after training returns.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def install(self) -> "StopOnSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        logger.warning("%s received: finishing this step, saving a checkpoint, then stopping.", self.received)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True
