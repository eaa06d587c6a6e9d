"""The evaluation harness: clean and robust zero-shot accuracy of any CLIP checkpoint.

    python -m tgazsr.evaluate recipes/eval_tga16.yaml --model_name_or_path openai/clip-vit-base-patch32
    python -m tgazsr.evaluate recipes/eval_fare.yaml --model_name_or_path outputs/clip-vit-b32-fare
    accelerate launch -m tgazsr.evaluate recipes/eval_tga16.yaml --model_name_or_path outputs/clip-tga-zsr
    python -m tgazsr.evaluate --model_name_or_path M --datasets cifar10=/data/cifar10 ./my_folder \
        --attacks pgd cw autoattack --eps 1 2 4 --max_samples 1000

What it does, per dataset (a registry name, ``name=LOCAL_COPY`` or a local dataset path):

1. Class embeddings ``T`` once per dataset, cached on the model instance (never shared with
   another model).
2. Clean predictions; then every attack at every budget, in pixel space [0, 1] with CLIP's
   normalization inside the model. Only samples still standing are attacked: a sample counts
   as robust only if it is classified correctly clean *and* after the attack, and (by default)
   at every smaller budget too, since an adversarial image found inside a small ball lies in
   every larger one. ``worst@eps`` counts a sample robust only if it survives every attack.
3. Random starts are drawn per sample from ``(seed, dataset, attack, eps, index)``: the numbers
   do not depend on the batch it lands in, on the number of processes or on the device.
4. Accuracies through ``evaluate`` with the metric module shipped in ``tgazsr/metrics``.

Outputs in ``output_dir``: ``results.json`` (fractions in [0, 1]), ``results.md`` (the TGA-style
table in percent), ``tradeoff.png`` (robust versus clean; compare runs with ``tgazsr.plot``) and
``finished/``, one file per finished dataset keyed by a fingerprint of the model weights, the
data and every setting: a run started again skips exactly those, and never reuses results of
another model or other settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoImageProcessor

from .attacks import autoattack, autoattack_plan, cw, sample_generators
from .data import collate, prepare_classification_data, registry
from .data.loading import IMAGE_COLUMN_GUESSES, LABEL_COLUMN_GUESSES, find_column, load_image_dataset, with_pixels
from .metrics import load_accuracy
from .modeling import PIXEL_NORMALIZATIONS, ZeroShotCLIP, load_clip
from .recipes import parse_recipe
from .zeroshot import PGDSettings, pgd_ce_attack

logger = logging.getLogger("tgazsr.evaluate")

#: Bump when a change alters the numbers the harness produces (invalidates finished/ files).
HARNESS_VERSION = "1"
ATTACKS = ("pgd", "cw", "autoattack")
PROTOCOLS = ("tga", "fare")
DEFAULT_TEMPLATE = "This is a photo of a {}"
LOCAL_METADATA_FILE = "tgazsr_eval.json"  # class names and prompts shipped beside a local dataset


@dataclass
class EvalArguments:
    """Every knob of the harness. Budgets and step sizes are in units of 1/255 for L-inf."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A CLIPModel directory (config.json + safetensors) or a Hub id. Required."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Where to load the tokenizer from, when the model directory has none (default: the model)."},
    )
    pixel_normalization: str = field(
        default="auto",
        metadata={
            "help": "Mean/std applied inside the model after the attack: 'auto' (the checkpoint's image processor "
            "mean/std, where tgazsr.train saves the training normalization; CLIP's if it has none), 'clip' or "
            "'imagenet'."
        },
    )
    datasets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Datasets to evaluate: registry names (cifar10, imagenet, ...), NAME=PATH to read a "
            "registry dataset from a local copy, or local paths (image folder, save_to_disk, parquet, "
            "webdataset tar)."
        },
    )
    protocol: str = field(
        default="tga",
        metadata={
            "help": "Class names and prompts of registry datasets: 'tga' (the TGA-ZSR table's) or 'fare' "
            "(CLIP_benchmark's names and prompt ensembles)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "A folder of local copies: DATA_DIR/<registry name> is used instead of the Hub when it exists."},
    )
    split: str | None = field(
        default=None,
        metadata={"help": "Split of local datasets (default 'test'; a dataset with one split uses it)."},
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
    max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate the first N test samples of each dataset (default: all)."}
    )
    attacks: list[str] = field(
        default_factory=lambda: ["pgd"], metadata={"help": f"Attacks to run, among {ATTACKS}."}
    )
    eps: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "Attack budgets, one or several, in units of 1/255 (L-inf); absolute L2 radii for norm l2."},
    )
    norm: str = field(default="linf", metadata={"help": "Threat model of PGD and AutoAttack: 'linf' or 'l2' (CW is L-inf)."})
    pgd_steps: int = field(default=100, metadata={"help": "PGD: number of steps."})
    pgd_step_size: float = field(default=1.0, metadata={"help": "PGD: step size (1/255 units for L-inf)."})
    pgd_restarts: int = field(default=1, metadata={"help": "PGD: random restarts; a sample falls if any restart fools it."})
    pgd_random_start: bool = field(default=True, metadata={"help": "PGD and CW: uniform random start in the eps-ball."})
    cw_steps: int = field(default=100, metadata={"help": "CW: number of sign steps on the margin loss."})
    cw_step_size: float = field(default=1.0, metadata={"help": "CW: step size in units of 1/255."})
    cw_kappa: float = field(default=50.0, metadata={"help": "CW: margin cap kappa."})
    autoattack_version: str = field(
        default="tga",
        metadata={
            "help": "AutoAttack variant: 'tga' (APGD-CE + APGD-DLR), 'fare' (APGD-CE + APGD-T), 'standard' "
            "(APGD-CE, APGD-T, FAB-T, Square), 'plus', or 'custom' (autoattack_attacks)."
        },
    )
    autoattack_attacks: list[str] | None = field(
        default=None, metadata={"help": "AutoAttack 'custom': the attacks (apgd-ce apgd-dlr apgd-t fab fab-t square)."}
    )
    autoattack_n_iter: int = field(default=100, metadata={"help": "AutoAttack: iterations of APGD and FAB."})
    autoattack_restarts: int = field(default=1, metadata={"help": "AutoAttack: restarts of APGD-CE/DLR and FAB."})
    autoattack_n_target_classes: int = field(
        default=9, metadata={"help": "AutoAttack: target classes of APGD-T and FAB-T (lowered to C-1 on small label sets)."}
    )
    autoattack_square_queries: int = field(default=5000, metadata={"help": "AutoAttack: queries of the Square attack."})
    monotone_eps: bool = field(
        default=True,
        metadata={
            "help": "Count a sample robust at eps only if it is robust at every smaller eps evaluated "
            "(an adversarial image of a smaller ball lies in the larger one)."
        },
    )
    worst_case: bool = field(
        default=True, metadata={"help": "With several attacks, add worst@eps: robust to every attack at that eps."}
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
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad:
            raise ValueError(f"Unknown attacks {bad}; choose among {ATTACKS}.")
        self.attacks = list(dict.fromkeys(self.attacks))
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}.")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}.")
        if self.norm == "l2" and "cw" in self.attacks:
            raise ValueError("The CW attack takes L-inf sign steps; run it with norm linf.")
        if any(e < 0 for e in self.eps):
            raise ValueError(f"Budgets must be >= 0, got {self.eps}.")
        if self.max_samples is not None and self.max_samples <= 0:
            self.max_samples = None
        if self.batch_size <= 0:
            raise ValueError("batch_size must be positive.")
        if "autoattack" in self.attacks:

            autoattack_plan(10, self.autoattack_version, self.autoattack_attacks)  # validates the names


