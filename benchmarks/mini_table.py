"""The paper's table in miniature: every method on the synthetic world, several seeds.

    python benchmarks/mini_table.py                      # every method x 3 seeds, then BENCHMARKS.md / README
    python benchmarks/mini_table.py --seeds 0 --methods clip tecoa tga_zsr --no_update_docs
    python benchmarks/mini_table.py --seeds 0 --methods agft clip+ttc tga_zsr+ttc --merge   # new rows into the table

The protocol is fixed before any method is compared, and is the same for all of them: the
quickstart recipe (world, attack budget, optimizer, learning rate, steps, batch, evaluation
attack), with only each method's own fields taken from its recipe (its loss and weights, its
attack objective and steps, its pixel normalization); the quickstart's TGA-ZSR settings are left out
for a method that does not read them. Results: ``benchmarks/results/mini_table.json``,
``.md`` and ``.png``; with ``--update_docs`` (default) the table replaces the block between the
``mini-table`` markers of BENCHMARKS.md and README.md.

Defended rows (``<model>+<defense>``, e.g. ``tga_zsr+ttc``) evaluate the row's model (the world's
base CLIP, or the method trained under the protocol above, reused when it has run) with a
test-time defense, under both threat models: ``non_adaptive`` (PGD made on the undefended model,
then the defense runs) and ``adaptive`` (PGD through the whole defended classifier, EOT over its
randomness). The table gives them separate columns; an undefended row's robust accuracy is the
plain white-box PGD on the model. ``--merge`` keeps the rows of the existing results file that are
not run now, each with the seeds, date and machine it was run with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import yaml

from tgazsr.defenses import DEFENSES
from tgazsr.methods import METHODS as REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
METHODS = ("clip", *REGISTRY)  # the untrained base model first, then the paper's row order
TITLES = {"clip": "CLIP", **{name: m.title for name, m in REGISTRY.items()}}
# Test-time defenses on top of a row's model: TTC on the base CLIP and on TGA-ZSR.
DEFENDED = ("clip+ttc", "tga_zsr+ttc")
ROWS = (*METHODS, *DEFENDED)
DEFENSE_TITLES = {"ttc": "TTC", "random_noise": "Random noise"}
# Fields every method's recipe may set on top of the shared protocol; each method adds its own.
COMMON_FIELDS = ("method", "pixel_normalization", "attn_implementation", "attack_loss", "train_numsteps")
START, END = "<!-- mini-table:start -->", "<!-- mini-table:end -->"


def split_row(row: str) -> tuple[str, str | None]:
    """(model row, defense) of a table row: ``tga_zsr+ttc`` -> (``tga_zsr``, ``ttc``); a plain row has no defense."""
    method, _, defense = row.partition("+")
    if method not in METHODS or (defense and (defense not in DEFENSES or defense == "none")):
        raise ValueError(f"{row!r} is not a table row: write a method ({', '.join(METHODS)}) or "
                         f"<method>+<defense> with a defense among {', '.join(d for d in DEFENSES if d != 'none')}.")
    return method, defense or None


def title(row: str) -> str:
    method, defense = split_row(row)
    if defense is None:
        return TITLES.get(method, method)
    return f"{DEFENSE_TITLES.get(defense, defense)} on {TITLES.get(method, method)}"


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
    started = time.time()
    if method == "clip":  # no training: the world's base model under the same evaluation
        model_args, cfg = protocol_config(common)
        bench = evaluate_after_training(out, cfg.eval_datasets, cfg, model_name_or_path=model_args.model_name_or_path,
                                        results_dir=os.path.join(out, "eval"))["benchmark"]
    else:
        bench = train.main([*argv, "--overwrite_output_dir", "true"])["benchmark"]  # an unfinished run restarts
    bench["run_seconds"] = time.time() - started  # training and evaluation, for the caption
    os.makedirs(out, exist_ok=True)
    with open(marker + ".tmp", "w") as f:
        json.dump({"argv": argv, "benchmark": bench}, f)
    os.replace(marker + ".tmp", marker)
    return bench


def protocol_config(argv: list[str]):
    """The model arguments and training config of a protocol command line, the world resolved."""
    from tgazsr import train
    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import parse_recipe

    model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)
    train.use_synthetic_world(model_args, data_args, cfg)
    return model_args, cfg


def run_defended(row: str, seed: int, out_root: str, extra: list[str], defense_args: dict) -> dict:
    """A defended row: the row's model (the base CLIP, or the method trained under the protocol, which
    runs first when it has not) evaluated with the defense under both threat models, on the first
    ``defense_args['max_samples']`` images of each set; a trained model's defense measures with the
    world's base CLIP where it has a base model (TTC's tau, as TTC does for a fine-tuned CLIP). Read
    back when finished earlier with the same settings."""
    from tgazsr.evaluation import run_evaluation, training_eval_arguments

    method, defense = split_row(row)
    out = os.path.join(out_root, f"{method}-{defense}-seed{seed}")
    common = [protocol_recipe(method, out_root), "--output_dir", out, "--seed", str(seed), *extra]
    if method != "clip":
        common += method_overrides(method)
    from tgazsr.evaluation import HARNESS_VERSION

    key = {"argv": common, "defense": defense, "reference": "base" if method != "clip" else "victim", **defense_args,
           "harness": HARNESS_VERSION}  # a harness that scores otherwise runs the row again
    marker = os.path.join(out, "run.json")
    if os.path.isfile(marker):
        with open(marker) as f:
            done = json.load(f)
        if done.get("key") == key:
            print(f"[mini-table] {row} seed {seed}: finished earlier ({marker}); reusing it.", flush=True)
            return done["benchmark"]
    model_args, cfg = protocol_config(common)
    model = model_args.model_name_or_path
    if method != "clip":
        run_one(method, seed, out_root, extra)  # trains it, or reuses the finished run
        model = os.path.join(out_root, f"{method}-seed{seed}")
    options = {}
    reads_base = "base_model_name_or_path" in {f.name for f in dataclasses.fields(DEFENSES[defense].settings)}
    if method != "clip" and reads_base:
        # a fine-tuned victim: the defense's reference model (TTC's tau) is the world's base CLIP it was trained from
        options = {defense: {"base_model_name_or_path": model_args.model_name_or_path}}
    args = training_eval_arguments(model, cfg.eval_datasets, cfg, os.path.join(out, "eval"), defense=defense,
                                   defense_options=options, max_samples=defense_args["max_samples"],
                                   eot_draws=defense_args["eot_draws"])
    started = time.time()
    bench = run_evaluation(args)
    bench["run_seconds"] = time.time() - started  # the defended evaluation alone, for the caption
    if bench.get("errors"):
        raise RuntimeError(f"{row} seed {seed}: datasets failed to load: {bench['errors']}")
    os.makedirs(out, exist_ok=True)
    with open(marker + ".tmp", "w") as f:
        json.dump({"key": key, "benchmark": bench}, f)
    os.replace(marker + ".tmp", marker)
    return bench


def _short(name: str) -> str:
    return os.path.basename(name.rstrip("/"))


def robust_columns(bench: dict) -> dict[str, str]:
    """The robust columns a row reports, by role: ``white_box`` (the plain PGD on the model) for an
    undefended run; ``non_adaptive`` and ``adaptive`` (the PGD column under each threat model) with a defense."""
    keys = list(bench["average"]["robust"])
    threats = bench["datasets"][next(iter(bench["datasets"]))].get("threat_models") or []
    if not threats:
        return {"white_box": keys[0]}
    columns = {}
    for threat in ("non_adaptive", "adaptive"):
        found = [k for k in keys if k.startswith(f"{threat}:")]
        if not found:
            raise ValueError(f"a defended run without its {threat} column (columns: {', '.join(keys)}): run both "
                             "threat models; a defense's non-adaptive number is not reported without the adaptive one.")
        columns[threat] = found[0]
    worst = [k for k in keys if k.startswith("worst@")]
    if worst:  # the harness's robust accuracy: a sample survives every attack under both threat models
        columns["worst"] = worst[0]
    return columns


def summarize(runs: dict[str, list[dict]], provenance: dict[str, dict] | None = None) -> dict:
    """Mean and standard deviation over seeds, per held-out set and on average, in percent; each
    robust column by its role (``robust_columns``). ``provenance``: per row, when and how it ran."""
    summary = {}
    for row, results in runs.items():
        columns = robust_columns(results[0])
        per_set = {}
        for name in results[0]["datasets"]:
            per_set[_short(name)] = _stats([r["datasets"][name] for r in results], columns)
        summary[row] = {"columns": columns, "seeds": len(results), "sets": per_set,
                        "average": _stats([r["average"] for r in results], columns)}
        if "adaptive" in columns:
            summary[row]["samples"] = max(d["num_samples"] for d in results[0]["datasets"].values())
            summary[row]["defense"] = results[0].get("defense")
        if provenance and row in provenance:
            summary[row]["provenance"] = provenance[row]
    return summary


def _stats(entries: list[dict], columns: dict[str, str]) -> dict:
    """Clean and each robust column (by role) of one set or of the average, over seeds, in percent."""
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    out = {}
    values = {"clean": [100 * e["clean_accuracy"] for e in entries]}
    values.update({role: [100 * e["robust"][key] for e in entries] for role, key in columns.items()})
    if all(e.get("clean_accuracy_undefended") is not None for e in entries):
        values["clean_undefended"] = [100 * e["clean_accuracy_undefended"] for e in entries]
    for name, v in values.items():
        if not all(math.isfinite(x) for x in v):
            raise ValueError(f"a non-finite {name} accuracy in the runs: not summarized.")
        out[name], out[name + "_sd"] = statistics.mean(v), sd(v)
    return out


ROLE_TEXT = {"white_box": "robust: white-box PGD", "non_adaptive": "robust: non-adaptive",
             "adaptive": "robust: adaptive", "worst": "robust: both"}


def _cell(s: dict, k: str) -> str:
    return f"{s[k]:.1f} ± {s[k + '_sd']:.1f}" if k in s else "–"


def _when(p: dict) -> str:
    seeds = p.get("seeds") or []
    text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    if p.get("date"):
        text += f", run {p['date']}"
    if p.get("machine"):
        text += f" on {p['machine']}"
    if p.get("minutes") is not None:
        text += f", {p['minutes']:.0f} min"
    if p.get("note"):
        text += f" ({p['note']})"
    return text


def markdown(summary: dict, meta: dict) -> str:
    """The table: one row per method or defended model; robust accuracy in separate columns by threat
    model; the caption says which rows ran when, with which seeds, on what machine."""
    sets = list(next(iter(summary.values()))["sets"])
    eps = next(iter(next(iter(summary.values()))["columns"].values())).split("@")[1]
    groups: dict[str, list[str]] = {}
    for row, s in summary.items():
        groups.setdefault(_when(s.get("provenance") or meta), []).append(title(row))
    defended = {row: s for row, s in summary.items() if "adaptive" in s["columns"]}
    caption = [
        f"PGD-{meta['eval_steps']} at {eps} (the world's eps); mean ± sd over the seeds run; top-1 %. Each method trained "
        f"{meta['max_steps']} steps of batch {meta['batch']} under the quickstart protocol. "
        "**robust: white-box PGD**: an undefended row, the PGD on the model itself.",
    ]
    if defended:
        d = next(iter(defended.values())).get("defense") or {}
        settings = ", ".join(f"{k} {v}" for k, v in (d.get("settings") or {}).items()
                             if v is not None and k not in ("tau_reference", "base_model_name_or_path"))
        reference = {"victim": "the model itself", "base": "the world's base CLIP"}
        tau = {row: (r.get("defense") or {}).get("tau_reference") for row, r in defended.items()}
        taus = "; ".join(f"{title(row)}: {reference.get(t, t)}" for row, t in tau.items() if t)
        samples = sorted({s.get("samples") for s in defended.values() if s.get("samples")})
        caption.append(
            "Defended rows (test-time defense around the row's model): **robust: non-adaptive**, PGD made on the "
            "undefended model, then the defense runs (the TTC paper's protocol: an upper bound, never the defense's "
            "robustness alone); **robust: adaptive**, PGD through the whole defended classifier"
            + (f" ({d.get('adaptive_gradient')} gradients, EOT over {d.get('eot_draws')} draws of its random start, "
               f"{d.get('score_draws')} scoring draw)" if d else "")
            + (f"; then a second pass on the images the first left standing adds the defense's own term to the "
               f"loss (weight {term['weight']:g}: it {term['what']}), the column the per-image worst of both"
               if (term := d.get("adaptive_term") or {}).get("weight") else
               "; its loss is the logits' alone (no term aimed at the defense's switch: adaptive_term_weight 0)")
            + (f"; {', '.join(map(str, samples))} images per set" if samples else "")
            + (f"; {d.get('name')} settings: {settings}" if settings else "")
            + (f"; tau measured by {taus}" if taus else "")
            + "; **robust: both**, the harness's robust accuracy: a sample counts when it survives both attacks "
              "(per-sample worst case). avg clean is the defended classifier's; the model's own is in the json. "
              "Per-set cells of a defended row: non-adaptive / adaptive / clean.")
    caption.append("Rows run: " + "; ".join(f"{', '.join(rows)}: {when}" for when, rows in groups.items()) + ".")
    lines = [
        " ".join(caption),
        "",
        "| method | " + " | ".join(ROLE_TEXT.values()) + " | avg clean | "
        + " | ".join(f"{s} robust / clean" for s in sets) + " |",
        "|---|" + "---|" * (len(ROLE_TEXT) + 1 + len(sets)),
    ]
    for row, s in summary.items():
        roles = [r for r in s["columns"] if r != "worst"]
        per = " | ".join(" / ".join(_cell(s["sets"][n], r) for r in [*roles, "clean"]) for n in sets)
        robust = " | ".join(_cell(s["average"], r) for r in ROLE_TEXT)
        lines.append(f"| {title(row)} | {robust} | {_cell(s['average'], 'clean')} | {per} |")
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


def previous_rows(path: str, protocol_meta: dict) -> tuple[dict, dict]:
    """The runs and per-row provenance of an earlier results file (``--merge``), refused when its
    protocol differs from this one's."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: --merge: no earlier results at {path}; run without --merge first.")
    with open(path) as f:
        old = json.load(f)
    meta = old["meta"]
    changed = [k for k in ("max_steps", "batch", "eval_steps") if meta.get(k) != protocol_meta[k]]
    if changed:
        raise SystemExit(f"error: --merge: {path} was run under another protocol ({', '.join(changed)} differ); "
                         "run every row again without --merge.")
    fallback = {k: meta.get(k) for k in ("seeds", "date", "machine", "minutes", "note")}
    provenance = {row: (old["summary"].get(row) or {}).get("provenance") or fallback for row in old["runs"]}
    return old["runs"], provenance


