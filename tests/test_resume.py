"""Resume refuses a changed run (tgazsr.resume) and loads a checkpoint's weights strictly.

One short run writes checkpoint-1 and checkpoint-2; each test resumes from checkpoint-1 (of a copy
when the resume trains) through the real entry point, ``tgazsr.train.main`` under ``run_command``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import edit_weights, merge_flags
from tgazsr import train
from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
from tgazsr.errors import run_command
from tgazsr.recipes import parse_recipe
from tgazsr.resume import (
    GLOBAL_BATCH, NOT_COMPARED, RECIPE_FILE, RecipeChanged, check_resume, recipe_differences, recipe_fields,
    write_recipe,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "tecoa.yaml")


def argv(tiny_clip, data, out, *extra):
    return [RECIPE, *merge_flags([
        "--model_name_or_path", tiny_clip, "--dataset_name", data, "--output_dir", str(out), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--fp16", "false", "--use_cpu", "true", "--dataloader_num_workers",
        "0", "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "5", "--eval_max_samples", "0",
        "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1", "--warmup_steps", "0",
    ], extra)]


@pytest.fixture(scope="module")
def finished_run(tiny_clip, saved_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    assert run_command(train.main, argv(tiny_clip, saved_dataset, out)) == 0
    assert (out / "checkpoint-1" / RECIPE_FILE).is_file() and (out / "checkpoint-2" / RECIPE_FILE).is_file()
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def resume(tiny_clip, saved_dataset, out, *extra, capsys=None):
    if capsys is not None:
        capsys.readouterr()
    code = run_command(train.main, argv(tiny_clip, saved_dataset, out, "--resume_from_checkpoint",
                                         str(out / "checkpoint-1"), *extra))
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def refused(code, err) -> str:
    assert code == 2, err
    assert "Traceback" not in err and err.count("error: ") == 1, err
    return err[err.index("error: "):]


def changed_names(message: str) -> list[str]:
    return re.findall(r"^  ([\w.]+): ", message, flags=re.M)


CHANGES = {
    "train_eps": ("--train_eps", "2"),
    "learning_rate": ("--learning_rate", "0.001"),
    "method": ("--method", "ft_adv"),
}
NEW_VALUES = {"train_eps": 2.0, "learning_rate": 0.001, "method": "ft_adv"}


@pytest.mark.parametrize("field", list(CHANGES))
def test_a_changed_setting_is_refused_naming_the_field(field, finished_run, tiny_clip, saved_dataset, capsys):
    before = listing(finished_run)
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, *CHANGES[field], capsys=capsys))
    assert f"  {field}: " in message and "--allow_recipe_change" in message, message
    assert field in changed_names(message)
    assert listing(finished_run) == before  # refused before anything was loaded or written


def test_the_refusal_shows_old_and_new_values(finished_run, tiny_clip, saved_dataset, capsys):
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, "--train_eps", "2", "--learning_rate",
                              "0.001", capsys=capsys))
    assert "  train_eps: 1.0 -> 2.0" in message and "  learning_rate: 1e-05 -> 0.001" in message, message
    assert "--allow_recipe_change train_eps,learning_rate" in message or \
        "--allow_recipe_change learning_rate,train_eps" in message


@pytest.mark.parametrize("field", list(CHANGES))
def test_a_change_allowed_on_purpose_is_recorded_in_state_and_card(field, finished_run, run_copy, tiny_clip,
                                                                  saved_dataset, capsys):
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, *CHANGES[field], capsys=capsys))
    names = changed_names(message)
    code, err = resume(tiny_clip, saved_dataset, run_copy, *CHANGES[field], "--allow_recipe_change", ",".join(names),
                       capsys=capsys)
    assert code == 0, err
    state = json.loads((run_copy / "checkpoint-2" / "trainer_state.json").read_text())
    records = [h for h in state["log_history"] if "recipe_changes" in h]
    assert len(records) == 1 and records[0]["step"] == 1 and records[0]["resumed_from"] == "checkpoint-1"
    assert set(records[0]["recipe_changes"]) == set(names)
    old, new = records[0]["recipe_changes"][field]
    assert new == NEW_VALUES[field] and old != new
    recorded = json.loads((run_copy / "checkpoint-2" / RECIPE_FILE).read_text())["fields"]
    assert recorded[field] == new  # the checkpoints after the change record the new recipe
    card = (run_copy / "README.md").read_text()
    assert "Settings changed on resume" in card and f"`{field}`" in card


def test_output_logging_and_batch_layout_that_keeps_the_global_batch_are_accepted(run_copy, tiny_clip,
                                                                                    saved_dataset, capsys):
    code, err = resume(tiny_clip, saved_dataset, run_copy, "--logging_steps", "7", "--save_steps", "3",
                       "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
                       "--report_to", "tensorboard", "--disable_tqdm", "false", "--run_name", "again", capsys=capsys)
    assert code == 0, err
    state = json.loads((run_copy / "checkpoint-2" / "trainer_state.json").read_text())
    assert not [h for h in state["log_history"] if "recipe_changes" in h]
    assert "Settings changed on resume" not in (run_copy / "README.md").read_text()


def test_a_changed_global_batch_is_refused(finished_run, tiny_clip, saved_dataset, capsys):
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, "--gradient_accumulation_steps", "2",
                              capsys=capsys))
    assert f"  {GLOBAL_BATCH}: 4 -> 8" in message, message


def test_allowing_a_field_that_did_not_change_is_refused(finished_run, tiny_clip, saved_dataset, capsys):
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, "--train_eps", "2", "--allow_recipe_change",
                              "train_eps,seed", capsys=capsys))
    assert "seed, which did not change" in message, message
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, "--allow_recipe_change", "logging_steps",
                              capsys=capsys))
    assert "never compared" in message and "logging_steps" in message, message


def test_an_unknown_field_in_allow_recipe_change_names_the_closest(finished_run, tiny_clip, saved_dataset, capsys):
    message = refused(*resume(tiny_clip, saved_dataset, finished_run, "--train_eps", "2", "--allow_recipe_change",
                              "train_epss", capsys=capsys))
    assert "'train_epss'" in message and "train_eps" in message, message


def test_allow_recipe_change_without_a_resume_is_refused(tiny_clip, saved_dataset, tmp_path, capsys):
    capsys.readouterr()
    code = run_command(train.main, argv(tiny_clip, saved_dataset, tmp_path / "new", "--allow_recipe_change",
                                        "train_eps"))
    message = refused(code, capsys.readouterr().err)
    assert "does not resume" in message and not (tmp_path / "new").exists()


def test_a_checkpoint_without_a_recorded_recipe(run_copy, tiny_clip, saved_dataset, capsys):
    os.remove(run_copy / "checkpoint-1" / RECIPE_FILE)
    message = refused(*resume(tiny_clip, saved_dataset, run_copy, capsys=capsys))
    assert "records no recipe" in message and "--allow_recipe_change unrecorded" in message, message
    code, err = resume(tiny_clip, saved_dataset, run_copy, "--allow_recipe_change", "unrecorded", capsys=capsys)
    assert code == 0, err
    state = json.loads((run_copy / "checkpoint-2" / "trainer_state.json").read_text())
    assert [h for h in state["log_history"] if h.get("unrecorded")]
    assert "recorded no recipe" in (run_copy / "README.md").read_text()


# --- strict loading of a checkpoint's weights on resume -------------------------------------------



@pytest.mark.parametrize("how", ["missing", "unexpected", "shape"])
def test_resume_loads_the_checkpoint_weights_strictly(how, run_copy, tiny_clip, saved_dataset, capsys):
    name = edit_weights(run_copy / "checkpoint-1" / "model.safetensors", how)
    before = (run_copy / "checkpoint-2" / "trainer_state.json").read_text()
    message = refused(*resume(tiny_clip, saved_dataset, run_copy, capsys=capsys))
    assert name in message and "checkpoint-1" in message, message
    assert (run_copy / "checkpoint-2" / "trainer_state.json").read_text() == before


def test_the_best_model_at_end_is_loaded_from_its_checkpoint(tiny_clip, saved_dataset, tmp_path):
    """load_best_model_at_end: the Trainer's own loader would find none of the checkpoint's CLIPModel
    keys in the ZeroShotCLIP and only warn; the best checkpoint's weights are loaded."""
    parsed = parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig),
                          argv(tiny_clip, saved_dataset, tmp_path / "best", "--learning_rate", "0.01"))
    trainer, _, _ = train.build_trainer(*parsed)
    trainer.train()
    best = tmp_path / "best" / "checkpoint-1"
    trainer.state.best_model_checkpoint = str(best)
    trainer._load_best_model()
    saved = load_file(str(best / "model.safetensors"))
    now = trainer.model.clip.state_dict()
    assert set(saved) == set(now)
    for key, value in saved.items():
        torch.testing.assert_close(now[key], value)


