"""``python -m tgazsr.evaluate``: parse a recipe and flags, run the harness, exit non-zero when a
dataset could not be evaluated.

    python -m tgazsr.evaluate recipes/eval_tga16.yaml --model_name_or_path openai/clip-vit-base-patch32
    accelerate launch -m tgazsr.evaluate recipes/eval_tga16.yaml --model_name_or_path outputs/clip-tga-zsr
    python -m tgazsr.evaluate --model_name_or_path M --datasets cifar10=/data/cifar10 ./my_folder \
        --attacks pgd cw autoattack --eps 1 2 4 --max_samples 1000
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

import torch

from .arguments import parse_eval_args
from .harness import run_evaluation


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate import PartialState

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_eval_args(argv)
    owned = not PartialState._shared_state
    try:
        results = run_evaluation(args)
    finally:
        if owned and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
