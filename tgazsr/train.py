"""Train a robust CLIP vision tower with one recipe.

    accelerate launch -m tgazsr.train recipes/tga_zsr.yaml [--field value ...]
    python -m tgazsr.train recipes/tga_zsr.yaml --max_steps 100

Parse, build, train, check, save, (push). The result in ``output_dir`` is a plain ``CLIPModel``
directory that loads without this package.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

from transformers import AutoProcessor, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .config import DataArguments, ModelArguments, RobustTrainingConfig
from .data import collate, load_image_dataset, prepare_classification_data
from .methods import get_method
from .modeling import PIXEL_NORMALIZATIONS, ZeroShotCLIP, load_clip
from .recipes import parse_recipe
from .evaluation import comparison_markdown, end_of_training_check, evaluate_after_training
from .trainer import RobustCLIPTrainer

logger = logging.getLogger("tgazsr.train")

DEFAULT_LORA_TARGETS = r".*vision_model.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"


def apply_lora(model: ZeroShotCLIP, model_args: ModelArguments) -> None:
    from peft import LoraConfig, get_peft_model

    targets = model_args.lora_target_modules or DEFAULT_LORA_TARGETS
    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    model.clip = get_peft_model(model.clip, config)


def build_trainer(model_args: ModelArguments, data_args: DataArguments, cfg: RobustTrainingConfig):
    method = get_method(cfg.method)
    set_seed(cfg.seed)
    attn = model_args.attn_implementation or ("eager" if method.needs_attentions else "sdpa")
    clip = load_clip(model_args.model_name_or_path, attn_implementation=attn)
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    tokenizer = getattr(processor, "tokenizer", processor)
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:  # the saved checkpoint normalizes as the model was trained
        mean, std = PIXEL_NORMALIZATIONS[model_args.pixel_normalization]
        image_processor.image_mean, image_processor.image_std = list(mean), list(std)
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
    )
    if data_args.eval_split and cfg.eval_max_samples > 0 and data_args.eval_split != data_args.train_split:
        # The end-of-training check scores eval_split: it must exist, and never be the training images.
        load_image_dataset(data_args.dataset_name, data_args.eval_split, data_args.dataset_config_name,
                           accept_unnamed=False)
    logger.info("Training on %d images of %d classes from %s", len(train), len(train.class_names), data_args.dataset_name)

    model = ZeroShotCLIP(clip, model_args.pixel_normalization).to(cfg.device)
    model.freeze_all_but_vision(model_args.trainable_last_k)
    reference = model.frozen_copy()
    text = model.class_embeddings(train.class_names, [data_args.prompt_template], tokenizer)
    negated = None
    if method.needs_negated_prompt:
        negated = model.class_embeddings(train.class_names, [data_args.negated_prompt_template], tokenizer)
    if model_args.use_peft:
        apply_lora(model, model_args)

    recipe = {
        "model": dataclasses.asdict(model_args),
        "data": dataclasses.asdict(data_args),
        "training": {k: v for k, v in cfg.to_dict().items() if not k.startswith("_") and "token" not in k},
    }
    trainer = RobustCLIPTrainer(
        model=model,
        args=cfg,
        method=method,
        reference=reference,
        text_embeds=text,
        negated_text_embeds=negated,
        image_size=image_size,
        recipe=recipe,
        train_dataset=train.dataset,
        data_collator=collate,
        processing_class=processor,
    )
    return trainer, train, tokenizer


def use_synthetic_world(model_args: ModelArguments, data_args: DataArguments, cfg: RobustTrainingConfig) -> None:
    """Point the run at the offline world (built on first use): its model, training set and held-out sets."""
    from .world import build_world

    world = build_world(data_args.synthetic_root, seed=data_args.synthetic_seed, small=data_args.synthetic_small)
    model_args.model_name_or_path = world.model
    data_args.dataset_name = world.train
    data_args.eval_split = None  # the held-out sets are the check
    data_args.resize_mode = "square"  # the world's native size: no 256/224 crop of its 56 px images
    if not cfg.eval_datasets:
        cfg.eval_datasets = world.eval_entries()
    if cfg.train_eps != world.eps:
        logger.warning("train_eps is %s/255 but the world's eps is %s/255.", cfg.train_eps, world.eps)
    logger.info("Synthetic world at %s (eps %s/255).", world.root, world.eps)


def resolve_resume(cfg: RobustTrainingConfig) -> str | None:
    """``resume_from_checkpoint``: a path, or true/latest/auto for the newest one in output_dir."""
    value = cfg.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("true", "latest", "auto"):
        last = get_last_checkpoint(cfg.output_dir) if os.path.isdir(cfg.output_dir) else None
        if last is None:
            logger.warning("No checkpoint in %s to resume from; starting from scratch.", cfg.output_dir)
        return last
    if not os.path.isdir(value):
        raise ValueError(f"resume_from_checkpoint {value!r} is not a directory.")
    return value


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
            trainer._save_checkpoint(trainer.model, trial=None)
        raise


def main(argv=None):
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), argv)
    push, cfg.push_to_hub = cfg.push_to_hub, False  # we push the final checkpoint ourselves, once
    if data_args.synthetic_world:
        use_synthetic_world(model_args, data_args, cfg)
    if push and not cfg.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id (e.g. --hub_model_id you/clip-vit-b32-tga-zsr).")
    trainer, train, tokenizer = build_trainer(model_args, data_args, cfg)
    train_with_rescue(trainer, resolve_resume(cfg))
    trainer.save_model(cfg.output_dir)
    results = {}
    check = end_of_training_check(cfg.output_dir, data_args, cfg)
    if check is not None:
        results["check"] = check
    if cfg.eval_datasets:
        results.update(evaluate_after_training(cfg.output_dir, cfg.eval_datasets, cfg))
        if cfg.compare_with_base:
            base = evaluate_after_training(
                cfg.output_dir, cfg.eval_datasets, cfg, model_name_or_path=model_args.model_name_or_path,
                results_dir=os.path.join(cfg.output_dir, "eval_base"),
            )["benchmark"]
            results["base_benchmark"] = base
            table = comparison_markdown({"base": base, cfg.method: results["benchmark"]})
            if trainer.is_world_process_zero():
                with open(os.path.join(cfg.output_dir, "comparison.md"), "w") as f:
                    f.write(table)
                print("\n" + table, flush=True)
    if trainer.is_world_process_zero():
        from .hub import hyperparameters, push_checkpoint, write_model_card

        if results:
            with open(os.path.join(cfg.output_dir, "train_results.json"), "w") as f:
                json.dump(results, f, indent=2)
        hyper = hyperparameters(cfg.method, cfg)
        write_model_card(
            cfg.output_dir,
            method=cfg.method,
            base_model=model_args.model_name_or_path,
            dataset=data_args.dataset_name,
            hyperparameters=hyper,
            results=results.get("benchmark"),
            model_name=(cfg.hub_model_id or os.path.basename(os.path.abspath(cfg.output_dir))),
        )
        if push:
            push_checkpoint(cfg.output_dir, cfg.hub_model_id, token=cfg.hub_token,
                            private=cfg.hub_private_repo)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
