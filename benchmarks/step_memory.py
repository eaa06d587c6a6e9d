"""Peak memory of one training step, per batch size, and the largest batch that fits a budget.

    python benchmarks/step_memory.py --arch vit-b-32 --batch_sizes 4 8 16          # on CPU: peak RSS
    python benchmarks/step_memory.py --arch vit-l-14 --batch_sizes 32 64 --precision bf16 --budget_gib 80

Each batch size runs in its own process: the model (random weights with the architecture of
openai/clip-vit-base-patch32 or -large-patch14), the method's trainer as the recipe builds it, one
warm-up step, then one measured step of tgazsr's ``compute_loss`` + backward + SGD update. On a GPU
the figure is ``torch.cuda.max_memory_allocated`` over the measured step, weights and optimizer state
included. On CPU it is the process's peak resident memory during the steps minus its resident
memory before them (activations, gradients, the optimizer's momentum) plus the bytes of the weights
(trained model and frozen reference), so that the two devices count the same things; CPU figures
are float32 only and include the CPU allocator's own slack. A straight line through the figures
gives the memory per image, and with ``--budget_gib`` the largest batch under the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(args) -> dict:
    """Build, warm up, measure one step; return the figure (bytes)."""
    from train_step import bench_trainer

    from tgazsr.data import collate

    gpu = torch.cuda.is_available()
    steps = getattr(args, "train_numsteps", None)
    numsteps = () if steps is None else ("--train_numsteps", str(steps))
    with tempfile.TemporaryDirectory() as tmp:
        trainer, train, _ = bench_trainer(tmp, args.arch, args.method, args.num_classes, args.batch_size,
                                          "--fp16", "false", "--activation_checkpointing",
                                          str(args.activation_checkpointing).lower(), *numsteps,
                                          model_dir=getattr(args, "model_dir", None))
        model = trainer.model
        if args.activation_checkpointing:
            model.activation_checkpointing_enable()
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in collate([train.dataset[i] for i in range(args.batch_size)]).items()}
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
        model.train()

        def step():
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
                loss = trainer.compute_loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        before = _rss_bytes()
        step()  # warm-up: creates the optimizer state
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            step()
            weights = sum(t.numel() * t.element_size() for m in (model, trainer.ref_model)
                          for t in [*m.parameters(), *m.buffers()])
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before + weights
        return {"batch_size": args.batch_size, "bytes": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32", help="vit-b-32, vit-l-14, vit-b-16, vit-l-14-224, vit-l-14-336, "
                        "siglip-b-16 or tiny (train_step.py's ARCHS)")
    parser.add_argument("--method", default="tga_zsr", help="a recipe name in recipes/ (tga_zsr, fare_siglip_b16, ...)")
    parser.add_argument("--train_numsteps", type=int, help="the training attack's steps (default: the recipe's). The "
                        "peak does not depend on it: each attack step's graph is freed before the next, so a CPU "
                        "measurement of a 10-step attack may run 1 step")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--num_classes", type=int, default=200)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--budget_gib", type=float, default=80.0, help="memory to fit the batch into")
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)  # one measurement (internal)
    args = parser.parse_args()
    if args.batch_size is not None:
        print(json.dumps(one(args)))
        return
    if not torch.cuda.is_available() and args.precision != "fp32":
        raise SystemExit("CPU figures are float32 only (--precision fp32).")
    rows = []
    for b in args.batch_sizes:
        cmd = [sys.executable, __file__, "--arch", args.arch, "--method", args.method, "--num_classes",
               str(args.num_classes), "--precision", args.precision, "--batch_size", str(b)]
        if args.train_numsteps is not None:
            cmd += ["--train_numsteps", str(args.train_numsteps)]
        if args.activation_checkpointing:
            cmd.append("--activation_checkpointing")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else f"CPU ({platform.machine()})"
    what = "peak GPU memory (GiB)" if gpu else "weights + peak resident memory added by the steps (GiB)"
    print(f"<!-- {args.arch}, {args.method}, {args.num_classes} classes, {args.precision}"
          f"{'' if args.train_numsteps is None else f', training attack {args.train_numsteps} step(s)'}"
          f"{', activation checkpointing' if args.activation_checkpointing else ''}, {device}, "
          f"torch {torch.__version__} -->")
    print(f"| batch | {what} |")
    print("|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['bytes'] / 2**30:.2f} |")
    if len(rows) >= 2:
        (b0, m0), (b1, m1) = (rows[0]["batch_size"], rows[0]["bytes"]), (rows[-1]["batch_size"], rows[-1]["bytes"])
        per_image = (m1 - m0) / (b1 - b0)
        fixed = m0 - per_image * b0
        print(f"per image: {per_image / 2**20:.1f} MiB; fixed: {fixed / 2**30:.2f} GiB")
        if per_image > 0:
            print(f"largest batch in {args.budget_gib:g} GiB at this precision: "
                  f"{int((args.budget_gib * 2**30 - fixed) // per_image)}")


if __name__ == "__main__":
    main()
