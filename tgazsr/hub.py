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


IGNORED_UPLOADS = ("checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "*.pth", "*.bin", "training_args.bin")


def _eval_results(results: dict | None) -> list[EvalResult]:
    """From an evaluation results dict: {"datasets": {name: {"clean_accuracy":..,"robust": {key: acc}}}}."""
    out = []
    for name, res in ((results or {}).get("datasets") or {}).items():
        common = dict(task_type="zero-shot-image-classification", dataset_type=name, dataset_name=name)
        if "clean_accuracy" in res:
            out.append(EvalResult(metric_type="accuracy", metric_name="clean accuracy",
                                  metric_value=float(res["clean_accuracy"]), **common))
        for key, acc in (res.get("robust") or {}).items():
            out.append(EvalResult(metric_type="accuracy", metric_name=f"robust accuracy ({key})",
                                  metric_value=float(acc), **common))
    return out


def build_model_card(
    method: str,
    base_model: str,
    dataset: str,
    hyperparameters: dict,
    results: dict | None = None,
    model_name: str = "robust-clip",
) -> ModelCard:
    from .methods import get_method

    method_def = get_method(method)
    evals = _eval_results(results)
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        base_model=base_model if not os.path.isdir(base_model) else None,
        datasets=[dataset] if not os.path.exists(dataset) else None,
        tags=["clip", "adversarial-robustness", "zero-shot", "tgazsr", method],
        model_name=model_name if evals else None,
        eval_results=evals or None,
    )
    paper_ref = f" ([{method_def.paper.venue}]({method_def.paper.url}))" if method_def.paper else ""
    citation = f"\n## Citation\n\n```bibtex\n{method_def.citation()}\n```\n" if method_def.paper else ""
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in hyperparameters.items())
    table = ""
    if results and results.get("datasets"):
        keys = sorted({k for r in results["datasets"].values() for k in (r.get("robust") or {})})
        head = "| dataset | clean | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys)
        lines = [
            f"| {name} | {100 * r.get('clean_accuracy', float('nan')):.2f} | "
            + " | ".join(f"{100 * (r.get('robust') or {}).get(k, float('nan')):.2f}" for k in keys)
            + " |"
            for name, r in results["datasets"].items()
        ]
        table = "\n## Results (top-1 %, zero-shot)\n\n" + head + "\n" + "\n".join(lines) + "\n"
    body = f"""---
{data.to_yaml()}
---

# {model_name}

A CLIP vision tower made robust to adversarial images with **{method_def.title}**{paper_ref},
trained with [tgazsr](https://github.com/). Base model: `{base_model}`; training data: `{dataset}`.
{method_def.description}
Only the vision tower was trained; the text tower and logit scale are the base model's.

It is a plain `CLIPModel` checkpoint:

```python
from transformers import pipeline
classifier = pipeline("zero-shot-image-classification", model="<this repo or directory>")
```

Images are attacked in pixel space [0, 1]; CLIP's normalization is applied after the perturbation.

## Training hyperparameters

| field | value |
|---|---|
{rows}
{table}{citation}"""
    return ModelCard(body)


def write_model_card(output_dir: str, **kwargs) -> Path:
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
