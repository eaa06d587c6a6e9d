"""Resume refuses a changed run.

Every checkpoint records the recipe that produced it (``run_recipe.json``: one flat dict of the
parsed fields, :func:`recipe_fields`). Resuming compares the new recipe with the checkpoint's, field
by field, and refuses any difference in a field that changes what is computed, listing each as
``field: old -> new``, unless ``--allow_recipe_change`` names exactly the changed fields on purpose.
The allowed changes are then recorded in ``trainer_state.json`` (an entry of ``log_history``) and in
the model card.

Every field matters unless :data:`NOT_COMPARED` names it with the reason, so a field added later is
compared by default. The batch layout (``per_device_train_batch_size``,
``gradient_accumulation_steps``, the number of processes) is not compared; the global batch it gives
is (:data:`GLOBAL_BATCH`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
from typing import Any

from transformers import TrainerCallback

from .registry import close_matches
from .errors import UserError

logger = logging.getLogger("tgazsr.train")

#: The file in each checkpoint folder that records the recipe (local paths included: checkpoints
#: are never uploaded).
RECIPE_FILE = "run_recipe.json"
RECIPE_VERSION = 1
#: The derived field that stands for the batch layout: per-device batch x accumulation x processes.
GLOBAL_BATCH = "global_train_batch_size"
#: ``--allow_recipe_change unrecorded``: resume a checkpoint that records no recipe (written before
#: checkpoints recorded one), on trust that it is this recipe's.
UNRECORDED = "unrecorded"
#: Never recorded: secrets.
SECRET_FIELDS = ("hub_token",)
#: The log_history key of a resume that changed the recipe on purpose.
CHANGES_KEY = "recipe_changes"

_OUTPUT = "where the run writes, not what it computes"
_LOGGING = "logging: what is reported, not what is computed"
_SAVING = "saving cadence and what a checkpoint keeps"
_HUB = "the upload and the model card"
_WORKERS = "how data is loaded, not which data"
_LAYOUT = f"batch layout: {GLOBAL_BATCH} (per-device batch x accumulation x processes) is compared"
_ENGINE = "memory and process set-up: the same gradients"
_RESUME = "how this run starts or what it allows, not what it computes"
_EVAL = "evaluation (its results record their own settings); compared when load_best_model_at_end picks the result"

#: Fields whose change never changes what training computes, with the reason. Any other field is
#: compared (a new field matters by default).
NOT_COMPARED: dict[str, str] = {
    **dict.fromkeys(("output_dir", "run_name", "project", "trackio_space_id", "trackio_bucket_id",
                     "trackio_static_space_id", "logging_dir"), _OUTPUT),
    **dict.fromkeys(("logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node",
                     "logging_nan_inf_filter", "include_num_input_tokens_seen", "log_level", "log_level_replica",
                     "disable_tqdm", "report_to", "skip_memory_metrics", "debug"), _LOGGING),
    **dict.fromkeys(("save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "save_only_model",
                     "enable_jit_checkpoint"), _SAVING),
    **dict.fromkeys(("push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy",
                     "hub_always_push", "hub_revision", "hub_license"), _HUB),
    **dict.fromkeys(("dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
                     "dataloader_prefetch_factor", "dataloader_multiprocessing_context"), _WORKERS),
    **dict.fromkeys(("per_device_train_batch_size", "gradient_accumulation_steps", "world_size"), _LAYOUT),
    **dict.fromkeys(("use_cpu", "local_rank", "ddp_find_unused_parameters", "ddp_bucket_cap_mb",
                     "ddp_broadcast_buffers", "ddp_static_graph", "ddp_backend", "ddp_timeout",
                     "activation_checkpointing", "activation_checkpointing_kwargs", "gradient_checkpointing",
                     "gradient_checkpointing_kwargs", "torch_empty_cache_steps"), _ENGINE),
    **dict.fromkeys(("resume_from_checkpoint", "overwrite_output_dir", "allow_recipe_change", "allow_extreme_budget",
                     "do_train", "do_eval", "do_predict"), _RESUME),
}
#: Evaluation fields: not compared, unless load_best_model_at_end (old or new) lets evaluation pick
#: the weights that are the result.
EVALUATION_FIELDS = ("eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
                     "eval_accumulation_steps", "eval_do_concat_batches", "eval_use_gather_object",
                     "prediction_loss_only", "include_for_metrics", "batch_eval_metrics", "bf16_full_eval",
                     "fp16_full_eval", "eval_split", "eval_max_samples", "eval_attack_steps", "eval_attack_stepsize",
                     "eval_steps_max_samples", "eval_datasets", "compare_with_base",
                     "eval_attention_shift")
NOT_COMPARED.update(dict.fromkeys(EVALUATION_FIELDS, _EVAL))


class RecipeChanged(ValueError, UserError):
    """Resuming with a recipe that differs from the checkpoint's in a field that matters."""