# ---------------------------------------------------------------------------------------
# Settings, keys and fingerprints
# ---------------------------------------------------------------------------------------


def eps_label(eps: float, norm: str = "linf") -> str:
    """1.0 -> '1/255' (L-inf, units of 1/255); 0.5 -> 'l2=0.5'."""
    text = f"{eps:g}"
    return f"{text}/255" if norm == "linf" else f"l2={text}"


def result_key(attack: str, eps: float, norm: str = "linf") -> str:
    """The column name of one attack at one budget, e.g. 'pgd@1/255' (as hub.py reports it)."""
    return f"{attack}@{eps_label(eps, norm)}"


def attack_settings(args: EvalArguments) -> dict:
    """Every setting that changes the numbers (and only those)."""
    out: dict[str, Any] = {
        "attacks": list(args.attacks),
        "eps": sorted(set(float(e) for e in args.eps)),
        "norm": args.norm,
        "seed": args.seed,
        "monotone_eps": args.monotone_eps,
        "max_samples": args.max_samples,
        "tf32": args.tf32,
    }
    if "pgd" in args.attacks:
        out["pgd"] = dict(steps=args.pgd_steps, step_size=args.pgd_step_size, restarts=args.pgd_restarts,
                          random_start=args.pgd_random_start)
    if "cw" in args.attacks:
        out["cw"] = dict(steps=args.cw_steps, step_size=args.cw_step_size, kappa=args.cw_kappa,
                         random_start=args.pgd_random_start)
    if "autoattack" in args.attacks:
        out["autoattack"] = dict(
            version=args.autoattack_version, attacks=args.autoattack_attacks, n_iter=args.autoattack_n_iter,
            restarts=args.autoattack_restarts, n_target_classes=args.autoattack_n_target_classes,
            square_queries=args.autoattack_square_queries,
            # AutoAttack seeds the global RNG per call: its numbers depend on the batches.
            batch_size=args.batch_size,
        )
    return out


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def model_fingerprint(clip: torch.nn.Module) -> str:
    """A hash of every tensor of the state dict (names, dtypes, shapes and bytes)."""
    h = hashlib.blake2b(digest_size=20)
    for name, tensor in sorted(clip.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _prompts_fingerprint(tokenizer, class_names: Sequence[str], templates: Sequence[str]) -> str:
    """Hash of the token ids the text tower will see: catches another tokenizer or other names."""
    if any("{}" not in t for t in templates):
        prompts = list(templates)
    else:
        prompts = [t.format(c) for t in templates for c in class_names]
    ids = tokenizer(prompts, padding=False, truncation=True)["input_ids"]
    return _hash_json([type(tokenizer).__name__, ids])


# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------


class DatasetUnavailable(RuntimeError):
    """A dataset that cannot be loaded; the message names it and says how to use a local copy."""


@dataclass
class EvalDataset:
    """One dataset ready for evaluation."""

    name: str  # key in results.json
    display_name: str
    source: str  # Hub id or local path
    split: str
    dataset: Any  # yields {"pixel_values": (3,H,W) in [0,1], "labels": int}
    class_names: list[str]
    templates: list[str]
    data_fingerprint: str

    def __len__(self) -> int:
        return len(self.dataset)

    def identity(self) -> dict:
        return dict(name=self.name, source=self.source, split=self.split, num_samples=len(self),
                    class_names=self.class_names, templates=self.templates, data=self.data_fingerprint)


def _local_hint(name: str, hub_id: str | None, split: str | None) -> str:
    fetch = (
        f"datasets.load_dataset({hub_id!r}, split={split!r}).save_to_disk('DIR') on a machine that can reach "
        "the Hub (or an image folder / parquet files of the same split)"
        if hub_id else "a save_to_disk folder, an image folder, parquet or webdataset files"
    )
    return (
        f"To evaluate {name!r} from a local copy, make one with {fetch}, then pass "
        f"--datasets {name}=DIR (or put it at DATA_DIR/{name} and pass --data_dir DATA_DIR)."
    )


def _read_local_metadata(path: str) -> dict:
    meta = Path(path) / LOCAL_METADATA_FILE if os.path.isdir(path) else None
    if meta is not None and meta.is_file():
        return json.loads(meta.read_text(encoding="utf-8"))
    return {}


def _fingerprint_of(ds) -> str:
    return str(getattr(ds, "_fingerprint", None) or _hash_json([len(ds), list(ds.column_names)]))


def _prepare_registry(name: str, source: str, args: EvalArguments, image_size: int) -> EvalDataset:
    import datasets as hf_datasets


    spec = registry.get_benchmark(name)
    ds = load_image_dataset(source, spec.split, spec.config_name)
    image_col = find_column(ds, spec.image_column, (spec.image_column, *IMAGE_COLUMN_GUESSES), "image")
    label_col = find_column(ds, spec.label_column, (spec.label_column, *LABEL_COLUMN_GUESSES), "label")
    feature = ds.features[label_col]
    hub_names = list(feature.names) if isinstance(feature, hf_datasets.ClassLabel) else None
    names = registry.class_names(spec, args.protocol, hub_names)
    templates = registry.prompt_templates(spec, args.protocol)
    mapping = registry.label_map(spec, args.protocol, hub_names)
    if mapping is not None:
        ds = ds.filter(lambda y: mapping[int(y)] >= 0, input_columns=[label_col])
    if args.max_samples is not None and args.max_samples < len(ds):
        ds = ds.select(range(args.max_samples))
    fingerprint = _fingerprint_of(ds)
    data = with_pixels(ds, image_col, label_col, len(names), image_size, spec.resize, mapping)
    return EvalDataset(spec.name, spec.display_name, source, spec.split, data, names, templates, fingerprint)


def _prepare_local(name: str, path: str, args: EvalArguments, image_size: int) -> EvalDataset:

    meta = _read_local_metadata(path)
    split = args.split or "test"
    class_names = args.class_names or meta.get("class_names")
    data = prepare_classification_data(
        path, split, image_size, args.image_column or "image", args.label_column or "label", class_names,
        args.resize_mode, None, args.max_samples,
    )
    if args.prompt_template:
        templates = [args.prompt_template]
    else:
        templates = list(meta.get("classifier_templates") or [DEFAULT_TEMPLATE])
    return EvalDataset(name, meta.get("name") or name, path, split, data.dataset, list(data.class_names), templates,
                       _fingerprint_of(data.dataset))


def _lookup_benchmark(entry: str):

    try:
        return registry.get_benchmark(entry)
    except ValueError:
        return None


def resolve_entry(entry: str, args: EvalArguments) -> tuple[str, str, str]:
    """``(kind, name, source)`` of a --datasets entry: kind 'registry' or 'local'."""
    if "=" in entry and not os.path.exists(entry):
        name, path = entry.split("=", 1)
        path = os.path.expanduser(path)
        spec = _lookup_benchmark(name)
        if spec is not None:
            return "registry", spec.name, path
        return "local", name, path
    path = os.path.expanduser(entry)
    if os.path.exists(path):
        return "local", os.path.basename(os.path.normpath(path)), path
    spec = _lookup_benchmark(entry)
    if spec is None:

        try:
            registry.get_benchmark(entry)
        except ValueError as err:
            raise DatasetUnavailable(f"{err} A local dataset path must exist ({entry!r} does not).") from None
    if args.data_dir and os.path.exists(os.path.join(args.data_dir, spec.name)):
        return "registry", spec.name, os.path.join(args.data_dir, spec.name)
    return "registry", spec.name, spec.hub_id


def prepare_dataset(entry: str, args: EvalArguments, image_size: int) -> EvalDataset:
    """Load one --datasets entry, or raise DatasetUnavailable with one clear message."""
    kind, name, source = resolve_entry(entry, args)
    try:
        if kind == "registry":
            return _prepare_registry(name, source, args, image_size)
        return _prepare_local(name, source, args, image_size)
    except Exception as err:  # unreachable Hub, gated repo, missing files, wrong columns or names
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hub_id = None
        split = args.split or "test"
        if kind == "registry":
            spec = _lookup_benchmark(name)
            hub_id, split = spec.hub_id, spec.split
        raise DatasetUnavailable(
            f"Dataset {name!r} could not be loaded from {source!r}: {type(err).__name__}: {first}\n"
            + _local_hint(name, hub_id if kind == "registry" else None, split)
        ) from err


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------


def _check_tokenizer(tokenizer, name_or_path: str) -> None:
    """Refuse a tokenizer without a vocabulary: transformers builds one, silently, from a
    directory that has no tokenizer files, and it maps every word to the unknown token."""
    ids = tokenizer("a photo of a dog", add_special_tokens=False)["input_ids"]
    unknown = {tokenizer.unk_token_id, *getattr(tokenizer, "all_special_ids", [])} - {None}
    if not ids or all(i in unknown for i in ids):
        raise OSError(
            f"The tokenizer loaded from {name_or_path!r} has no real vocabulary ({len(tokenizer)} tokens; "
            "every word becomes the unknown token): the directory holds no tokenizer files.\n"
            "Pass --tokenizer_name_or_path (e.g. the base model the checkpoint was fine-tuned from)."
        )


def load_tokenizer(name_or_path: str):
    from transformers import AutoProcessor, AutoTokenizer

    tokenizer = None
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer = tokenizer if callable(tokenizer) else None
    except Exception:  # noqa: BLE001 - fall back to the tokenizer alone
        tokenizer = None
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as err:
            raise OSError(
                f"Could not load a tokenizer from {name_or_path!r}: {err}\n"
                "Pass --tokenizer_name_or_path (e.g. the base model the checkpoint was fine-tuned from)."
            ) from err
    _check_tokenizer(tokenizer, name_or_path)
    return tokenizer


def resolve_normalization(name: str, model_name_or_path: str):
    """'clip' / 'imagenet', or for 'auto' the (mean, std) of the checkpoint's image processor."""

    if name != "auto":
        if name not in PIXEL_NORMALIZATIONS:
            raise ValueError(f"pixel_normalization must be 'auto' or one of {sorted(PIXEL_NORMALIZATIONS)}, got {name!r}.")
        return name
    try:

        processor = AutoImageProcessor.from_pretrained(model_name_or_path)
        mean, std = list(processor.image_mean), list(processor.image_std)
        if len(mean) == 3 and len(std) == 3:
            return mean, std
    except Exception:  # noqa: BLE001 - no image processor saved: CLIP's constants
        pass
    logger.info("%s has no image processor with a mean and std; using CLIP's normalization.", model_name_or_path)
    return "clip"


def normalization_of(model) -> list[list[float]]:
    """The mean and std a ZeroShotCLIP applies, as plain numbers (for results and keys)."""
    return [[round(float(v), 6) for v in model.pixel_mean.flatten()], [round(float(v), 6) for v in model.pixel_std.flatten()]]


def load_model(args: EvalArguments, device: torch.device):
    """(ZeroShotCLIP in eval mode with no parameter gradients, tokenizer, weights fingerprint)."""

    if not args.model_name_or_path:
        raise ValueError("Pass --model_name_or_path (a CLIPModel directory or a Hub id).")
    clip = load_clip(args.model_name_or_path)
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path)
    model = ZeroShotCLIP(clip, resolve_normalization(args.pixel_normalization, args.model_name_or_path))
    fingerprint = model_fingerprint(model.clip)
    model.requires_grad_(False)
    model.eval()
    return model.to(device), tokenizer, fingerprint


