"""Evaluation cost: seconds per image of PGD-100 and of AutoAttack (APGD-CE + APGD-T) through the
harness, on ViT-B/32 (a benchmark, not a test), and the cost of the two protocols computed from it.

    python benchmarks/eval_step.py                       # ViT-B/32, batch 8 on CPU, 128 on a GPU
    python benchmarks/eval_step.py --pgd_steps 10 --aa_n_iter 5 --images 8   # a quick CPU run

A randomly initialized CLIP with the architecture of openai/clip-vit-base-patch32 (speed does not
depend on the weights) classifies generated images labelled with its own clean predictions, so every
image is attacked (the worst case: a robust model keeps most images standing). ``score_batch`` (the
harness's own per-batch path) times PGD with ``--pgd_steps`` steps and AutoAttack's 'fare' variant
with ``--aa_n_iter`` iterations (9 target classes). Per-pass costs are measured; the protocol costs
are those costs times the passes each protocol needs (PGD: steps + 1 passes per image; APGD-CE:
n_iter; APGD-T: 9 x n_iter per image that survives APGD-CE), printed as a table.
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

#: Test images of the TGA-ZSR table under tgazsr's registry (docs/datasets.md), and of the FARE report.
TGA_IMAGES = 345_000
FARE_IMAGES = 16 * 1000


def main() -> None:
    from conftest import make_images
    from train_step import build_model

    from tgazsr.attacks import AutoAttackSettings, PGDSettings
    from tgazsr.data import ImageTransform
    from tgazsr.evaluation import AttackPlan, EvalArguments, load_model, score_batch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32")
    parser.add_argument("--images", type=int, default=None, help="images timed (default: one batch)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8 on CPU, 128 on a GPU")
    parser.add_argument("--pgd_steps", type=int, default=100)
    parser.add_argument("--aa_n_iter", type=int, default=100)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--skip_autoattack", action="store_true")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    batch = args.batch_size or (128 if gpu else 8)
    n = args.images or batch
    device = torch.device("cuda" if gpu else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
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
        pgd_s = run(pgd)
        per_pass = pgd_s / (args.pgd_steps + 1)
        aa_s = None
        if not args.skip_autoattack:
            aa = AttackPlan(["autoattack"], {"autoattack": AutoAttackSettings(version="fare", n_iter=args.aa_n_iter)},
                            [2.0])
            aa_s = run(aa)
    where = torch.cuda.get_device_name() if gpu else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"<!-- {args.arch}, fp32, batch {batch}, {n} images, {where}, torch {torch.__version__} -->")
    print("| measured | seconds per image |")
    print("|---|---|")
    print(f"| PGD-{args.pgd_steps} (+ clean pass), every image attacked | {pgd_s:.3f} |")
    print(f"| one forward + input-backward pass | {per_pass:.4f} |")
    if aa_s is not None:
        print(f"| AutoAttack fare (APGD-CE + APGD-T), n_iter {args.aa_n_iter} | {aa_s:.3f} |")
    print()
    print("| protocol | passes per image (upper bound) | images | hours on this device |")
    print("|---|---|---|---|")
    tga_passes = 100 + 1
    fare_passes = 100 + 9 * 100
    print(f"| TGA table, PGD-100 at 1/255 | {tga_passes} | {TGA_IMAGES:,} | "
          f"{TGA_IMAGES * tga_passes * per_pass / 3600:.1f} |")
    print(f"| FARE report, AutoAttack at 2/255 and 4/255 | {2 * fare_passes} | {FARE_IMAGES:,} | "
          f"{FARE_IMAGES * 2 * fare_passes * per_pass / 3600:.1f} |")


if __name__ == "__main__":
    main()
