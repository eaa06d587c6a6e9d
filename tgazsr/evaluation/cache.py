"""The result cache: one file per finished dataset, keyed by everything that can change a number.

The key is a hash of every field of ``EvalArguments`` except those in :data:`UNKEYED_FIELDS`,
with each attack's and the defense's settings resolved (defaults included), the threat models
that run, what the defense loaded (TTC's tau model fingerprint), plus the weights fingerprint, the
dataset's identity and data fingerprint, the prompt token ids, the pixel normalization, the
image size, the device type and the harness version. A rerun reuses a dataset only when all of
these are equal; ``--overwrite`` recomputes regardless.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Sequence

from ..attacks import get_attack, settings_dict
from .arguments import EvalArguments

#: Bump when a change alters the numbers the harness produces (invalidates finished/ files).
HARNESS_VERSION = "4"  # 3: images decoded by tgazsr.data.images (16-bit, 32-bit and float images no longer clipped);
# 4: a defense's adaptive columns are the per-sample worst of the logits-only pass and the pass with its own term

#: Fields that cannot change a number, and why. Everything else is in the key.
UNKEYED_FIELDS: dict[str, str] = {
    "output_dir": "where results are written",
    "overwrite": "whether to recompute",
    "plot": "whether to draw the plot",
    "num_workers": "how images are decoded",
    "device": "which card (the device type is keyed)",
    "batch_size": "random starts are drawn per sample, so batching changes no number (keyed for attacks that "
    "are not batch-invariant, such as AutoAttack)",
    "model_name_or_path": "the weights fingerprint stands for the model",
    "tokenizer_name_or_path": "the prompt token ids stand for the tokenizer",
    "datasets": "each dataset is keyed by its own identity and data fingerprint",
    "data_dir": "each dataset is keyed by its own identity and data fingerprint",
    "attack_options": "replaced by the resolved settings of the attacks that run",
    "defense_options": "replaced by the resolved settings of the defense",
    "threat_models": "replaced by the threat models that run (both by default with a defense)",
    "check_data": "a data check computes no number",
    "allow_extreme_budget": "it lets a budget through the input check; the budgets themselves are keyed",
    "skip_unreadable_images": "it leaves unreadable images out; the data fingerprint of what is left is keyed",
}


def hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def keyed_settings(args: EvalArguments) -> dict:
    """Every setting that can change a number, attack settings resolved."""
    out = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name not in UNKEYED_FIELDS}
    out["eps"] = sorted(set(float(e) for e in args.eps))
    out["attack_settings"] = {a: settings_dict(args.attack_settings(a)) for a in args.attacks}
    out["defense_settings"] = settings_dict(args.defense_settings())
    out["threats"] = args.threats
    if any(not get_attack(a).batch_invariant for a in args.attacks):
        out["batch_size"] = args.batch_size
    return out


def prompt_token_ids(tokenizer, class_names: Sequence[str], templates: Sequence[str]) -> list:
    if any("{}" not in t for t in templates):
        prompts = list(templates)
    else:
        prompts = [t.format(c) for t in templates for c in class_names]
    return [type(tokenizer).__name__, tokenizer(prompts, padding=False, truncation=True)["input_ids"]]


def dataset_key(args: EvalArguments, model_fingerprint: str, data_identity: dict, prompt_ids: list,
                normalization, image_size: int, device_type: str, defense_identity: dict | None = None) -> str:
    """``defense_identity``: what the defense loaded (the fingerprint of TTC's tau model), when it loaded
    something."""
    content = {
        "harness": HARNESS_VERSION, "settings": keyed_settings(args), "model": model_fingerprint,
        "data": data_identity, "prompts": hash_json(prompt_ids), "normalization": normalization,
        "image_size": image_size, "device_type": device_type,
    }
    if defense_identity:
        content["defense"] = defense_identity
    return hash_json(content)


def finished_path(output_dir: str, name: str, key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return os.path.join(output_dir, "finished", f"{safe}-{key[:20]}.json")


def read_finished(path: str, key: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved.get("result") if saved.get("key") == key else None


def write_finished(path: str, key: str, model: str | None, result: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"key": key, "model": model, "result": result}, f, indent=2)
    os.replace(tmp, path)