# ---------------------------------------------------------------------------------------
# One dataset
# ---------------------------------------------------------------------------------------


def _shard_batches(n: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """Batches of consecutive indices; process r takes batches r, r+W, ... (same batches for any W)."""
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    return batches[rank::world]


def run_attack(name: str, model, text: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float,
               args: EvalArguments, indices: Sequence[int], salt: str, num_classes: int) -> torch.Tensor:
    """Adversarial images for one attack at one budget (eps in 1/255 units for L-inf)."""

    scale = 1 / 255 if args.norm == "linf" else 1.0
    generators = sample_generators(args.seed, indices, salt)
    if name == "pgd":
        settings = PGDSettings(eps=eps, steps=args.pgd_steps, step_size=args.pgd_step_size, norm=args.norm,
                               restarts=args.pgd_restarts, random_start=args.pgd_random_start)
        return pgd_ce_attack(model, text, x, y, settings, generators)
    if name == "cw":
        return cw(lambda xa: model.classify(xa, text), x, y, eps / 255, args.cw_step_size / 255, args.cw_steps,
                  kappa=args.cw_kappa, random_start=args.pgd_random_start, restarts=args.pgd_restarts,
                  generator=generators)
    if name == "autoattack":
        return autoattack(
            lambda xa: model.classify(xa, text), x, y, eps * scale, norm=args.norm, version=args.autoattack_version,
            attacks=args.autoattack_attacks, n_iter=args.autoattack_n_iter, restarts=args.autoattack_restarts,
            n_target_classes=args.autoattack_n_target_classes, square_queries=args.autoattack_square_queries,
            seed=args.seed, num_classes=num_classes,
        )
    raise ValueError(f"Unknown attack {name!r}.")


def _check_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str, attack: str) -> None:
    """Refuse an attack that leaves the threat model: an evaluation must not be fooled by its own attack."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"{attack} returned images of another shape or non-finite values.")
    if x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise RuntimeError(f"{attack} left the pixel box [0, 1].")
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    limit = eps / 255 if norm == "linf" else eps
    if (size > limit * (1 + 1e-4) + 1e-6).any():
        raise RuntimeError(f"{attack} exceeded its budget: {size.max().item():.6g} > {limit:.6g} ({norm}).")


def evaluate_dataset(model, data: EvalDataset, text: torch.Tensor, args: EvalArguments, state, device,
                     metric) -> dict:
    """Clean and robust accuracy of one dataset, sharded over the processes of ``state``."""
    from accelerate.utils import gather_object
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm


    n, num_classes = len(data), len(data.class_names)
    eps_list = sorted(set(float(e) for e in args.eps))
    several = len(args.attacks) > 1 and args.worst_case
    keys = [result_key(a, e, args.norm) for e in eps_list for a in args.attacks]
    worst_keys = [result_key("worst", e, args.norm) for e in eps_list] if several else []
    batches = _shard_batches(n, args.batch_size, state.process_index, state.num_processes)
    loader = DataLoader(data.dataset, batch_sampler=batches, collate_fn=collate, num_workers=args.num_workers)
    text = text.to(device)
    records = []
    start = time.time()
    desc = data.name if state.num_processes == 1 else f"{data.name} (process 0 of {state.num_processes})"
    bar = tqdm(total=sum(len(b) for b in batches), desc=desc, disable=not state.is_local_main_process,
               dynamic_ncols=True)
    for index, batch in zip(batches, loader):
        x, y = batch["pixel_values"].to(device), batch["labels"].to(device)
        with torch.no_grad():
            clean = model.classify(x, text).argmax(-1)
        clean_ok = clean == y
        standing = {a: clean_ok.clone() for a in args.attacks}  # robust so far (monotone in eps)
        final = {a: clean.clone() for a in args.attacks}  # the prediction that counts
        worst_standing, worst_final = clean_ok.clone(), clean.clone()
        preds: dict[str, torch.Tensor] = {}
        for eps in eps_list:
            if not args.monotone_eps:
                standing = {a: clean_ok.clone() for a in args.attacks}
                final = {a: clean.clone() for a in args.attacks}
                worst_standing, worst_final = clean_ok.clone(), clean.clone()
            for attack in args.attacks:
                alive = standing[attack].nonzero().squeeze(1)
                if len(alive) and eps > 0:
                    xs = x[alive]
                    ids = [index[i] for i in alive.tolist()]
                    salt = f"{data.name}|{attack}|{eps_label(eps, args.norm)}"
                    x_adv = run_attack(attack, model, text, xs, y[alive], eps, args, ids, salt, num_classes)
                    _check_budget(xs, x_adv, eps, args.norm, attack)
                    with torch.no_grad():
                        adv = model.classify(x_adv, text).argmax(-1)
                    final[attack][alive] = adv
                    standing[attack][alive] = adv == y[alive]
                preds[result_key(attack, eps, args.norm)] = final[attack].clone()
                fell = worst_standing & ~standing[attack]
                worst_final[fell] = final[attack][fell]
                worst_standing &= standing[attack]
            if several:
                preds[result_key("worst", eps, args.norm)] = worst_final.clone()
        y_list, clean_list = y.tolist(), clean.tolist()
        pred_lists = {k: v.tolist() for k, v in preds.items()}
        for j, i in enumerate(index):
            records.append((i, y_list[j], clean_list[j], {k: v[j] for k, v in pred_lists.items()}))
        bar.update(len(index))
    bar.close()
    records = gather_object(records) if state.num_processes > 1 else records
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
        "prompt_templates": data.templates,
    }
    if "autoattack" in args.attacks:

        plan, targets = autoattack_plan(num_classes, args.autoattack_version, args.autoattack_attacks,
                                        args.autoattack_n_target_classes)
        result["autoattack"] = {"attacks": plan, "n_target_classes": targets}
    return result


# ---------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------


def averages(per_dataset: dict[str, dict]) -> dict:
    """Mean over datasets of clean accuracy and of each robust column present in all of them."""
    rows = list(per_dataset.values())
    if not rows:
        return {"num_datasets": 0}
    keys = [k for k in rows[0].get("robust", {}) if all(k in r.get("robust", {}) for r in rows)]
    return {
        "num_datasets": len(rows),
        "clean_accuracy": sum(r["clean_accuracy"] for r in rows) / len(rows),
        "robust": {k: sum(r["robust"][k] for r in rows) / len(rows) for k in keys},
    }


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def results_markdown(results: dict) -> str:
    """The TGA-style table (datasets as columns, averages last) and a per-dataset detail table."""
    per = results.get("datasets", {})
    names = list(per)
    heads = [per[n].get("display_name", n) for n in names]
    keys = list(dict.fromkeys(k for r in per.values() for k in r.get("robust", {})))
    avg = results.get("average", {})
    settings = results.get("settings", {})
    lines = [
        f"# Zero-shot robustness of `{results.get('model')}`",
        "",
        f"Top-1 accuracy (%) on the first {settings.get('max_samples') or 'all'} test samples of each dataset. "
        f"Attacks: {', '.join(settings.get('attacks', []))}; budgets in units of 1/255 (L-inf) unless noted. "
        "A sample is robust only if it is correct clean and after the attack.",
        "",
    ]
    if names:
        lines.append("| | " + " | ".join(heads) + " | Average |")
        lines.append("|---" * (len(names) + 2) + "|")
        for key in keys:
            cells = [_pct(per[n]["robust"].get(key)) for n in names]
            lines.append(f"| robust {key} | " + " | ".join(cells) + f" | {_pct(avg.get('robust', {}).get(key))} |")
        cells = [_pct(per[n]["clean_accuracy"]) for n in names]
        lines.append("| clean | " + " | ".join(cells) + f" | {_pct(avg.get('clean_accuracy'))} |")
        lines += ["", "| dataset | samples | classes | clean | " + " | ".join(keys) + " | seconds |",
                  "|---" * (len(keys) + 5) + "|"]
        for n in names:
            r = per[n]
            lines.append(
                f"| {r.get('display_name', n)} | {r['num_samples']} | {r.get('num_classes', '')} | "
                f"{_pct(r['clean_accuracy'])} | " + " | ".join(_pct(r["robust"].get(k)) for k in keys)
                + f" | {r.get('seconds', 0):.1f} |"
            )
    errors = results.get("errors") or {}
    if errors:
        lines += ["", "## Datasets not evaluated", ""]
        lines += [f"- **{n}**: {msg.splitlines()[0]}" for n, msg in errors.items()]
    lines += ["", f"Model weights fingerprint: `{results.get('model_fingerprint')}`; "
              f"tgazsr evaluation harness v{HARNESS_VERSION}.", ""]
    return "\n".join(lines)


def write_reports(results: dict, output_dir: str, plot: bool = True) -> None:
    os.makedirs(output_dir, exist_ok=True)
    tmp = os.path.join(output_dir, "results.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, os.path.join(output_dir, "results.json"))
    with open(os.path.join(output_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(results_markdown(results))
    if plot and results.get("datasets"):
        try:
            from .plot import plot_tradeoff

            plot_tradeoff([results], os.path.join(output_dir, "tradeoff.png"))
        except Exception as err:  # noqa: BLE001 - a plot must never lose the numbers
            logger.warning("Could not draw the trade-off plot: %s", err)


def _finished_path(output_dir: str, name: str, key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return os.path.join(output_dir, "finished", f"{safe}-{key[:20]}.json")


def _read_finished(path: str, key: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved.get("result") if saved.get("key") == key else None


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


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


def run_evaluation(args: EvalArguments, model=None, tokenizer=None) -> dict:
    """Evaluate ``args.model_name_or_path`` (or a given ZeroShotCLIP) on ``args.datasets``."""

    if not args.datasets:
        raise ValueError("Pass --datasets (registry names or local paths), or use recipes/eval_tga16.yaml.")
    unknown = []
    for entry in args.datasets:  # a typo fails now, not after hours of attacks on the other datasets
        try:
            resolve_entry(entry, args)
        except DatasetUnavailable as err:
            unknown.append(str(err))
    if unknown:
        raise ValueError("\n".join(unknown))
    state = _state(args)
    device = torch.device(args.device) if args.device else state.device
    if state.num_processes > 1 and args.device and device != state.device:
        logger.warning("Ignoring --device %s: process %d of %d runs on %s.", args.device, state.process_index,
                       state.num_processes, state.device)
        device = state.device
    if model is None:
        model, tokenizer, fingerprint = load_model(args, device)
    else:
        fingerprint = model_fingerprint(model.clip)
        model = model.to(device).eval()
    image_size = model.clip.config.vision_config.image_size
    metric = load_accuracy()
    tf32_before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    try:
        return _run(args, state, device, model, tokenizer, fingerprint, image_size, metric)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_before


def _run(args, state, device, model, tokenizer, fingerprint, image_size, metric) -> dict:
    settings = attack_settings(args)
    results: dict[str, Any] = {
        "model": args.model_name_or_path,
        "model_fingerprint": fingerprint,
        "harness_version": HARNESS_VERSION,
        "protocol": args.protocol,
        "pixel_normalization": normalization_of(model),
        "settings": settings,
        "num_processes": state.num_processes,
        "datasets": {},
        "errors": {},
    }
    for entry in args.datasets:
        data, error = None, None
        with state.main_process_first():  # the main process downloads and caches first
            try:
                data = prepare_dataset(entry, args, image_size)
            except DatasetUnavailable as err:
                error = str(err)
        if state.num_processes > 1:  # every process skips a dataset that failed anywhere
            from accelerate.utils import gather_object

            errors = [e for e in gather_object([error]) if e]
            error = errors[0] if errors else None
        if error is not None:
            logger.error("%s", error)
            name = entry.split("=", 1)[0] if "=" in entry and not os.path.exists(entry) else entry
            results["errors"][name] = error
            continue
        key = _hash_json({
            "harness": HARNESS_VERSION, "model": fingerprint, "data": data.identity(), "settings": settings,
            "prompts": _prompts_fingerprint(tokenizer, data.class_names, data.templates),
            "normalization": normalization_of(model),
            "image_size": image_size,
        })
        path = _finished_path(args.output_dir, data.name, key)
        done = None if args.overwrite or not state.is_main_process else _read_finished(path, key)
        done = _broadcast(done, state)
        if done is not None:
            logger.info("%s: finished earlier for this model and these settings (%s); skipping.", data.name, path)
            results["datasets"][data.name] = done
            continue
        text = model.class_embeddings(data.class_names, data.templates, tokenizer)  # once per dataset
        result = evaluate_dataset(model, data, text, args, state, device, metric)
        result["key"] = key
        results["datasets"][data.name] = result
        if state.is_main_process:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"key": key, "model": args.model_name_or_path, "result": result}, f, indent=2)
            results["average"] = averages(results["datasets"])
            write_reports(results, args.output_dir, plot=False)
        logger.info("%s: clean %.2f%%, %s", data.name, 100 * result["clean_accuracy"],
                    ", ".join(f"{k} {100 * v:.2f}%" for k, v in result["robust"].items()))
    results["average"] = averages(results["datasets"])
    if state.is_main_process:
        write_reports(results, args.output_dir, plot=args.plot)
        logger.info("Results in %s", os.path.join(args.output_dir, "results.md"))
    state.wait_for_everyone()
    return results


def evaluate_after_training(
    output_dir: str,
    datasets: list[str],
    cfg,
    pixel_normalization: str | None = None,
    model_name_or_path: str | None = None,
    results_dir: str | None = None,
) -> dict:
    """Called at the end of ``tgazsr.train``: PGD (``cfg.eval_attack_steps`` steps of
    ``cfg.eval_attack_stepsize``/255, random start) at ``cfg.train_eps`` on ``datasets``.

    Evaluates the checkpoint in ``output_dir`` (or ``model_name_or_path``, e.g. the base model,
    for a comparison) and returns ``{"benchmark": results}``;
    ``results["datasets"][name]["clean_accuracy"]`` and ``["robust"]["pgd@<eps>/255"]`` go into the
    model card. Results are written under ``results_dir`` (default ``<output_dir>/eval``).
    ``pixel_normalization`` default: read from the checkpoint's image processor ('auto').
    """
    device = getattr(cfg, "device", None)
    args = EvalArguments(
        model_name_or_path=model_name_or_path or output_dir,
        pixel_normalization=pixel_normalization or "auto",
        datasets=list(datasets),
        attacks=["pgd"],
        eps=[float(cfg.train_eps)],
        pgd_steps=cfg.eval_attack_steps,
        pgd_step_size=cfg.eval_attack_stepsize,
        max_samples=cfg.eval_max_samples if getattr(cfg, "eval_max_samples", 0) else None,
        batch_size=cfg.per_device_eval_batch_size,
        num_workers=getattr(cfg, "dataloader_num_workers", 0) or 0,
        device=str(device) if device is not None else None,
        seed=cfg.seed,
        output_dir=results_dir or os.path.join(output_dir, "eval"),
    )
    return {"benchmark": run_evaluation(args)}


def comparison_markdown(runs: dict[str, dict]) -> str:
    """Side-by-side table (top-1 %) of several results dicts over their common datasets."""
    names = list(runs)
    first = runs[names[0]]
    keys = sorted({k for r in first["datasets"].values() for k in r.get("robust", {})})
    header = "| dataset | " + " | ".join(f"{n} clean | " + " | ".join(f"{n} {k}" for k in keys) for n in names) + " |"
    rule = "|---|" + "---|" * (len(names) * (1 + len(keys)))
    rows = []
    for dataset in first["datasets"]:
        cells = []
        for n in names:
            r = runs[n]["datasets"].get(dataset, {})
            cells.append(_pct(r.get("clean_accuracy")))
            cells += [_pct(r.get("robust", {}).get(k)) for k in keys]
        rows.append(f"| {os.path.basename(dataset.rstrip('/'))} | " + " | ".join(cells) + " |")
    avg = []
    for n in names:
        a = runs[n].get("average") or averages(runs[n]["datasets"])
        avg.append(_pct(a.get("clean_accuracy")))
        avg += [_pct((a.get("robust") or {}).get(k)) for k in keys]
    rows.append("| **average** | " + " | ".join(avg) + " |")
    return "\n".join([header, rule, *rows]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = parse_recipe((EvalArguments,), argv)
    owned = not _state_exists()
    try:
        results = run_evaluation(args)
    finally:
        if owned:
            _shutdown()
    return 1 if results["errors"] else 0


def _state_exists() -> bool:
    from accelerate import PartialState

    return bool(PartialState._shared_state)


def _shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
