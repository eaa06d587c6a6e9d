"""Bad inputs: each ends in one clear message (exit status 2, no traceback) that names the problem
and the fix, before anything is trained or saved. Every case runs a real bad input through the
real entry point: ``tgazsr.train.main`` and ``tgazsr.evaluation.cli.main`` through
``tgazsr.errors.run_command`` (what ``python -m`` runs), once through a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import merge_flags
from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig, validate
from tgazsr.errors import ModelFolderError, UserError, _take_debug_flag, run_command
from tgazsr.recipes import RecipeError, parse_recipe
from timed_run import run_timed

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
TRAINING = (ModelArguments, DataArguments, RobustTrainingConfig)


# --- helpers ----------------------------------------------------------------------------------

def tiny_train_args(tiny_clip, data, out, *extra):
    """A tiny training run's flags; a flag in ``extra`` replaces the default."""
    return merge_flags([
        "--model_name_or_path", tiny_clip, "--dataset_name", data, "--output_dir", str(out), "--max_steps", "1",
        "--per_device_train_batch_size", "4", "--fp16", "false", "--use_cpu", "true", "--dataloader_num_workers",
        "0", "--save_strategy", "no", "--eval_max_samples", "0", "--report_to", "none", "--disable_tqdm", "true",
    ], extra)


def eval_argv(eval_world, tmp_path, *extra):
    """A small evaluation's flags; a flag in ``extra`` replaces the default."""
    return merge_flags([
        "--model_name_or_path", eval_world["clip_a"], "--datasets", eval_world["saved"], "--eps", "8",
        "--pgd_steps", "2", "--max_samples", "4", "--sanity_samples", "0", "--output_dir", str(tmp_path / "eval"),
        "--no_plot",
    ], extra)


def nothing_saved(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def fails(main, argv, capsys, *phrases) -> str:
    """Run ``main`` through run_command: exit status 2, one ``error:`` message without a traceback
    that contains every phrase. Returns the message."""
    capsys.readouterr()
    code = run_command(main, argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: " in err and "Traceback" not in err, err
    message = err[err.index("error: "):]
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in:\n{message}"
    return message


def train_fails(argv, capsys, out: Path, *phrases) -> str:
    from tgazsr import train

    message = fails(train.main, argv, capsys, *phrases)
    assert nothing_saved(out), sorted(os.listdir(out))
    return message


def eval_fails(argv, capsys, *phrases) -> str:
    from tgazsr.evaluation import cli

    return fails(cli.main, argv, capsys, *phrases)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory) -> str:
    from transformers import BertConfig

    path = tmp_path_factory.mktemp("bert")
    BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=16).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bare_clip(tiny_clip, tmp_path_factory) -> str:
    """A CLIPModel folder with config and weights only: no tokenizer, no image processor."""
    path = tmp_path_factory.mktemp("bare_clip")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(tiny_clip, name), path / name)
    return str(path)


# --- recipes and command lines ----------------------------------------------------------------

def test_key_given_twice_in_a_yaml_recipe(tiny_clip, saved_dataset, tmp_path, capsys):
    recipe = tmp_path / "twice.yaml"
    recipe.write_text("method: tecoa\ntrain_eps: 1\nlearning_rate: 1.0e-5\ntrain_eps: 4\n")
    out = tmp_path / "out"
    train_fails([str(recipe), *tiny_train_args(tiny_clip, saved_dataset, out)], capsys, out,
                "'train_eps' is given twice", "1 (line 2)", "4 (line 4)", "Keep one")


def test_flag_given_twice_on_the_command_line_in_either_spelling(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "tecoa.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--train_eps", "1", "--train-eps", "2"], capsys, out,
                "--train_eps is given 2 times", "1 (as --train_eps)", "2 (as --train-eps)", "Give it once")
    # A recipe value overridden on the command line is not a duplicate; the dashed spelling works.
    _, _, cfg = parse_recipe(TRAINING, [str(RECIPES / "tecoa.yaml"), "--train-eps", "2", "--output_dir",
                                        str(tmp_path / "x")])
    assert cfg.train_eps == 2


def test_flag_given_twice_in_evaluation(eval_world, tmp_path, capsys):
    eval_fails([*eval_argv(eval_world, tmp_path), "--eps", "1", "2"], capsys,  # given twice on purpose
               "--eps is given 2 times", "8 (as --eps)", "1 2 (as --eps)")


def test_unknown_key_in_a_recipe_names_the_closest_field(tiny_clip, saved_dataset, tmp_path, capsys):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("method: tecoa\ntrain_epss: 2\n")
    out = tmp_path / "out"
    train_fails([str(recipe), *tiny_train_args(tiny_clip, saved_dataset, out)], capsys, out,
                "Unknown field 'train_epss'", "Closest valid fields: train_eps", "--help")


