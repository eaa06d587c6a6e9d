"""Render the GPU day's results file (``benchmarks/gpu.sh``) as Markdown, into the marked section of
BENCHMARKS.md (between ``<!-- gpu-day:start -->`` and ``<!-- gpu-day:end -->``).

    python benchmarks/gpu_report.py benchmarks/results/gpu/results.json --docs BENCHMARKS.md
    python benchmarks/gpu_report.py results.json            # print the Markdown only

Every section is named with its status; a figure that was not measured (its section failed, ran out
of time or was skipped) is written as not measured, with the reason, never left out silently.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

START, END = "<!-- gpu-day:start -->", "<!-- gpu-day:end -->"
TITLES = {"env": "environment", "ratio_eager": "training-step ratio, eager", "memory": "peak memory",
          "eval": "evaluation cost", "e2e": "end to end", "ratio_compiled": "training-step ratio, torch.compile"}
TARGET_IMAGES_PER_S = 3000
TARGET_SPEEDUP = 2.0


def _f(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _missing(results: dict, section: str) -> str:
    state = results.get("sections", {}).get(section)
    if state is None:
        return f"not measured: section {section} did not run."
    return f"not measured: section {section} {state['status']}" + (f" ({state['note']})." if state["note"] else ".")


def _ratio(results: dict) -> list[str]:
    lines = ["**Training step, tgazsr against the reference-structured loop** (`benchmarks/train_step.py`'s ratio: "
             "TGA-ZSR, median of the timed steps after one warm-up step; compiled: every vision and text tower "
             "under torch.compile, in both loops)", "",
             "| compile | loop | s/step | images/s | peak GPU memory (GiB) | warm-up s |", "|---|---|---|---|---|---|"]
    notes = []
    for key, label in (("ratio_eager", "eager"), ("ratio_compiled", "compiled")):
        part = results.get(key)
        if not part or not part.get("loops"):
            notes.append(f"- {label}: {_missing(results, key)}")
            continue
        label = f"{label} ({part['compile']})" if part.get("compile") else label
        for loop, fig in part["loops"].items():
            lines.append(f"| {label} | {loop} | {fig['s_per_step']:.4f} | {fig['images_per_s']:,.1f} | "
                         f"{_f(fig['peak_gib'])} | {fig['warmup_s']:.1f} |")
        speedup = part.get("speedup")
        ours = part["loops"].get("tgazsr", {}).get("images_per_s")
        notes.append(f"- {label}: {part['arch']}, {part['num_classes']} class prompts, PGD-{part['pgd_steps']}, "
                     f"batch {part['batch_size']}, {part['precision']}, median of {part['timed_steps']}; speedup "
                     f"{_f(speedup)}" + ("" if speedup is not None else f" ({_missing(results, key)})") +
                     (f" (target at least {TARGET_SPEEDUP:g}x); tgazsr {ours:,.0f} images/s "
                      f"(target {TARGET_IMAGES_PER_S:,} for ViT-B/32 at batch 128 in bf16)" if ours else ""))
    return lines + [""] + notes


def _memory(results: dict) -> list[str]:
    rows = results.get("memory")
    lines = ["**Peak memory of one TGA-ZSR step** (`benchmarks/step_memory.py`'s step and figure, in one process: "
             "the peak is reset before each step and what earlier steps left allocated is subtracted; a line "
             "through the two batch sizes gives the memory per image)", ""]
    if not rows:
        return lines + [_missing(results, "memory")]
    lines += ["| architecture | activation checkpointing | precision | batch: GiB | per image (MiB) | fixed (GiB) | "
              "largest batch on this device |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        points = ", ".join(f"{p['batch_size']}: {p['gib']:.2f}" for p in row["points"])
        largest = f"{row['largest_batch']:,} in {row['budget_gib']:.0f} GiB" if "largest_batch" in row else "n/a"
        lines.append(f"| {row['arch']} | {'yes' if row['activation_checkpointing'] else 'no'} | {row['precision']} | "
                     f"{points} | {_f(row.get('per_image_mib'), 1)} | {_f(row.get('fixed_gib'))} | {largest} |")
    state = results.get("sections", {}).get("memory", {})
    if state.get("status") not in (None, "ok"):
        lines += ["", f"The section stopped before its last configuration: {_missing(results, 'memory')}"]
    return lines


def _eval(results: dict) -> list[str]:
    part = results.get("eval")
    lines = ["**Evaluation cost** (`benchmarks/eval_step.py`: the harness's `score_batch`, every image attacked, "
             "fp32)", ""]
    if not part:
        return lines + [_missing(results, "eval")]
    lines += [f"{part['arch']}, batch {part['batch_size']}, {part['images']} images:", "",
              "| measured | seconds per image |", "|---|---|",
              f"| PGD-{part['pgd_steps']} (+ clean pass) | {part['pgd_s_per_image']:.4f} |",
              f"| one forward + input-backward pass | {part['pass_s_per_image']:.5f} |"]
    if "autoattack_s_per_image" in part:
        lines.append(f"| AutoAttack fare (APGD-CE + APGD-T), n_iter {part['aa_n_iter']} | "
                     f"{part['autoattack_s_per_image']:.4f} |")
    else:
        lines.append(f"| AutoAttack | {_missing(results, 'eval')} |")
    lines += ["", "| protocol (recipe) | passes per image (upper bound) | images | hours on this device |",
              "|---|---|---|---|"]
    for row in part["protocols"]:
        unknown = f" (size unknown, counted as max_samples: {', '.join(row['unknown_sizes'])})" \
            if row["unknown_sizes"] else ""
        lines.append(f"| {row['title']} (`{row['recipe']}`){unknown} | {row['passes']:,} | {row['images']:,} | "
                     f"{row['hours']:.2f} |")
    return lines


def _e2e(results: dict) -> list[str]:
    part = results.get("e2e")
    lines = ["**End to end** (`tgazsr train` with `recipes/tga_zsr.yaml` on generated images, saved, then base "
             "and trained model evaluated by the harness, clean and under PGD)", ""]
    if not part:
        return lines + [_missing(results, "e2e")]

    def acc(avg: dict) -> str:
        robust = ", ".join(f"{k} {100 * v:.1f}%" for k, v in (avg.get("robust") or {}).items())
        clean = avg.get("clean_accuracy")
        return f"clean {'n/a' if clean is None else f'{100 * clean:.1f}%'}" + (f", {robust}" if robust else "")

    lines += [f"{part['arch']} at {part['image_size']} px, {part['precision']}: {part['steps']} steps of batch "
              f"{part['batch_size']} in {part['train_loop_s']:.1f} s ({part['train_images_per_s']:,.1f} images/s, "
              f"first step included); the whole command (load, train, save, evaluate {part['eval_images']} images "
              f"twice with PGD-{part['eval_attack_steps']}) {part['command_s']:.1f} s. Base: {acc(part['base'])}; "
              f"trained: {acc(part['trained'])} (random weights: the accuracies only show the path works). Saved: "
              f"{', '.join(part['saved'])}."]
    return lines


def render(results: dict, seconds: float | None = None) -> str:
    env = results.get("env") or {}
    if env.get("gpu_name"):
        where = (f"{env['gpu_name']} ({_f(env.get('gpu_memory_gib'), 0)} GiB), driver {env.get('driver', 'unknown')}, "
                 f"CUDA {env.get('cuda')}, torch {env.get('torch')}")
    elif env:
        where = f"{env.get('device', 'CPU')}, torch {env.get('torch')}"
    else:
        where = f"unknown device ({_missing(results, 'env')})"
    head = [f"`bash benchmarks/gpu.sh{' --smoke' if env.get('smoke') else ''}` on {where}, "
            f"{env.get('started', 'start time unknown')}"
            + (f", {seconds:.0f} s in all" if seconds is not None else "") + "."]
    if env.get("smoke"):
        head.append("")
        head.append("A smoke run (CPU, tiny settings): it checks that the script runs; its figures measure nothing.")
    sections = results.get("sections", {})
    status = ["| section | status | seconds | limit (s) | note |", "|---|---|---|---|---|"]
    for name, title in TITLES.items():
        state = sections.get(name)
        if state is None:
            status.append(f"| {title} | did not run | | | |")
        else:
            status.append(f"| {title} | {state['status']} | {state['seconds']:.0f} | {state['limit_s']:.0f} | "
                          f"{state['note']} |")
    parts = [head, status, _ratio(results), _memory(results), _eval(results), _e2e(results)]
    return "\n\n".join("\n".join(part) for part in parts) + "\n"


def write_section(docs: str, text: str) -> None:
    """Put ``text`` between the markers of ``docs``; a file not there yet (the smoke run's own table,
    $OUT/BENCHMARKS.md) is written as a page holding only the table."""
    if not os.path.exists(docs):
        os.makedirs(os.path.dirname(os.path.abspath(docs)), exist_ok=True)
        with open(docs, "w", encoding="utf-8") as f:
            f.write(f"# The GPU day\n\n{START}\n{END}\n")
    with open(docs, encoding="utf-8") as f:
        content = f.read()
    if content.count(START) != 1 or content.count(END) != 1 or content.index(START) > content.index(END):
        raise SystemExit(f"error: {docs} has no section marked {START} ... {END} (once each, in that order); "
                         "add the two lines where the GPU table goes.")
    before, rest = content.split(START, 1)
    after = rest.split(END, 1)[1]
    with open(docs, "w", encoding="utf-8") as f:
        f.write(f"{before}{START}\n{text}{END}{after}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="the results file gpu.sh wrote")
    parser.add_argument("--docs", help="write the table into this file's marked section (BENCHMARKS.md)")
    parser.add_argument("--seconds", type=float, help="the whole run's wall time, for the header")
    args = parser.parse_args(argv)
    try:
        with open(args.results, encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: cannot read the results file {args.results}: {err}; run benchmarks/gpu.sh first.")
    text = render(results, args.seconds)
    print(text)
    if args.docs:
        write_section(args.docs, text)
        print(f"gpu_report: table written into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
