"""Training-step speed: tgazsr's TGA-ZSR step against the reference code's structure (a benchmark).

    python benchmarks/train_step.py                          # ratio on ViT-B/32, 200 classes, PGD-2
    python benchmarks/train_step.py --batch_size 128         # the GPU default
    python benchmarks/train_step.py --batch_size 128 --precision bf16 --compile --json ratio.json
    python benchmarks/train_step.py --all_methods --steps 5  # images/s of every method's step
    python benchmarks/train_step.py --all_methods --methods tga_zsr --batch_size 128 --precision bf16 --compile
    python benchmarks/train_step.py --all_methods --arch vit-l-14 --batch_size 64 --precision bf16 \
        --activation_checkpointing                           # peak memory of a ViT-L/14 step

Builds a randomly initialized CLIP with the architecture of openai/clip-vit-base-patch32 from its
config (no download; speed does not depend on the weights) and a generated batch, then times, in
one run on the same model, batch, machine and precision, (a) tgazsr's step (``compute_loss`` +
backward + SGD update) and (b) the same step with the reference code's structure
(``reference_step.py``: prompts re-encoded with gradients at every step and attack iteration, the
attack's backward filling parameter gradients, four vision passes, the frozen model with gradients
on) + the same SGD update. Prints images per second of both (and peak GPU memory) and, as its
last line, ``speedup: X.XX``. Paste the output into BENCHMARKS.md with the machine it ran on.
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

ARCHS = {
    # ViT-B/32 as in openai/clip-vit-base-patch32
    "vit-b-32": dict(
        vision=dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        projection_dim=512,
    ),
    # ViT-L/14 as in openai/clip-vit-large-patch14
    "vit-l-14": dict(
        vision=dict(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096,
                    num_hidden_layers=24, num_attention_heads=16),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=768,
    ),
    # The larger encoders of the recipes, their dims written from each checkpoint's config.json
    # (https://huggingface.co/<id>/blob/main/config.json); vocab_size as there (the tokenizer here is
    # character-level, its ids fit any vocabulary), so that the frozen text tower weighs what it weighs.
    # ViT-B/16 as in openai/clip-vit-base-patch16
    "vit-b-16": dict(
        vision=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        projection_dim=512, vocab_size=49408,
    ),
    # ViT-L/14 at 224 px as in openai/clip-vit-large-patch14 (vit-l-14 above, with the real vocabulary)
    "vit-l-14-224": dict(
        vision=dict(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096,
                    num_hidden_layers=24, num_attention_heads=16),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=768, vocab_size=49408,
    ),
    # ViT-L/14 at 336 px as in openai/clip-vit-large-patch14-336
    "vit-l-14-336": dict(
        vision=dict(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                    num_hidden_layers=24, num_attention_heads=16),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=768, vocab_size=49408,
    ),
    # SigLIP B/16 at 224 px as in google/siglip-base-patch16-224 (its config.json sets the text tower's
    # width 768, MLP 3072, 12 heads, vocabulary 32000 and the patch 16; the rest are SiglipConfig's
    # defaults: 12 layers per tower, 224 px, vision width 768, MLP 3072, 12 heads, 64 text positions)
    "siglip-b-16": dict(
        family="siglip",
        vision=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=64),
        vocab_size=32000,
    ),
    "tiny": dict(
        vision=dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=2),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=32,
    ),
}


def build_model(directory: str, arch: str) -> str:
    """Save a randomly initialized model of ``arch`` (a CLIP, or a SigLIP for ``family="siglip"``) with the
    character-level tokenizer and the family's image processor to ``directory``."""
    from conftest import write_char_tokenizer

    spec = ARCHS[arch]
    if spec.get("family") == "siglip":
        return build_siglip(directory, spec)
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = write_char_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=spec.get("vocab_size", len(tok)), max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         **spec["text"]),
        vision_config=spec["vision"],
        projection_dim=spec["projection_dim"],
    )
    CLIPModel(config).save_pretrained(directory)
    size = spec["vision"]["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    CLIPProcessor(image_processor=processor, tokenizer=tok).save_pretrained(directory)
    return directory


def build_siglip(directory: str, spec: dict) -> str:
    """A random SiglipModel of ``spec``'s dims, its text padded to 64 tokens as SigLIP's are."""
    from conftest import write_char_tokenizer
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok = write_char_tokenizer()
    tok.model_max_length = spec["text"]["max_position_embeddings"]
    config = SiglipConfig(
        text_config=dict(vocab_size=spec["vocab_size"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **spec["text"]),
        vision_config=spec["vision"],
    )
    SiglipModel(config).save_pretrained(directory)
    size = spec["vision"]["image_size"]
    processor = SiglipImageProcessor(size={"height": size, "width": size})
    SiglipProcessor(image_processor=processor, tokenizer=tok).save_pretrained(directory)
    return directory


def bench_trainer(tmp: str, arch: str, method: str, num_classes: int, images: int, *flags: str,
                  model_dir: str | None = None):
    """``build_trainer`` as ``tgazsr train`` builds it from ``recipes/<method>.yaml``, on a random CLIP
    of ``arch`` (built in ``tmp``, or the one already saved in ``model_dir``) and ``images`` generated
    images of ``num_classes`` classes saved in ``tmp``, on the GPU when there is one; ``flags`` override
    the recipe. Returns (trainer, train data, tokenizer)."""
    from conftest import make_hf_dataset

    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import parse_recipe
    from tgazsr.train import build_trainer

    if model_dir is None or not os.path.isfile(os.path.join(model_dir, "config.json")):
        model_dir = build_model(model_dir or os.path.join(tmp, "clip"), arch)
    data_dir = os.path.join(tmp, "data")
    make_hf_dataset(images, class_names=[f"class {i}" for i in range(num_classes)]).save_to_disk(data_dir)
    recipe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", f"{method}.yaml")
    parsed = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), [
        recipe, "--model_name_or_path", model_dir, "--dataset_name", data_dir, "--output_dir", os.path.join(tmp, "out"),
        "--use_cpu", str(not torch.cuda.is_available()).lower(), "--eval_split", "", "--report_to", "none",
        "--dataloader_num_workers", "0", *flags])
    return build_trainer(*parsed)


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def compile_towers(*models, backend: str = "inductor") -> list[str]:
    """``torch.compile`` every vision and text tower of ``models`` in place (so both loops, which call
    the towers, run compiled); returns the names of the compiled modules."""
    names = []
    for i, model in enumerate(models):
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in ("vision_model", "text_model"):
                module.compile(backend=backend)
                names.append(f"{i}:{name}")
    return names