def report(runs: dict[str, list[dict]], args, protocol, start: float, provenance: dict[str, dict]) -> dict:
    """Summarize what has run so far; write the results files (and the docs' tables)."""
    from tgazsr.evaluation.plot import plot_tradeoff

    order = [r for r in ROWS if r in runs]  # the paper's row order, then the defended rows
    summary = summarize({r: runs[r] for r in order}, provenance)
    meta = {"seeds": args.seeds, "max_steps": protocol.max_steps, "batch": protocol.per_device_train_batch_size,
            "eval_steps": protocol.eval_attack_steps, "machine": machine_name(args),
            "minutes": (time.time() - start) / 60, "date": time.strftime("%Y-%m-%d"), "note": args.machine_note}
    table = markdown(summary, meta)
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": runs}, f, indent=2)
    with open(args.results + ".md", "w") as f:
        f.write(table)
    means = []
    for s in summary.values():
        role = "adaptive" if "adaptive" in s["columns"] else "white_box"  # a defense: its adaptive number
        key = s["columns"][role].split(":")[-1]  # one column name for every row: the plot's axis
        means.append({"average": {"clean_accuracy": s["average"]["clean"] / 100, "num_datasets": len(s["sets"]),
                                  "robust": {key: s["average"][role] / 100}},
                      "datasets": {n: {"clean_accuracy": v["clean"] / 100, "robust": {key: v[role] / 100}}
                                   for n, v in s["sets"].items()}})
    plot_tradeoff(means, args.results + ".png", labels=[title(r) for r in summary], per_dataset=True,
                  title="Synthetic world: robust (adaptive for a defense) vs clean, mean over seeds")
    print(table)
    if not args.no_update_docs:
        for doc in ("BENCHMARKS.md", "README.md"):
            if not replace_block(os.path.join(ROOT, doc), table):
                print(f"{doc}: no {START} ... {END} block; table not inserted.", file=sys.stderr)
    return summary


