"""The speed benchmark compares equal work: on a tiny model, the reference-structured TGA-ZSR step
(benchmarks/reference_step.py) and tgazsr's step give the same loss and the same gradients."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from conftest import merge_flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_reference_structured_step_computes_what_ours_computes(tiny_clip, saved_dataset, tmp_path):
    from reference_step import GradFrozen, reference_step

    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.data import collate
    from tgazsr.recipes import parse_recipe
    from tgazsr.train import build_trainer

    model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), [
        str(ROOT / "recipes" / "tga_zsr.yaml"), *merge_flags([
            "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset, "--output_dir", str(tmp_path),
            "--use_cpu", "true", "--fp16", "false", "--eval_split", "", "--report_to", "none",
            "--dataloader_num_workers", "0", "--train_eps", "8", "--train_stepsize", "2"], [])])
    trainer, train, tokenizer = build_trainer(model_args, data_args, cfg)
    model = trainer.model
    model.train()
    batch = collate([train.dataset[i] for i in range(6)])
    vision = [(n, p) for n, p in model.clip.named_parameters() if p.requires_grad]

    torch.manual_seed(7)
    ours = trainer.compute_loss(model, batch)
    ours.backward()
    ours_grads = {n: p.grad.clone() for n, p in vision}
    model.zero_grad(set_to_none=True)

    torch.manual_seed(7)  # the same random start
    theirs = reference_step(model, GradFrozen(trainer.ref_model), tokenizer, train.class_names,
                            data_args.prompt_template, batch["pixel_values"], batch["labels"], cfg)
    torch.testing.assert_close(theirs, ours.detach(), rtol=1e-5, atol=1e-6)
    for n, p in vision:
        torch.testing.assert_close(p.grad, ours_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    # The reference structure does the extra work: the frozen copy received gradients it never uses.
    assert any(p.grad is not None for p in trainer.ref_model.parameters())


def test_activation_checkpointing_gives_the_same_gradients(tiny_clip, saved_dataset, tmp_path):
    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.data import collate
    from tgazsr.recipes import parse_recipe
    from tgazsr.train import build_trainer

    def step(checkpointing: bool):
        model_args, data_args, cfg = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), [
            str(ROOT / "recipes" / "tga_zsr.yaml"), "--model_name_or_path", tiny_clip, "--dataset_name",
            saved_dataset, "--output_dir", str(tmp_path / str(checkpointing)), "--use_cpu", "true", "--fp16", "false",
            "--eval_split", "", "--report_to", "none", "--activation_checkpointing", str(checkpointing).lower()])
        trainer, train, _ = build_trainer(model_args, data_args, cfg)
        trainer.model.train()
        if checkpointing:  # what the Trainer calls when the flag is set
            trainer.model.activation_checkpointing_enable()
            assert trainer.model.clip.vision_model.encoder.gradient_checkpointing
        batch = collate([train.dataset[i] for i in range(4)])
        torch.manual_seed(3)
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.clip.named_parameters() if p.grad is not None}

    loss_plain, grads_plain = step(False)
    loss_ckpt, grads_ckpt = step(True)
    torch.testing.assert_close(loss_ckpt, loss_plain)
    assert grads_plain.keys() == grads_ckpt.keys() and grads_plain
    for n in grads_plain:
        torch.testing.assert_close(grads_ckpt[n], grads_plain[n], rtol=1e-5, atol=1e-7, msg=n)