def ratio(args, on_result=None) -> dict:
    """Time tgazsr's step and the reference-structured step on one model and batch; print both.
    Returns the figures (``on_result(figures)`` is called after each loop's, so a run stopped in the
    second loop keeps the first)."""
    import statistics

    from reference_step import GradFrozen, reference_step

    from tgazsr.data import collate

    with tempfile.TemporaryDirectory() as tmp:
        trainer, train, tokenizer = bench_trainer(tmp, args.arch, "tga_zsr", args.num_classes, args.batch_size,
                                                  "--fp16", "false", "--train_numsteps", str(args.pgd_steps))
        cfg, prompt_template = trainer.args, trainer.recipe["data"]["prompt_template"]
        model = trainer.model
        device = next(model.parameters()).device
        batch = collate([train.dataset[i] for i in range(args.batch_size)])
        batch = {k: v.to(device) for k, v in batch.items()}
        frozen = GradFrozen(trainer.ref_model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
        model.train()

        compiled = compile_towers(model, trainer.ref_model, backend=args.compile_backend) if args.compile else []
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
        autocast = torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)

        def ours():
            with autocast:
                loss = trainer.compute_loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def theirs():
            with autocast:
                reference_step(model, frozen, tokenizer, train.class_names, prompt_template,
                               batch["pixel_values"], batch["labels"], cfg)
            opt.step()
            opt.zero_grad(set_to_none=True)
            for p in frozen.parameters():
                p.grad = None

        def timed(fn):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - t

        figures = {"arch": args.arch, "num_classes": args.num_classes, "pgd_steps": args.pgd_steps,
                   "batch_size": args.batch_size, "precision": args.precision, "device": device_name(),
                   "torch": torch.__version__, "compile": args.compile and args.compile_backend,
                   "compiled_modules": len(compiled), "timed_steps": args.steps, "loops": {}}
        results = {}
        for name, fn in (("tgazsr", ours), ("reference structure", theirs)):
            warm = time.perf_counter()
            fn()  # warm-up (and, compiled, the compilation)
            warm = time.perf_counter() - warm
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            times = [timed(fn) for _ in range(args.steps)]
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
            results[name] = (statistics.median(times), "n/a" if peak is None else f"{peak:.2f}")
            figures["loops"][name] = {"s_per_step": statistics.median(times), "warmup_s": warm,
                                      "images_per_s": args.batch_size / statistics.median(times), "peak_gib": peak}
            if on_result is not None:
                on_result(figures)
        print(f"<!-- {args.arch}, {args.num_classes} classes, PGD-{args.pgd_steps}, batch {args.batch_size}, "
              f"{args.precision}{', compiled (' + args.compile_backend + ')' if args.compile else ''}, "
              f"{device_name()}, torch {torch.__version__}, median of {args.steps} steps -->")
        print("| step | s/step | images/s | peak GPU memory (GiB) |")
        print("|---|---|---|---|")
        for name, (sec, mem) in results.items():
            print(f"| {name} | {sec:.3f} | {args.batch_size / sec:.2f} | {mem} |")
        speedup = results["reference structure"][0] / results["tgazsr"][0]
        figures["speedup"] = speedup
        if on_result is not None:
            on_result(figures)
        print(f"speedup: {speedup:.2f}")
        return figures


