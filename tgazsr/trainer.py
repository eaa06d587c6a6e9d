"""RobustCLIPTrainer: one training step for every method.

The model the Trainer optimizes is a ``ZeroShotCLIP`` (its ``forward`` is the vision tower, so
DDP wraps exactly what is trained). The frozen reference theta0 is a copy of the original
vision tower, prepared by accelerate in evaluation mode (no DDP wrapper, no gradients). Class
text embeddings are computed once, before training. Checkpoints are plain transformers model
directories (safetensors), with LoRA adapters beside them when LoRA is used.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re

import torch
from safetensors.torch import load_file
from transformers import Trainer

from .attacks import pgd
from .attacks.base import in_pixels
from .finite import non_finite_tensors
from .checkpoints import CheckpointError
from .errors import UserError
from .hub import public_name
from .methods import Method, StepView
from .model_checks import state_dict_problems, strict_loading_error, tensor_problems
from .modeling import FrozenImageEncoder, ImageEncoding, ZeroShotCLIP
from .objectives import AttackTarget, get_objective
from .resume import write_recipe

ADAPTER_DIR = "lora_adapter"
logger = logging.getLogger("tgazsr.train")


class NonFiniteLossError(RuntimeError, UserError):
    """The loss became NaN or infinite: the run stops before the update, so no weight is spoiled."""


def is_peft(module) -> bool:
    return hasattr(module, "peft_config") and hasattr(module, "merge_and_unload")


def plain_clip(model: ZeroShotCLIP):
    """The transformers model to save: LoRA merged into a copy when LoRA is used."""
    clip = model.clip
    return copy.deepcopy(clip).merge_and_unload() if is_peft(clip) else clip


class RobustCLIPTrainer(Trainer):
    def __init__(
        self,
        model: ZeroShotCLIP,
        args,
        method: Method,
        reference: FrozenImageEncoder,
        text_embeds: torch.Tensor,
        prompt_embeds: dict[str, torch.Tensor] | None = None,
        image_size: int | None = None,
        recipe: dict | None = None,
        run_fields: dict | None = None,
        **kwargs,
    ):
        super().__init__(model=model, args=args, **kwargs)
        self.method = method
        if self.is_fsdp_enabled and isinstance(self.eval_dataset, HeldOutSets):
            from .config import fsdp_eval_problem  # the engine came from `accelerate launch`, not from the recipe

            raise UserError(fsdp_eval_problem(str(getattr(args.eval_strategy, "value", args.eval_strategy))))
        if self.is_fsdp_enabled:
            keep_frozen_parts_whole(self.accelerator, model)
        self.ref_model = self.accelerator.prepare_model(reference, evaluation_mode=True)
        self.text_embeds = text_embeds.to(self.args.device)
        self.prompt_embeds = {k: v.to(self.args.device) for k, v in (prompt_embeds or {}).items()}
        self.image_size = image_size or model.clip.config.vision_config.image_size
        self.recipe = recipe or {}
        self.run_fields = run_fields  # recorded in every checkpoint (tgazsr.resume), compared on resume
        self._metric_names: tuple[str, ...] = ()
        self._metric_sums: torch.Tensor | None = None  # running sums on the device, read when logging
        self._metric_count = 0
        self._skipped_steps = 0
        self._skip_update = False  # a micro-batch of this accumulation window had a non-finite loss
        # We scale the loss for gradient accumulation ourselves (see compute_loss), from the number of
        # samples in the accumulation window, which the Trainer counts when this flag is set.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True

    # --- the training step ---------------------------------------------------------------
    def _attack(self, model: ZeroShotCLIP, x, labels, ref_clean):
        cfg = self.args
        objective = get_objective(cfg.attack_loss or self.method.attack_objective)
        reference = None
        if objective.reads_reference:  # the frozen model's clean embedding (FARE moves away from it)
            reference = ref_clean.embeds if ref_clean is not None else self.ref_model(x).embeds
        target = AttackTarget(labels, self.text_embeds, scale=self.method.uses_logit_scale(cfg),
                              reference_embeds=reference, reference=self.ref_model,
                              method_config=getattr(cfg, "method_config", None))
        loss_fn = objective(model, target)
        was_training = model.training
        model.eval()
        try:
            with self._image_gradients_only(model):
                return pgd(
                    loss_fn,
                    x,
                    eps=in_pixels(cfg.train_eps),
                    step_size=in_pixels(cfg.train_stepsize),
                    steps=cfg.train_numsteps,
                    random_start=cfg.train_random_start,
                )
        finally:
            model.train(was_training)

    @contextlib.contextmanager
    def _image_gradients_only(self, model):
        """Attacks need gradients with respect to the image only. With the weights' requires_grad off,
        autograd keeps only what that gradient needs (not the input of every linear layer, saved for
        weight gradients), which lowers an attack's memory. Not under FSDP or DeepSpeed: they fix the
        gathered weights' flag once."""
        frozen = [] if (self.is_fsdp_enabled or self.is_deepspeed_enabled) else \
            [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        method = self.method
        x, labels = inputs["pixel_values"], inputs["labels"]
        unwrapped: ZeroShotCLIP = self.accelerator.unwrap_model(model)
        tokens, attentions = method.needs_tokens, method.needs_attentions

        ref_clean = None
        if method.reference == "clean":
            ref_clean = self.ref_model(x, output_tokens=tokens, output_attentions=attentions)
        x_adv = self._attack(unwrapped, x, labels, ref_clean) if method.adversarial else None

        halves = ([x_adv] if method.adversarial else []) + ([x] if method.uses_clean else [])
        enc = model(torch.cat(halves), output_tokens=tokens, output_attentions=attentions)
        parts = _split(enc, len(halves))
        adv = parts[0] if method.adversarial else None
        clean = parts[-1] if method.uses_clean else None
        ref_adv = self.ref_model(x_adv) if method.reference == "adv" else None

        view = StepView(
            labels=labels,
            text_embeds=self.text_embeds,
            logits_fn=lambda embeds, scale=True: unwrapped.logits(embeds, self.text_embeds, scale),
            logit_scale=unwrapped.logit_scale.detach(),
            logit_bias=None if unwrapped.logit_bias is None else unwrapped.logit_bias.detach(),
            backbone=unwrapped.backbone,
            image_size=self.image_size,
            adv=adv,
            clean=clean,
            ref_adv=ref_adv,
            ref_clean=ref_clean,
            scale=method.uses_logit_scale(self.args),
            prompt_embeds=self.prompt_embeds,
        )
        out = method.loss(view, self.args)

        # Gradient accumulation: each micro-batch contributes its share of the window, so the
        # update equals that of one batch of the window's size (batch sums stay sums).
        if num_items_in_batch is not None:
            gathered = self.args.average_tokens_across_devices and self.args.world_size > 1
            n = float(num_items_in_batch)
            mean_scale = len(labels) * (self.accelerator.num_processes if gathered else 1) / n
        else:
            mean_scale = 1.0 / self.args.gradient_accumulation_steps
        loss = out.mean_part * mean_scale
        if out.sum_part is not None:
            loss = loss + out.sum_part * self.accelerator.num_processes
        bad_processes = self._non_finite_processes(loss)
        if bad_processes:  # every process takes this branch in the same step
            loss = self._non_finite(loss, out, enc, bad_processes)
        else:  # a skipped step's NaN terms stay out of the logged means (nonfinite_steps counts it)
            self._record(out, labels, method.accuracy_name)
        return (loss, enc) if return_outputs else loss

    def _non_finite_processes(self, loss: torch.Tensor) -> int:
        """How many processes have a NaN or infinite loss in this micro-batch. Every process learns
        the same count (one small all-reduce), so all of them stop, or all skip, together: a process
        that stopped or left the backward pass alone would leave the others waiting in theirs."""
        bad = (~torch.isfinite(loss.detach())).any().to(torch.int32).reshape(1)
        if self.accelerator.num_processes > 1:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.SUM)
        return int(bad.item())

    def _non_finite(self, loss: torch.Tensor, out, enc, bad_processes: int) -> torch.Tensor:
        """Stop (default) or skip a step whose loss is NaN or infinite on any process, before any update."""
        step = self.state.global_step + 1
        where = f" on {bad_processes} of {self.accelerator.num_processes} processes" \
            if self.accelerator.num_processes > 1 else ""
        local = "" if torch.isfinite(loss.detach()).all() else \
            " (" + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in sorted(out.logs.items())) + \
            f"; total {float(loss.detach()):.4g})"
        if self.args.nonfinite_loss == "skip":
            self._skipped_steps += 1
            self._skip_update = True
            if local or self.accelerator.is_main_process:  # the main process, and each that saw it
                logger.warning("Non-finite loss at step %d%s%s: step skipped (%d so far).", step, where, local,
                               self._skipped_steps)
            return _zero_through(enc)
        raise NonFiniteLossError(
            f"The loss became non-finite at step {step}{where}{local} with learning rate "
            f"{self.args.learning_rate}. Training stopped before this step's update; the weights of step {step - 1} "
            "are finite and were not overwritten. Lower --learning_rate (or the loss weights), check the data, or "
            "pass --nonfinite_loss skip to skip such steps."
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step; after a skipped micro-batch, the gradients of its whole accumulation
        window are dropped (after the backward pass, so that every process took part in it), and the
        optimizer leaves every weight and its momentum as they were."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._skip_update:
            model.zero_grad(set_to_none=True)
            if self.accelerator.sync_gradients:  # the window's last micro-batch: the update comes next
                self._skip_update = False
        return loss

    # --- robust accuracy while training ------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Clean and PGD accuracy of the model as it is now, on ``eval_datasets`` (the first
        ``eval_steps_max_samples`` images of each), through the one evaluation harness. The numbers
        are logged (so they reach ``report_to`` trackers and ``trainer_state.json``) and returned
        for ``metric_for_best_model`` (``eval_robust_accuracy``, ``eval_clean_accuracy``)."""
        if not isinstance(self.eval_dataset, HeldOutSets):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        from .evaluation import run_evaluation, training_eval_arguments

        cfg = self.args
        unwrapped: ZeroShotCLIP = self.accelerator.unwrap_model(self.model)
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        args = training_eval_arguments(
            f"{cfg.output_dir} (step {self.state.global_step})", self.eval_dataset.entries, cfg,
            os.path.join(cfg.output_dir, "eval_during_training"), max_samples=cfg.eval_steps_max_samples,
            sanity_samples=0,
        )
        was_training = unwrapped.training
        try:
            with self._image_gradients_only(unwrapped):
                results = run_evaluation(args, model=unwrapped, tokenizer=tokenizer)
        finally:
            unwrapped.train(was_training)
        metrics = training_metrics(results, metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # --- metrics ---------------------------------------------------------------------------
    @torch.no_grad()
    def _record(self, out, labels, acc_name: str) -> None:
        """Add this micro-batch's loss terms and accuracy to running sums that stay on the device:
        nothing is copied to the host or communicated here, only when the Trainer logs."""
        values = dict(out.logs)
        values[acc_name] = (out.accuracy_logits.argmax(-1) == labels).float().mean()
        names = tuple(sorted(values))
        stacked = torch.stack([values[k].detach().float() for k in names])
        if self._metric_sums is None or names != self._metric_names:
            self._flush_metrics()
            self._metric_names, self._metric_sums = names, torch.zeros_like(stacked)
        self._metric_sums += stacked
        self._metric_count += 1

    def _flush_metrics(self) -> dict[str, float]:
        """The averaged terms since the last log, over micro-batches and processes (one all-reduce)."""
        if self._metric_sums is None or not self._metric_count:
            return {}
        means = self.accelerator.reduce(self._metric_sums / self._metric_count, reduction="mean")
        flushed = dict(zip(self._metric_names, means.tolist()))
        self._metric_sums, self._metric_count = None, 0
        return flushed

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs (every process logs at the same steps): add the averaged terms
            logs.update(self._flush_metrics())
            if self._skipped_steps:
                logs["nonfinite_steps"] = self._skipped_steps
        super().log(logs, start_time)

    # --- saving and loading ------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Write a plain transformers model directory. Under FSDP and DeepSpeed the Trainer passes the
        gathered full ``state_dict`` of the ``ZeroShotCLIP`` (keys ``clip.*``); otherwise the
        weights are read from the model itself. Only the main process writes."""
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        unwrapped: ZeroShotCLIP = self.accelerator.unwrap_model(self.model)
        clip_weights = None
        if state_dict:  # gathered by the engine: the ZeroShotCLIP's keys, "clip." + the model's
            clip_weights = {k[len("clip."):]: v for k, v in state_dict.items() if k.startswith("clip.")}
            bad = non_finite_tensors(clip_weights)
        else:
            bad = non_finite_tensors(unwrapped.clip)
        if bad:  # never write NaN or infinite weights, neither as a checkpoint nor as the result
            raise NonFiniteLossError(f"Refusing to save non-finite weights to {output_dir} ({len(bad)} tensors, e.g. "
                                     f"{bad[0]}); the last saved checkpoint is kept.")
        if clip_weights is not None:
            unwrapped.clip.save_pretrained(output_dir, state_dict=clip_weights)
        else:
            plain_clip(unwrapped).save_pretrained(output_dir)
        if is_peft(unwrapped.clip):
            adapter_dir = os.path.join(output_dir, ADAPTER_DIR)
            unwrapped.clip.save_pretrained(adapter_dir)
            _publishable_adapter(adapter_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        with open(os.path.join(output_dir, "tgazsr_recipe.json"), "w") as f:
            json.dump(public_name(self.recipe), f, indent=2, default=str)  # no local paths in what is uploaded
        if self.run_fields is not None:  # the local record (paths kept; never uploaded): resume and TTC's tau base read it
            write_recipe(output_dir, self.run_fields)  # before trainer_state.json, which marks a checkpoint complete

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Load a checkpoint's weights strictly: exactly the tensors the model has, with their shapes
        (a ``CheckpointError`` naming the others), so no tensor keeps its value from before."""
        if self.is_fsdp_enabled:  # sharded weights: the engine's own file (pytorch_model_fsdp.bin), loaded by FSDP
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        unwrapped: ZeroShotCLIP = self.accelerator.unwrap_model(model or self.model)
        fix = ("Resume from another checkpoint (--resume_from_checkpoint PATH) of this recipe, or start a new run in "
               "another --output_dir.")
        if is_peft(unwrapped.clip):
            from peft import get_peft_model_state_dict, set_peft_model_state_dict

            path = os.path.join(resume_from_checkpoint, ADAPTER_DIR, "adapter_model.safetensors")
            if not os.path.isfile(path):
                raise CheckpointError(f"No LoRA adapter in checkpoint {resume_from_checkpoint} (expected {path}). {fix}")
            weights = _read_weights(path)
            problems = state_dict_problems(get_peft_model_state_dict(unwrapped.clip), weights)
            if problems:
                raise strict_loading_error(path, problems, fix, CheckpointError)
            result = set_peft_model_state_dict(unwrapped.clip, weights)
            if getattr(result, "unexpected_keys", None):
                raise strict_loading_error(path, tensor_problems(unexpected=result.unexpected_keys), fix, CheckpointError)
            return
        path = os.path.join(resume_from_checkpoint, "model.safetensors")
        if not os.path.isfile(path):
            raise CheckpointError(f"No model.safetensors in checkpoint {resume_from_checkpoint}. {fix}")
        weights = _read_weights(path)
        # As transformers does: an older checkpoint's position_ids, a buffer the model no longer saves.
        buffers = {name for name, _ in unwrapped.clip.named_buffers()}
        weights = {k: v for k, v in weights.items() if not (k.endswith("position_ids") and k in buffers)}
        problems = state_dict_problems(unwrapped.clip.state_dict(), weights)
        if problems:
            raise strict_loading_error(path, problems, fix, CheckpointError)
        unwrapped.clip.load_state_dict(weights, strict=True)

    def _load_best_model(self) -> None:
        """``load_best_model_at_end``: the best checkpoint's weights, strictly. The Trainer's own loader
        would match the checkpoint's model keys against the ZeroShotCLIP's (``clip.*``), load none
        of them and only warn."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_best_model()
        logger.info("Loading the best model from %s (score %s).", self.state.best_model_checkpoint,
                    self.state.best_metric)
        self._load_from_checkpoint(self.state.best_model_checkpoint)


def _read_weights(path: str) -> dict:
    try:
        return load_file(path)
    except Exception as err:  # noqa: BLE001 - name the file, whatever safetensors says
        raise CheckpointError(f"Cannot read {path} ({type(err).__name__}: {err}): the file is truncated or corrupt. "
                              "Resume from an earlier checkpoint (--resume_from_checkpoint PATH).") from err


def _zero_through(enc) -> torch.Tensor:
    """A loss of exactly 0 whose backward still runs through the model's output, so that data
    parallel engines reduce gradients on every process as usual (the gradients are then dropped).
    ``torch.where`` keeps the value finite when the output is not."""
    parts = [t for t in (enc.embeds, enc.tokens, enc.attentions) if t is not None and t.requires_grad]
    total = sum(t.float().sum() for t in parts)
    return torch.where(torch.isfinite(total), total, torch.zeros_like(total)) * 0.0


def keep_frozen_parts_whole(accelerator, model: ZeroShotCLIP) -> None:
    """Under FSDP, shard only the vision tower that is trained: the backbone's frozen parts (the
    text tower, the logit scale: a scalar, which FSDP2 cannot shard) stay whole on every rank, so the
    class embeddings and the logits need no gather. This sets the plugin's ``ignored_modules``
    before ``prepare``."""
    plugin = accelerator.state.fsdp_plugin
    if is_peft(model.clip):
        raise UserError("LoRA with FSDP is not supported: LoRA trains few weights, so plain data parallel "
                        "(accelerate_configs/ddp.yaml) is the engine to use.")
    check_wrapped_layers(plugin, model)
    parts = model.backbone.frozen_parts(model.clip)
    frozen = [p for p in parts if not isinstance(p, torch.nn.Parameter)]
    scalars = [p for p in parts if isinstance(p, torch.nn.Parameter)]
    if scalars and getattr(plugin, "fsdp_version", 1) == 2:  # FSDP2 takes parameters; a holder names the scalars
        frozen.append(torch.nn.ParameterList(scalars))
    plugin.ignored_modules = frozen


def check_wrapped_layers(plugin, model: ZeroShotCLIP) -> None:
    """The layer classes an FSDP config wraps (``fsdp_transformer_layer_cls_to_wrap``; the Trainer's
    ``transformer_layer_cls_to_wrap``) are the model's own: a CLIP's config on a SigLIP is refused
    before anything is sharded, naming the class to wrap."""
    given = getattr(plugin, "transformer_cls_names_to_wrap", None) or []
    entries = [given] if isinstance(given, str) else given  # each entry may be comma-separated (accelerate's env form)
    named = [part.strip() for entry in entries for part in str(entry).split(",") if part.strip()]
    present = {type(m).__name__ for m in model.clip.modules()}
    missing = [n for n in named if n not in present]
    if missing:
        own = ",".join(model.backbone.shard_unit_names(model.clip))
        raise UserError(
            f"The FSDP config wraps {', '.join(missing)}, which this {type(model.clip).__name__} does not have: its "
            f"vision layers are {own}. Set fsdp_transformer_layer_cls_to_wrap: {own} in the accelerate config "
            f"({model.backbone.fsdp_config}), or transformer_layer_cls_to_wrap in --fsdp_config.")


class HeldOutSets:
    """The held-out zero-shot sets evaluated while training (what ``eval_dataset`` stands for here)."""

    def __init__(self, entries):
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)


