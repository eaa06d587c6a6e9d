"""Train a robust CLIP vision tower with one recipe.

    accelerate launch -m tgazsr.train recipes/tga_zsr.yaml [--field value ...]
    python -m tgazsr.train recipes/tga_zsr.yaml --max_steps 100

Parse, build, train, check, save, (push). The result in ``output_dir`` is a plain transformers model
directory that loads without this package.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys

from transformers import set_seed

from .config import DataArguments, ModelArguments, RobustTrainingConfig
from .checkpoints import StopOnSignal, prepare_output_dir, resolve_resume
from .data import collate, load_image_dataset, prepare_classification_data
from .methods import get_method
from .cpu import use_idle_cores
from .errors import UserError, note_kept, run_command
from .backbones import backbone_for
from .modeling import ZeroShotCLIP, load_clip, load_processor, resolve_pixel_normalization
from .process_group import close_process_group
from .recipes import parse_recipe
from .resume import RecordRecipeChange, check_resume, recipe_fields, recorded_changes
from .evaluation import comparison_markdown, end_of_training_check, evaluate_after_training
from .trainer import HeldOutSets, RobustCLIPTrainer

logger = logging.getLogger("tgazsr.train")

#: CLIP's default LoRA targets; each backbone declares its own (``Backbone.lora_targets``).
DEFAULT_LORA_TARGETS = r".*vision_model.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"


def apply_lora(model: ZeroShotCLIP, model_args: ModelArguments) -> None:
    from peft import LoraConfig, get_peft_model

    targets = model_args.lora_target_modules or model.backbone.lora_targets
    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    model.clip = get_peft_model(model.clip, config)


def build_trainer(model_args: ModelArguments, data_args: DataArguments, cfg: RobustTrainingConfig,
                  room_checked: bool = True):
    method = get_method(cfg.method)
    set_seed(cfg.seed)
    attn = model_args.attn_implementation or ("eager" if method.needs_attentions else "sdpa")
    clip = load_clip(model_args.model_name_or_path, attn_implementation=attn)
    if not room_checked:  # the size was not known before loading: checked now, before the data is prepared
        check_output_room(cfg, model_args.model_name_or_path, sum(p.numel() for p in clip.parameters()))
    processor = load_processor(model_args.model_name_or_path)
    tokenizer = getattr(processor, "tokenizer", processor)
    image_processor = getattr(processor, "image_processor", None)
    normalization = resolve_pixel_normalization(model_args.pixel_normalization, backbone_for(clip), image_processor,
                                                model_args.model_name_or_path, logger)
    if image_processor is not None:  # the saved checkpoint normalizes as the model was trained
        image_processor.image_mean, image_processor.image_std = normalization
    image_size = clip.config.vision_config.image_size

    train = prepare_classification_data(
        data_args.dataset_name,
        data_args.train_split,
        image_size,
        data_args.image_column,
        data_args.label_column,
        data_args.class_names,
        data_args.resize_mode,
        data_args.dataset_config_name,
        data_args.max_train_samples,
        skip_unreadable_images=data_args.skip_unreadable_images,
    )
    if data_args.eval_split and cfg.eval_max_samples > 0 and data_args.eval_split != data_args.train_split:
        # The end-of-training check scores eval_split: it must exist, and never be the training images.
        load_image_dataset(data_args.dataset_name, data_args.eval_split, data_args.dataset_config_name,
                           accept_unnamed=False)
    logger.info("Training on %d images of %d classes from %s", len(train), len(train.class_names), data_args.dataset_name)

    model = ZeroShotCLIP(clip, normalization).to(cfg.device)
    model.freeze_all_but_vision(model_args.trainable_last_k)
    reference = model.frozen_copy()
    text = model.class_embeddings(train.class_names, [data_args.prompt_template], tokenizer)
    prompt_embeds = {name: model.class_embeddings(train.class_names, [getattr(cfg, name)], tokenizer)
                     for name in method.prompts}  # the method's own prompts (Comp-TGA's complementary one)
    if model_args.use_peft:
        apply_lora(model, model_args)

    recipe = {
        "model": dataclasses.asdict(model_args),
        "data": dataclasses.asdict(data_args),
        "training": {k: v for k, v in cfg.to_dict().items() if not k.startswith("_") and "token" not in k},
        "method": cfg.method_settings(),
    }
    if cfg.eval_strategy != "no" and not cfg.eval_datasets:
        raise PreflightError(f"eval_strategy {cfg.eval_strategy} evaluates robust accuracy while training on "
                             "eval_datasets: name them (e.g. --eval_datasets cifar10=/data/cifar10 stl10=...).")
    trainer = RobustCLIPTrainer(
        model=model,
        args=cfg,
        method=method,
        reference=reference,
        text_embeds=text,
        prompt_embeds=prompt_embeds,
        image_size=image_size,
        recipe=recipe,
        run_fields=recipe_fields(model_args, data_args, cfg),
        train_dataset=train.dataset,
        data_collator=collate,
        processing_class=processor,
        eval_dataset=HeldOutSets(cfg.eval_datasets) if cfg.eval_strategy != "no" and cfg.eval_datasets else None,
    )
    return trainer, train, tokenizer


def use_synthetic_world(model_args: ModelArguments, data_args: DataArguments, cfg: RobustTrainingConfig) -> None:
    """Point the run at the offline world (built on first use): its model, training set and held-out sets."""
    from .world import build_world

    world = build_world(data_args.synthetic_root, seed=data_args.synthetic_seed, small=data_args.synthetic_small,
                        backbone=data_args.synthetic_backbone)
    model_args.model_name_or_path = world.model
    data_args.dataset_name = world.train
    data_args.eval_split = None  # the held-out sets are the check
    data_args.resize_mode = "square"  # the world's native size: no 256/224 crop of its 56 px images
    if not cfg.eval_datasets:
        cfg.eval_datasets = world.eval_entries()
    if cfg.train_eps != world.eps:
        logger.warning("train_eps is %s/255 but the world's eps is %s/255.", cfg.train_eps, world.eps)
    logger.info("Synthetic world at %s (%s, eps %s/255).", world.root, data_args.synthetic_backbone, world.eps)


class PreflightError(ValueError, UserError):
    """Something that would fail only after training (the Hub, the evaluation sets), found before it."""


class RunFailed(RuntimeError):
    """Training finished and saved its weights, but a later part (evaluation, upload) failed."""


class Preempted(SystemExit):
    """SIGTERM or Ctrl-C: a checkpoint was saved; exit with 128 + the signal's number."""