def main():
    from tgazsr.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32", choices=sorted(ARCHS))
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8 on CPU, 128 on a GPU")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--num_classes", type=int, default=200, help="class prompts (Tiny-ImageNet: 200)")
    parser.add_argument("--pgd_steps", type=int, default=2)
    parser.add_argument("--all_methods", action="store_true", help="images/s of every method's step instead")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast dtype for both steps (fp16: CUDA only, the recipes' setting; bf16: the GPU "
                             "target's setting)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile: the ratio compiles every vision and text tower (both loops); "
                             "--all_methods compiles the trained model as the Trainer does")
    parser.add_argument("--compile_backend", default="inductor", help="the ratio's torch.compile backend")
    parser.add_argument("--json", help="the ratio: also write its figures to this JSON file")
    parser.add_argument("--activation_checkpointing", action="store_true",
                        help="--all_methods: recompute the vision tower's activations in the backward pass")
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = 128 if torch.cuda.is_available() else 8
    if not args.all_methods:
        figures = ratio(args)
        if args.json:
            import json

            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(figures, f, indent=1, allow_nan=False)
        return
    print(f"| method | images/s | s/step | peak GPU memory (GiB) |  <!-- {args.arch}, batch {args.batch_size}, {args.precision}"
          f"{', compiled' if args.compile else ''}{', activation checkpointing' if args.activation_checkpointing else ''}"
          f", {device_name()}, torch {torch.__version__} -->")
    print("|---|---|---|---|")
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            trainer, _, _ = bench_trainer(
                tmp, args.arch, method, args.num_classes, args.batch_size * (args.steps + 1),
                "--max_steps", str(args.steps + 1), "--per_device_train_batch_size", str(args.batch_size),
                "--fp16", str(args.precision == "fp16").lower(), "--bf16", str(args.precision == "bf16").lower(),
                "--torch_compile", str(args.compile).lower(),
                "--activation_checkpointing", str(args.activation_checkpointing).lower(), "--save_strategy", "no",
                "--logging_steps", "1000", "--eval_max_samples", "0", "--disable_tqdm", "true")
            times = []

            from transformers import TrainerCallback

            class Clock(TrainerCallback):
                def on_step_begin(self, *a, **k):
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    self.t = time.perf_counter()

                def on_step_end(self, *a, **k):
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - self.t)

            trainer.add_callback(Clock())
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
            per_step = sum(times[1:]) / max(1, len(times) - 1)  # first step is warm-up
            mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if torch.cuda.is_available() else "n/a"
            print(f"| {method} | {args.batch_size / per_step:.1f} | {per_step:.3f} | {mem} |", flush=True)


if __name__ == "__main__":
    main()
