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

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..attacks import AttackContext, PGDSettings, get_attack, run_attack, sample_generators
from ..attacks.base import in_pixels
from ..attention import text_guided_attention
from ..data import collate
from ..defenses import DefenseContext, build_defended, get_defense
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
DEFENDED_DEFINITION = (
    "robust = classified correctly by the defended classifier clean and after every attack under every threat "
    "model of the run at this eps (per-sample worst case; monotone in eps when monotone_eps); non_adaptive: the "
    "adversarial images are made on the undefended model, then the defense runs; adaptive: the attack sees the "
    "whole defended classifier"
)
#: The attacks must raise the (uncapped) margin on at least this fraction of the samples they attack.
MIN_RAISED = 0.75


@dataclass
class DefensePlan:
    """The test-time defense of a run: its settings, the threat models it is attacked under, and
    how (EOT draws, the gradient through it, the draws each prediction is scored over)."""

    name: str
    settings: Any
    threats: list[str]
    eot_draws: int = 1
    gradient: str = "bpda"
    temperature: float = 0.1
    score_draws: int = 1
    resources: Any = None
    term_weight: float = 0.0

    @classmethod
    def from_args(cls, args: EvalArguments, model) -> "DefensePlan | None":
        """None without a defense; otherwise the defense's settings, its resources loaded once."""
        if not args.threats:
            return None
        spec = get_defense(args.defense)
        settings = args.defense_settings()
        resources = spec.prepare(model, settings, args) if spec.prepare is not None else None
        return cls(args.defense, settings, args.threats, args.eot_draws, args.adaptive_gradient,
                   args.adaptive_temperature, args.defense_score_draws, resources,
                   args.adaptive_term_weight if spec.adaptive_term else 0.0)

    @property
    def random(self) -> bool:
        return get_defense(self.name).random

    def identity(self) -> dict:
        """What the defense loaded (for the results and the cache key)."""
        spec = get_defense(self.name)
        return spec.identity(self.resources) if spec.identity is not None else {}

    def classifier(self, model, text, generators, gradient: str = "bpda", term_weight: float = 0.0):
        """The defended classifier; ``term_weight``: its adaptive term's weight (the attack's term pass only)."""
        context = DefenseContext(generators, gradient, self.temperature, self.resources, term_weight)
        return build_defended(self.name, model, text, self.settings, context)


@dataclass
class AttackPlan:
    """The attacks of a run, their settings and budgets (eps in units of 1/255 for L-inf), and the
    defense with its threat models (None: the model itself is attacked)."""

    attacks: list[str]
    settings: dict[str, Any]
    eps: list[float]
    norm: str = "linf"
    monotone_eps: bool = True
    worst_case: bool = True
    seed: int = 0
    defense: DefensePlan | None = None
    attention_shift: bool = False

    @classmethod
    def from_args(cls, args: EvalArguments, defense: DefensePlan | None = None) -> "AttackPlan":
        return cls(list(args.attacks), {a: args.attack_settings(a) for a in args.attacks},
                   sorted(set(float(e) for e in args.eps)), args.norm, args.monotone_eps, args.worst_case, args.seed,
                   defense, args.attention_shift)

    def pixels(self, eps: float) -> float:
        return in_pixels(eps, self.norm)

    @property
    def threats(self) -> list[str | None]:
        return list(self.defense.threats) if self.defense is not None else [None]

    def columns(self) -> list[tuple[str | None, str]]:
        """(threat model, attack) of every robust column (the threat model None without a defense)."""
        return [(t, a) for t in self.threats for a in self.attacks]

    def key(self, column: tuple[str | None, str], eps: float) -> str:
        return result_key(column[1], eps, self.norm, column[0])

    def worst_groups(self) -> dict[str | None, list[tuple[str | None, str]]]:
        """The worst-case columns: per threat model over its attacks (several attacks), and over every
        column (the key ``worst@eps``, several columns in all)."""
        if not self.worst_case:
            return {}
        cols = self.columns()
        groups: dict[str | None, list] = {}
        if self.defense is not None and len(self.attacks) > 1:
            for t in self.threats:
                groups[t] = [c for c in cols if c[0] == t]
        if len(cols) > 1:
            groups[None] = cols
        return groups

    @property
    def several(self) -> bool:
        return None in self.worst_groups()

    def keys(self) -> list[str]:
        return [self.key(c, e) for e in self.eps for c in self.columns()]

    def worst_keys(self) -> list[str]:
        return [result_key("worst", e, self.norm, g) for e in self.eps for g in self.worst_groups()]

    def series(self) -> dict[str, list[str]]:
        """Each column and worst case across the budgets, by its name without the budget."""
        out = {}
        for c in self.columns():
            out[(f"{c[0]}:" if c[0] else "") + c[1]] = [self.key(c, e) for e in self.eps]
        for g in self.worst_groups():
            out[(f"{g}:" if g else "") + "worst"] = [result_key("worst", e, self.norm, g) for e in self.eps]
        return out


