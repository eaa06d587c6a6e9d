"""One section of the GPU day (``benchmarks/gpu.sh``), run in its own process, writing its part of
the results file before the next section starts.

    python benchmarks/gpu_run.py SECTION --results results.json [--smoke] [--work DIR]
    python benchmarks/gpu_run.py note SECTION --results results.json --status ok --seconds 12 --limit_s 60

Sections (in gpu.sh's order): ``env`` (GPU name, driver, torch and CUDA versions), ``ratio_eager`` and
``ratio_compiled`` (tgazsr's TGA-ZSR step against the reference-structured loop, ViT-B/32, batch 128,
bf16, ``train_step.ratio``), ``memory`` (peak memory of a step for ViT-B/32 and ViT-L/14 with and
without activation checkpointing, ``step_memory.one``), ``eval`` (PGD-100 and AutoAttack seconds per
image and the projected cost of both protocols, ``eval_step.measure``) and ``e2e`` (``tgazsr train``
on generated 224 px images: train, save, evaluate clean and under PGD, base and trained model).
Models are built from configs with the real architectures and random weights: nothing is downloaded.

``--smoke`` runs every section on CPU with tiny settings (a tiny CLIP, a few images, a few attack
steps, torch.compile with a backend that needs no compiler), so the script is known to work before a
GPU is there; its figures measure nothing. ``note`` records a section's status (gpu.sh calls it after
each section, and for each section skipped when the time budget is spent). The results file is
rewritten whole after every part (never with a non-finite number).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

SCHEMA = "tgazsr-gpu-day"
VERSION = 1
SECTIONS = ("env", "ratio_eager", "memory", "eval", "e2e", "ratio_compiled")
STATUSES = ("ok", "failed", "timeout", "skipped")

# Each section's settings on a GPU, and with --smoke on CPU (tiny: they exercise the code, not the device).
SETTINGS = {
    "gpu": {
        "ratio": dict(arch="vit-b-32", batch_size=128, steps=5, num_classes=200, pgd_steps=2, precision="bf16",
                      compile_backend="inductor"),
        "memory": dict(configs=[("vit-b-32", False, (64, 128)), ("vit-l-14", True, (16, 32)),
                                ("vit-l-14", False, (16, 32)), ("vit-b-32", True, (64, 128))],
                       num_classes=200, precision="bf16"),
        "eval": dict(arch="vit-b-32", batch_size=128, images=128, pgd_steps=100, aa_n_iter=100, num_classes=100),
        "e2e": dict(arch="vit-b-32", image_size=224, train_images=1280, eval_images=256, steps=20, batch_size=128,
                    eval_attack_steps=10, precision="bf16"),
    },
    "smoke": {
        "ratio": dict(arch="tiny", batch_size=4, steps=1, num_classes=8, pgd_steps=2, precision="fp32",
                      compile_backend="eager"),
        "memory": dict(configs=[("tiny", False, (2, 4)), ("tiny", True, (2, 4))], num_classes=8, precision="fp32"),
        "eval": dict(arch="tiny", batch_size=4, images=4, pgd_steps=2, aa_n_iter=2, num_classes=8),
        "e2e": dict(arch="tiny", image_size=32, train_images=8, eval_images=8, steps=2, batch_size=4,
                    eval_attack_steps=1, precision="fp32"),
    },
}


# --- the results file ---------------------------------------------------------------------------

def _check_finite(value, path: str = "results") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} is {value}: a non-finite figure is never saved")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def read_results(path: str) -> dict:
    if not os.path.exists(path):
        return {"schema": SCHEMA, "version": VERSION, "sections": {}}
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if results.get("schema") != SCHEMA:
        raise SystemExit(f"error: {path} is not a GPU-day results file (schema {results.get('schema')!r}); "
                         "give --results a new file or the one gpu.sh wrote.")
    return results


def write_part(path: str, key: str, value) -> None:
    """Set ``results[key] = value`` and rewrite the file atomically (a stopped write leaves the old one)."""
    _check_finite(value, key)
    results = read_results(path)
    results[key] = value
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def note(path: str, section: str, status: str, seconds: float, limit_s: float, message: str = "") -> None:
    results = read_results(path)
    sections = dict(results.get("sections", {}))
    sections[section] = {"status": status, "seconds": round(seconds, 1), "limit_s": round(limit_s, 1),
                         "note": message}
    write_part(path, "sections", sections)


# --- sections -------------------------------------------------------------------------------------

def _nvidia_smi() -> dict:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return {"nvidia_smi": f"not available ({type(err).__name__})"}
    name, driver, memory = [part.strip() for part in out.splitlines()[0].split(",")]
    return {"gpu_name": name, "driver": driver, "gpu_memory": memory}


def section_env(args, settings) -> None:
    import torch
    import transformers

    import tgazsr

    gpu = torch.cuda.is_available()
    if not gpu and not args.smoke:
        raise SystemExit("error: no CUDA device is visible to torch (torch.cuda.is_available() is False); run on "
                         "a GPU machine with a CUDA build of torch, or use --smoke on CPU.")
    env = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "smoke": args.smoke,
           "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
           "tgazsr": getattr(tgazsr, "__version__", "unknown"), "python": platform.python_version(),
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if gpu:
        props = torch.cuda.get_device_properties(0)
        env.update({"gpu_name": torch.cuda.get_device_name(0), "gpu_memory_gib": props.total_memory / 2**30,
                    "capability": f"{props.major}.{props.minor}", "bf16": torch.cuda.is_bf16_supported()})
        env.update({k: v for k, v in _nvidia_smi().items() if k != "gpu_name"})
    else:
        env.update({"gpu_name": None, "driver": None, "device": f"CPU ({env['cpu']})"})
    write_part(args.results, "env", env)
    print(json.dumps(env, indent=1))


def _ratio(args, settings, compiled: bool) -> None:
    from train_step import ratio

    key = "ratio_compiled" if compiled else "ratio_eager"
    opts = argparse.Namespace(**settings["ratio"], compile=compiled)
    ratio(opts, on_result=lambda figures: write_part(args.results, key, figures))


def section_ratio_eager(args, settings) -> None:
    _ratio(args, settings, compiled=False)


def section_ratio_compiled(args, settings) -> None:
    _ratio(args, settings, compiled=True)


def section_memory(args, settings) -> None:
    """Each (architecture, checkpointing) at two batch sizes, in this process (on a GPU the peak is
    reset before each step and what earlier measurements left allocated is subtracted)."""
    import gc

    import torch
    from step_memory import one

    spec = settings["memory"]
    gpu = torch.cuda.is_available()
    rows = []
    for arch, checkpointing, batch_sizes in spec["configs"]:
        model_dir = os.path.join(args.work, f"model-{arch}")
        points = []
        for batch in batch_sizes:
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
            left = torch.cuda.memory_allocated() if gpu else 0
            start = time.perf_counter()
            got = one(argparse.Namespace(arch=arch, method="tga_zsr", num_classes=spec["num_classes"],
                                         precision=spec["precision"], activation_checkpointing=checkpointing,
                                         batch_size=batch, model_dir=model_dir, train_numsteps=None))
            points.append({"batch_size": batch, "gib": (got["bytes"] - left) / 2**30,
                           "seconds": time.perf_counter() - start})
            row = {"arch": arch, "activation_checkpointing": checkpointing, "precision": spec["precision"],
                   "measure": "max_memory_allocated" if gpu else "peak resident memory (CPU)", "points": points}
            if len(points) >= 2:
                (b0, m0), (b1, m1) = [(p["batch_size"], p["gib"]) for p in (points[0], points[-1])]
                row["per_image_mib"] = (m1 - m0) / (b1 - b0) * 1024
                row["fixed_gib"] = m0 - (m1 - m0) / (b1 - b0) * b0
                budget = torch.cuda.get_device_properties(0).total_memory / 2**30 if gpu else None
                if budget and row["per_image_mib"] > 0:
                    row["largest_batch"] = int((budget - row["fixed_gib"]) * 1024 // row["per_image_mib"])
                    row["budget_gib"] = budget
            write_part(args.results, "memory", rows + [row])
        rows.append(row)
        print(json.dumps(row), flush=True)


def section_eval(args, settings) -> None:
    from eval_step import measure

    opts = argparse.Namespace(**settings["eval"], skip_autoattack=False)
    measure(opts, on_result=lambda figures: write_part(args.results, "eval", figures))


def section_e2e(args, settings) -> None:
    """``tgazsr train`` (TGA-ZSR) on generated images, saving the model, then the harness on held-out
    generated images, base and trained model (clean and PGD at 1/255, the recipe's eval budget)."""
    import datasets
    import torch
    from conftest import make_images
    from train_step import build_model

    from tgazsr import train
    from tgazsr.trainer import RobustCLIPTrainer

    spec = settings["e2e"]
    work = os.path.join(args.work, "e2e")
    classes = [f"class {i}" for i in range(8)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=classes)})

    def generated(n: int, seed: int):
        images, labels = make_images(n, len(classes), size=spec["image_size"], seed=seed)
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    start = time.perf_counter()
    model_dir = build_model(os.path.join(work, "clip"), spec["arch"])
    datasets.DatasetDict({"train": generated(spec["train_images"], 0)}).save_to_disk(os.path.join(work, "train"))
    datasets.DatasetDict({"test": generated(spec["eval_images"], 1)}).save_to_disk(os.path.join(work, "held_out"))
    prepared = time.perf_counter() - start
    out = os.path.join(work, "run")
    gpu = torch.cuda.is_available()
    timing = {}
    original = RobustCLIPTrainer.train

    def timed_train(self, *a, **k):  # the training loop's own seconds, apart from loading and evaluation
        begun = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            timing["train_s"] = time.perf_counter() - begun

    RobustCLIPTrainer.train = timed_train
    start = time.perf_counter()
    try:
        results = train.main([
            os.path.join(ROOT, "recipes", "tga_zsr.yaml"), "--model_name_or_path", model_dir,
            "--dataset_name", os.path.join(work, "train"), "--output_dir", out, "--max_steps", str(spec["steps"]),
            "--per_device_train_batch_size", str(spec["batch_size"]), "--fp16", "false",
            "--bf16", str(spec["precision"] == "bf16").lower(), "--use_cpu", str(not gpu).lower(),
            "--dataloader_num_workers", "0", "--eval_split", "", "--save_strategy", "no", "--report_to", "none",
            "--eval_datasets", os.path.join(work, "held_out"), "--eval_max_samples", str(spec["eval_images"]),
            "--eval_attack_steps", str(spec["eval_attack_steps"]), "--compare_with_base", "true",
            "--disable_tqdm", "true"])
    finally:
        RobustCLIPTrainer.train = original
    seconds = time.perf_counter() - start
    saved = sorted(os.listdir(out))
    missing = [name for name in ("model.safetensors", "config.json", "README.md", "train_results.json") if
               name not in saved]
    if missing:
        raise SystemExit(f"error: the end-to-end run saved no {', '.join(missing)} in {out}")
    if "train_s" not in timing:
        raise SystemExit("error: the end-to-end run finished without running the training loop")
    images = spec["steps"] * spec["batch_size"]
    runtime = timing["train_s"]

    def averages(bench: dict) -> dict:
        average = bench.get("average") or {}
        return {"clean_accuracy": average.get("clean_accuracy"), "robust": dict(average.get("robust") or {})}

    part = {"arch": spec["arch"], "image_size": spec["image_size"], "precision": spec["precision"],
            "steps": spec["steps"], "batch_size": spec["batch_size"], "eval_images": spec["eval_images"],
            "eval_attack_steps": spec["eval_attack_steps"], "prepare_s": prepared, "command_s": seconds,
            "train_loop_s": runtime, "train_images_per_s": images / runtime, "saved": saved,
            "base": averages(results["base_benchmark"]), "trained": averages(results["benchmark"])}
    write_part(args.results, "e2e", part)
    print(json.dumps(part, indent=1))


