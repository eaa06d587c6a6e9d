"""The one evaluation function: clean and robust zero-shot accuracy, with the guards that keep
the numbers honest. Every number tgazsr reports comes from here: ``python -m tgazsr.evaluate``,
training's end-of-run check and its benchmark, ``compare_with_base``, the quickstart, the mini
table, the world's report and the attention figure.

Robust accuracy has one definition: a sample is robust at ``eps`` when its clean prediction is
correct and every attack of the run fails on it at ``eps`` (and, with ``monotone_eps``, at every
smaller budget evaluated). Per attack, ``<attack>@<eps>`` counts the samples that attack alone
fails on; ``worst@<eps>`` (several attacks) counts those every attack fails on. Random starts are
drawn per sample from ``(seed, dataset, attack, eps, index)``, so the numbers do not depend on
batching, the number of processes or the device.

Guards: non-finite weights or logits stop the evaluation with a message naming the model; every
attack's output is checked against its budget and the pixel box; each dataset gets a sanity
record (robust <= clean, robust non-increasing in eps, the attacks raised the margin on most
attacked samples, and PGD at a large eps leaves robust accuracy near zero on a small subset),
and a failed check is a visible warning in the log and in results.md.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..attacks import AttackContext, PGDSettings, run_attack, sample_generators
from ..attacks.base import in_pixels
from ..data import collate
from ..errors import note_kept
from ..recipes import RecipeError
from ..metrics import load_accuracy
from ..modeling import ZeroShotCLIP
from .arguments import EvalArguments
from .cache import (
    HARNESS_VERSION,
    dataset_key,
    finished_path,
    keyed_settings,
    prompt_token_ids,
    read_finished,
    write_finished,
)
from .datasets import DatasetUnavailable, EvalDataset, ResolvedEntry, expand_entries, prepare_dataset, resolve_entries
from .model import NonFiniteError, check_finite_weights, load_model, model_fingerprint, normalization_of
from .reports import RESULTS_SCHEMA_VERSION, averages, eps_label, result_key, sanity_line, write_reports

logger = logging.getLogger("tgazsr.evaluation")

ROBUST_DEFINITION = (
    "robust = classified correctly clean and after every attack of the run at this eps "
    "(per-sample worst case; monotone in eps when monotone_eps)"
)
#: The attacks must raise the (uncapped) margin on at least this fraction of the samples they attack.
MIN_RAISED = 0.75


@dataclass
class AttackPlan:
    """The attacks of a run, their settings and budgets (eps in units of 1/255 for L-inf)."""

    attacks: list[str]
    settings: dict[str, Any]
    eps: list[float]
    norm: str = "linf"
    monotone_eps: bool = True
    worst_case: bool = True
    seed: int = 0

    @classmethod
    def from_args(cls, args: EvalArguments) -> "AttackPlan":
        return cls(list(args.attacks), {a: args.attack_settings(a) for a in args.attacks},
                   sorted(set(float(e) for e in args.eps)), args.norm, args.monotone_eps, args.worst_case, args.seed)

    def pixels(self, eps: float) -> float:
        return in_pixels(eps, self.norm)

    @property
    def several(self) -> bool:
        return len(self.attacks) > 1 and self.worst_case

    def keys(self) -> list[str]:
        return [result_key(a, e, self.norm) for e in self.eps for a in self.attacks]

    def worst_keys(self) -> list[str]:
        return [result_key("worst", e, self.norm) for e in self.eps] if self.several else []


@dataclass
class BatchScore:
    """Predictions of one batch: clean, and per result key; how often each attack raised the margin."""

    clean: torch.Tensor
    preds: dict[str, torch.Tensor]
    raised: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (raised, attacked)
    adversarial: dict[str, torch.Tensor] = field(default_factory=dict)  # key -> images (keep_adversarial)


def _check_finite(logits: torch.Tensor, what: str, model_name: str) -> None:
    if not torch.isfinite(logits).all():
        raise NonFiniteError(
            f"The model {model_name!r} gives non-finite logits on {what}: its numbers would be meaningless. "
            "Check its weights and its pixel normalization."
        )


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} z_j - z_y: positive exactly when the sample is misclassified."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.amax(1) - true


def score_batch(model: ZeroShotCLIP, text: torch.Tensor, x: torch.Tensor, y: torch.Tensor, indices: Sequence[int],
                plan: AttackPlan, salt: str, num_classes: int, model_name: str = "model",
                keep_adversarial: bool = False) -> BatchScore:
    """Clean predictions, then every attack at every budget on the samples still standing."""
    with torch.no_grad():
        clean_logits = model.classify(x, text)
    _check_finite(clean_logits, "clean images", model_name)
    clean = clean_logits.argmax(-1)
    clean_margin = _margin(clean_logits, y)
    clean_ok = clean == y
    standing = {a: clean_ok.clone() for a in plan.attacks}  # robust so far (monotone in eps)
    final = {a: clean.clone() for a in plan.attacks}  # the prediction that counts
    worst_standing, worst_final = clean_ok.clone(), clean.clone()
    score = BatchScore(clean=clean, preds={})
    for eps in plan.eps:
        if not plan.monotone_eps:
            standing = {a: clean_ok.clone() for a in plan.attacks}
            final = {a: clean.clone() for a in plan.attacks}
            worst_standing, worst_final = clean_ok.clone(), clean.clone()
        for attack in plan.attacks:
            key = result_key(attack, eps, plan.norm)
            alive = standing[attack].nonzero().squeeze(1)
            x_adv_all = x.clone() if keep_adversarial else None
            if len(alive) and eps > 0:
                ids = [indices[i] for i in alive.tolist()]
                context = AttackContext(
                    text, plan.norm, sample_generators(plan.seed, ids, f"{salt}|{attack}|{eps_label(eps, plan.norm)}"),
                    plan.seed, num_classes,
                )
                x_adv = run_attack(attack, model, x[alive], y[alive], plan.pixels(eps), plan.settings[attack], context)
                with torch.no_grad():
                    adv_logits = model.classify(x_adv, text)
                _check_finite(adv_logits, f"images attacked by {attack}", model_name)
                adv = adv_logits.argmax(-1)
                raised = int((_margin(adv_logits, y[alive]) > clean_margin[alive]).sum())
                score.raised[key] = (raised, len(alive))
                final[attack][alive] = adv
                standing[attack][alive] = adv == y[alive]
                if keep_adversarial:
                    x_adv_all[alive] = x_adv
            else:
                score.raised[key] = (0, 0)
            if keep_adversarial:
                score.adversarial[key] = x_adv_all
            score.preds[key] = final[attack].clone()
            fell = worst_standing & ~standing[attack]
            worst_final[fell] = final[attack][fell]
            worst_standing &= standing[attack]
        if plan.several:
            score.preds[result_key("worst", eps, plan.norm)] = worst_final.clone()
    return score


def _shard_batches(n: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """Batches of consecutive indices; process r takes batches r, r+W, ... (same batches for any W)."""
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    return batches[rank::world]


def large_eps_check(model, data: EvalDataset, text, args: EvalArguments, device, model_name: str) -> dict | None:
    """PGD at a large budget on the first ``sanity_samples`` samples: a sound evaluation brings
    robust accuracy near zero there; if it does not, gradients are masked or the attack is broken."""
    k = min(args.sanity_samples, len(data))
    if k <= 0:
        return None
    eps = args.large_eps
    plan = AttackPlan(["pgd"], {"pgd": PGDSettings(steps=args.sanity_steps, step_size=eps / 4)}, [eps], args.norm,
                      seed=args.seed)
    batch = collate([data.dataset[i] for i in range(k)])
    x, y = batch["pixel_values"].to(device), batch["labels"].to(device)
    score = score_batch(model, text, x, y, list(range(k)), plan, f"{data.name}|sanity", len(data.class_names),
                        model_name)
    robust = float((score.preds[result_key("pgd", eps, args.norm)] == y).float().mean())
    return {"eps": eps_label(eps, args.norm), "steps": args.sanity_steps, "num_samples": k, "robust_accuracy": robust}


def sanity_record(result: dict, plan: AttackPlan, raised: dict[str, tuple[int, int]], large: dict | None,
                  args: EvalArguments) -> dict:
    """The checks a reviewer asks for, with a warning for each that fails."""
    warnings = []
    clean, robust = result["clean_accuracy"], result["robust"]
    above = [k for k, v in robust.items() if v > clean + 1e-12]
    if above:
        warnings.append(f"robust accuracy above clean for {', '.join(above)}")
    not_monotone = []
    for attack in plan.attacks + (["worst"] if plan.several else []):
        values = [robust[result_key(attack, e, plan.norm)] for e in plan.eps]
        if any(b > a + 1e-12 for a, b in zip(values, values[1:])):
            not_monotone.append(attack)
    if not_monotone:
        warnings.append(f"robust accuracy rises with eps for {', '.join(not_monotone)}")
    fractions = {k: r / n for k, (r, n) in raised.items() if n > 0}
    weak = [f"{k} ({100 * v:.0f}%)" for k, v in fractions.items() if v < MIN_RAISED]
    if weak:
        warnings.append(f"the attack raised the margin on fewer than {100 * MIN_RAISED:.0f}% of attacked samples "
                        f"for {', '.join(weak)} (gradient masking or a broken attack?)")
    if large is not None and large["robust_accuracy"] > args.sanity_max_robust:
        warnings.append(f"PGD at {large['eps']} leaves {100 * large['robust_accuracy']:.1f}% robust on "
                        f"{large['num_samples']} samples (expected at most {100 * args.sanity_max_robust:.0f}%)")
    return {
        "passed": not warnings,
        "warnings": warnings,
        "robust_le_clean": not above,
        "monotone_in_eps": not not_monotone,
        "attack_raised_loss": fractions,
        "large_eps": large,
    }


def evaluate_dataset(model, data: EvalDataset, text: torch.Tensor, args: EvalArguments, state, device,
                     metric=None, model_name: str = "model") -> dict:
    """Clean and robust accuracy of one dataset, sharded over the processes of ``state``."""
    from accelerate.utils import gather_object
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    metric = metric or load_accuracy()
    plan = AttackPlan.from_args(args)
    n, num_classes = len(data), len(data.class_names)
    keys, worst_keys = plan.keys(), plan.worst_keys()
    batches = _shard_batches(n, args.batch_size, state.process_index, state.num_processes)
    # Pinned host memory on a GPU: the next batch's copy overlaps the attack on this one.
    loader = DataLoader(data.dataset, batch_sampler=batches, collate_fn=collate, num_workers=args.num_workers,
                        pin_memory=device.type == "cuda")
    text = text.to(device)
    records, raised = [], {k: (0, 0) for k in keys}
    start = time.time()
    desc = data.name if state.num_processes == 1 else f"{data.name} (process 0 of {state.num_processes})"
    bar = tqdm(total=sum(len(b) for b in batches), desc=desc, disable=not state.is_local_main_process,
               dynamic_ncols=True)
    for index, batch in zip(batches, loader):
        x, y = batch["pixel_values"].to(device, non_blocking=True), batch["labels"].to(device, non_blocking=True)
        score = score_batch(model, text, x, y, index, plan, data.name, num_classes, model_name)
        for k, (r, a) in score.raised.items():
            raised[k] = (raised[k][0] + r, raised[k][1] + a)
        y_list, clean_list = y.tolist(), score.clean.tolist()
        pred_lists = {k: v.tolist() for k, v in score.preds.items()}
        for j, i in enumerate(index):
            records.append((i, y_list[j], clean_list[j], {k: v[j] for k, v in pred_lists.items()}))
        bar.update(len(index))
    bar.close()
    if state.num_processes > 1:
        records = gather_object(records)
        counts = gather_object([raised])
        raised = {k: (sum(c[k][0] for c in counts), sum(c[k][1] for c in counts)) for k in keys}
    records = sorted(records, key=lambda r: r[0])
    if [r[0] for r in records] != list(range(n)):
        raise RuntimeError(f"{data.name}: gathered {len(records)} predictions for {n} samples.")
    references = [r[1] for r in records]
    result = {
        "display_name": data.display_name,
        "num_samples": n,
        "num_classes": num_classes,
        "clean_accuracy": metric.compute(predictions=[r[2] for r in records], references=references)["accuracy"],
        "robust": {
            k: metric.compute(predictions=[r[3][k] for r in records], references=references)["accuracy"]
            for k in keys + worst_keys
        },
        "seconds": round(time.time() - start, 3),
        "source": data.source,
        "split": data.split,
        "samples": data.samples,
        "skipped_images": data.skipped_images,
        "prompt_templates": data.templates,
    }
    if "autoattack" in plan.attacks:
        from ..attacks import autoattack_plan

        s = plan.settings["autoattack"]
        attacks, targets = autoattack_plan(num_classes, s.version, s.attacks, s.n_target_classes)
        result["autoattack"] = {"attacks": attacks, "n_target_classes": targets}
    large = large_eps_check(model, data, text, args, device, model_name)
    result["sanity"] = sanity_record(result, plan, raised, large, args)
    return result


def _state(args: EvalArguments):
    from accelerate import PartialState

    if PartialState._shared_state:  # already set up (by the Trainer, or an earlier call)
        return PartialState()
    cpu = args.device == "cpu" or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _broadcast(obj, state):
    if state.num_processes <= 1:
        return obj
    from accelerate.utils import broadcast_object_list

    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


def run_evaluation(args: EvalArguments, model: ZeroShotCLIP | None = None, tokenizer=None,
                   resolved: Sequence[ResolvedEntry] | None = None) -> dict:
    """Evaluate ``args.model_name_or_path`` (or a given ZeroShotCLIP and tokenizer) on ``args.datasets``.

    ``resolved``: the entries of ``args.datasets`` as ``resolve_entries(args.datasets, args)`` gave
    them (the evaluation command resolves them once to check them); without it they are resolved
    here, once.

    Returns the results dict written to ``args.output_dir/results.json``: per dataset its clean
    accuracy, its robust accuracy per ``<attack>@<eps>`` column (fractions), its sanity record;
    the averages; the settings; and the datasets that could not be loaded under ``errors``.
    """
    if not args.datasets:
        raise RecipeError("Pass --datasets (registry names, collections or local paths), or use "
                          "recipes/eval_tga16.yaml.")
    if resolved is None:
        resolved, unknown = resolve_entries(list(args.datasets), args)
        if unknown:  # a typo fails now, not after hours of attacks on the other datasets
            raise RecipeError("\n".join(unknown))
    elif [item.entry for item in resolved] != expand_entries(list(args.datasets)):
        raise ValueError(f"run_evaluation(resolved=...) was given {[item.entry for item in resolved]}, "
                         f"not the entries of --datasets {list(args.datasets)}.")
    state = _state(args)
    device = torch.device(args.device) if args.device else state.device
    if state.num_processes > 1 and args.device and device != state.device:
        logger.warning("Ignoring --device %s: process %d of %d runs on %s.", args.device, state.process_index,
                       state.num_processes, state.device)
        device = state.device
    if model is None:
        model, tokenizer, fingerprint = load_model(args, device)
    else:
        if tokenizer is None:
            raise ValueError("run_evaluation(model=...) needs the model's tokenizer too.")
        check_finite_weights(model.clip, args.model_name_or_path or "model")
        fingerprint = model_fingerprint(model.clip)
        model = model.to(device).eval()
    tf32_before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    try:
        return _run(args, list(resolved), state, device, model, tokenizer, fingerprint)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_before


def note_finished(results: dict, output_dir: str) -> None:
    """What an interrupted evaluation keeps, as the command's one line says it (``tgazsr.errors``)."""
    names = list(results["datasets"])
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    note_kept("evaluation", f"the results of {len(names)} finished dataset(s) ({shown}) in "
              f"{os.path.join(output_dir, 'results.json')} and {os.path.join(output_dir, 'finished')}; the same "
              "command skips them when run again")