@dataclass
class BatchScore:
    """Predictions of one batch: clean, and per result key; how often each attack raised the margin."""

    clean: torch.Tensor
    preds: dict[str, torch.Tensor]
    raised: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (raised, attacked)
    adversarial: dict[str, torch.Tensor] = field(default_factory=dict)  # key -> images (keep_adversarial)
    undefended: torch.Tensor | None = None  # clean predictions of the model itself, with a defense
    shift: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (sum of distances, samples)
    term_broke: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (fell to the term pass, attacked)


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


def defended_predict(model, text, x: torch.Tensor, y: torch.Tensor, indices: Sequence[int], plan: AttackPlan,
                     salt: str, tag: str, model_name: str = "model") -> tuple[torch.Tensor, torch.Tensor]:
    """The defended classifier's predictions and first-draw logits. A randomized defense is scored
    under ``score_draws`` draws, each drawn per sample: a sample counts as correct only if every draw
    classifies it correctly (its prediction is then the first wrong draw's)."""
    defense = plan.defense
    draws = defense.score_draws if defense.random else 1
    preds, first = None, None
    for r in range(draws):
        gens = sample_generators(plan.seed, indices, f"{salt}|{defense.name}|score|{tag}|{r}")
        with torch.no_grad():
            logits = defense.classifier(model, text, gens)(x)
        _check_finite(logits, f"{tag.split('|')[0]} images under the {defense.name} defense", model_name)
        pred = logits.argmax(-1)
        if preds is None:
            preds, first = pred, logits
        else:
            preds = torch.where((preds == y) & (pred != y), pred, preds)
    return preds, first