RUNNERS = {"env": section_env, "ratio_eager": section_ratio_eager, "ratio_compiled": section_ratio_compiled,
           "memory": section_memory, "eval": section_eval, "e2e": section_e2e}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["note"]:
        parser = argparse.ArgumentParser(prog="gpu_run.py note", description="Record a section's status.")
        parser.add_argument("section", choices=SECTIONS)
        parser.add_argument("--results", required=True)
        parser.add_argument("--status", required=True, choices=STATUSES)
        parser.add_argument("--seconds", type=float, default=0.0)
        parser.add_argument("--limit_s", type=float, default=0.0)
        parser.add_argument("--message", default="")
        a = parser.parse_args(argv[1:])
        note(a.results, a.section, a.status, a.seconds, a.limit_s, a.message)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=SECTIONS)
    parser.add_argument("--results", required=True, help="the results file (JSON), updated in place")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny settings: checks the script, measures nothing")
    parser.add_argument("--work", default=None, help="scratch folder for models and data (default: next to results)")
    args = parser.parse_args(argv)
    args.work = args.work or os.path.join(os.path.dirname(os.path.abspath(args.results)), "work")
    os.makedirs(args.work, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the smoke run is the CPU path, even on a GPU machine
    RUNNERS[args.section](args, SETTINGS["smoke" if args.smoke else "gpu"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
