"""Training's evaluations, through the one harness: the end-of-run check on the training data's
held-out split, the benchmark on ``eval_datasets`` and the base model's for comparison."""

from __future__ import annotations

import os

from .arguments import EvalArguments
from .harness import run_evaluation


def training_eval_arguments(model_name_or_path: str, datasets: list[str], cfg, results_dir: str,
                            **overrides) -> EvalArguments:
    """PGD (``cfg.eval_attack_steps`` steps of ``cfg.eval_attack_stepsize``/255, random start) at
    ``cfg.train_eps`` on the first ``cfg.eval_max_samples`` images of each dataset.

    Training's evaluations (during training, the end-of-run check, the benchmark) accept the offline
    world's sets by name (``world_shapes=PATH``, ...): this entry point imports the world, which
    registers them (the registry never imports it on a lookup).
    """
    from .. import world  # noqa: F401

    device = getattr(cfg, "device", None)
    kwargs = dict(
        model_name_or_path=model_name_or_path,
        pixel_normalization="auto",
        datasets=list(datasets),
        attacks=["pgd"],
        eps=[float(cfg.train_eps)],
        attack_options={"pgd": {"steps": cfg.eval_attack_steps, "step_size": cfg.eval_attack_stepsize}},
        max_samples=cfg.eval_max_samples if getattr(cfg, "eval_max_samples", 0) else None,
        batch_size=cfg.per_device_eval_batch_size,
        num_workers=getattr(cfg, "dataloader_num_workers", 0) or 0,
        device=str(device) if device is not None else None,
        seed=cfg.seed,
        output_dir=results_dir,
        plot=False,
        allow_extreme_budget=bool(getattr(cfg, "allow_extreme_budget", False)),
    )
    kwargs.update(overrides)
    return EvalArguments(**kwargs)


def evaluate_after_training(
    output_dir: str,
    datasets: list[str],
    cfg,
    model_name_or_path: str | None = None,
    results_dir: str | None = None,
    resolved: list | None = None,
) -> dict:
    """Evaluate the checkpoint in ``output_dir`` (or ``model_name_or_path``, e.g. the base model)
    on ``datasets`` and return ``{"benchmark": results}``; results go to ``results_dir``
    (default ``<output_dir>/eval``), with the attention shift per dataset when
    ``cfg.eval_attention_shift``. ``resolved``: the entries as training's preflight resolved them
    (resolved here when not given)."""
    args = training_eval_arguments(model_name_or_path or output_dir, datasets, cfg,
                                   results_dir or os.path.join(output_dir, "eval"),
                                   attention_shift=bool(getattr(cfg, "eval_attention_shift", False)))
    return {"benchmark": run_evaluation(args, resolved=resolved)}


def end_of_training_check(output_dir: str, data_args, cfg) -> dict | None:
    """Clean and PGD accuracy of the saved checkpoint on the first ``eval_max_samples`` images of
    the training dataset's ``eval_split`` (skipped when no split is named or the count is 0)."""
    if not data_args.eval_split or cfg.eval_max_samples <= 0:
        return None
    args = training_eval_arguments(
        output_dir, [data_args.dataset_name], cfg, os.path.join(output_dir, "eval_check"),
        split=data_args.eval_split, class_names=data_args.class_names, prompt_template=data_args.prompt_template,
        image_column=data_args.image_column, label_column=data_args.label_column, resize_mode=data_args.resize_mode,
        skip_unreadable_images=data_args.skip_unreadable_images,
    )
    results = run_evaluation(args)
    if results["errors"]:
        raise RuntimeError("The end-of-training check could not load its data: " + "; ".join(results["errors"].values()))
    return results
