"""The paper's table in miniature: every method on the synthetic world, several seeds.

    python benchmarks/mini_table.py                      # every method x 3 seeds, then BENCHMARKS.md / README
    python benchmarks/mini_table.py --seeds 0 --methods clip tecoa tga_zsr --no_update_docs

The protocol is fixed before any method is compared, and is the same for all of them: the
quickstart recipe (world, attack budget, optimizer, learning rate, steps, batch, evaluation
attack), with only each method's own fields taken from its recipe (its loss and weights, its
attack objective and steps, its pixel normalization); the quickstart's TGA-ZSR settings are left out
for a method that does not read them. Results: ``benchmarks/results/mini_table.json``,
``.md`` and ``.png``; with ``--update_docs`` (default) the table replaces the block between the
``mini-table`` markers of BENCHMARKS.md and README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import yaml

from tgazsr.methods import METHODS as REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
METHODS = ("clip", *REGISTRY)  # the untrained base model first, then the paper's row order
TITLES = {"clip": "CLIP", **{name: m.title for name, m in REGISTRY.items()}}
# Fields every method's recipe may set on top of the shared protocol; each method adds its own.
COMMON_FIELDS = ("method", "pixel_normalization", "attn_implementation", "attack_loss", "train_numsteps")
START, END = "<!-- mini-table:start -->", "<!-- mini-table:end -->"


def method_overrides(method: str) -> list[str]:
    with open(os.path.join(RECIPES, f"{method}.yaml")) as f:
        recipe = yaml.safe_load(f)
    args = []
    for key in COMMON_FIELDS + REGISTRY[method].fields:
        if key in recipe:
            value = recipe[key]
            args += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return args


def protocol_recipe(method: str, out_root: str) -> str:
    """The quickstart recipe without the settings of its own method that ``method`` does not read
    (a setting given to a method that does not read it is an error): the shared protocol for ``method``."""
    path = os.path.join(RECIPES, "quickstart.yaml")
    if method == "clip":
        return path
    with open(path) as f:
        recipe = yaml.safe_load(f)
    others = {name for m in REGISTRY.values() for name in m.fields} - set(REGISTRY[method].fields)
    kept = {k: v for k, v in recipe.items() if k not in others}
    if kept == recipe:
        return path
    os.makedirs(out_root, exist_ok=True)
    out = os.path.join(out_root, f"protocol-{method}.yaml")
    with open(out + ".tmp", "w") as f:
        yaml.safe_dump(kept, f, sort_keys=False)
    os.replace(out + ".tmp", out)
    return out


def run_one(method: str, seed: int, out_root: str, extra: list[str]) -> dict:
    """One method and seed: read back when finished earlier with the same command line."""
    from tgazsr import train
    from tgazsr.evaluation import evaluate_after_training

    out = os.path.join(out_root, f"{method}-seed{seed}")
    common = [protocol_recipe(method, out_root), "--output_dir", out, "--seed", str(seed),
              "--compare_with_base", "false", "--logging_steps", "1000", "--disable_tqdm", "true", *extra]
    argv = common + (method_overrides(method) if method != "clip" else [])
    marker = os.path.join(out, "run.json")
    if os.path.isfile(marker):
        with open(marker) as f:
            done = json.load(f)
        if done.get("argv") == argv:
            print(f"[mini-table] {method} seed {seed}: finished earlier ({marker}); reusing it.", flush=True)
            return done["benchmark"]
    if method == "clip":  # no training: the world's base model under the same evaluation
        from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
        from tgazsr.recipes import parse_recipe

        model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), common)
        train.use_synthetic_world(model_args, data_args, cfg)
        bench = evaluate_after_training(out, cfg.eval_datasets, cfg, model_name_or_path=model_args.model_name_or_path,
                                        results_dir=os.path.join(out, "eval"))["benchmark"]
    else:
        bench = train.main([*argv, "--overwrite_output_dir", "true"])["benchmark"]  # an unfinished run restarts
    os.makedirs(out, exist_ok=True)
    with open(marker + ".tmp", "w") as f:
        json.dump({"argv": argv, "benchmark": bench}, f)
    os.replace(marker + ".tmp", marker)
    return bench


def _short(name: str) -> str:
    return os.path.basename(name.rstrip("/"))


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Mean and standard deviation over seeds, per held-out set and on average, in percent."""
    summary = {}
    for method, results in runs.items():
        key = next(iter(results[0]["average"]["robust"]))
        per_set = {}
        for name in results[0]["datasets"]:
            clean = [100 * r["datasets"][name]["clean_accuracy"] for r in results]
            robust = [100 * r["datasets"][name]["robust"][key] for r in results]
            per_set[_short(name)] = _stats(clean, robust)
        clean = [100 * r["average"]["clean_accuracy"] for r in results]
        robust = [100 * r["average"]["robust"][key] for r in results]
        summary[method] = {"key": key, "seeds": len(results), "sets": per_set, "average": _stats(clean, robust)}
    return summary


