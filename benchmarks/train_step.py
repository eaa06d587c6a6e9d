"""Training-step throughput per method (a benchmark, not a test).

    python benchmarks/train_step.py --arch vit-b-32 --batch_size 32 --steps 5 [--methods tga_zsr tecoa]

Builds a randomly initialized CLIP with the architecture of openai/clip-vit-base-patch32 from
its config (no download; speed does not depend on the weights), a generated dataset, and times
``RobustCLIPTrainer`` steps (attack + forward + backward + optimizer) after one warm-up step.
Prints a Markdown table: images per second and, on CUDA, peak memory. Paste it into
BENCHMARKS.md with the machine it ran on.
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

ARCHS = {
    # ViT-B/32 as in openai/clip-vit-base-patch32
    "vit-b-32": dict(
        vision=dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        projection_dim=512,
    ),
    "tiny": dict(
        vision=dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=2),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=32,
    ),
}


def build_model(directory: str, arch: str) -> str:
    from conftest import write_char_tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    spec = ARCHS[arch]
    tok = write_char_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **spec["text"]),
        vision_config=spec["vision"],
        projection_dim=spec["projection_dim"],
    )
    CLIPModel(config).save_pretrained(directory)
    size = spec["vision"]["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    CLIPProcessor(image_processor=processor, tokenizer=tok).save_pretrained(directory)
    return directory


def main():
    from conftest import make_hf_dataset

    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.methods import METHODS
    from tgazsr.recipes import parse_recipe
    from tgazsr.train import build_trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32", choices=sorted(ARCHS))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--fp16", action="store_true", help="fp16 autocast (CUDA only), as the recipes use")
    args = parser.parse_args()
    recipes = os.path.join(os.path.dirname(__file__), "..", "recipes")
    use_cpu = not torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(os.path.join(tmp, "clip"), args.arch)
        data_dir = os.path.join(tmp, "data")
        make_hf_dataset(args.batch_size * (args.steps + 1), class_names=[f"class {i}" for i in range(200)]).save_to_disk(data_dir)
        device = torch.cuda.get_device_name() if not use_cpu else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        print(f"| method | images/s | s/step | peak GPU memory (GiB) |  <!-- {args.arch}, batch {args.batch_size}, {device}, torch {torch.__version__} -->")
        print("|---|---|---|---|")
        for method in args.methods:
            model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), [
                os.path.join(recipes, f"{method}.yaml"), "--model_name_or_path", model_dir, "--dataset_name", data_dir,
                "--output_dir", os.path.join(tmp, "out"), "--max_steps", str(args.steps + 1),
                "--per_device_train_batch_size", str(args.batch_size), "--fp16", str(args.fp16).lower(),
                "--use_cpu", str(use_cpu).lower(), "--save_strategy", "no", "--logging_steps", "1000",
                "--dataloader_num_workers", "0", "--eval_max_samples", "0", "--report_to", "none",
                "--disable_tqdm", "true",
            ])
            trainer, _, _ = build_trainer(model_args, data_args, cfg)
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
