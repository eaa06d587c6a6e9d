"""``python -m tgazsr.world``: build (or reuse) the offline world, say where it is, report its model.

The report is the evaluation harness's (``tgazsr.evaluation.run_evaluation``): clean and
PGD accuracy of the base model on the held-out sets at the world's eps, written with its
results.md under ``<root>/report`` and printed here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Sequence

from ..limits import setting, with_limits_in_help
from .build import WorldPaths, build_world, default_root, is_complete
from .pretraining import torch_threads
from .spec import BACKBONES, WorldSpec


@with_limits_in_help
@dataclass
class WorldArguments:
    root: str | None = setting(None, "Where to build (default: $TGAZSR_HOME/world-<version>-seed<seed>, with "
                               "-siglip for a SigLIP world).")
    seed: int = setting(0, "Seed of the world.", ge=0)
    small: bool = setting(False, "The reduced unit-test world (seconds).")
    backbone: str = setting("clip", "The world's model: 'clip' (CLIP's contrastive loss; shipped for the default world) "
                            "or 'siglip' (SigLIP's sigmoid loss; always pretrained here, about 10 minutes of one CPU "
                            "core).",
                            choices=BACKBONES)
    force: bool = setting(False, "Rebuild even if a complete world exists.")
    pretrain: bool = setting(False, "Pretrain the world's model here even when the package ships it for this spec and "
                             "seed (a few minutes on a CPU).")
    threads: int | None = setting(None, "Torch threads (default: the idle cores).", ge=1)
    steps: int | None = setting(None, "PGD steps of the report (default 20; 3 with --small).", ge=1)
    max_samples: int | None = setting(None, "Images per evaluation set in the report (default: all).", ge=1)
    report: bool = setting(True, "Print the base model's report (--no_report: build only).")


def check_root(args: WorldArguments, spec: WorldSpec) -> None:
    """The world's folder takes the build and the report, checked before anything is built (a
    complete world that is only read, with --no_report, may be read-only)."""
    from ..files import check_output_dir

    root = os.path.abspath(args.root or default_root(args.seed, args.small, args.backbone))
    if args.report or args.force or not is_complete(WorldPaths.under(root, spec), spec):
        check_output_dir(root, flag="--root")


def parse_args(argv: Sequence[str] | None = None) -> WorldArguments:
    from ..recipes import parse_recipe

    (args,) = parse_recipe((WorldArguments,), argv)
    return args


def report(paths, steps: int, max_samples: int | None = None, threads: int | None = None) -> dict:
    """The harness's clean and PGD-``steps`` (step eps/4) accuracy of the world's model on its
    held-out sets at the world's eps; writes ``<root>/report``."""
    from ..evaluation import EvalArguments, run_evaluation

    args = EvalArguments(
        model_name_or_path=paths.model,
        datasets=paths.eval_entries(),
        attacks=["pgd"],
        eps=[paths.eps],
        attack_options={"pgd": {"steps": steps, "step_size": paths.eps / 4}},
        max_samples=max_samples,
        batch_size=200,
        output_dir=os.path.join(paths.root, "report"),
        plot=False,
    )
    with torch_threads(threads):
        return run_evaluation(args)


def main(argv: Sequence[str] | None = None) -> dict:
    """Build, print the paths, and (unless ``--no_report``) print the report's results.md.

    Returns the harness's results (an empty dict with ``--no-report``)."""
    import logging

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = WorldSpec.default(args.small, args.backbone)
    if args.threads:
        spec = dataclasses.replace(spec, threads=args.threads)
    check_root(args, spec)
    paths = build_world(args.root, seed=args.seed, small=args.small, force=args.force, spec=spec,
                        pretrain=args.pretrain)

    print(f"root:     {paths.root}")
    print(f"model:    {paths.model} ({spec.backbone})")
    print(f"train:    {paths.train}")
    print(f"pretrain: {paths.pretrain}")
    for name, path in paths.eval.items():
        print(f"eval/{name}: {path}")
    print(f"eps:      {paths.eps:g}/255")
    print("harness datasets: " + " ".join(paths.eval_entries()))
    info_path = os.path.join(paths.model, "pretraining.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        print(
            f"pretraining: {info['steps']} steps, {info['pretrain_seconds']:.1f} s wall "
            f"({info.get('pretrain_cpu_seconds', float('nan')):.1f} s CPU) on {info['threads']} thread(s)"
            + (" when the shipped model was made (tgazsr/world/shipped)" if info.get("shipped") else "")
            + (", SigLIP's sigmoid loss" if info.get("loss") == "sigmoid" else "")
        )
    if not args.report:
        return {}

    steps = args.steps if args.steps is not None else (3 if args.small else 20)
    results = report(paths, steps, args.max_samples, args.threads)
    results_md = os.path.join(paths.root, "report", "results.md")
    print()
    if os.path.exists(results_md):
        with open(results_md, encoding="utf-8") as f:
            print(f.read().rstrip())
    else:  # the harness wrote no table: the averages at least
        print(f"average: {json.dumps(results.get('average'), default=str)}")
    return results


if __name__ == "__main__":
    import sys

    from ..errors import run_command

    sys.exit(run_command(main))