def _stats(clean: list[float], robust: list[float]) -> dict:
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    return {"clean": statistics.mean(clean), "clean_sd": sd(clean), "robust": statistics.mean(robust), "robust_sd": sd(robust)}


def markdown(summary: dict, meta: dict) -> str:
    sets = list(next(iter(summary.values()))["sets"])
    key = next(iter(summary.values()))["key"]
    cell = (lambda s, k: f"{s[k]:.1f} ± {s[k + '_sd']:.1f}")
    lines = [
        f"Robust = PGD-{meta['eval_steps']} at {key.split('@')[1]} (the world's eps); mean ± sd over seeds "
        f"{', '.join(map(str, meta['seeds']))}; top-1 %. Each method trained {meta['max_steps']} steps of batch "
        f"{meta['batch']} under the quickstart protocol. {meta['machine']}; {meta['minutes']:.0f} min in all.",
        "",
        "| method | avg robust | avg clean | " + " | ".join(f"{s} robust / clean" for s in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for method, s in summary.items():
        per = " | ".join(f"{cell(s['sets'][n], 'robust')} / {cell(s['sets'][n], 'clean')}" for n in sets)
        lines.append(f"| {TITLES.get(method, method)} | {cell(s['average'], 'robust')} | {cell(s['average'], 'clean')} | {per} |")
    return "\n".join(lines) + "\n"


def replace_block(path: str, block: str) -> bool:
    with open(path) as f:
        text = f.read()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{START}\n{block}{END}{tail}")
    return True


def report(runs: dict[str, list[dict]], args, protocol, start: float) -> dict:
    """Summarize what has run so far; write the results files (and the docs' tables)."""
    from tgazsr.evaluation.plot import plot_tradeoff

    summary = summarize({m: runs[m] for m in METHODS if m in runs})  # the paper's row order
    machine = (torch.cuda.get_device_name() if torch.cuda.is_available()
               else f"CPU: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    meta = {"seeds": args.seeds, "max_steps": protocol.max_steps, "batch": protocol.per_device_train_batch_size,
            "eval_steps": protocol.eval_attack_steps, "machine": machine, "minutes": (time.time() - start) / 60}
    table = markdown(summary, meta)
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": runs}, f, indent=2)
    with open(args.results + ".md", "w") as f:
        f.write(table)
    means = [{"average": {"clean_accuracy": s["average"]["clean"] / 100, "num_datasets": len(s["sets"]),
                          "robust": {s["key"]: s["average"]["robust"] / 100}},
              "datasets": {n: {"clean_accuracy": v["clean"] / 100, "robust": {s["key"]: v["robust"] / 100}}
                           for n, v in s["sets"].items()}} for s in summary.values()]
    plot_tradeoff(means, args.results + ".png", labels=[TITLES[m] for m in summary], per_dataset=True,
                  title="Synthetic world: robust vs clean (mean over seeds)")
    print(table)
    if not args.no_update_docs:
        for doc in ("BENCHMARKS.md", "README.md"):
            if not replace_block(os.path.join(ROOT, doc), table):
                print(f"{doc}: no {START} ... {END} block; table not inserted.", file=sys.stderr)
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="which methods to run (the table keeps the paper's order)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "runs", "mini_table"))
    parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results", "mini_table"),
                        help="prefix of the .json/.md/.png results")
    parser.add_argument("--no_update_docs", action="store_true", help="leave BENCHMARKS.md and README.md alone")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then fields passed to every run (e.g. -- --max_steps 50)")
    args = parser.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import parse_recipe

    _, _, protocol = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig),
                                  [os.path.join(RECIPES, "quickstart.yaml"), *extra])
    start = time.time()
    runs: dict[str, list[dict]] = {}
    for method in args.methods:
        for seed in args.seeds:
            t = time.time()
            runs.setdefault(method, []).append(run_one(method, seed, args.output_dir, extra))
            avg = runs[method][-1]["average"]
            print(f"[mini-table] {method} seed {seed}: clean {100 * avg['clean_accuracy']:.1f}, "
                  f"robust {100 * next(iter(avg['robust'].values())):.1f} ({time.time() - t:.0f} s)", flush=True)
        report(runs, args, protocol, start)  # partial tables survive an interrupted run
    return report(runs, args, protocol, start)


if __name__ == "__main__":
    main()