def _run(args, resolved: list[ResolvedEntry], state, device, model, tokenizer, fingerprint) -> dict:
    image_size = model.clip.config.vision_config.image_size
    metric = load_accuracy()
    model_name = args.model_name_or_path or "model"
    results: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "model": args.model_name_or_path,
        "model_fingerprint": fingerprint,
        "harness_version": HARNESS_VERSION,
        "definition": ROBUST_DEFINITION,
        "protocol": args.protocol,
        "pixel_normalization": normalization_of(model),
        "settings": keyed_settings(args),
        "num_processes": state.num_processes,
        "datasets": {},
        "errors": {},
    }
    for item in resolved:
        data, error = None, None
        with state.main_process_first():  # the main process downloads and caches first
            try:
                data = prepare_dataset(item, args, image_size)
            except DatasetUnavailable as err:
                error = str(err)
        if state.num_processes > 1:  # every process skips a dataset that failed anywhere
            from accelerate.utils import gather_object

            errors = [e for e in gather_object([error]) if e]
            error = errors[0] if errors else None
        if error is not None:
            logger.error("%s", error)
            results["errors"][item.error_key] = error
            continue
        key = dataset_key(args, fingerprint, data.identity(), prompt_token_ids(tokenizer, data.class_names, data.templates),
                          normalization_of(model), image_size, device.type)
        path = finished_path(args.output_dir, data.name, key)
        done = None if args.overwrite or not state.is_main_process else read_finished(path, key)
        done = _broadcast(done, state)
        if done is not None:
            logger.info("%s: finished earlier for this model and these settings (%s); skipping.", data.name, path)
            results["datasets"][data.name] = done
            if state.is_main_process:
                note_finished(results, args.output_dir)
            continue
        text = model.class_embeddings(data.class_names, data.templates, tokenizer)  # once per dataset
        result = evaluate_dataset(model, data, text, args, state, device, metric, model_name)
        result["key"] = key
        results["datasets"][data.name] = result
        if state.is_main_process:
            write_finished(path, key, args.model_name_or_path, result)
            results["average"] = averages(results["datasets"])
            write_reports(results, args.output_dir, plot=False)
            note_finished(results, args.output_dir)
        logger.info("%s: clean %.2f%%, %s", data.name, 100 * result["clean_accuracy"],
                    ", ".join(f"{k} {100 * v:.2f}%" for k, v in result["robust"].items()))
        if result["sanity"]["passed"]:
            logger.info("%s: sanity checks passed.", data.name)
        else:
            logger.warning("%s: SANITY CHECK FAILED: %s", data.name, sanity_line(result["sanity"]))
    results["average"] = averages(results["datasets"])
    if state.is_main_process:
        write_reports(results, args.output_dir, plot=args.plot)
        logger.info("Results in %s", os.path.join(args.output_dir, "results.md"))
    state.wait_for_everyone()
    return results
