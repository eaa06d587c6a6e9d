"""Robust-versus-clean trade-off plot of one or several evaluation results.

    python -m tgazsr.plot runs/clip/results.json runs/tecoa/results.json runs/tga_zsr/results.json \
        --output tradeoff.png [--key pgd@1/255] [--labels CLIP TeCoA TGA-ZSR] [--per_dataset]

Each results file (written by ``tgazsr.evaluate``) is one point: its average clean accuracy
(x) against its average robust accuracy (y) for one attack column, in percent. With
``--per_dataset`` each run's datasets are drawn as small markers of the same colour.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

from ..limits import setting, with_limits_in_help
from .reports import ResultsFileError, read_results

#: The reader of results.json (``tgazsr.evaluation.reports.read_results``), under its older name.
load_results = read_results


def _default_label(results: dict, index: int) -> str:
    """A model's name: the title of its model card when it has one; for a converted checkpoint
    (``tgazsr convert`` or ``--model_name_or_path`` of an open_clip / OpenAI-CLIP source) the zoo
    name or public name of what was converted, not the conversion cache's folder; else its folder or
    Hub name."""
    model = str(results.get("model") or f"run {index + 1}")
    card = os.path.join(model, "README.md")
    if os.path.isfile(card):
        with open(card, encoding="utf-8") as f:
            for line in f:
                if line.startswith("# "):
                    return line[2:].strip()
    conversion = os.path.join(model, "conversion.json")
    if os.path.isfile(conversion):
        from ..errors import UserError
        from ..files import read_json_object

        record = read_json_object(conversion, UserError, "Convert the model again with tgazsr convert.")
        if record.get("zoo") or record.get("source"):
            return str(record.get("zoo") or record["source"])
    return os.path.basename(os.path.normpath(model)) or model


def _eps_of(key: str) -> float:
    budget = key.split("@", 1)[1] if "@" in key else ""
    try:
        return float(budget.split("/")[0].replace("l2=", ""))
    except ValueError:
        return 0.0


def common_key(runs: Sequence[dict]) -> str | None:
    """The column that says most, among those every run has: the worst case over the run's attacks
    (or its single attack) at the largest budget."""
    keys = None
    for r in runs:
        these = list((r.get("average") or {}).get("robust", {}))
        keys = these if keys is None else [k for k in keys if k in these]
    if not keys:
        return None
    largest = max(_eps_of(k) for k in keys)
    at_largest = [k for k in keys if _eps_of(k) == largest]
    worst = [k for k in at_largest if k.startswith("worst@")]
    return (worst or at_largest)[0]


def plot_tradeoff(
    runs: Sequence[dict],
    output: str,
    key: str | None = None,
    labels: Sequence[str] | None = None,
    per_dataset: bool = False,
    title: str | None = None,
) -> str:
    """Draw the runs' average (clean, robust) points and save a PNG to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise ResultsFileError("Nothing to plot: no results.")
    key = key or common_key(runs)
    if key is None:
        raise ResultsFileError("The results share no robust accuracy column to plot: evaluate the runs with a common "
                               "attack and budget (e.g. --attacks pgd --eps 1), or pass --key with a column they all have.")
    labels = list(labels) if labels else [_default_label(r, i) for i, r in enumerate(runs)]
    if len(labels) != len(runs):
        raise ResultsFileError(f"Got {len(labels)} labels for {len(runs)} results files: give one --labels entry per "
                               "results file, or none.")
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (run, label) in enumerate(zip(runs, labels)):
        avg = run.get("average") or {}
        robust = (avg.get("robust") or {}).get(key)
        if robust is None or avg.get("clean_accuracy") is None:
            have = ", ".join((avg.get("robust") or {})) or "none"
            raise ResultsFileError(f"{label}: no average {key!r} in its results (its columns: {have}). Pass --key with "
                                   "a column every results file has.")
        colour = colours[i % len(colours)]
        if per_dataset:
            points = [(d["clean_accuracy"], d["robust"][key]) for d in run["datasets"].values() if key in d.get("robust", {})]
            if points:
                ax.scatter([100 * c for c, _ in points], [100 * r for _, r in points], s=12, alpha=0.35,
                           color=colour, linewidths=0)
        x, y = 100 * avg["clean_accuracy"], 100 * robust
        ax.scatter([x], [y], s=70, color=colour, edgecolors="black", linewidths=0.6, zorder=3,
                   label=f"{label} ({x:.1f}, {y:.1f})")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    n = {(r.get("average") or {}).get("num_datasets") for r in runs}
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy, {key} (%)")
    ax.set_title(title or f"Robustness trade-off (average over {'/'.join(str(v) for v in sorted(n, key=str))} datasets)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.6, linestyle="--", zorder=0)  # robust <= clean
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output


@with_limits_in_help
@dataclass
class PlotArguments:
    results: list[str] = setting(default_factory=list, help="results.json files written by tgazsr evaluate (also as leading positional arguments).")
    output: str = setting("tradeoff.png", "PNG to write.")
    key: str | None = setting(None, "Robust column to plot, e.g. 'pgd@1/255' (default: the first shared one).")
    labels: list[str] | None = setting(None, "One legend label per results file (default: model names).")
    per_dataset: bool = setting(False, "Also draw each dataset as a small marker.")
    title: str | None = setting(None, "Plot title.")


def results_as_flag(argv: Sequence[str]) -> list[str]:
    """``a.json b.json --flag ...`` (results files first, as ``tgazsr plot`` and ``tgazsr leaderboard``
    take them) as ``--results a.json b.json --flag ...`` for the recipe parser."""
    argv = list(argv)
    files = []
    while argv and argv[0].endswith(".json") and not argv[0].startswith("-"):
        files.append(argv.pop(0))
    return (["--results", *files] if files else []) + argv


def main(argv: Sequence[str] | None = None) -> int:
    from ..files import check_output_file
    from ..recipes import parse_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    (args,) = parse_recipe((PlotArguments,), results_as_flag(argv))
    if not args.results:
        from ..recipes import RecipeError

        raise RecipeError("Pass the results.json files to plot: tgazsr plot eval/a/results.json eval/b/results.json.")
    check_output_file(args.output)
    runs = [read_results(p) for p in args.results]
    out = plot_tradeoff(runs, args.output, args.key, args.labels, args.per_dataset, args.title)
    print(out)
    return 0


if __name__ == "__main__":
    from ..errors import run_command

    sys.exit(run_command(main))
