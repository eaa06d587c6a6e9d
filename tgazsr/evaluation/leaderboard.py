"""``tgazsr leaderboard``: several results.json files in one ranked table (and a plot).

    tgazsr leaderboard eval/clip/results.json eval/fare/results.json eval/tga_zsr/results.json \
        --output leaderboard.md [--plot leaderboard.png] [--key worst@1/255]

Models are named by their model card's title (or folder / Hub name); the default column is the
worst case over each run's attacks at the largest budget the runs share.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

from ..limits import setting, with_limits_in_help
from .plot import _default_label, plot_tradeoff, results_as_flag
from .reports import leaderboard_markdown, read_results


@with_limits_in_help
@dataclass
class LeaderboardArguments:
    results: list[str] = setting(default_factory=list, help="results.json files (also as leading positional arguments).")
    output: str = setting("leaderboard.md", "Markdown file to write (also printed).")
    plot: str | None = setting(None, "Also draw the runs on the robust-versus-clean plane to this PNG.")
    key: str | None = setting(None, "Robust column to rank by (default: worst case at the largest eps).")
    labels: list[str] | None = setting(None, "One name per results file (default: from model cards).")


def main(argv: Sequence[str] | None = None) -> int:
    from ..recipes import RecipeError, parse_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    (args,) = parse_recipe((LeaderboardArguments,), results_as_flag(argv))
    if not args.results:
        raise RecipeError("Pass the results.json files to rank: tgazsr leaderboard a/results.json b/results.json.")
    from ..files import check_output_file

    check_output_file(args.output)
    if args.plot:
        check_output_file(args.plot, "--plot")
    runs = [read_results(p) for p in args.results]
    labels = list(args.labels) if args.labels else [_default_label(r, i) for i, r in enumerate(runs)]
    if len(labels) != len(runs):
        raise RecipeError(f"Got {len(labels)} labels for {len(runs)} results files: give one --labels entry per "
                          "results file, or none.")
    table = leaderboard_markdown(runs, labels, args.key)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    if args.plot:
        plot_tradeoff(runs, args.plot, args.key, labels, per_dataset=False)
    return 0


if __name__ == "__main__":
    from ..errors import run_command

    sys.exit(run_command(main))