# --- the comparison itself ------------------------------------------------------------------------

def parsed_fields(*extra) -> dict:
    return recipe_fields(*parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig),
                                       [RECIPE, "--use_cpu", "true", "--fp16", "false", *extra]))


def test_every_field_not_listed_as_irrelevant_is_compared():
    fields = parsed_fields()
    assert "hub_token" not in fields  # secrets are never recorded
    for name, value in fields.items():
        changed = dict(fields, **{name: ["something else"]})
        assert (name in recipe_differences(fields, changed)) == (name not in NOT_COMPARED), name
    # a field only one side knows (a field added later) is compared by default
    assert recipe_differences(fields, dict(fields, new_field=1)) == {"new_field": ("(absent)", 1)}


def test_evaluation_fields_are_compared_when_the_best_checkpoint_is_the_result():
    fields = parsed_fields()
    assert recipe_differences(fields, dict(fields, eval_attack_steps=3)) == {}
    best = dict(fields, load_best_model_at_end=True)
    assert "eval_attack_steps" in recipe_differences(best, dict(best, eval_attack_steps=3))


def test_method_config_fields_are_merged_into_the_recipe():
    @dataclasses.dataclass
    class KL:
        kl_weight: float = 1.0
        method: str = "clash"

    @dataclasses.dataclass
    class Training:
        method: str = "pmg_aft"
        method_config: KL = dataclasses.field(default_factory=KL)

    fields = recipe_fields(Training())
    assert fields["kl_weight"] == 1.0 and fields["method"] == "pmg_aft" and fields["method_config.method"] == "clash"
    assert "method_config" not in fields


