"""Evaluation: clean and robust zero-shot accuracy of any CLIP checkpoint, through one harness.

    arguments.py       EvalArguments and the recipe parser (attack flags come from the attack registry)
    datasets.py        what each --datasets entry means (registry, collections, local copies, Hub ids),
                       resolved once per run
    model.py           loading the model and tokenizer, normalization, weights fingerprint, finiteness
    harness.py         the one evaluation function and its guards (run_evaluation, evaluate_dataset)
    cache.py           the result cache and its complete key
    reports.py         results.json, results.md, comparisons
    after_training.py  training's check and benchmark, through the harness
    plot.py            the robust-versus-clean plot
    visualize.py       clean and adversarial text-guided attention of one image
    cli.py             python -m tgazsr.evaluate
"""

from .after_training import end_of_training_check, evaluate_after_training, training_eval_arguments
from .arguments import DEFAULT_TEMPLATE, EvalArguments, parse_eval_args
from .cache import HARNESS_VERSION, UNKEYED_FIELDS, keyed_settings
from .datasets import DatasetUnavailable, EvalDataset, ResolvedEntry, prepare_dataset, resolve_entries, resolve_entry
from .harness import ROBUST_DEFINITION, AttackPlan, DefensePlan, evaluate_dataset, run_evaluation, score_batch
from .model import NonFiniteError, load_model, load_tokenizer, model_fingerprint
from .reports import averages, comparison_markdown, result_key, results_markdown, write_reports

__all__ = [
    "DEFAULT_TEMPLATE",
    "HARNESS_VERSION",
    "ROBUST_DEFINITION",
    "UNKEYED_FIELDS",
    "AttackPlan",
    "DefensePlan",
    "DatasetUnavailable",
    "EvalArguments",
    "EvalDataset",
    "NonFiniteError",
    "ResolvedEntry",
    "averages",
    "comparison_markdown",
    "end_of_training_check",
    "evaluate_after_training",
    "evaluate_dataset",
    "keyed_settings",
    "load_model",
    "load_tokenizer",
    "model_fingerprint",
    "parse_eval_args",
    "prepare_dataset",
    "resolve_entries",
    "resolve_entry",
    "result_key",
    "results_markdown",
    "run_evaluation",
    "score_batch",
    "training_eval_arguments",
    "write_reports",
]
