"""Where the quickstart's time goes: the README's first command, run in this process on a fresh world
root, with each phase timed where the package does it (a benchmark, not a test).

    python benchmarks/quickstart_profile.py                 # the quickstart as written (minutes)
    python benchmarks/quickstart_profile.py --small         # the reduced world and 3 steps (seconds)

It runs ``tgazsr.train.main([recipes/quickstart.yaml, ...])`` with a fresh ``--synthetic_root`` and
wraps, for the duration of the run, the package functions that do each phase:
- rendering: ``build_train_set``, ``build_eval_set`` (per held-out set) and ``generate_pretraining``
  of ``tgazsr.world.build`` (drawing the images and captions), and ``put_atomically`` (writing the
  sets' Arrow files and the pretrained model);
- CLIP pretraining: ``tgazsr.world.pretraining.pretrain_clip``;
- fine-tuning: ``RobustCLIPTrainer.train`` (the training loop: the attack, the steps, the logging);
- evaluation: ``tgazsr.train.evaluate_trained`` (base and trained model on the held-out sets, clean
  and under PGD, through the harness);
- the rest of the command (imports excluded: loading the model and data, building the trainer,
  saving the model and its card) is the total minus those phases.
Prints one table (seconds, share of the total) and the torch threads used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@contextmanager
def timed(owner, name: str, phase: str, totals: dict):
    """Replace ``owner.name`` with a wrapper adding its seconds to ``totals[phase]``; restore it after."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[phase] = totals.get(phase, 0.0) + time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the reduced world, 3 steps, 16 images per set")
    parser.add_argument("--root", help="world root (default: a fresh temporary folder, so the world is built)")
    args, extra = parser.parse_known_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from tgazsr import train
    from tgazsr.trainer import RobustCLIPTrainer
    from tgazsr.world import build, pretraining

    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--synthetic_root", args.root or os.path.join(tmp, "world"), "--output_dir", os.path.join(tmp, "out")]
        if args.small:
            flags += ["--synthetic_small", "true", "--max_steps", "3", "--per_device_train_batch_size", "8",
                      "--eval_max_samples", "16", "--eval_attack_steps", "2"]
        wraps = [(build, "build_train_set", "rendering: training set"),
                 (build, "build_eval_set", "rendering: held-out sets"),
                 (build, "generate_pretraining", "rendering: pretraining images and captions"),
                 (build, "put_atomically", "writing the world's files (sets and model)"),
                 (pretraining, "pretrain_clip", "CLIP pretraining"),
                 (RobustCLIPTrainer, "train", "fine-tuning (TGA-ZSR steps)"),
                 (train, "evaluate_trained", "evaluation (base and trained, clean and PGD)")]
        start = time.perf_counter()
        with _all(wraps, totals):
            train.main([QUICKSTART, *flags, *extra])
        total = time.perf_counter() - start
    phases = [phase for _, _, phase in wraps]
    rest = total - sum(totals.get(p, 0.0) for p in phases)
    print(f"\n<!-- quickstart profile{' (reduced world)' if args.small else ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads at the end, {os.cpu_count()} CPUs -->")
    print("| phase | seconds | share |")
    print("|---|---|---|")
    for phase in phases:
        seconds = totals.get(phase)
        print(f"| {phase} | {'not run' if seconds is None else f'{seconds:.1f}'} | "
              f"{'' if seconds is None else f'{100 * seconds / total:.0f}%'} |")
    print(f"| the rest (loading, trainer, saving, card) | {rest:.1f} | {100 * rest / total:.0f}% |")
    print(f"| **total** | {total:.1f} | 100% |")


@contextmanager
def _all(wraps, totals):
    if not wraps:
        yield
        return
    (owner, name, phase), *rest = wraps
    with timed(owner, name, phase, totals), _all(rest, totals):
        yield


if __name__ == "__main__":
    sys.exit(main())