def preflight(cfg: RobustTrainingConfig, push: bool) -> list | None:
    """What would otherwise fail only after training: the Hub for push_to_hub, the eval datasets.
    Returns the eval_datasets entries resolved (``resolve_entries``), once for the whole run: the
    benchmark after training and the base model's comparison use them (None without eval_datasets)."""
    if cfg.fp16 and cfg.device.type == "cpu":  # accelerate quietly drops fp16 on CPU: say so
        logger.warning("fp16 mixed precision needs a GPU: this run on CPU computes in float32. Pass --fp16 false to "
                       "silence this, or --bf16 true --fp16 false for bfloat16 autocast on CPU.")
    from .files import check_output_dir

    check_output_dir(cfg.output_dir)  # a file, or not writable: found before anything is converted or loaded
    if push and not cfg.hub_model_id:
        raise PreflightError("push_to_hub needs hub_model_id (e.g. --hub_model_id you/clip-vit-b32-tga-zsr).")
    if push:
        from .hub import check_push_access

        check_push_access(cfg.hub_model_id, token=cfg.hub_token, private=cfg.hub_private_repo)
    if not cfg.eval_datasets:
        return None
    from .evaluation.after_training import training_eval_arguments
    from .evaluation.datasets import resolve_entries

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in ("1", "true", "yes")
    args = training_eval_arguments(cfg.output_dir, cfg.eval_datasets, cfg, os.path.join(cfg.output_dir, "eval"))
    resolved, problems = resolve_entries(list(cfg.eval_datasets), args, require_local=offline)
    if problems:
        raise PreflightError("eval_datasets cannot all be evaluated after training:\n" + "\n".join(problems))
    return resolved


def checkpoint_need(cfg: RobustTrainingConfig, parameters: int) -> tuple[int, str]:
    """About the bytes of one checkpoint of a model of ``parameters`` parameters, and how that was
    reckoned: float32 weights and the optimizer's state (none with ``save_only_model``). Every
    parameter is counted (an upper bound: the frozen text tower has no optimizer state)."""
    from .files import checkpoint_bytes, optimizer_state_factor

    factor = 0 if getattr(cfg, "save_only_model", False) else optimizer_state_factor(cfg.optim)
    need = checkpoint_bytes(parameters, 4, factor)
    return need, (f"one checkpoint: {parameters:,} parameters x 4 bytes x (1 + {factor} optimizer state "
                  f"{'copy' if factor == 1 else 'copies'} of {getattr(cfg.optim, 'value', cfg.optim)})")


