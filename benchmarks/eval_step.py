"""Evaluation cost: seconds per image of PGD-100 and of AutoAttack (APGD-CE + APGD-T) through the
harness, on ViT-B/32 (a benchmark, not a test), and the cost of the two protocols computed from it.

    python benchmarks/eval_step.py                       # ViT-B/32, batch 8 on CPU, 128 on a GPU
    python benchmarks/eval_step.py --pgd_steps 10 --aa_n_iter 5 --images 8   # a quick CPU run

A randomly initialized CLIP with the architecture of openai/clip-vit-base-patch32 (speed does not
depend on the weights) classifies generated images labelled with its own clean predictions, so every
image is attacked (the worst case: a robust model keeps most images standing). ``score_batch`` (the
harness's own per-batch path) times PGD with ``--pgd_steps`` steps and AutoAttack's 'fare' variant
with ``--aa_n_iter`` iterations (9 target classes). Per-pass costs are measured; the protocol costs
are those costs times the passes each protocol needs, read from its evaluation recipe
(``recipes/eval_tga16.yaml``, ``recipes/eval_fare.yaml``: PGD steps + 1 passes per image; APGD-CE
n_iter; APGD-T targets x n_iter per image that survives APGD-CE; per budget), times its images, read
from the registry's expected split sizes (capped at the recipe's ``max_samples``), printed as a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes")


def protocol_images(recipe: dict) -> tuple[int, list[str]]:
    """Images an evaluation recipe scores: per dataset, the registry's expected rows of the splits its
    protocol reads, capped at ``max_samples``; and the datasets whose size the registry does not know
    (counted as ``max_samples``, or left out without one)."""
    from tgazsr.data.registry import collection, get_benchmark

    names = [n for entry in recipe["datasets"] for n in (collection(entry) or [entry])]
    cap, total, unknown = recipe.get("max_samples"), 0, []
    for name in names:
        source = get_benchmark(name).source_for(recipe.get("protocol", "tga"))
        sizes = dict(source.split_sizes or ())
        rows = sum(sizes[s] for s in source.splits) if all(s in sizes for s in source.splits) else None
        if rows is None:
            unknown.append(name)
            rows = cap or 0
        total += min(rows, cap) if cap else rows
    return total, unknown


def protocol_passes(recipe: dict) -> int:
    """Forward + input-backward passes per image, at most (every image attacked by every pass), of a
    recipe's attacks over its budgets: PGD steps x restarts + 1 clean pass; AutoAttack 'fare': APGD-CE
    n_iter, then APGD-T targets x n_iter on each survivor."""
    budgets = len(recipe["eps"])
    passes = 1  # the clean pass
    for attack in recipe["attacks"]:
        if attack == "pgd":
            passes += budgets * recipe.get("pgd_steps", 10) * recipe.get("pgd_restarts", 1)
        elif attack == "autoattack" and recipe.get("autoattack_version") == "fare":
            n_iter, targets = recipe.get("autoattack_n_iter", 100), recipe.get("autoattack_n_target_classes", 9)
            passes += budgets * recipe.get("autoattack_restarts", 1) * (n_iter + targets * n_iter)
        else:
            raise ValueError(f"No pass count for attack {attack!r} ({recipe.get('autoattack_version')}).")
    return passes


def protocols(per_pass: float) -> list[dict]:
    """Each protocol's passes per image (upper bound), images and hours at ``per_pass`` seconds a pass."""
    import yaml

    rows = []
    for title, file in (("TGA table", "eval_tga16.yaml"), ("FARE report", "eval_fare.yaml")):
        with open(os.path.join(RECIPES, file), encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
        images, unknown = protocol_images(recipe)
        passes = protocol_passes(recipe)
        rows.append({"title": title, "recipe": f"recipes/{file}", "passes": passes, "images": images,
                     "unknown_sizes": unknown, "hours": images * passes * per_pass / 3600})
    return rows


def measure(args, on_result=None) -> dict:
    """Time PGD and AutoAttack through ``score_batch``; returns the figures (``on_result(figures)``
    after each measurement, so a run stopped during AutoAttack keeps PGD's)."""
    from conftest import make_images
    from train_step import build_model

    from tgazsr.attacks import AutoAttackSettings, PGDSettings
    from tgazsr.data import ImageTransform
    from tgazsr.evaluation import AttackPlan, EvalArguments, load_model, score_batch

    gpu = torch.cuda.is_available()
    batch = args.batch_size or (128 if gpu else 8)
    n = args.images or batch
    device = torch.device("cuda" if gpu else "cpu")
    where = torch.cuda.get_device_name() if gpu else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    figures = {"arch": args.arch, "precision": "fp32", "batch_size": batch, "images": n, "device": where,
               "torch": torch.__version__, "pgd_steps": args.pgd_steps, "aa_n_iter": args.aa_n_iter}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)  # the same random model each run: AutoAttack's work depends on which images survive
        model_dir = build_model(os.path.join(tmp, "clip"), args.arch)
        model, tokenizer, _ = load_model(EvalArguments(model_name_or_path=model_dir), device)
        names = [f"class {i}" for i in range(args.num_classes)]
        text = model.class_embeddings(names, ["This is a photo of a {}"], tokenizer)
        size = model.clip.config.vision_config.image_size
        transform = ImageTransform(size)
        x_all = torch.stack([transform(im) for im in make_images(n, 8, size=size + 32, seed=1)[0]]).to(device)
        with torch.no_grad():
            y_all = model.classify(x_all, text).argmax(-1)  # every image is correct clean: all are attacked

        def run(plan) -> float:
            if gpu:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(0, n, batch):
                score_batch(model, text, x_all[i:i + batch], y_all[i:i + batch], list(range(i, min(i + batch, n))),
                            plan, "bench", len(names))
            if gpu:
                torch.cuda.synchronize()
            return (time.perf_counter() - start) / n

        pgd = AttackPlan(["pgd"], {"pgd": PGDSettings(steps=args.pgd_steps, step_size=1.0)}, [1.0])
        run(AttackPlan(["pgd"], {"pgd": PGDSettings(steps=1)}, [1.0]))  # warm-up
        figures["pgd_s_per_image"] = run(pgd)
        figures["pass_s_per_image"] = figures["pgd_s_per_image"] / (args.pgd_steps + 1)
        figures["protocols"] = protocols(figures["pass_s_per_image"])
        if on_result is not None:
            on_result(figures)
        if not args.skip_autoattack:
            aa = AttackPlan(["autoattack"], {"autoattack": AutoAttackSettings(version="fare", n_iter=args.aa_n_iter)},
                            [2.0])
            figures["autoattack_s_per_image"] = run(aa)
            if on_result is not None:
                on_result(figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32")
    parser.add_argument("--images", type=int, default=None, help="images timed (default: one batch)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8 on CPU, 128 on a GPU")
    parser.add_argument("--pgd_steps", type=int, default=100)
    parser.add_argument("--aa_n_iter", type=int, default=100)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--skip_autoattack", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    figures = measure(args)
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1, allow_nan=False)
    print(f"<!-- {args.arch}, fp32, batch {figures['batch_size']}, {figures['images']} images, {figures['device']}, "
          f"torch {torch.__version__} -->")
    print("| measured | seconds per image |")
    print("|---|---|")
    print(f"| PGD-{args.pgd_steps} (+ clean pass), every image attacked | {figures['pgd_s_per_image']:.3f} |")
    print(f"| one forward + input-backward pass | {figures['pass_s_per_image']:.4f} |")
    if "autoattack_s_per_image" in figures:
        print(f"| AutoAttack fare (APGD-CE + APGD-T), n_iter {args.aa_n_iter} | "
              f"{figures['autoattack_s_per_image']:.3f} |")
    print()
    print("| protocol (recipe) | passes per image (upper bound) | images | hours on this device |")
    print("|---|---|---|---|")
    for row in figures["protocols"]:
        note = f" (size unknown, counted as max_samples: {', '.join(row['unknown_sizes'])})" \
            if row["unknown_sizes"] else ""
        print(f"| {row['title']} (`{row['recipe']}`){note} | {row['passes']} | {row['images']:,} | {row['hours']:.1f} |")


if __name__ == "__main__":
    main()