def attention_distances(model, text: torch.Tensor, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample, the L2 distance between the model's text-guided attention maps (the true class's
    prompt, the encoding's prefix tokens left out, as the methods compute them) of ``x`` and ``x_adv``."""
    with torch.no_grad():
        clean, adv = model(x, output_tokens=True), model(x_adv, output_tokens=True)
        size, t = model.image_size, text[y]
        a = text_guided_attention(clean.tokens, t, size, prefix=clean.prefix_tokens)
        b = text_guided_attention(adv.tokens, t, size, prefix=adv.prefix_tokens)
    return (a - b).norm(dim=-1)


def _attacked_model(model, text, plan: AttackPlan, threat, attack: str, ids: list[int], salt: str,
                    term_weight: float = 0.0):
    """What the attack sees: the model itself, or under the adaptive threat model the defended
    classifier (its randomness drawn per sample, or per batch for attacks that split their batch),
    its own adaptive term weighted by ``term_weight``."""
    if threat != "adaptive":
        return model, 1
    defense = plan.defense
    gens = sample_generators(plan.seed, ids, f"{salt}|{defense.name}|attack")
    if not get_attack(attack).batch_invariant:  # it classifies parts of its batch: one generator for the batch
        gens = gens[0]
    return (defense.classifier(model, text, gens, defense.gradient, term_weight),
            (defense.eot_draws if defense.random else 1))


def adaptive_passes(plan: AttackPlan, threat: str) -> list[float]:
    """The term weights an attack runs with under ``threat``: once on the logits alone, and, under
    the adaptive threat model of a defense with its own term, once more with the term on the
    samples the first pass left standing (the column is the per-sample worst of the two)."""
    if threat == "adaptive" and plan.defense is not None and plan.defense.term_weight > 0:
        return [0.0, plan.defense.term_weight]
    return [0.0]


def score_batch(model: ZeroShotCLIP, text: torch.Tensor, x: torch.Tensor, y: torch.Tensor, indices: Sequence[int],
                plan: AttackPlan, salt: str, num_classes: int, model_name: str = "model",
                keep_adversarial: bool = False) -> BatchScore:
    """Clean predictions, then every attack at every budget (under every threat model, with a
    defense) on the samples still standing."""
    with torch.no_grad():
        base_logits = model.classify(x, text)
    _check_finite(base_logits, "clean images", model_name)
    base_clean = base_logits.argmax(-1)
    base_margin = _margin(base_logits, y)
    if plan.defense is None:
        clean, clean_logits = base_clean, base_logits
    else:
        clean, clean_logits = defended_predict(model, text, x, y, indices, plan, salt, "clean", model_name)
    clean_margin = _margin(clean_logits, y)
    clean_ok = clean == y
    columns, groups = plan.columns(), plan.worst_groups()
    score = BatchScore(clean=clean, preds={}, undefended=base_clean if plan.defense is not None else None)

    def fresh():
        return ({c: clean_ok.clone() for c in columns}, {c: clean.clone() for c in columns},
                {g: clean_ok.clone() for g in groups}, {g: clean.clone() for g in groups})

    standing, final, worst_standing, worst_final = fresh()  # robust so far (monotone in eps)
    for eps in plan.eps:
        if not plan.monotone_eps:
            standing, final, worst_standing, worst_final = fresh()
        for column in columns:
            threat, attack = column
            key = plan.key(column, eps)
            alive = standing[column].nonzero().squeeze(1)
            x_adv_all = x.clone() if keep_adversarial else None
            if len(alive) and eps > 0:
                tag = f"{attack}|{eps_label(eps, plan.norm)}"

                def attack_once(sel: torch.Tensor, term_weight: float, suffix: str):
                    """Attack the samples ``sel``; their adversarial images and what the scored classifier says."""
                    ids = [indices[i] for i in sel.tolist()]
                    attack_salt = f"{salt}|{tag}" + ("|adaptive" if threat == "adaptive" else "") + suffix
                    target, eot = _attacked_model(model, text, plan, threat, attack, ids, attack_salt, term_weight)
                    context = AttackContext(text, plan.norm, sample_generators(plan.seed, ids, attack_salt),
                                            plan.seed, num_classes, eot)
                    images = run_attack(attack, target, x[sel], y[sel], plan.pixels(eps), plan.settings[attack],
                                        context)
                    if plan.defense is None:
                        with torch.no_grad():
                            logits = model.classify(images, text)
                        _check_finite(logits, f"images attacked by {attack}", model_name)
                        return images, logits.argmax(-1), logits
                    pred, logits = defended_predict(model, text, images, y[sel], ids, plan, salt,
                                                    f"{threat}|{tag}{suffix}", model_name)
                    return images, pred, logits

                passes = adaptive_passes(plan, threat)
                x_adv, adv, adv_logits = attack_once(alive, passes[0], "")
                if len(passes) > 1:  # the defense's own term, on what the logits-only attack left standing
                    left = (adv == y[alive]).nonzero().squeeze(1)
                    broke = 0
                    if len(left):
                        x2, adv2, logits2 = attack_once(alive[left], passes[1], "|term")
                        fell = adv2 != y[alive[left]]
                        broke = int(fell.sum())
                        x_adv[left[fell]], adv[left[fell]], adv_logits[left[fell]] = x2[fell], adv2[fell], logits2[fell]
                    score.term_broke[key] = (broke, len(left))
                aimed, before = adv_logits, clean_margin[alive]
                if plan.defense is not None and threat != "adaptive":  # aimed at the undefended model: its margin
                    with torch.no_grad():
                        aimed = model.classify(x_adv, text)
                    _check_finite(aimed, f"images attacked by {attack}", model_name)
                    before = base_margin[alive]
                raised = int((_margin(aimed, y[alive]) > before).sum())
                score.raised[key] = (raised, len(alive))
                if plan.attention_shift:
                    score.shift[key] = (float(attention_distances(model, text, x[alive], x_adv, y[alive]).sum()),
                                        len(alive))
                final[column][alive] = adv
                standing[column][alive] = adv == y[alive]
                if keep_adversarial:
                    x_adv_all[alive] = x_adv
            else:
                score.raised[key] = (0, 0)
                if plan.attention_shift:
                    score.shift[key] = (0.0, 0)
            if keep_adversarial:
                score.adversarial[key] = x_adv_all
            score.preds[key] = final[column].clone()
            for g, members in groups.items():
                if column in members:
                    fell = worst_standing[g] & ~standing[column]
                    worst_final[g][fell] = final[column][fell]
                    worst_standing[g] &= standing[column]
        for g in groups:
            score.preds[result_key("worst", eps, plan.norm, g)] = worst_final[g].clone()
    return score


def _shard_batches(n: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """Batches of consecutive indices; process r takes batches r, r+W, ... (same batches for any W)."""
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    return batches[rank::world]


def large_eps_check(model, data: EvalDataset, text, args: EvalArguments, device, model_name: str,
                    defense: DefensePlan | None = None) -> dict | None:
    """PGD at a large budget on the first ``sanity_samples`` samples: a sound evaluation brings
    robust accuracy near zero there; if it does not, gradients are masked or the attack is broken.
    With a defense, the PGD is adaptive: it attacks the defended classifier."""
    k = min(args.sanity_samples, len(data))
    if k <= 0:
        return None
    eps = args.large_eps
    if defense is not None:
        defense = dataclasses.replace(defense, threats=["adaptive"])
    plan = AttackPlan(["pgd"], {"pgd": PGDSettings(steps=args.sanity_steps, step_size=eps / 4)}, [eps], args.norm,
                      seed=args.seed, defense=defense)
    batch = collate([data.dataset[i] for i in range(k)])
    x, y = batch["pixel_values"].to(device), batch["labels"].to(device)
    score = score_batch(model, text, x, y, list(range(k)), plan, f"{data.name}|sanity", len(data.class_names),
                        model_name)
    robust = float((score.preds[plan.key(plan.columns()[0], eps)] == y).float().mean())
    out = {"eps": eps_label(eps, args.norm), "steps": args.sanity_steps, "num_samples": k, "robust_accuracy": robust}
    if defense is not None:
        out["threat_model"] = "adaptive"
    return out


def threat_comparison(robust: dict, plan: AttackPlan) -> dict[str, dict]:
    """Per attack and budget (and per worst case), the adaptive and the non-adaptive robust accuracy."""
    if plan.defense is None or not {"adaptive", "non_adaptive"} <= set(plan.threats):
        return {}
    names = list(plan.attacks) + (["worst"] if len(plan.attacks) > 1 and plan.worst_case else [])
    out = {}
    for name in names:
        for e in plan.eps:
            a = robust.get(result_key(name, e, plan.norm, "adaptive"))
            n = robust.get(result_key(name, e, plan.norm, "non_adaptive"))
            if a is not None and n is not None:
                out[result_key(name, e, plan.norm)] = {"adaptive": a, "non_adaptive": n}
    return out


def sanity_record(result: dict, plan: AttackPlan, raised: dict[str, tuple[int, int]], large: dict | None,
                  args: EvalArguments) -> dict:
    """The checks a reviewer asks for, with a warning for each that fails. With a defense: the
    adaptive attack must not be weaker than the non-adaptive one (a warning when it is); a
    non-adaptive number above the adaptive one is flagged as an upper bound; the defended
    classifier's clean accuracy stands beside the model's own."""
    warnings, flags = [], []
    clean, robust = result["clean_accuracy"], result["robust"]
    above = [k for k, v in robust.items() if v > clean + 1e-12]
    if above:
        warnings.append(f"robust accuracy above clean for {', '.join(above)}")
    not_monotone = []
    for name, keys in plan.series().items():
        values = [robust[k] for k in keys]
        if any(b > a + 1e-12 for a, b in zip(values, values[1:])):
            not_monotone.append(name)
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
    record = {}
    if plan.defense is not None:
        comparison = threat_comparison(robust, plan)
        weaker = [f"{k} (adaptive {100 * v['adaptive']:.1f}% > non-adaptive {100 * v['non_adaptive']:.1f}%)"
                  for k, v in comparison.items() if v["adaptive"] > v["non_adaptive"] + 1e-12]
        if weaker:
            warnings.append(f"the adaptive attack is weaker than the non-adaptive one for {', '.join(weaker)} (a broken "
                            "or too weak adaptive attack: raise eot_draws or the steps, or try another adaptive_gradient)")
        upper = {k: v for k, v in comparison.items() if v["non_adaptive"] > v["adaptive"] + 1e-12}
        for k, v in upper.items():
            flags.append(f"non-adaptive {k} ({100 * v['non_adaptive']:.1f}%) overstates robustness: the adaptive "
                         f"attack leaves {100 * v['adaptive']:.1f}%; the non-adaptive number is an upper bound only")
        record = {
            "defense": plan.defense.name,
            "threat_models": list(plan.threats),
            "clean_accuracy": {"defended": clean, "undefended": result.get("clean_accuracy_undefended")},
            "adaptive_vs_non_adaptive": comparison,
            "adaptive_not_weaker": not weaker,
            "non_adaptive_overstates": sorted(upper),
        }
    return {
        "passed": not warnings,
        "warnings": warnings,
        "flags": flags,
        "robust_le_clean": not above,
        "monotone_in_eps": not not_monotone,
        "attack_raised_loss": fractions,
        "large_eps": large,
        **record,
    }


def evaluate_dataset(model, data: EvalDataset, text: torch.Tensor, args: EvalArguments, state, device,
                     metric=None, model_name: str = "model", defense: DefensePlan | None = None) -> dict:
    """Clean and robust accuracy of one dataset, sharded over the processes of ``state``; with a
    defense (``DefensePlan.from_args``), the defended classifier's under each threat model."""
    from accelerate.utils import gather_object
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    metric = metric or load_accuracy()
    if defense is None and args.threats:
        defense = DefensePlan.from_args(args, model)
    plan = AttackPlan.from_args(args, defense)
    n, num_classes = len(data), len(data.class_names)
    keys, worst_keys = plan.keys(), plan.worst_keys()
    batches = _shard_batches(n, args.batch_size, state.process_index, state.num_processes)
    # Pinned host memory on a GPU: the next batch's copy overlaps the attack on this one.
    loader = DataLoader(data.dataset, batch_sampler=batches, collate_fn=collate, num_workers=args.num_workers,
                        pin_memory=device.type == "cuda")
    text = text.to(device)
    records, raised, shift = [], {k: (0, 0) for k in keys}, {k: (0.0, 0) for k in keys}
    term_broke: dict[str, tuple[int, int]] = {}
    start = time.time()
    desc = data.name if state.num_processes == 1 else f"{data.name} (process 0 of {state.num_processes})"
    bar = tqdm(total=sum(len(b) for b in batches), desc=desc, disable=not state.is_local_main_process,
               dynamic_ncols=True)
    for index, batch in zip(batches, loader):
        x, y = batch["pixel_values"].to(device, non_blocking=True), batch["labels"].to(device, non_blocking=True)
        score = score_batch(model, text, x, y, index, plan, data.name, num_classes, model_name)
        for k, (r, a) in score.raised.items():
            raised[k] = (raised[k][0] + r, raised[k][1] + a)
        for k, (d, a) in score.shift.items():
            shift[k] = (shift[k][0] + d, shift[k][1] + a)
        for k, (b, a) in score.term_broke.items():
            term_broke[k] = (term_broke.get(k, (0, 0))[0] + b, term_broke.get(k, (0, 0))[1] + a)
        y_list, clean_list = y.tolist(), score.clean.tolist()
        base_list = score.undefended.tolist() if score.undefended is not None else clean_list
        pred_lists = {k: v.tolist() for k, v in score.preds.items()}
        for j, i in enumerate(index):
            records.append((i, y_list[j], clean_list[j], {k: v[j] for k, v in pred_lists.items()}, base_list[j]))
        bar.update(len(index))
    bar.close()
    if state.num_processes > 1:
        records = gather_object(records)
        counts = gather_object([raised])
        raised = {k: (sum(c[k][0] for c in counts), sum(c[k][1] for c in counts)) for k in keys}
        sums = gather_object([shift])
        shift = {k: (sum(c[k][0] for c in sums), sum(c[k][1] for c in sums)) for k in keys}
        broken = gather_object([term_broke])
        term_broke = {k: (sum(c.get(k, (0, 0))[0] for c in broken), sum(c.get(k, (0, 0))[1] for c in broken))
                      for k in sorted({k for c in broken for k in c})}
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
    if defense is not None:
        result["clean_accuracy_undefended"] = metric.compute(predictions=[r[4] for r in records],
                                                             references=references)["accuracy"]
        result["defense"] = defense.name
        result["threat_models"] = list(defense.threats)
        if term_broke:  # the second adaptive pass: how many the logits-only attack left that the term then broke
            result["adaptive_term_broke"] = {k: {"broke": b, "attacked": a} for k, (b, a) in term_broke.items()}
    if plan.attention_shift:
        shifts = {k: d / a for k, (d, a) in shift.items() if a > 0}
        if not all(math.isfinite(v) for v in shifts.values()):
            raise NonFiniteError(f"{data.name}: the attention shift is not finite for the model {model_name!r}.")
        result["attention_shift"] = shifts
    if "autoattack" in plan.attacks:
        from ..attacks import autoattack_plan

        s = plan.settings["autoattack"]
        attacks, targets = autoattack_plan(num_classes, s.version, s.attacks, s.n_target_classes)
        result["autoattack"] = {"attacks": attacks, "n_target_classes": targets}
    large = large_eps_check(model, data, text, args, device, model_name, defense)
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


def defense_record(args: EvalArguments, defense: DefensePlan | None) -> dict:
    """The defense of a run as results.json records it (``none`` without one)."""
    if defense is None:
        return {"name": "none", "threat_models": [], "description": get_defense("none").description}
    spec = get_defense(defense.name)
    record = {
        "name": defense.name, "description": spec.description, "paper": spec.paper or None,
        "settings": dataclasses.asdict(defense.settings), "threat_models": list(defense.threats),
        "random": spec.random, "adaptive_gradient": defense.gradient,
        "eot_draws": defense.eot_draws if spec.random else 1,
        "score_draws": defense.score_draws if spec.random else 1,
        "scoring": "correct only if correct under every draw" if spec.random else "deterministic",
    }
    if defense.gradient == "smooth":
        record["adaptive_temperature"] = defense.temperature
    if spec.adaptive_term and "adaptive" in defense.threats and defense.term_weight > 0:
        record["adaptive_term"] = {"weight": defense.term_weight, "what": spec.adaptive_term,
                                   "objectives": "ce, margin (PGD, CW); AutoAttack keeps its own losses",
                                   "pass": "a second adaptive pass with the term, on the samples the logits-only "
                                           "pass left standing: each adaptive column is the per-sample worst of both"}
    record.update(defense.identity())
    return record


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
    defense = DefensePlan.from_args(args, model)  # its resources (TTC's tau model) loaded once
    results: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "model": args.model_name_or_path,
        "model_fingerprint": fingerprint,
        "harness_version": HARNESS_VERSION,
        "definition": DEFENDED_DEFINITION if defense is not None else ROBUST_DEFINITION,
        "defense": defense_record(args, defense),
        "threat_models": list(defense.threats) if defense is not None else [],
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
                          normalization_of(model), image_size, device.type,
                          defense.identity() if defense is not None else None)
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
        result = evaluate_dataset(model, data, text, args, state, device, metric, model_name, defense=defense)
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
