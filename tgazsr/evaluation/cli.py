"""``python -m tgazsr.evaluate``: parse a recipe and flags, run the harness, exit non-zero when a
dataset could not be evaluated.

Exit status: 0 when every dataset was evaluated; 1 when some could not be (their errors are in
results.json and the log); 2 for a bad input, reported as one ``error: ...`` line without a
traceback (a bad flag or recipe, a model folder that is not a CLIP, a --datasets entry that names
nothing, no dataset that could be evaluated at all). ``--debug`` or ``TGAZSR_DEBUG=1`` shows the
traceback instead (see ``tgazsr.errors.run_command``).

    python -m tgazsr.evaluate recipes/eval_tga16.yaml --model_name_or_path openai/clip-vit-base-patch32
    accelerate launch -m tgazsr.evaluate recipes/eval_tga16.yaml --model_name_or_path outputs/clip-tga-zsr
    python -m tgazsr.evaluate --model_name_or_path M --datasets cifar10=/data/cifar10 ./my_folder \
        --attacks pgd cw autoattack --eps 1 2 4 --max_samples 1000
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

import torch

from ..cpu import use_idle_cores
from ..errors import UserError, run_command
from ..files import check_output_dir
from ..model_checks import check_model_folder
from ..process_group import close_process_group
from ..recipes import RecipeError
from .arguments import EvalArguments, parse_eval_args
from .datasets import DatasetUnavailable, ResolvedEntry, resolve_entries
from .harness import run_evaluation


#: Room the evaluation's reports need (results.json, results.md, results.csv/jsonl, finished/, the plot).
EVAL_OUTPUT_BYTES = 16 * 1024 * 1024


def check_inputs(args: EvalArguments) -> list[ResolvedEntry]:
    """What can be checked before any model or data is loaded: a model is named and is a CLIP
    folder (when local), datasets are named and each entry means something. Returns the entries,
    resolved (once for the whole run: the harness takes them as they are)."""
    if not args.model_name_or_path:
        raise RecipeError("No model to evaluate: pass --model_name_or_path (a model directory, e.g. one tgazsr.train wrote, or a Hub id).")
    check_model_folder(args.model_name_or_path)
    if not args.datasets:
        raise RecipeError(
            "No dataset to evaluate: pass --datasets (registry names such as cifar10, collections such as tga16, "
            "or local paths), or a recipe such as recipes/eval_tga16.yaml."
        )
    resolved, problems = resolve_entries(list(args.datasets), args)
    if problems:
        raise DatasetUnavailable("\n".join(problems))
    return resolved


def check_datasets(args: EvalArguments) -> int:
    """``--check_data``: the data check table of the registry entries named by --datasets (default:
    the 16 of the TGA table) under --protocol; exit 1 when a check failed."""
    from ..data.check import check_data, format_check_table

    names = [e for e in args.datasets if "=" not in e] or None
    rows = check_data(names, protocol=args.protocol, data_dir=args.data_dir)
    print(format_check_table(rows))
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate import PartialState

    # The command's own choice: the offline world's evaluation sets (world_shapes, ..., the "world"
    # collection) are names --datasets accepts. Importing the world registers them; the registry
    # itself never imports it.
    from .. import world  # noqa: F401

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_eval_args(argv)
    if args.check_data:
        return check_datasets(args)
    # results.json, results.md and finished/ go there: a file, a folder that cannot be written or a full
    # disk is found before a checkpoint is converted or a model loaded.
    check_output_dir(args.output_dir, EVAL_OUTPUT_BYTES, what="results.json, results.md and the finished datasets")
    if args.model_name_or_path:  # an OpenAI-CLIP / open_clip checkpoint or a zoo name: converted once, cached
        from ..convert import load_model_or_convert

        args.model_name_or_path = load_model_or_convert(args.model_name_or_path)
    resolved = check_inputs(args)
    use_idle_cores(torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu")),
                   int(os.environ.get("WORLD_SIZE", "1") or 1))
    owned = not PartialState._shared_state
    try:
        results = run_evaluation(args, resolved=resolved)
    finally:
        if owned:
            close_process_group(wait=False)
    if results["errors"] and not results["datasets"]:
        raise UserError("No dataset could be evaluated:\n" + "\n".join(results["errors"].values()))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(run_command(main))