def machine_name(args) -> str:
    if args.machine:
        return args.machine
    return (torch.cuda.get_device_name() if torch.cuda.is_available()
            else f"CPU: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=ROWS, default=list(ROWS), metavar="ROW",
                        help=f"which rows to run, among {', '.join(ROWS)} (the table keeps this order); "
                        "<method>+<defense> evaluates that method's model with a test-time defense")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "runs", "mini_table"))
    parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results", "mini_table"),
                        help="prefix of the .json/.md/.png results")
    parser.add_argument("--no_update_docs", action="store_true", help="leave BENCHMARKS.md and README.md alone")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of the existing results .json that are not run now (with the seeds, "
                        "date and machine they ran with); the protocol must be the same")
    parser.add_argument("--defense_max_samples", type=int, default=100,
                        help="defended rows: the first N images of each set (the adaptive attack runs the defense "
                        "at every step of every EOT draw)")
    parser.add_argument("--eot_draws", type=int, default=2,
                        help="defended rows: EOT draws of the defense's randomness per adaptive attack step")
    parser.add_argument("--machine", default="", help="the machine, as the caption should name it (default: "
                        "what torch and platform report)")
    parser.add_argument("--machine_note", default="", help="a note on the machine's load for the caption, e.g. "
                        "'other work shared the cores'")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then fields passed to every run (e.g. -- --max_steps 50)")
    args = parser.parse_args(argv)
    if args.defense_max_samples < 1 or args.eot_draws < 1:
        parser.error("--defense_max_samples and --eot_draws must be 1 or more")
    extra = [a for a in args.extra if a != "--"]
    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import parse_recipe

    _, _, protocol = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig),
                                  [os.path.join(RECIPES, "quickstart.yaml"), *extra])
    runs: dict[str, list[dict]] = {}
    provenance: dict[str, dict] = {}
    if args.merge:
        runs, provenance = previous_rows(args.results + ".json", {
            "max_steps": protocol.max_steps, "batch": protocol.per_device_train_batch_size,
            "eval_steps": protocol.eval_attack_steps})
    defense_args = {"max_samples": args.defense_max_samples, "eot_draws": args.eot_draws}
    start = time.time()
    for row in [r for r in ROWS if r in args.methods]:
        runs[row] = []
        for seed in args.seeds:
            t = time.time()
            if split_row(row)[1]:
                bench = run_defended(row, seed, args.output_dir, extra, defense_args)
            else:
                bench = run_one(row, seed, args.output_dir, extra)
            runs[row].append(bench)
            avg = bench["average"]
            cells = ", ".join(f"{role} {100 * avg['robust'][k]:.1f}" for role, k in robust_columns(bench).items())
            print(f"[mini-table] {row} seed {seed}: clean {100 * avg['clean_accuracy']:.1f}, {cells} "
                  f"({time.time() - t:.0f} s)", flush=True)
            provenance[row] = {"seeds": args.seeds[:len(runs[row])], "date": time.strftime("%Y-%m-%d"),
                               "machine": machine_name(args), "note": args.machine_note,
                               "minutes": sum(b.get("run_seconds", 0.0) for b in runs[row]) / 60}
            report(runs, args, protocol, start, provenance)  # partial tables survive an interrupted run
    return report(runs, args, protocol, start, provenance)


if __name__ == "__main__":
    main()