def test_unknown_flag_in_evaluation_names_the_closest_field(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--pgd_stepz", "3"), capsys,
               "Unknown field 'pgd_stepz'", "pgd_steps")


def test_a_value_of_the_wrong_type_is_one_line_without_the_usage(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    message = train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--train_eps", "one"], capsys, out,
                          "--train_eps", "invalid float value: 'one'")
    assert "usage:" not in message


def test_a_missing_recipe_file(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(tmp_path / "nope.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out)], capsys, out,
                "nope.yaml' does not exist", "YAML recipe")


# --- training budgets and counts ---------------------------------------------------------------

def test_train_eps_written_as_a_fraction(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "tecoa.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--train_eps", "0.0039"], capsys, out,
                "train_eps = 0.0039 looks like a fraction of 1", "write 1 for 1/255", "--train_eps 1",
                "--allow_extreme_budget true")


def test_train_eps_beyond_the_pixel_range(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "tecoa.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--train_eps", "300"], capsys, out,
                "train_eps = 300 exceeds the pixel range", "units of 1/255", "--allow_extreme_budget true")


def test_extreme_budget_accepted_on_purpose(tiny_clip, saved_dataset, tmp_path):
    from tgazsr.evaluation import training_eval_arguments

    model_args, data_args, cfg = parse_recipe(TRAINING, [
        str(RECIPES / "tecoa.yaml"), *tiny_train_args(tiny_clip, saved_dataset, tmp_path / "out"),
        "--train_eps", "300", "--train_stepsize", "0.25", "--allow_extreme_budget", "true"])
    validate(model_args, data_args, cfg)
    assert (cfg.train_eps, cfg.train_stepsize) == (300, 0.25)
    # The end-of-training evaluation inherits the override (its eps is train_eps).
    args = training_eval_arguments(tiny_clip, [saved_dataset], cfg, str(tmp_path / "eval"))
    assert args.eps == [300.0] and args.allow_extreme_budget


def test_train_stepsize_written_as_a_fraction(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "tecoa.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--train_stepsize", "0.0039"], capsys, out,
                "train_stepsize = 0.0039 looks like a fraction of 1", "--train_stepsize 1")


def test_adversarial_method_with_zero_attack_steps(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "tga_zsr.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--train_numsteps", "0"], capsys, out,
                "train_numsteps = 0 with method tga_zsr", "clean images", "--train_numsteps 1", "--method ft_clean")


def test_adversarial_method_with_zero_budget(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "tecoa.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--train_eps", "0"], capsys, out,
                "train_eps = 0 with method tecoa", "--allow_extreme_budget true")
    _, _, cfg = parse_recipe(TRAINING, [str(RECIPES / "tecoa.yaml"), "--train_eps", "0", "--allow_extreme_budget",
                                        "true", "--output_dir", str(out)])
    assert cfg.train_eps == 0  # on purpose
    _, _, cfg = parse_recipe(TRAINING, [str(RECIPES / "ft_clean.yaml"), "--train_eps", "0", "--train_numsteps", "0",
                                        "--output_dir", str(out)])
    assert cfg.method == "ft_clean"  # clean fine-tuning needs no attack


def test_max_steps_zero(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, saved_dataset, out, "--max_steps", "0"), capsys, out,
                "max_steps = 0 is out of range", "0 would train nothing", "-1 (the default)")


def test_negative_learning_rate(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--learning_rate=-1e-4"], capsys, out,
                "learning_rate = -0.0001 is out of range", "positive value")


def test_end_of_training_evaluation_without_attack_steps(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, saved_dataset, out, "--eval_max_samples", "4",
                                "--eval_attack_steps", "0"), capsys, out,
                "eval_attack_steps = 0", "eval_split 'valid'", "robust accuracy would be clean accuracy",
                "--eval_attack_steps 1")
    # Without an evaluation the count does not matter.
    parse_recipe(TRAINING, [*tiny_train_args(tiny_clip, saved_dataset, out), "--eval_attack_steps", "0"])


def test_negative_eval_max_samples(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, saved_dataset, out, "--eval_max_samples", "-1"), capsys, out,
                "eval_max_samples = -1 is out of range", "or 0")


def test_several_problems_are_listed_together(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, saved_dataset, out, "--train_eps", "0.0039", "--max_steps", "0"),
                capsys, out, "2 problems in the settings", "- train_eps = 0.0039", "- max_steps = 0")


