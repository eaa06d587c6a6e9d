"""The ``tgazsr`` command: subcommands, trl-style recipes (``--config``, ``env:``, dashes), exit codes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import merge_flags
from tgazsr.cli import COMMANDS, main
from timed_run import run_timed

ROOT = Path(__file__).resolve().parents[1]


def test_usage_lists_every_subcommand(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["trian"]) == 2
    assert "Did you mean 'train'?" in capsys.readouterr().err


@pytest.mark.launches
def test_console_script_and_python_dash_m(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    exe = Path(sys.executable).parent / "tgazsr"
    res = run_timed([str(exe), "train", "--help"], env=env, measured_s=4, doing="tgazsr train --help")
    assert res.returncode == 0 and "--train_eps" in res.stdout and "units of 1/255" in res.stdout
    assert res.stdout.startswith("usage: tgazsr train ")  # the command as typed, not the script's file name
    res = run_timed([sys.executable, "-m", "tgazsr.train", "--help"], env=env, measured_s=4,
                    doing="python -m tgazsr.train --help")
    assert res.returncode == 0 and res.stdout.startswith("usage: python -m tgazsr.train ")
    res = run_timed([sys.executable, "-m", "tgazsr", "evaluate", "--eps", "0.004", "--datasets", "cifar10",
                     "--model_name_or_path", "m"], env=env, measured_s=4,
                    doing="python -m tgazsr evaluate with a bad --eps")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "1/255" in res.stderr


def test_train_with_config_env_block_and_dashes(tiny_clip, saved_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("TGAZSR_TEST_ENV", raising=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("env:\n  TGAZSR_TEST_ENV: set-by-recipe\nmethod: tecoa\nmax-steps: 1\ntrain-eps: 1\n")
    out = tmp_path / "out"
    code = main(["train", "--config", str(recipe), *merge_flags([
        "--model-name-or-path", tiny_clip, "--dataset_name", saved_dataset, "--output-dir", str(out),
        "--per_device_train_batch_size", "4", "--use_cpu", "true", "--save_strategy", "no", "--eval_max_samples",
        "0", "--report_to", "none"], [])])
    assert code == 0 and (out / "model.safetensors").is_file()
    assert os.environ["TGAZSR_TEST_ENV"] == "set-by-recipe"
    recipe_json = json.loads((out / "tgazsr_recipe.json").read_text())
    assert recipe_json["training"]["max_steps"] == 1 and recipe_json["training"]["method"] == "tecoa"
    assert main(["train", str(recipe), "--config", str(recipe)]) == 2  # two recipes


def test_world_and_plot_subcommands(tmp_path, capsys):
    assert main(["world", "--small", "--root", str(tmp_path / "w"), "--no_report"]) == 0
    assert "harness datasets: world_shapes=" in capsys.readouterr().out
    assert main(["plot"]) == 2  # nothing to plot
    assert "results.json" in capsys.readouterr().err