def training_metrics(results: dict, prefix: str = "eval") -> dict[str, float]:
    """Flat metrics of a harness results dict: averages, then per dataset (fractions)."""
    avg = results.get("average") or {}
    metrics = {}
    if "clean_accuracy" in avg:
        metrics[f"{prefix}_clean_accuracy"] = avg["clean_accuracy"]
    robust = avg.get("robust") or {}
    if robust:
        metrics[f"{prefix}_robust_accuracy"] = next(iter(robust.values()))
    for name, r in (results.get("datasets") or {}).items():
        short = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.basename(str(name).rstrip("/")))
        metrics[f"{prefix}_{short}_clean_accuracy"] = r["clean_accuracy"]
        for key, value in (r.get("robust") or {}).items():
            metrics[f"{prefix}_{short}_robust_accuracy"] = value
            break
    return metrics


def _publishable_adapter(adapter_dir: str) -> None:
    """PEFT writes the base model's local path into the adapter's config and card: keep its folder name only."""
    config = os.path.join(adapter_dir, "adapter_config.json")
    if os.path.isfile(config):
        with open(config) as f:
            data = json.load(f)
        data["base_model_name_or_path"] = public_name(data.get("base_model_name_or_path"))
        with open(config, "w") as f:
            json.dump(data, f, indent=2)
    card = os.path.join(adapter_dir, "README.md")
    if os.path.isfile(card):
        os.remove(card)  # PEFT's template card; the model's own card describes the adapter


def _split(enc, n: int):
    """Split an ImageEncoding of ``n`` stacked halves into ``n`` encodings."""
    if n == 1:
        return [enc]

    def chunks(t):
        return [None] * n if t is None else list(t.chunk(n))

    return [ImageEncoding(e, t, a, enc.prefix_tokens)
            for e, t, a in zip(chunks(enc.embeds), chunks(enc.tokens), chunks(enc.attentions))]