def _plain(value: Any) -> Any:
    """A JSON value for ``value``: enums by value, dataclasses and mappings as dicts, sequences as lists."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def recipe_fields(*groups) -> dict[str, Any]:
    """The recipe as one flat dict: every dataclass field of each parsed group (the training
    config's, the model's, the data's), then the fields of a group's ``method_config`` when it is a
    dataclass (merged under their own names; prefixed ``method_config.`` where a name is taken), and
    :data:`GLOBAL_BATCH`. Secrets (:data:`SECRET_FIELDS`) are left out. Values are JSON values."""
    out: dict[str, Any] = {}
    extra: list[tuple[str, Any]] = []
    for group in groups:
        for f in dataclasses.fields(group):
            if f.name not in SECRET_FIELDS:
                out[f.name] = _plain(getattr(group, f.name, None))
        method_config = getattr(group, "method_config", None)
        if dataclasses.is_dataclass(method_config) and not isinstance(method_config, type):
            extra += [(f.name, getattr(method_config, f.name)) for f in dataclasses.fields(method_config)]
    for name, value in extra:
        out[name if name not in out else f"method_config.{name}"] = _plain(value)
    out.pop("method_config", None)
    for group in groups:
        if hasattr(group, "per_device_train_batch_size") and hasattr(group, "gradient_accumulation_steps"):
            world = int(getattr(group, "world_size", 1) or 1)
            out["world_size"] = world
            out[GLOBAL_BATCH] = int(group.per_device_train_batch_size) * int(group.gradient_accumulation_steps) * world
    return json.loads(json.dumps(out))  # the same form as read back from the file


#: Schedules whose learning rate at a step does not depend on the run's length: with one of them (on
#: both sides), a longer or shorter run computes the same steps up to where the shorter one ends.
LENGTH_FREE_SCHEDULES = ("constant", "constant_with_warmup")
#: The fields that only set the run's length.
LENGTH_FIELDS = ("max_steps", "num_train_epochs")


def _schedule(recipe: dict) -> str:
    value = recipe.get("lr_scheduler_type")
    return str(getattr(value, "value", value))


def compared_fields(old: dict, new: dict) -> list[str]:
    """The fields the comparison of ``old`` and ``new`` looks at, in a stable order."""
    evaluation_matters = bool(old.get("load_best_model_at_end") or new.get("load_best_model_at_end"))
    skip = {n for n in NOT_COMPARED if not (evaluation_matters and n in EVALUATION_FIELDS)}
    if _schedule(old) == _schedule(new) and _schedule(new) in LENGTH_FREE_SCHEDULES:
        skip.update(LENGTH_FIELDS)  # continuing a constant-rate run for longer changes none of its steps
    names = list(new) + [n for n in old if n not in new]
    return [n for n in names if n not in skip]


_ABSENT = "(absent)"


def recipe_differences(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{field: (old value, new value)}`` for every compared field that differs; a field only one
    side has shows ``(absent)`` on the other."""
    out = {}
    for name in compared_fields(old, new):
        a, b = old.get(name, _ABSENT), new.get(name, _ABSENT)
        if a != b:
            out[name] = (a, b)
    return out


def _shown(value: Any) -> str:
    return value if value == _ABSENT else json.dumps(value)


def write_recipe(folder: str, fields: dict) -> None:
    """Record ``fields`` (from :func:`recipe_fields`) in a checkpoint folder."""
    with open(os.path.join(folder, RECIPE_FILE), "w") as f:
        json.dump({"version": RECIPE_VERSION, "fields": fields}, f, indent=1, sort_keys=True)


def read_recipe(checkpoint: str) -> dict | None:
    """The recipe a checkpoint records, or None when it records none (written before recipes were
    recorded). A record that cannot be read is an error naming the file."""
    path = os.path.join(checkpoint, RECIPE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise RecipeChanged(f"Cannot read the recipe that {checkpoint} records ({path}: {err}). Resume from another "
                            "checkpoint (--resume_from_checkpoint PATH), or pass --allow_recipe_change unrecorded "
                            "to take this one as this recipe's.") from err
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise RecipeChanged(f"{path} is not a recipe record (expected an object with 'fields'). Resume from another "
                            "checkpoint, or pass --allow_recipe_change unrecorded to take this one as this recipe's.")
    return data["fields"]


def parse_allowed(value: str | list | None) -> list[str]:
    """``--allow_recipe_change a,b`` (or a list in a YAML recipe) as a list of field names."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def check_resume(checkpoint: str | None, fields: dict, allow: str | list | None,
                 resume_requested: bool = False) -> dict | None:
    """Compare the recipe of a resumed run with the checkpoint's. Returns None when there is nothing to
    record (no resume, or the same recipe), else the record of the allowed changes (for
    ``log_history`` and the card). Raises :class:`RecipeChanged` when a compared field differs and
    ``allow`` does not name exactly the changed fields, and when ``allow`` names an unknown field or
    is given without a resume. ``resume_requested``: ``--resume_from_checkpoint true`` found no
    checkpoint (a warning then, not an error: a requeued job passes the same flags every time)."""
    allowed = parse_allowed(allow)
    if checkpoint is None:
        if allowed and not resume_requested:
            raise RecipeChanged(f"allow_recipe_change = {','.join(allowed)!r} is set but the run does not resume: it "
                                "allows changes against a checkpoint's recipe. Remove --allow_recipe_change, or add "
                                "--resume_from_checkpoint true (or a checkpoint-N folder).")
        if allowed:
            logger.warning("allow_recipe_change is set but there is no checkpoint to resume from; it is ignored.")
        return None
    known = set(fields) | {UNRECORDED}
    unknown = [n for n in allowed if n not in known]
    if unknown:
        hints = []
        for n in unknown:
            close = close_matches(n, sorted(known), n=3)
            hints.append(f"{n!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise RecipeChanged(f"allow_recipe_change names {', '.join(hints)}, which is not a recipe field. Name the "
                            "changed fields as a resume refused them (e.g. --allow_recipe_change train_eps,learning_rate).")
    old = read_recipe(checkpoint)
    if old is None:
        if UNRECORDED in allowed:
            logger.warning("Resuming from %s, which records no recipe: taken as this recipe's "
                           "(--allow_recipe_change unrecorded).", checkpoint)
            return {"resumed_from": os.path.basename(os.path.normpath(checkpoint)), CHANGES_KEY: {}, UNRECORDED: True}
        raise RecipeChanged(
            f"Cannot resume from {checkpoint}: it records no recipe ({RECIPE_FILE}; it was written before checkpoints "
            "recorded theirs), so this run's settings cannot be checked against the ones that trained it. If this "
            "recipe is the one that produced it, pass --allow_recipe_change unrecorded (recorded in trainer_state.json "
            "and the model card); otherwise start a new run in another --output_dir."
        )
    if UNRECORDED in allowed:
        raise RecipeChanged(f"allow_recipe_change names 'unrecorded', but {checkpoint} records its recipe: remove "
                            "'unrecorded' (and name the changed fields, if any).")
    changes = recipe_differences(old, fields)
    lines = [f"  {name}: {_shown(a)} -> {_shown(b)}" for name, (a, b) in changes.items()]
    if set(changes) != set(allowed):
        not_allowed = [n for n in changes if n not in allowed]
        unchanged = [n for n in allowed if n not in changes]
        parts = []
        if not_allowed:
            parts.append(
                f"Cannot resume from {checkpoint}: {len(not_allowed)} setting(s) that change what is computed differ "
                "from the recipe that trained it:\n"
                + "\n".join(line for name, line in zip(changes, lines) if name in not_allowed)
                + "\nResume with the checkpoint's settings, start a new run in another --output_dir, or, to change "
                f"them on purpose, add --allow_recipe_change {','.join(changes)} (recorded in trainer_state.json and "
                "the model card)."
            )
        if unchanged:
            never = [f"{n} ({NOT_COMPARED[n]})" for n in unchanged if n in NOT_COMPARED]
            parts.append(f"allow_recipe_change names {', '.join(unchanged)}, which did not change"
                         + (f"; never compared: {'; '.join(never)}" if never else "") + ". Name exactly the changed "
                         "fields" + (f" (--allow_recipe_change {','.join(changes)})." if changes else
                                     ", or remove --allow_recipe_change."))
        raise RecipeChanged("\n".join(parts))
    if not changes:
        return None
    logger.warning("Resuming from %s with %d setting(s) changed on purpose (--allow_recipe_change):\n%s",
                   checkpoint, len(changes), "\n".join(lines))
    return {"resumed_from": os.path.basename(os.path.normpath(checkpoint)),
            CHANGES_KEY: {name: [a, b] for name, (a, b) in changes.items()}}


class RecordRecipeChange(TrainerCallback):
    """Adds the allowed changes of a resume to ``log_history`` once the checkpoint's state is loaded
    (``on_train_begin``), so trainer_state.json of every later checkpoint keeps them."""

    def __init__(self, record: dict):
        self.record = record
        self.done = False

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.done:
            state.log_history.append({"step": state.global_step, **self.record})
            self.done = True


def recorded_changes(log_history: list[dict]) -> list[dict]:
    """The recipe changes a run's ``log_history`` records, oldest first (for the model card)."""
    return [h for h in log_history or [] if isinstance(h, dict) and CHANGES_KEY in h]