def test_check_resume_directly(tmp_path):
    fields = parsed_fields()
    write_recipe(str(tmp_path), fields)
    assert check_resume(str(tmp_path), fields, None) is None
    changed = dict(fields, seed=3)
    with pytest.raises(RecipeChanged, match="  seed: 0 -> 3"):
        check_resume(str(tmp_path), changed, None)
    record = check_resume(str(tmp_path), changed, "seed")
    assert record["recipe_changes"] == {"seed": [0, 3]}
    (tmp_path / RECIPE_FILE).write_text("{not json")
    with pytest.raises(RecipeChanged, match="Cannot read the recipe"):
        check_resume(str(tmp_path), fields, None)


def test_a_lora_run_resumes_and_its_adapter_loads_strictly(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "lora"
    flags = ("--use_peft", "true", "--lora_r", "2")
    assert run_command(train.main, argv(tiny_clip, saved_dataset, out, *flags)) == 0
    adapter = out / "checkpoint-1" / "lora_adapter" / "adapter_model.safetensors"
    keep = tmp_path / "adapter.safetensors"
    shutil.copy(adapter, keep)
    code, err = resume(tiny_clip, saved_dataset, out, *flags, capsys=capsys)
    assert code == 0, err
    weights = load_file(str(keep))
    name = sorted(weights)[0]
    del weights[name]
    save_file(weights, str(adapter), metadata={"format": "pt"})
    message = refused(*resume(tiny_clip, saved_dataset, out, *flags, capsys=capsys))
    assert name in message and "missing 1 tensor(s)" in message, message


def test_the_run_length_matters_only_where_the_schedule_depends_on_it():
    from tgazsr.resume import recipe_differences

    old = {"max_steps": 2, "lr_scheduler_type": "linear", "learning_rate": 1e-4}
    assert recipe_differences(old, {**old, "max_steps": 3}) == {"max_steps": (2, 3)}  # the decay would change
    constant = {**old, "lr_scheduler_type": "constant"}
    assert recipe_differences(constant, {**constant, "max_steps": 3}) == {}  # the first two steps are the same
    assert recipe_differences(constant, {**constant, "max_steps": 3, "lr_scheduler_type": "linear"}) == {
        "max_steps": (2, 3), "lr_scheduler_type": ("constant", "linear")}
