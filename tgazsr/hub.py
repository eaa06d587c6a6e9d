"""Model cards with results, and publishing a checkpoint directory to the Hub.

``write_model_card`` puts a README.md with ``model-index`` metadata into the output directory;
``upload_plan`` lists exactly what ``push_checkpoint`` would upload (tests check it offline);
``push_checkpoint`` uploads with ``HfApi.upload_folder``.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .errors import UserError
from .files import local_fingerprint

class HubUnreachable(ValueError, UserError):
    """push_to_hub is set but the Hub does not answer, or the token is not valid."""


#: Training hyperparameters every card shows; each method adds the config fields it reads.
COMMON_HYPERPARAMETERS = (
    "train_eps", "train_numsteps", "train_stepsize", "learning_rate", "optim", "optim_args", "weight_decay",
    "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "seed",
)


def hyperparameters(method_name: str, cfg) -> dict:
    """The card's hyperparameter table: the common fields and the method's own (tgazsr.methods)."""
    from .methods import get_method

    names = COMMON_HYPERPARAMETERS + tuple(f for f in get_method(method_name).fields if f not in COMMON_HYPERPARAMETERS)
    return {k: getattr(getattr(cfg, k), "value", getattr(cfg, k)) for k in names if hasattr(cfg, k)}


#: Not uploaded: intermediate state, and the evaluation folders (their caches name local paths; the
#: card and train_results.json carry the results).
IGNORED_UPLOADS = ("checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "*.pth", "*.bin", "training_args.bin",
                   "eval/**", "eval_base/**", "eval_check/**", "run_recipe.json")


def public_name(value):
    """What may be published of a value: a local path becomes its folder name (``NAME=PATH`` keeps
    NAME), so no local absolute path reaches the Hub; lists and dicts are cleaned recursively."""
    if isinstance(value, dict):
        return {k: public_name(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_name(v) for v in value]
    if isinstance(value, str) and value:
        name, sep, rest = value.partition("=")
        if sep and (os.path.isabs(rest) or os.path.exists(rest)) and "/" not in name:
            return f"{name}={os.path.basename(os.path.normpath(rest))}"
        if os.path.isabs(value) or value.startswith("~") or (os.sep in value and os.path.exists(value)):
            return os.path.basename(os.path.normpath(value)) or value
    return value


def _attack_text(results: dict) -> str:
    """The attack of a results dict, in words: 'PGD-100 (step 1/255, random start), 500 samples'."""
    settings = results.get("settings") or {}
    parts = []
    for name, cfg in (settings.get("attack_settings") or {}).items():
        if name == "pgd":
            parts.append(f"PGD-{cfg.get('steps')} (step {cfg.get('step_size'):g}/255"
                         f"{', random start' if cfg.get('random_start') else ''})")
        elif name == "autoattack":
            parts.append(f"AutoAttack {cfg.get('version')} ({cfg.get('n_iter')} iterations)")
        else:
            parts.append(f"{name.upper()}-{cfg.get('steps', '')}".rstrip("-"))
    samples = settings.get("max_samples")
    text = ", ".join(parts) + (f"; first {samples} samples per dataset" if samples else "; all test samples")
    defense = results.get("defense") or {}
    if defense.get("name", "none") != "none" or results.get("threat_models"):
        from .evaluation.reports import threat_model_text

        text += ". " + threat_model_text(results).rstrip(".")
    return text


def _eval_results(results: dict | None) -> list[EvalResult]:
    """model-index entries from an evaluation results dict; robust metrics name the attack, its
    steps, eps and the sample count."""
    out = []
    attack = _attack_text(results or {})
    for name, res in ((results or {}).get("datasets") or {}).items():
        name = public_name(name)
        common = dict(task_type="zero-shot-image-classification", dataset_type=name,
                      dataset_name=res.get("display_name", name), dataset_split=res.get("split"))
        if "clean_accuracy" in res:
            out.append(EvalResult(metric_type="accuracy", metric_name="clean accuracy",
                                  metric_value=float(res["clean_accuracy"]),
                                  metric_config=f"{res.get('num_samples')} samples", **common))
        for key, acc in (res.get("robust") or {}).items():
            out.append(EvalResult(metric_type="accuracy", metric_name=f"robust accuracy ({key})",
                                  metric_value=float(acc),
                                  metric_config=f"{key}: {attack}; {res.get('num_samples')} samples", **common))
    return out


def _results_table(runs: dict[str, dict]) -> str:
    """Datasets as rows; clean and each robust column per run (top-1 %)."""
    first = next(iter(runs.values()))
    keys = sorted({k for r in first["datasets"].values() for k in (r.get("robust") or {})})
    cols = [(run, "clean") for run in runs] + [(run, k) for k in keys for run in runs]
    head = "| dataset | " + " | ".join(f"{run} {col}" if len(runs) > 1 else col for run, col in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for name, r0 in first["datasets"].items():
        cells = []
        for run, col in cols:
            r = runs[run]["datasets"].get(name, {})
            value = r.get("clean_accuracy") if col == "clean" else (r.get("robust") or {}).get(col)
            cells.append("–" if value is None else f"{100 * value:.2f}")
        lines.append(f"| {r0.get('display_name', public_name(name))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _skipped_text(runs: dict[str, dict]) -> str:
    """A line per evaluated dataset that left unreadable images out (``skip_unreadable_images``)."""
    lines = []
    for label, run in runs.items():
        for name, res in ((run or {}).get("datasets") or {}).items():
            if res.get("skipped_images"):
                lines.append(f"- {label}, {public_name(name)}: {res['skipped_images']} unreadable image(s) skipped "
                             f"(scored on the other {res.get('num_samples')}).")
    return ("\nUnreadable images left out with `skip_unreadable_images`:\n\n" + "\n".join(lines) + "\n") if lines else ""
def _recipe_changes_section(records: list[dict]) -> str:
    """The settings changed on purpose when the run was resumed, step by step."""
    lines = []
    for record in records:
        where = f"resumed at step {record.get('step')} from `{record.get('resumed_from')}`"
        if record.get("unrecorded"):
            lines.append(f"- {where}, a checkpoint that recorded no recipe: taken as this recipe's")
        for name, (old, new) in (record.get("recipe_changes") or {}).items():
            lines.append(f"- {where}: `{name}`: `{public_name(old)}` -> `{public_name(new)}`")
    return ("## Settings changed on resume\n\nThe run was resumed with these settings changed on purpose "
            "(`--allow_recipe_change`); the steps before each change were trained with the old value, the table "
            "above shows the last:\n\n" + "\n".join(lines) + "\n")


def framework_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("tgazsr", "torch", "transformers", "datasets", "accelerate", "peft", "huggingface_hub"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def build_model_card(
    method: str,
    base_model: str,
    dataset: str,
    hyperparameters: dict,
    results: dict | None = None,
    model_name: str = "robust-clip",
    base_results: dict | None = None,
    lora: dict | None = None,
    license: str = "other",
    plot: str | None = None,
    architecture: str | None = None,
    skipped_images: int = 0,
    recipe_changes: list[dict] | None = None,
    model_type: str | None = None,
) -> ModelCard:
    """The model card: Hub metadata (base_model, datasets, license, library, pipeline, tags,
    model-index results that name their attack), what was trained and how, the results (beside the
    base model's when computed), LoRA settings, framework versions and the method's citation.
    Local paths appear only as folder names. ``skipped_images``: unreadable training images left
    out (``skip_unreadable_images``); each evaluated dataset's count comes with its results.
    ``recipe_changes``: the settings a resume changed on purpose (``--allow_recipe_change``;
    ``tgazsr.resume.recorded_changes`` of the run's log_history). ``model_type``: config.json's
    (the model family: its name and what the method means on it; CLIP when not given)."""
    from .backbones import BACKBONES
    from .methods import get_method

    method_def = get_method(method)
    family = BACKBONES.get(model_type or "clip")
    notes = family.card_notes(method_def)
    evals = _eval_results(results)
    local_base, local_data = os.path.exists(base_model), os.path.exists(dataset)
    data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        base_model=None if local_base else base_model,
        datasets=None if local_data else [dataset],
        tags=[family.model_type, "adversarial-robustness", "zero-shot-image-classification", "tgazsr", method],
        model_name=model_name if evals else None,
        eval_results=evals or None,
    )
    base_text = (f"local model `{public_name(base_model)}` (fingerprint `{local_fingerprint(base_model, True)}` of its "
                 "files' names and bytes)") if local_base else f"[`{base_model}`](https://huggingface.co/{base_model})"
    data_text = (f"local dataset `{public_name(dataset)}` (fingerprint `{local_fingerprint(dataset, False)}` of its "
                 "files' names and sizes)") if local_data else f"`{dataset}`"
    if skipped_images:
        data_text += (f" ({skipped_images} unreadable image{'s' if skipped_images != 1 else ''} skipped with "
                      "`skip_unreadable_images`)")
    paper = method_def.paper
    paper_ref = f" ([{paper.title}]({paper.url}), {paper.venue})" if paper else ""
    rows = "\n".join(f"| `{k}` | `{public_name(getattr(v, 'value', v))}` |" for k, v in hyperparameters.items())
    sections = []
    if results and results.get("datasets"):
        runs = {"base": base_results, method_def.title: results} if base_results and base_results.get("datasets") else {method_def.title: results}
        sections.append(
            "## Results (top-1 %, zero-shot)\n\n"
            f"Attack: {_attack_text(results)}. A sample counts as robust only if it is classified correctly clean "
            "and after the attack (tgazsr's evaluation harness).\n\n" + _results_table(runs) + "\n"
            + _skipped_text(runs)
        )
        if plot:
            sections.append(f"![robust versus clean accuracy]({plot})\n")
    if lora:
        sections.append("## LoRA\n\nTrained as LoRA adapters, merged into the saved weights (the adapter is kept in "
                        "`lora_adapter/`):\n\n" + "\n".join(f"- `{k}`: `{v}`" for k, v in lora.items()) + "\n")
    if recipe_changes:
        sections.append(_recipe_changes_section(recipe_changes))
    versions = "\n".join(f"- {k} {v}" for k, v in framework_versions().items())
    sections.append(f"## Framework versions\n\n{versions}\n")
    if paper:
        sections.append(f"## Citation\n\n```bibtex\n{paper.bibtex}\n```\n")
    body = f"""---
{data.to_yaml()}
---

# {model_name}

A {family.title} vision tower made robust to adversarial images with **{method_def.title}**{paper_ref},
trained with tgazsr. Base model: {base_text}; training data: {data_text}.
{method_def.description}
Only the vision tower was trained; the text tower and {family.frozen_scalars} are the base model's.
{"".join(note + chr(10) for note in notes)}
It is a plain {f"`{architecture}`" if architecture else "transformers"} checkpoint:

```python
from transformers import pipeline
classifier = pipeline("zero-shot-image-classification", model="<this repo or directory>")
```

Images are attacked in pixel space [0, 1]; the pixel normalization (saved in the image processor) is
applied after the perturbation.

## Training hyperparameters

| field | value |
|---|---|
{rows}

""" + "\n".join(sections)
    return ModelCard(body)


def saved_model_type(output_dir: str) -> str | None:
    """config.json's ``model_type`` of a saved model folder."""
    import json

    try:
        with open(Path(output_dir) / "config.json") as f:
            value = json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def saved_architecture(output_dir: str) -> str | None:
    """The transformers class a saved model folder declares (config.json's ``architectures``)."""
    import json

    try:
        with open(Path(output_dir) / "config.json") as f:
            names = json.load(f).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None
    return str(names[0]) if names else None


def write_model_card(output_dir: str, **kwargs) -> Path:
    kwargs.setdefault("architecture", saved_architecture(output_dir))
    kwargs.setdefault("model_type", saved_model_type(output_dir))
    card = build_model_card(**kwargs)
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def upload_plan(output_dir: str) -> list[str]:
    """Relative paths ``push_checkpoint`` uploads: the checkpoint, not intermediate state."""
    from fnmatch import fnmatch

    root = Path(output_dir)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return [f for f in files if not any(fnmatch(f, pat) for pat in IGNORED_UPLOADS)]


def check_push_access(repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Before training: the Hub answers, the token is valid, and where the model will go. Returns
    the account name; states in the log whether the repository exists and its visibility."""
    import logging

    log = logging.getLogger("tgazsr.train")
    api = HfApi(token=token)
    try:
        user = api.whoami()
    except Exception as err:  # noqa: BLE001 - offline, unreachable, or an invalid token: one message
        raise HubUnreachable(
            f"push_to_hub is set, but the Hub cannot be reached or the token is not valid ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Log in (`hf auth login`, or pass --hub_token), or "
            f"train without --push_to_hub and upload later with `hf upload {repo_id} OUTPUT_DIR`."
        ) from err
    name = user.get("name") if isinstance(user, dict) else str(user)
    try:
        info = api.repo_info(repo_id)
        visibility = "private" if getattr(info, "private", False) else "public"
        log.info("Will upload to the existing %s repository %s as %s.", visibility, repo_id, name)
    except Exception:  # noqa: BLE001 - not there yet: it will be created
        log.info("Will create the %s repository %s as %s.", "private" if private else "public", repo_id, name)
    return name


def push_checkpoint(output_dir: str, repo_id: str, token: str | None = None, private: bool | None = None,
                    commit_message: str = "Upload robust CLIP (tgazsr)") -> str:
    if not (Path(output_dir) / "README.md").is_file():
        raise FileNotFoundError(f"No model card in {output_dir}; call write_model_card first.")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=output_dir, repo_id=repo_id, commit_message=commit_message,
                             ignore_patterns=list(IGNORED_UPLOADS))
    return str(info)