def check_output_room(cfg: RobustTrainingConfig, model: str, parameters: int | None = None) -> bool:
    """output_dir takes one checkpoint of ``model`` (its parameter count from its safetensors headers
    when not given), checked before the model is loaded. Returns False when the size cannot be told
    before loading (a Hub model not in the cache): ``build_trainer`` then checks with the loaded
    model's count, before the data is prepared."""
    from .files import check_output_dir, model_parameter_count

    parameters = parameters if parameters is not None else model_parameter_count(model)
    if parameters is None:
        logger.info("The size of one checkpoint of %s is not known before loading it; output_dir's free space is "
                    "checked once it is loaded.", model)
        return False
    need, what = checkpoint_need(cfg, parameters)
    check_output_dir(cfg.output_dir, need, what=what)
    return True


def train_with_rescue(trainer: RobustCLIPTrainer, resume_from_checkpoint: str | None = None) -> None:
    """Train; if training dies (an error, Ctrl-C), save a checkpoint of the last finished step
    first, so ``--resume_from_checkpoint true`` continues from there."""
    try:
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except BaseException:
        step = trainer.state.global_step
        saved = os.path.isdir(os.path.join(trainer.args.output_dir, f"checkpoint-{step}"))
        if step > 0 and not saved:
            logger.error("Training stopped after step %d; saving checkpoint-%d to resume from "
                         "(--resume_from_checkpoint true).", step, step)
            try:
                trainer._save_checkpoint(trainer.model, trial=None)
                saved = True
            except Exception as err:  # noqa: BLE001 - e.g. non-finite weights: keep the earlier checkpoints
                logger.error("No rescue checkpoint: %s", err)
        if saved:
            note_kept("checkpoint", f"checkpoint-{step} in {trainer.args.output_dir} (continue with "
                      "--resume_from_checkpoint true)")
        raise


def train_until_done_or_signal(trainer: RobustCLIPTrainer, resume: str | None) -> None:
    """Train with the rescue checkpoint; SIGTERM or Ctrl-C finish the step, save a checkpoint and exit."""
    stopper = StopOnSignal().install()
    trainer.add_callback(stopper)
    try:
        train_with_rescue(trainer, resume)
    finally:
        stopper.uninstall()
    if stopper.received:
        step = trainer.state.global_step
        logger.warning("Stopped by %s after step %d; checkpoint-%d in %s. Continue with --resume_from_checkpoint "
                       "true.", stopper.received, step, step, trainer.args.output_dir)
        raise Preempted(128 + int(getattr(signal, stopper.received)))


def evaluate_trained(cfg, model_args, data_args, main_process: bool, resolved: list | None = None) -> dict:
    """The end-of-run check, the benchmark on eval_datasets and the base model's, through the harness."""
    results = {}
    check = end_of_training_check(cfg.output_dir, data_args, cfg)
    if check is not None:
        results["check"] = check
    if cfg.eval_datasets:
        results.update(evaluate_after_training(cfg.output_dir, cfg.eval_datasets, cfg, resolved=resolved))
        if cfg.compare_with_base:
            base = evaluate_after_training(
                cfg.output_dir, cfg.eval_datasets, cfg, model_name_or_path=model_args.model_name_or_path,
                results_dir=os.path.join(cfg.output_dir, "eval_base"), resolved=resolved,
            )["benchmark"]
            results["base_benchmark"] = base
            table = comparison_markdown({"base": base, cfg.method: results["benchmark"]})
            if main_process:
                with open(os.path.join(cfg.output_dir, "comparison.md"), "w") as f:
                    f.write(table)
                print("\n" + table, flush=True)
    return results


def tradeoff_plot(output_dir: str, results: dict, method: str) -> str | None:
    """The base and the trained model on the robust-versus-clean plane, when both were evaluated."""
    if not (results.get("benchmark") and results.get("base_benchmark")):
        return None
    from .evaluation.plot import plot_tradeoff
    from .methods import get_method

    try:
        plot_tradeoff([results["base_benchmark"], results["benchmark"]], os.path.join(output_dir, "tradeoff.png"),
                      labels=["base", get_method(method).title], per_dataset=True)
    except Exception as err:  # noqa: BLE001 - a plot must never lose the run
        logger.warning("Could not draw the trade-off plot: %s", err)
        return None
    return "tradeoff.png"


def quiet_other_processes() -> None:
    """Under torchrun / accelerate, log from the main process only (others: warnings and errors)."""
    import datasets
    import transformers

    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    if rank != 0:
        transformers.utils.logging.set_verbosity_warning()
        transformers.utils.logging.disable_progress_bar()  # "Loading weights" and the like: one bar, rank 0's
        datasets.utils.logging.set_verbosity_warning()
        datasets.disable_progress_bars()


def main(argv=None):
    """Train, save, evaluate and card one recipe; the process group (when launched distributed) is
    closed at the end, after every process has finished (so no rank exits while another still writes)."""
    try:
        results = _train(argv)
    except BaseException:
        close_process_group(wait=False)
        raise
    close_process_group(wait=True)
    return results