def test_vision_attention_with_sdpa(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "vision_attention.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--attn_implementation", "sdpa"], capsys, out,
                "attn_implementation = 'sdpa' with method vision_attention", "only eager attention",
                "--attn_implementation eager")
    # validate() is the same check, for train.py to call after changing the parsed arguments.
    model_args, data_args, cfg = parse_recipe(TRAINING, [str(RECIPES / "vision_attention.yaml"),
                                                         "--output_dir", str(out)])
    model_args.attn_implementation = "flash_attention_2"
    with pytest.raises(RecipeError, match="attn_implementation = 'flash_attention_2'"):
        validate(model_args, data_args, cfg)


def test_comp_tga_negated_prompt_without_a_class_slot(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([str(RECIPES / "comp_tga.yaml"), *tiny_train_args(tiny_clip, saved_dataset, out),
                 "--negated_prompt_template", "This is not a photo"], capsys, out,
                "negated_prompt_template = 'This is not a photo' has no '{}'",
                "--negated_prompt_template 'This is not a photo of a {}'")


def test_prompt_template_without_a_class_slot(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--prompt_template", "A photo"], capsys, out,
                "prompt_template = 'A photo' has no '{}'", "every class would get the same prompt")


def test_unknown_method(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--method", "tga"], capsys, out,
                "Invalid --method", "Unknown method 'tga'", "Did you mean 'tga_zsr'")


# --- model folders ----------------------------------------------------------------------------

def test_bert_folder_in_training(bert_folder, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails(tiny_train_args(bert_folder, saved_dataset, out), capsys, out,
                "is not a CLIP model", "model_type 'bert'", 'model_type "clip"', "CLIPModel directory")


def test_bert_folder_in_evaluation(bert_folder, eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--model_name_or_path", bert_folder), capsys,
               "model_type 'bert'", "random weights")


def test_folder_without_config_json_points_at_its_checkpoints(tiny_clip, saved_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_clip, run / "checkpoint-3")
    out = tmp_path / "out"
    train_fails(tiny_train_args(str(run), saved_dataset, out), capsys, out,
                "has no config.json", "checkpoint-3", "CLIPModel directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFolderError, match="has no config.json.*it holds nothing"):
        from tgazsr.modeling import load_clip

        load_clip(str(empty))


# --- models load strictly: exactly the tensors the config declares ------------------------------

def edited_model(source: str, folder: Path, how: str) -> tuple[str, str]:
    """A copy of the model folder ``source`` whose model.safetensors lacks a tensor, holds an extra
    one, or holds one of another shape. Returns (folder, the tensor's name)."""
    from conftest import edit_weights

    shutil.copytree(source, folder)
    name = edit_weights(folder / "model.safetensors", how,
                        "visual_projection.weight" if how == "mismatched" else "vision_model.post_layernorm.weight")
    return str(folder), name


STRICT_PHRASES = {"missing": "missing 1 tensor(s)", "unexpected": "1 unexpected tensor(s)",
                  "shape": "1 tensor(s) of the wrong shape"}


@pytest.mark.parametrize("how", list(STRICT_PHRASES))
def test_a_weights_file_that_does_not_match_its_config_in_training(how, tiny_clip, saved_dataset, tmp_path, capsys):
    model, name = edited_model(tiny_clip, tmp_path / "model", how)
    out = tmp_path / "out"
    train_fails(tiny_train_args(model, saved_dataset, out), capsys, out, name, STRICT_PHRASES[how],
                "random initialization", "save_pretrained")


@pytest.mark.parametrize("how", list(STRICT_PHRASES))
def test_a_weights_file_that_does_not_match_its_config_in_evaluation(how, eval_world, tmp_path, capsys):
    model, name = edited_model(eval_world["clip_a"], tmp_path / "model", how)
    eval_fails(eval_argv(eval_world, tmp_path, "--model_name_or_path", model), capsys, name, STRICT_PHRASES[how])
    assert not (tmp_path / "eval" / "results.json").exists()


def test_a_clean_round_trip_and_old_position_ids_load_strictly(tiny_clip, tmp_path):
    """What a clean save_pretrained / from_pretrained round trip reports: nothing. Checkpoints of
    older transformers releases hold position_ids buffers; transformers drops them before it
    reports, so they load too. Anything else is refused, ten names at most per kind."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import CLIPModel

    from tgazsr.model_checks import load_pretrained_strict, tensor_problems

    load_pretrained_strict(CLIPModel, tiny_clip)
    old = tmp_path / "old"
    shutil.copytree(tiny_clip, old)
    weights = load_file(str(old / "model.safetensors"))
    for tower, length in (("text_model", 64), ("vision_model", 17)):
        weights[f"{tower}.embeddings.position_ids"] = torch.arange(length).unsqueeze(0)
    save_file(weights, str(old / "model.safetensors"), metadata={"format": "pt"})
    load_pretrained_strict(CLIPModel, str(old))
    many = tensor_problems(missing=[f"t{i:02d}" for i in range(25)])[0]
    assert "t09" in many and "t10" not in many and "and 15 more" in many


def test_model_folder_that_does_not_exist(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--model_name_or_path", str(tmp_path / "no_model")), capsys,
               "no_model does not exist", "Hub id")


def test_clip_folder_without_tokenizer_files_in_evaluation(bare_clip, eval_world, tmp_path, capsys):
    message = eval_fails(eval_argv(eval_world, tmp_path, "--model_name_or_path", bare_clip), capsys,
                         "--tokenizer_name_or_path")
    assert bare_clip in message


def test_tokenizer_without_vocabulary_in_training(bare_clip, tiny_clip):
    """train.py's path: load_processor refuses the folder; check_tokenizer and class_embeddings
    refuse a tokenizer built without vocabulary files."""
    from transformers import AutoTokenizer

    from tgazsr.modeling import ZeroShotCLIP, check_tokenizer, load_clip, load_processor

    with pytest.raises(ModelFolderError, match="tokenizer files"):
        load_processor(bare_clip)
    empty = AutoTokenizer.from_pretrained(bare_clip)  # transformers builds one without vocabulary
    prompts = ["This is a photo of a red square", "This is a photo of a green circle"]
    with pytest.raises(ModelFolderError, match=r"no vocabulary.*unknown token.*tokenizer files") as info:
        check_tokenizer(empty, prompts, bare_clip)
    assert bare_clip in str(info.value) and isinstance(info.value, UserError)
    check_tokenizer(AutoTokenizer.from_pretrained(tiny_clip), prompts, tiny_clip)  # a real one passes
    model = ZeroShotCLIP(load_clip(bare_clip))
    with pytest.raises(ModelFolderError, match="no vocabulary"):
        model.class_embeddings(["red square", "green circle"], ["This is a photo of a {}"], empty)


def test_prompts_that_collide_once_truncated(tiny_clip):
    from transformers import AutoTokenizer

    from tgazsr.errors import PromptError
    from tgazsr.modeling import check_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_clip, model_max_length=8)
    with pytest.raises(PromptError, match="same once truncated to the 8 tokens"):
        check_tokenizer(tok, ["a photo of a red square", "a photo of a green circle"], tiny_clip)


# --- data ---------------------------------------------------------------------------------------

def saved(tmp_path, name: str, columns: dict, features=None) -> str:
    """A save_to_disk dataset with one split 'test' holding ``columns``."""
    import datasets

    path = str(tmp_path / name)
    ds = datasets.Dataset.from_dict(columns, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(path)
    return path


def test_a_dataset_with_one_class(eval_world, tiny_clip, tmp_path, capsys):
    """One class scores 100% clean and robust whatever the model: an error, in evaluation and in training."""
    from conftest import make_hf_dataset, write_image_folder

    folder = write_image_folder(str(tmp_path / "only_cats"), n=4, class_names=["cat"])
    message = eval_fails(eval_argv(eval_world, tmp_path, "--datasets", folder), capsys,
                         "only_cats has 1 class ('cat')", "needs at least two", "Add the other classes")
    assert message.count("error:") == 1, message
    assert not (tmp_path / "eval" / "results.json").exists() or not json_datasets(tmp_path / "eval")
    one = str(tmp_path / "one_class")
    make_hf_dataset(4, class_names=["cat"]).save_to_disk(one)
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", one), capsys, "one_class has 1 class ('cat')")
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, folder, out), capsys, out, "only_cats has 1 class ('cat')")


def json_datasets(folder) -> dict:
    import json

    return json.loads((folder / "results.json").read_text())["datasets"]


def test_class_names_identical_once_cleaned(eval_world, tmp_path, capsys):
    from conftest import write_image_folder

    folder = write_image_folder(str(tmp_path / "shapes"), n=6, class_names=["Red_Square", "red-square", "circle"])
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", folder), capsys,
               "shapes: classes 0, 2 ('Red_Square', 'red-square' as given) are all named 'red square'",
               "Give each class a distinct name")


def test_labels_of_the_wrong_type_or_out_of_range(eval_world, tmp_path, capsys):
    import datasets
    from conftest import make_images

    images, _ = make_images(4, 2)
    floats = saved(tmp_path, "float_labels", {"image": images, "label": [0.0, 1.0, 0.0, 1.0]},
                   datasets.Features({"image": datasets.Image(), "label": datasets.Value("float32")}))
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", floats, "--class_names", "a,b"), capsys,
               "float_labels: the label column 'label' holds float32 values, not integer class ids")
    wide = saved(tmp_path, "wide_labels", {"image": images, "label": [0, 1, 2, 3]},
                 datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", wide, "--class_names", "a,b"), capsys,
               "wide_labels: label values [2, 3] of 'label' are outside [0, 2)", "one class name per label id")
    missing = saved(tmp_path, "missing_labels", {"image": images, "label": [0, None, 1, 1]},
                    datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", missing, "--class_names", "a,b"), capsys,
               "missing_labels: some rows of the label column 'label' have no label")


def test_an_image_column_without_images(eval_world, tmp_path, capsys):
    import datasets

    numbers = saved(tmp_path, "numbers", {"image": [1, 2, 3, 4], "label": [0, 1, 0, 1]},
                    datasets.Features({"image": datasets.Value("int64"),
                                       "label": datasets.ClassLabel(names=["a", "b"])}))
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", numbers), capsys,
               "numbers: the image column 'image' holds int64 values", "Set image_column to the column of images")
    words = saved(tmp_path, "words", {"image": ["cat", "dog"], "label": [0, 1]},
                  datasets.Features({"image": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}))
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", words), capsys,
               "words: the image column 'image' holds strings such as 'cat', not paths of image files")


def test_a_prompt_template_with_two_slots(eval_world, tiny_clip, saved_dataset, tmp_path, capsys):
    import json

    eval_fails(eval_argv(eval_world, tmp_path, "--prompt_template", "a {} photo of a {}"), capsys,
               "prompt_template = 'a {} photo of a {}' holds 2 '{}'")
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--prompt_template", "a {} of {}"], capsys, out,
                "prompt_template = 'a {} of {}' holds 2 '{}'")
    local = tmp_path / "with_metadata"
    shutil.copytree(eval_world["saved"], local)
    (local / "tgazsr_eval.json").write_text(json.dumps({"classifier_templates": ["a {}.", "{} and {}"]}))
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", str(local)), capsys,
               "tgazsr_eval.json classifier_templates: the prompt template '{} and {}' holds 2 '{}'")


def test_class_names_count_mismatch(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--class_names", "cat", "dog", "bird"],
                capsys, out, "3 class names were given", "has 4 classes", "one name per class, in label order")


def test_class_names_file(tiny_clip, saved_dataset, tmp_path, capsys):
    from tgazsr.data import prepare_classification_data

    names = tmp_path / "names.txt"
    names.write_text("# one per line\nred box\ngreen ball\nblue cone\nyellow star\n")
    _, data_args, _ = parse_recipe(TRAINING, tiny_train_args(tiny_clip, saved_dataset, tmp_path / "o",
                                                             "--class_names", str(names)))
    assert data_args.class_names == [str(names)]  # a one-item list, as argparse gives it
    data = prepare_classification_data(saved_dataset, "train", 32, class_names=data_args.class_names)
    assert data.class_names == ["red box", "green ball", "blue cone", "yellow star"]
    # A file with the wrong count says so and names the file; a file that does not exist too.
    short = tmp_path / "short.txt"
    short.write_text("red box\ngreen ball\n")
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--class_names", str(short)], capsys, out,
                "2 class names were given (from the file", "short.txt", "has 4 classes")
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--class_names", str(tmp_path / "typo.txt")],
                capsys, out, "The class_names file", "typo.txt' does not exist")


def test_missing_split(tiny_clip, saved_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails([*tiny_train_args(tiny_clip, saved_dataset, out), "--train_split", "training"], capsys, out,
                "no split 'training'", "['train', 'valid']", "Name one of them")


def test_missing_split_in_evaluation_when_nothing_can_be_evaluated(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--split", "validation"), capsys,
               "No dataset could be evaluated", "no split 'validation'")


def test_dataset_path_that_does_not_exist(tiny_clip, tmp_path, capsys):
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, str(tmp_path / "no_data"), out), capsys, out,
                "no_data' does not exist", "Point dataset_name at an existing folder")


def test_dataset_path_that_does_not_exist_in_evaluation(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", str(tmp_path / "no_data")), capsys,
               "no_data", "does not exist")


# --- evaluation settings ------------------------------------------------------------------------

def test_evaluation_max_samples_zero(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--max_samples", "0"), capsys,
               "max_samples = 0 is out of range", "Leave --max_samples unset")


def test_evaluation_eps_written_as_a_fraction(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--eps", "0.0039", "4"), capsys,
               "eps = 0.0039 looks like a fraction of 1", "write 1 for 1/255", "--allow_extreme_budget true")
    from tgazsr.evaluation import EvalArguments

    assert EvalArguments(eps=[0.25], norm="l2").eps == [0.25]  # absolute L2 radii are not in 1/255
    assert EvalArguments(eps=[0.0039], allow_extreme_budget=True).eps == [0.0039]
    with pytest.raises(RecipeError, match="sanity_eps = 1000 exceeds the pixel range"):
        EvalArguments(sanity_eps=1000)


def test_evaluation_attack_without_steps(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--pgd_steps", "0"), capsys,
               "pgd_steps = 0", "robust accuracy would be clean accuracy", "--pgd_steps 1")
    eval_fails(eval_argv(eval_world, tmp_path, "--attacks", "autoattack", "--attack_options",
                         '{"autoattack": {"n_iter": 0}}'), capsys,
               "autoattack_n_iter = 0", "--autoattack_n_iter 1")


def test_evaluation_counts(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--batch_size", "0"), capsys, "batch_size = 0")
    eval_fails(eval_argv(eval_world, tmp_path, "--sanity_samples", "-1"), capsys,
               "sanity_samples = -1 is out of range", "or 0 to skip")


def test_unknown_attack(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--attacks", "pgdd"), capsys,
               "Unknown attack 'pgdd'", "Did you mean 'pgd'")


def test_unknown_dataset_name(eval_world, tmp_path, capsys):
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", "cifar11", eval_world["saved"]), capsys,
               "cifar11", "Did you mean 'cifar10'")
    assert not (tmp_path / "eval").exists()  # nothing was evaluated


def test_no_model_or_no_dataset(eval_world, tmp_path, capsys):
    eval_fails(["--datasets", eval_world["saved"]], capsys, "pass --model_name_or_path")
    eval_fails(["--model_name_or_path", eval_world["clip_a"]], capsys, "pass --datasets")


# --- the command: exit status, --debug, internal errors -------------------------------------------

@pytest.mark.launches
def test_python_m_evaluate_exits_2_without_a_traceback(eval_world, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TGAZSR_DEBUG", None)
    proc = run_timed([sys.executable, "-m", "tgazsr.evaluate", *eval_argv(eval_world, tmp_path, "--max_samples", "0")],
                     cwd=ROOT, env=env, measured_s=4, doing="python -m tgazsr.evaluate with max_samples 0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: max_samples = 0"), proc.stderr[-3000:]
    assert "--debug" in proc.stderr  # says how to see the traceback


def test_debug_shows_the_traceback(eval_world, tmp_path, monkeypatch):
    from tgazsr.evaluation import cli

    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)
    argv = eval_argv(eval_world, tmp_path, "--batch_size", "0")
    with pytest.raises(RecipeError, match="batch_size = 0"):
        run_command(cli.main, [*argv, "--debug"])
    monkeypatch.setenv("TGAZSR_DEBUG", "1")
    with pytest.raises(RecipeError, match="batch_size = 0"):
        run_command(cli.main, argv)
    # --debug with a value is TrainingArguments' own field, left in place.
    assert _take_debug_flag(["--debug", "underflow_overflow", "--x", "1"]) == (
        ["--debug", "underflow_overflow", "--x", "1"], False)
    assert _take_debug_flag(["--x", "1", "--debug", "--y"]) == (["--x", "1", "--y"], True)


def test_an_internal_error_keeps_its_traceback_and_exit_status_1(tmp_path):
    script = ("import sys\nfrom tgazsr.errors import run_command\n"
              "def main(argv):\n    raise RuntimeError('internal: ' + ' '.join(argv))\n"
              "sys.exit(run_command(main, ['--a', '1']))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TGAZSR_DEBUG", None)
    proc = run_timed([sys.executable, "-c", script], cwd=tmp_path, env=env, measured_s=1,
                     doing="a command that raises an internal error")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: internal: --a 1" in proc.stderr


def test_run_command_exit_statuses(capsys, monkeypatch):
    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)
    assert run_command(lambda argv: 0, []) == 0
    assert run_command(lambda argv: 1, []) == 1
    assert run_command(lambda argv: {"results": 1}, []) == 0  # train.main returns its results
    assert run_command(lambda argv: None, []) == 0
    seen = []
    assert run_command(lambda argv: seen.append(argv), ["a", "--debug", "--b", "2"]) == 0
    assert seen == [["a", "--b", "2"]]

    def bad(argv):
        raise UserError("the input is wrong\nhere is how to fix it")

    assert run_command(bad, []) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the input is wrong\nhere is how to fix it\n") and "Traceback" not in err
    # The user-facing error classes are UserErrors and keep their old bases.
    from tgazsr.data import DataError
    from tgazsr.evaluation import DatasetUnavailable

    assert issubclass(RecipeError, ValueError) and issubclass(RecipeError, UserError)
    assert issubclass(DataError, ValueError) and issubclass(DataError, UserError)
    assert issubclass(DatasetUnavailable, RuntimeError) and issubclass(DatasetUnavailable, UserError)
    assert issubclass(ModelFolderError, OSError) and issubclass(ModelFolderError, UserError)


def test_a_truncated_image_in_training(tiny_clip, tmp_path, capsys):
    from conftest import write_image_folder
    from PIL import Image

    folder = Path(write_image_folder(str(tmp_path / "pets"), n=4, class_names=["cat", "dog"]))
    (folder / "dog" / "0001.png").unlink()
    Image.new("RGB", (40, 48), (200, 10, 10)).save(folder / "dog" / "0001.jpg", quality=90)
    data = (folder / "dog" / "0001.jpg").read_bytes()
    (folder / "dog" / "0001.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    train_fails(tiny_train_args(tiny_clip, str(folder), out), capsys, out,
                "dog/0001.jpg (row 2 of", "cannot be read as an image", "--skip_unreadable_images true")
    from tgazsr import train

    capsys.readouterr()
    argv = tiny_train_args(tiny_clip, str(folder), out, "--skip_unreadable_images", "true",
                           "--per_device_train_batch_size", "3")
    assert run_command(train.main, argv) == 0, capsys.readouterr().err
    assert "(1 unreadable image skipped with `skip_unreadable_images`)" in (out / "README.md").read_text()


# --- every command: results files, benchmark names, images, output folders ------------------------

def one_error_line(code: int, err: str, *phrases) -> str:
    """Exit status 2 and exactly one ``error:`` line, without a traceback, holding every phrase."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for phrase in phrases:
        assert phrase in lines[0], f"{phrase!r} not in {lines[0]!r}"
    return lines[0]


def good_results(**extra) -> dict:
    return {"schema_version": 1, "model": "m", "datasets": {"toy": {
        "clean_accuracy": 0.5, "robust": {"pgd@1/255": 0.25}, "num_samples": 4}}, **extra}


def test_leaderboard_on_a_truncated_results_file(tmp_path, capsys):
    from tgazsr.cli import main

    path = tmp_path / "results.json"
    text = json.dumps(good_results())
    path.write_text(text[: len(text) // 2])
    code = main(["leaderboard", str(path), "--output", str(tmp_path / "board.md")])
    one_error_line(code, capsys.readouterr().err, str(path), "is truncated or not JSON", "rerun the evaluation")
    assert not (tmp_path / "board.md").exists()


def test_plot_on_a_foreign_json(tmp_path, capsys):
    from tgazsr.cli import main

    path = tmp_path / "other.json"
    path.write_text(json.dumps({"accuracy": 0.9}))
    code = main(["plot", str(path), "--output", str(tmp_path / "p.png")])
    one_error_line(code, capsys.readouterr().err, "not a tgazsr results file: missing field datasets")
    path.write_text(json.dumps({"datasets": {"toy": {"clean_accuracy": 0.5, "num_samples": 4}}}))
    code = main(["plot", str(path), "--output", str(tmp_path / "p.png")])
    one_error_line(code, capsys.readouterr().err, "missing field datasets.toy.robust")
    assert not (tmp_path / "p.png").exists()


def test_results_files_by_schema_version(tmp_path):
    from tgazsr.evaluation.reports import RESULTS_SCHEMA_VERSION, ResultsFileError, read_results

    old = good_results()
    old.pop("schema_version")  # written before the version existed: read, its average computed
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_results(str(tmp_path / "old.json"))["average"]["robust"] == {"pgd@1/255": 0.25}
    (tmp_path / "new.json").write_text(json.dumps(good_results(schema_version=RESULTS_SCHEMA_VERSION + 1)))
    with pytest.raises(ResultsFileError, match="newer than this tgazsr reads"):
        read_results(str(tmp_path / "new.json"))
    bad = good_results()
    bad["datasets"]["toy"]["robust"]["pgd@1/255"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(bad))
    with pytest.raises(ResultsFileError, match=r"datasets\.toy\.robust\.pgd@1/255 is nan"):
        read_results(str(tmp_path / "nan.json"))
    with pytest.raises(ResultsFileError, match="no such file"):
        read_results(str(tmp_path / "missing.json"))
    assert issubclass(ResultsFileError, ValueError) and issubclass(ResultsFileError, UserError)


def test_an_evaluation_writes_the_schema_version(eval_world, tmp_path):
    from tgazsr.evaluation import cli
    from tgazsr.evaluation.reports import RESULTS_SCHEMA_VERSION, read_results

    assert run_command(cli.main, eval_argv(eval_world, tmp_path)) == 0
    written = read_results(str(tmp_path / "eval" / "results.json"))
    assert written["schema_version"] == RESULTS_SCHEMA_VERSION


def test_data_with_an_unknown_benchmark_name(capsys):
    from tgazsr.cli import main

    code = main(["data", "cifar11"])
    one_error_line(code, capsys.readouterr().err, "Unknown benchmark 'cifar11'", "Did you mean 'cifar10'?")


def test_visualize_with_a_missing_image(tmp_path, capsys, monkeypatch):
    from tgazsr.cli import main
    from tgazsr.evaluation import model

    monkeypatch.setattr(model, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code = main(["visualize", "--model_name_or_path", "m", "--image", str(tmp_path / "dog.jpg"), "--label", "dog",
                 "--class_names", "dog,cat", "--output", str(tmp_path / "a.png")])
    one_error_line(code, capsys.readouterr().err, "dog.jpg: no such file")
    (tmp_path / "dog.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = main(["visualize", "--model_name_or_path", "m", "--image", str(tmp_path / "dog.jpg"), "--label", "dog",
                 "--class_names", "dog,cat", "--output", str(tmp_path / "a.png")])
    one_error_line(code, capsys.readouterr().err, "cannot be read as an image")
    code = main(["visualize", "--model_name_or_path", "m", "--image", str(tmp_path / "dog.jpg"), "--label", "cow",
                 "--class_names", "dog,cat"])
    one_error_line(code, capsys.readouterr().err, "'cow' is not one of the class names")


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nothing can be written in: its mode says so, and (for root, whom modes do not stop)
    creating a file in it fails as a read-only folder does."""
    import errno
    import tempfile

    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield folder
    folder.chmod(0o755)


def test_a_read_only_output_dir_is_refused_before_the_model_is_loaded(tiny_clip, saved_dataset, read_only, capsys,
                                                                       monkeypatch):
    from tgazsr import train

    monkeypatch.setattr(train, "load_clip", lambda *a, **k: pytest.fail("the model was loaded"))
    code = run_command(train.main, tiny_train_args(tiny_clip, saved_dataset, read_only / "run"))
    one_error_line(code, capsys.readouterr().err, "--output_dir", "is not writable", str(read_only))
    code = run_command(train.main, tiny_train_args(tiny_clip, saved_dataset, read_only))
    one_error_line(code, capsys.readouterr().err, "is not writable")
    assert not any(read_only.iterdir())


def test_a_read_only_evaluation_output_is_refused_before_the_model_is_loaded(eval_world, read_only, capsys,
                                                                             monkeypatch):
    from tgazsr.evaluation import cli, harness

    monkeypatch.setattr(harness, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code = run_command(cli.main, eval_argv(eval_world, read_only, "--output_dir", str(read_only / "eval")))
    one_error_line(code, capsys.readouterr().err, "--output_dir", "is not writable")


def test_an_output_dir_that_is_a_file_or_on_a_full_disk(tiny_clip, saved_dataset, tmp_path, capsys, monkeypatch):
    import shutil as shutil_module

    from tgazsr import train

    monkeypatch.setattr(train, "load_clip", lambda *a, **k: pytest.fail("the model was loaded"))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    code = run_command(train.main, tiny_train_args(tiny_clip, saved_dataset, a_file))
    one_error_line(code, capsys.readouterr().err, "is a file, not a folder")

    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage._replace(free=1000))
    code = run_command(train.main, tiny_train_args(tiny_clip, saved_dataset, tmp_path / "run"))
    line = one_error_line(code, capsys.readouterr().err, "too little free space", "one checkpoint", "1000 B is free")
    from tgazsr.files import model_parameter_count

    assert f"{model_parameter_count(tiny_clip):,} parameters" in line


def test_plot_and_leaderboard_outputs_are_checked_before_reading(tmp_path, capsys):
    from tgazsr.cli import main

    (tmp_path / "results.json").write_text(json.dumps(good_results()))
    code = main(["plot", str(tmp_path / "results.json"), "--output", str(tmp_path)])
    one_error_line(code, capsys.readouterr().err, "is a folder, not a file")
    code = main(["leaderboard", str(tmp_path / "results.json"), "--output", str(tmp_path / "results.json" / "b.md")])
    one_error_line(code, capsys.readouterr().err, "cannot be created")


def test_a_cache_lock_held_by_another_process_is_named_while_waiting(tmp_path, caplog):
    """Two processes building the same cache entry (the world, a conversion): the second says whose lock it
    waits for, instead of waiting in silence; a lock nobody holds is taken at once, without a word."""
    import fcntl
    import logging
    import threading

    from tgazsr.files import file_lock

    path = str(tmp_path / "world.lock")
    with caplog.at_level(logging.INFO, logger="tgazsr.files"), file_lock(path):
        pass
    assert not caplog.records
    holder = open(path, "a")
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: flock treats it as another process's lock
    threading.Timer(0.2, holder.close).start()  # that process ends
    with caplog.at_level(logging.INFO, logger="tgazsr.files"), file_lock(path):
        pass
    assert [r.getMessage() for r in caplog.records if "Waiting for another process that holds" in r.getMessage()
            and path in r.getMessage()]
