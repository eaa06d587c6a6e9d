"""Every knob of the evaluation harness, and the recipe parser that adds each attack's and each
defense's flags.

Attack settings live with their attack (``tgazsr.attacks``): the parser turns each registered
attack's settings dataclass into flat flags ``--<attack>_<field>`` (``--pgd_steps 100``,
``--autoattack_version fare``), and the harness reads them from ``attack_options``
(``{"pgd": {"steps": 100}}``), which is also how code passes them. Test-time defenses
(``tgazsr.defenses``) get theirs the same way: ``--<defense>_<field>`` (``--ttc_steps 2``) and
``defense_options`` (``{"ttc": {"steps": 2}}``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
import typing
from typing import Sequence

from ..attacks import ATTACKS, get_attack, make_settings
from ..attacks.base import NORMS
from ..data.benchmark import PROTOCOLS
from ..defenses import DEFENSES, GRADIENTS, THREAT_MODELS, get_defense, make_defense_settings
from ..data.order import SAMPLE_ORDERS
from ..data.registry import DEFAULT_TEMPLATE
from ..errors import budget_unit_problem
from ..limits import Limits, declare_limits, limits_of, problems as limit_problems, with_limits_in_help
from ..recipes import raise_problems, refused_settings

LOCAL_METADATA_FILE = "tgazsr_eval.json"  # class names and prompts shipped beside a local dataset
#: Default budget of the large-eps sanity check: units of 1/255 for L-inf, absolute for L2.
SANITY_EPS = {"linf": 64.0, "l2": 20.0}


@dataclass
class EvalArguments:
    """Budgets are in units of 1/255 for L-inf (absolute radii for L2)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A model directory (config.json + safetensors, e.g. one tgazsr.train wrote) or a Hub id. Required."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Where to load the tokenizer from, when the model directory has none (default: the model)."},
    )
    pixel_normalization: str = field(
        default="auto",
        metadata={
            "help": "Mean/std applied inside the model after the attack: 'auto' (the checkpoint's image processor "
            "mean/std, where tgazsr.train saves the training normalization; the model family's constants if it has "
            "none), 'clip', 'siglip' or 'imagenet'. Another family's constants (clip for a SigLIP) are refused."
        },
    )
    datasets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Datasets to evaluate: registry names (cifar10, imagenet, ...), collections (tga16, fare, world), "
            "NAME=PATH to read a registry dataset from a local copy, local paths (image folder, save_to_disk, "
            "parquet, webdataset tar), or Hub ids ORG/NAME (with split, class_names and prompt_template)."
        },
    )
    protocol: str = field(
        default="tga",
        metadata={
            "help": "Class names and prompts of registry datasets: 'tga' (the TGA-ZSR table's) or 'fare' "
            "(CLIP_benchmark's names and prompt ensembles)."
        },
    )
    fix_prompt_typos: bool = field(
        default=False,
        metadata={
            "help": "Use the corrected prompts where the reference's have typos (PCAM's 'Tthis is a photo of ...'). "
            "Default: the reference's strings, as the published table used them."
        },
    )
    check_data: bool = field(
        default=False,
        metadata={
            "help": "Check the datasets instead of evaluating: for each registry entry, read metadata and a few rows "
            "(Hub or DATA_DIR/<name>), verify class names, order, counts and split sizes, print a table "
            "(docs/datasets.md). Needs no model."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "A folder of local copies: DATA_DIR/<registry name> is used instead of the Hub when it exists."},
    )
    split: str | None = field(
        default=None,
        metadata={
            "help": "Split of local and Hub-id datasets. Empty: 'test', or the dataset's only split when it has one. "
            "A named split the dataset lacks is an error."
        },
    )
    prompt_template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt of local datasets, '{}' for the class name (default: the dataset's "
            f"{LOCAL_METADATA_FILE} if any, else '{DEFAULT_TEMPLATE}')."
        },
    )
    class_names: str | None = field(
        default=None,
        metadata={"help": "Class names of local datasets: comma-separated or a file, one per line (default: ClassLabel)."},
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column of local datasets (guessed if unset)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column of local datasets (guessed if unset)."})
    resize_mode: str = field(
        default="shorter_side_crop",
        metadata={"help": "Resize of local datasets: 'shorter_side_crop' or 'square' (registry datasets use their own)."},
    )
    skip_unreadable_images: bool = field(
        default=False,
        metadata={"help": "Skip the images that cannot be decoded (truncated, corrupt, not an image) instead of stopping at the first one with an error naming it. Every image is decoded once first to find them (a full pass over the data); the count is logged as a warning and recorded in the report and the model card."},
    )
    max_samples: int | None = field(
        default=None,
        metadata={"help": "Evaluate the first N test samples of each dataset (N >= 1; leave it unset for all)."},
    )
    sample_order: str = field(
        default="stored",
        metadata={
            "help": "Which max_samples samples are scored: 'stored' (the first N in the data's order) or "
            "'clip_benchmark' (the first N that CLIP_benchmark's loader yields with --n_samples, as the FARE report "
            "ran it: webdataset shards through a 10,000-sample shuffle buffer seeded with --seed, 4 loader workers, "
            "batches of 50)."
        },
    )
    attacks: list[str] = field(
        default_factory=lambda: ["pgd"],
        metadata={"help": f"Attacks to run, among the registered ones ({', '.join(ATTACKS)})."},
    )
    attack_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "Settings of the attacks as JSON, e.g. '{\"pgd\": {\"steps\": 10}}'; the flags --<attack>_<field> "
            "(--pgd_steps 10) set the same."
        },
    )
    defense: str = field(
        default="none",
        metadata={"help": f"Test-time defense around the model, among the registered ones ({', '.join(DEFENSES)}): "
                  "every prediction, clean and attacked, is the defended classifier's (docs/evaluation.md)."},
    )
    defense_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "Settings of the defense as JSON, e.g. '{\"ttc\": {\"steps\": 2}}'; the flags --<defense>_<field> "
            "(--ttc_steps 2) set the same."
        },
    )
    threat_models: list[str] | None = field(
        default=None,
        metadata={
            "help": "With a defense: 'non_adaptive' (adversarial images made on the undefended model, then the "
            "defense runs: TTC's protocol) and/or 'adaptive' (the attack sees the whole defended classifier). "
            "Default: both when --defense is set; a sample is robust only if it survives every attack under every "
            "threat model run."
        },
    )
    adaptive_gradient: str = field(
        default="bpda",
        metadata={
            "help": "How the adaptive attack's gradients pass through the defense: 'bpda' (non-differentiable or "
            "detached steps passed straight through: the identity on the backward pass), 'exact' (plain autograd, "
            "zero through piecewise constant steps) or 'smooth' (smooth surrogates on the backward pass, through "
            "the unrolled steps; TTC only)."
        },
    )
    adaptive_temperature: float = field(
        default=0.1, metadata={"help": "Temperature of the 'smooth' surrogates (tanh and sigmoid), relative to the "
                               "scale of what they smooth."},
    )
    adaptive_term_weight: float = field(
        default=1.0,
        metadata={"help": "Adaptive attack: weight of the defense's own loss term, added to the ce and margin "
                  "objectives (PGD, CW) on the defended classifier in a second pass on the samples the logits-only "
                  "pass left standing (TTC: raise the attacked image's tau above tau_thres, so that TTC falls back "
                  "to its random noise; METHOD.md's 'attack the switch'). 0: one pass, the logits alone. A defense "
                  "without such a term ignores it."},
    )
    eot_draws: int = field(
        default=4,
        metadata={"help": "Adaptive attack on a randomized defense: gradients averaged per attack step over this many "
                  "draws of the defense's randomness (EOT; AutoAttack's APGD as its eot_iter)."},
    )
    defense_score_draws: int = field(
        default=1,
        metadata={"help": "A randomized defense scores each image (clean and adversarial) under this many draws; it "
                  "counts as correct only if every draw classifies it correctly."},
    )
    attention_shift: bool = field(
        default=False,
        metadata={"help": "Report per dataset and robust column the mean L2 distance between the model's "
                  "text-guided attention map for the true class on the clean and on the adversarial image, over the "
                  "samples that column attacked."},
    )
    eps: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "Attack budgets, one or several, in units of 1/255 (L-inf); absolute L2 radii for norm l2."},
    )
    norm: str = field(default="linf", metadata={"help": "Threat model: 'linf' or 'l2' (CW is L-inf only)."})
    allow_extreme_budget: bool = field(
        default=False,
        metadata={
            "help": "Accept L-inf budgets that look like a mistake: an eps, sanity_eps or attack step size in "
            "(0, 0.5) (a fraction of 1 where units of 1/255 are meant: write 1 for 1/255) or above 255 (beyond "
            "the pixel range). Without it they are errors."
        },
    )
    monotone_eps: bool = field(
        default=True,
        metadata={
            "help": "Count a sample robust at eps only if it is robust at every smaller eps evaluated "
            "(an adversarial image of a smaller ball lies in the larger one)."
        },
    )
    worst_case: bool = field(
        default=True,
        metadata={"help": "With several attacks, add worst@eps: robust to every attack at that eps."},
    )
    sanity_samples: int = field(
        default=32,
        metadata={
            "help": "Sanity check: PGD at a large eps (sanity_eps) on the first N samples of each dataset must leave "
            "robust accuracy near zero, or a warning says the evaluation may be fooled (0: skip this check)."
        },
    )
    sanity_eps: float | None = field(
        default=None,
        metadata={"help": "Budget of the large-eps sanity check (default: 64/255 for L-inf, 20 for L2)."},
    )
    sanity_steps: int = field(default=20, metadata={"help": "PGD steps of the large-eps sanity check (step eps/4)."})
    sanity_max_robust: float = field(
        default=0.1, metadata={"help": "Largest robust accuracy (fraction) the large-eps check accepts."}
    )
    batch_size: int = field(default=64, metadata={"help": "Images per batch and process."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes for decoding images."})
    device: str | None = field(default=None, metadata={"help": "Device (default: the process's accelerator, else CPU)."})
    tf32: bool = field(
        default=False,
        metadata={"help": "Allow TF32 matmuls on NVIDIA GPUs: several times faster than fp32, last bits differ."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random starts (per sample) and of AutoAttack."})
    output_dir: str = field(default="eval_results", metadata={"help": "Where results.json, results.md and the plot go."})
    overwrite: bool = field(default=False, metadata={"help": "Recompute datasets even if finished results exist."})
    plot: bool = field(default=True, metadata={"help": "Write the robust-versus-clean plot tradeoff.png."})

    def __post_init__(self):
        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        if isinstance(self.attacks, str):
            self.attacks = [self.attacks]
        if isinstance(self.eps, (int, float)):
            self.eps = [float(self.eps)]
        if isinstance(self.threat_models, str):
            self.threat_models = [self.threat_models]
        raise_problems(limit_problems(self))  # declared limits (tgazsr.limits) before the checks below
        self.attacks = list(dict.fromkeys(self.attacks))
        for name in self.attacks:
            get_attack(name)  # an unknown attack is an error naming the registered ones
        if isinstance(self.attack_options, str):
            try:
                self.attack_options = json.loads(self.attack_options) if self.attack_options.strip() else None
            except ValueError as err:
                raise ValueError(f"attack_options must be JSON, e.g. '{{\"pgd\": {{\"steps\": 10}}}}': {err}") from None
        self.attack_options = {k: dict(v) for k, v in (self.attack_options or {}).items()}
        for name, options in self.attack_options.items():
            make_settings(name, options)  # unknown attacks or settings are errors now
        get_defense(self.defense)  # an unknown defense is an error naming the closest registered ones
        if isinstance(self.defense_options, str):
            try:
                self.defense_options = json.loads(self.defense_options) if self.defense_options.strip() else None
            except ValueError as err:
                raise ValueError(f"defense_options must be JSON, e.g. '{{\"ttc\": {{\"steps\": 2}}}}': {err}") from None
        self.defense_options = {k: dict(v) for k, v in (self.defense_options or {}).items()}
        for name, options in self.defense_options.items():
            make_defense_settings(name, options)  # unknown defenses or settings are errors now
        if self.threat_models is not None:
            self.threat_models = list(dict.fromkeys(self.threat_models))
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}.")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        for name in self.attacks:
            if self.norm not in get_attack(name).norms:
                raise ValueError(f"The {name} attack supports norms {get_attack(name).norms}; run it with one of them.")
        if any(e < 0 for e in self.eps):
            raise ValueError(f"Budgets must be >= 0, got {self.eps}.")
        raise_problems(self.problems())

    def problems(self) -> list[str]:
        """What is wrong with these settings: budgets in the wrong unit, counts that evaluate nothing,
        attacks that would not attack (each message names the field, its value and the fix)."""
        problems = []
        override = "--allow_extreme_budget true"
        linf = self.norm == "linf"
        if linf and not self.allow_extreme_budget:
            for e in self.eps:
                problem = budget_unit_problem("eps", float(e), override=override)
                if problem:
                    problems.append(problem)
            if self.sanity_eps is not None:
                problem = budget_unit_problem("sanity_eps", float(self.sanity_eps), override=override)
                if problem:
                    problems.append(problem)
        if self.max_samples is not None and self.max_samples < 1:
            problems.append(
                f"max_samples = {self.max_samples} would evaluate no sample. Leave --max_samples unset to evaluate "
                "every sample, or set N >= 1 for the first N."
            )
        if self.sample_order not in SAMPLE_ORDERS:
            problems.append(
                f"sample_order = {self.sample_order!r}: choose one of {', '.join(SAMPLE_ORDERS)} ('stored': the first "
                "N samples; 'clip_benchmark': the N samples CLIP_benchmark scored, as in the FARE report)."
            )
        if self.pixel_normalization not in ("auto", "clip", "siglip", "imagenet"):
            problems.append(
                f"pixel_normalization = {self.pixel_normalization!r}: choose 'auto' (the checkpoint's image "
                "processor), 'clip', 'siglip' or 'imagenet'."
            )
        if self.batch_size <= 0:
            problems.append(f"batch_size = {self.batch_size}: set --batch_size to a positive number of images (64).")
        if self.sanity_samples < 0:
            problems.append(
                f"sanity_samples = {self.sanity_samples} is negative. Set --sanity_samples N >= 1 for the large-eps "
                "check on N samples, or 0 to skip it."
            )
        elif self.sanity_samples > 0 and self.sanity_steps < 1:
            problems.append(
                f"sanity_steps = {self.sanity_steps}: the large-eps check would not attack. Set --sanity_steps 1 or "
                "more (20), or --sanity_samples 0 to skip the check."
            )
        for name in self.attacks:  # the resolved settings of each attack that runs
            settings = self.attack_settings(name)
            for key in ("steps", "n_iter", "restarts"):
                value = getattr(settings, key, None)
                if isinstance(value, int) and value < 1:
                    problems.append(
                        f"{name}_{key} = {value}: the {name} attack would not attack, and robust accuracy would be "
                        f"clean accuracy. Set --{name}_{key} 1 or more (default {getattr(type(settings)(), key)}), "
                        f"or leave {name} out of --attacks."
                    )
            step = getattr(settings, "step_size", None)
            if linf and isinstance(step, (int, float)) and not self.allow_extreme_budget:
                problem = budget_unit_problem(f"{name}_step_size", float(step), override=override)
                if problem:
                    problems.append(problem)
        others = [name for name, options in self.defense_options.items() if options and name != self.defense]
        if others:
            problems.append(
                f"Settings are given for the {', '.join(others)} defense, but --defense is {self.defense!r}: pass "
                f"--defense {others[0]}, or drop its settings."
            )
        if self.threat_models is not None and not self.threat_models:
            problems.append("threat_models is empty: name non_adaptive and/or adaptive, or leave it unset.")
        spec = get_defense(self.defense)
        defense_settings = self.defense_settings()
        for key in ("eps", "step_size"):
            value = getattr(defense_settings, key, None)
            if linf and isinstance(value, (int, float)) and not self.allow_extreme_budget:
                problem = budget_unit_problem(f"{self.defense}_{key}", float(value), override=override)
                if problem:
                    problems.append(problem)
        if self.adaptive_gradient not in spec.gradients:
            problems.append(
                f"adaptive_gradient = {self.adaptive_gradient!r}: the {self.defense} defense has no such gradient; "
                f"choose one of {', '.join(spec.gradients)}."
            )
        return problems

    @property
    def threats(self) -> list[str]:
        """The threat models run: none without a defense; both by default with one."""
        if self.threat_models:
            return list(self.threat_models)
        return list(THREAT_MODELS) if self.defense != "none" else []

    def defense_settings(self):
        """The settings dataclass of the defense: its defaults, then ``defense_options[defense]``."""
        return make_defense_settings(self.defense, self.defense_options.get(self.defense))

    def attack_settings(self, name: str):
        """The settings dataclass of attack ``name``: its defaults, then ``attack_options[name]``."""
        return make_settings(name, self.attack_options.get(name))

    @property
    def large_eps(self) -> float:
        return self.sanity_eps if self.sanity_eps is not None else SANITY_EPS[self.norm]


def _settings_owners():
    """(kind, name, spec) of every registered attack and defense: each gets ``--<name>_<field>`` flags."""
    return [("attack", n, s) for n, s in ATTACKS.items()] + [("defense", n, s) for n, s in DEFENSES.items()]


def attack_flag_arguments() -> type:
    """A dataclass of flat flags ``<name>_<field>`` for every registered attack and defense (default:
    unset), each with the limits its settings field declares."""
    fields, owner = [], {}
    for kind, name, spec in _settings_owners():
        hints = typing.get_type_hints(spec.settings)
        for f in dataclasses.fields(spec.settings):
            flag = f"{name}_{f.name}"
            if flag in owner:
                raise ValueError(f"The flag --{flag} belongs to two settings ({owner[flag]} and {kind} {name}).")
            owner[flag] = f"{kind} {name}"
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            ftype = hints[f.name]
            text = f.metadata.get("help") or spec.description
            help_text = f"{name}: {f.name} (default {default!r}). {text}"
            metadata = {"help": help_text}
            if limits_of(f) is not None:
                metadata["limits"] = limits_of(f)
            fields.append((flag, ftype | None if type(None) not in typing.get_args(ftype) else ftype,
                           field(default=None, metadata=metadata)))
    return with_limits_in_help(dataclasses.make_dataclass("AttackFlags", fields))


def parse_eval_args(argv: Sequence[str] | None = None) -> EvalArguments:
    """``[recipe.yaml] [--field value ...]`` -> EvalArguments, the attack flags merged into attack_options."""
    from ..recipes import parse_recipe

    flags_type = attack_flag_arguments()
    args, flags = parse_recipe((EvalArguments, flags_type), argv)
    options = {"attack": {k: dict(v) for k, v in (args.attack_options or {}).items()},
               "defense": {k: dict(v) for k, v in (args.defense_options or {}).items()}}
    for kind, name, spec in _settings_owners():
        for f in dataclasses.fields(spec.settings):
            value = getattr(flags, f"{name}_{f.name}")
            if value is not None:
                options[kind].setdefault(name, {})[f.name] = value
    args.attack_options, args.defense_options = options["attack"], options["defense"]
    with refused_settings([f.name for f in dataclasses.fields(args)] + [f.name for f in dataclasses.fields(flags)]):
        args.__post_init__()  # again, with the attack flags merged in
    return args


# --- declared limits (tgazsr.limits): checked when the arguments are parsed, shown by --help ------

declare_limits(
    EvalArguments,
    prompt_template=Limits(placeholders=1, hint="Write it with one '{}', e.g. --prompt_template 'This is a photo of a {}'."),
    skip_unreadable_images=Limits(),
    resize_mode=Limits(choices=("shorter_side_crop", "square")), max_samples=Limits(ge=1, hint="Leave --max_samples unset to evaluate every sample, or set N >= 1."),
    sample_order=Limits(choices=tuple(SAMPLE_ORDERS)), eps=Limits(ge=0), norm=Limits(choices=NORMS),
    sanity_samples=Limits(ge=0, hint="Set N >= 1 samples for the sanity checks, or 0 to skip them."), sanity_eps=Limits(gt=0), sanity_steps=Limits(ge=1),
    sanity_max_robust=Limits(ge=0, le=1), batch_size=Limits(ge=1), num_workers=Limits(ge=0), seed=Limits(ge=0),
    threat_models=Limits(choices=THREAT_MODELS), adaptive_gradient=Limits(choices=GRADIENTS),
    adaptive_temperature=Limits(gt=0), adaptive_term_weight=Limits(ge=0), eot_draws=Limits(ge=1), defense_score_draws=Limits(ge=1),
    attention_shift=Limits(),
)
with_limits_in_help(EvalArguments)