def _train(argv=None):
    quiet_other_processes()
    model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)
    push, cfg.push_to_hub = cfg.push_to_hub, False  # we push the final checkpoint ourselves, once
    if data_args.synthetic_world:
        use_synthetic_world(model_args, data_args, cfg)
    resolved = preflight(cfg, push)
    use_idle_cores(cfg.device, cfg.world_size)  # CPU: torch threads on the idle cores (a busy neighbour would stall them)
    from .convert import load_model_or_convert, needs_conversion

    if needs_conversion(model_args.model_name_or_path):  # an OpenAI-CLIP / open_clip checkpoint: converted once, cached
        with cfg.main_process_first(desc="checkpoint conversion"):
            model_args.model_name_or_path = load_model_or_convert(model_args.model_name_or_path)
    resume = resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
    # The checkpoint's recipe against this one, before anything is loaded (tgazsr.resume).
    change = check_resume(resume, recipe_fields(model_args, data_args, cfg), cfg.allow_recipe_change,
                          resume_requested=str(cfg.resume_from_checkpoint).lower() not in ("", "false", "none"))
    prepare_output_dir(cfg.output_dir, cfg.overwrite_output_dir, resuming=resume is not None)
    room_checked = check_output_room(cfg, model_args.model_name_or_path)
    trainer, train, tokenizer = build_trainer(model_args, data_args, cfg, room_checked=room_checked)
    skipped_images = train.skipped_images
    if change is not None:
        trainer.add_callback(RecordRecipeChange(change))
    train_until_done_or_signal(trainer, resume)
    trainer.save_model(cfg.output_dir)
    note_kept("model", f"the trained model in {cfg.output_dir}")
    trainer.accelerator.wait_for_everyone()  # the main process writes; every process then reads the saved model
    try:
        results = evaluate_trained(cfg, model_args, data_args, trainer.is_world_process_zero(), resolved)
    except Exception as err:  # noqa: BLE001 - the weights are saved: say so, and how to evaluate later
        raise RunFailed(f"Training finished and the model is saved in {cfg.output_dir}, but its evaluation failed: "
                        f"{type(err).__name__}: {err}\nEvaluate it later with: python -m tgazsr.evaluate "
                        f"--model_name_or_path {cfg.output_dir} --datasets ...") from err
    if results.get("benchmark"):  # the final benchmark reaches the trackers too
        from .trainer import training_metrics

        trainer.log(training_metrics(results["benchmark"], "benchmark"))
    if trainer.is_world_process_zero():
        from .hub import hyperparameters, push_checkpoint, write_model_card

        if results:
            from .hub import public_name

            with open(os.path.join(cfg.output_dir, "train_results.json"), "w") as f:
                json.dump(public_name(results), f, indent=2)  # uploaded: no local paths
        hyper = hyperparameters(cfg.method, cfg)
        lora = None
        if model_args.use_peft:
            lora = {k: getattr(model_args, k) for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")}
        write_model_card(
            cfg.output_dir,
            method=cfg.method,
            base_model=model_args.model_name_or_path,
            dataset=data_args.dataset_name,
            hyperparameters=hyper,
            results=results.get("benchmark"),
            model_name=(cfg.hub_model_id or os.path.basename(os.path.abspath(cfg.output_dir))),
            base_results=results.get("base_benchmark"),
            lora=lora,
            license=cfg.hub_license,
            plot=tradeoff_plot(cfg.output_dir, results, cfg.method),
            skipped_images=skipped_images,
            recipe_changes=recorded_changes(trainer.state.log_history),
        )
        if push:
            try:
                push_checkpoint(cfg.output_dir, cfg.hub_model_id, token=cfg.hub_token, private=cfg.hub_private_repo)
            except Exception as err:  # noqa: BLE001 - the weights are saved; say how to upload them later
                raise RunFailed(
                    f"The upload to {cfg.hub_model_id} failed ({type(err).__name__}: {err}). The trained model is "
                    f"saved in {cfg.output_dir}; upload it later with:\n  hf upload {cfg.hub_model_id} "
                    f"{cfg.output_dir} . --exclude 'checkpoint-*/*'"
                ) from err
    failed = {**((results.get("benchmark") or {}).get("errors") or {}),
              **((results.get("base_benchmark") or {}).get("errors") or {})}
    if failed:
        raise RunFailed(
            f"Training finished and the model is saved in {cfg.output_dir}, but {len(failed)} evaluation dataset(s) "
            f"could not be evaluated: {', '.join(failed)}.\n" + "\n".join(failed.values())
            + f"\nEvaluate them later with: python -m tgazsr.evaluate --model_name_or_path {cfg.output_dir} "
            "--datasets NAME=LOCAL_COPY ..."
        )
    return results


if __name__ == "__main__":
    sys.exit(run_command(main))
