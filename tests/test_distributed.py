"""Two gloo processes (torchrun, CPU) give the same update as one process with the whole batch,
under data parallel (DDP) and under accelerate's FSDP2 engine with the repository's FSDP config."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import free_port, merge_flags
from timed_run import run_timed

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "tga_zsr.yaml")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.launches


def _args(tiny_clip, data, out, batch):
    return [RECIPE, "--model_name_or_path", tiny_clip, "--dataset_name", data, "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", str(batch), "--fp16", "false", "--use_cpu", "true",
            "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "no", "--eval_max_samples", "0",
            "--train_random_start", "false", "--learning_rate", "0.01", "--optim_args", "momentum=0.0",
            "--max_grad_norm", "0", "--report_to", "none"]


def _two_ranks(entry: list[str], args: list[str], doing: str):
    return run_timed([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                      str(free_port()), *entry, *args], env=ENV, measured_s=14, doing=doing)


@pytest.fixture(scope="module")
def one_process(tiny_clip, saved_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    from tgazsr.train import main  # in this process: the reference needs no launcher

    main(_args(tiny_clip, saved_dataset, out, 8))
    return out


def _assert_same_weights(run: Path, one: Path, tiny_clip: str) -> None:
    a, b = load_file(run / "model.safetensors"), load_file(one / "model.safetensors")
    base = load_file(Path(tiny_clip) / "model.safetensors")
    assert set(a) == set(b) == set(base)
    assert any(not torch.equal(a[k], base[k]) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_ddp_two_processes_match_one_process(tiny_clip, saved_dataset, one_process, tmp_path):
    recipe, *flags = _args(tiny_clip, saved_dataset, tmp_path / "ddp", 4)
    # with the end-of-training check on the eval split: every process reads the model the main one saved
    args = [recipe, *merge_flags(flags, ["--eval_max_samples", "4", "--eval_attack_steps", "1"])]
    ddp = _two_ranks(["-m", "tgazsr.train"], args, "a DDP training step on two processes")
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    _assert_same_weights(tmp_path / "ddp", one_process, tiny_clip)
    check = json.loads((tmp_path / "ddp" / "train_results.json").read_text())
    assert check, "the end-of-training check ran and was written"
    log = ddp.stdout + ddp.stderr  # logs and progress bars from the main process only
    assert log.count("Training on 16 images") == 1
    # the model is loaded twice (training, then the check), by each rank: shown for the main process only
    assert log.count("Loading weights: 100%") == 2
    assert log.count("Results in") == 1
    assert "find_unused_parameters" not in log


def test_fsdp2_two_processes_match_one_process(tiny_clip, saved_dataset, one_process, tmp_path):
    """accelerate_configs/fsdp.yaml's settings through the Trainer's fsdp_config: the vision tower
    is sharded (the frozen text tower and the scalar logit scale stay whole), the step is the same,
    and the gathered checkpoint is one plain CLIPModel directory."""
    config = yaml.safe_load((ROOT / "accelerate_configs" / "fsdp.yaml").read_text())["fsdp_config"]
    assert config["fsdp_version"] == 2
    (tmp_path / "fsdp.json").write_text(json.dumps(config))
    args = _args(tiny_clip, saved_dataset, tmp_path / "fsdp", 4) + ["--fsdp", "true", "--fsdp_config",
                                                                    str(tmp_path / "fsdp.json")]
    run = _two_ranks([str(ROOT / "tests" / "fsdp_on_cpu.py")], args, "an FSDP2 training step on two processes")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "fully_shard" not in run.stderr  # no FSDP complaint (scalar parameters, view outputs)
    assert "returned a view tensor" not in run.stderr
    _assert_same_weights(tmp_path / "fsdp", one_process, tiny_clip)
    assert not (tmp_path / "fsdp" / "pytorch_model_fsdp.bin").exists()


def test_fsdp2_on_a_siglip_matches_one_process(tiny_siglip, saved_dataset, tmp_path):
    """accelerate_configs/fsdp_siglip.yaml: SigLIP's encoder layers sharded, its text tower, logit
    scale and bias kept whole; two processes give one process's update and a plain SiglipModel."""
    config = yaml.safe_load((ROOT / "accelerate_configs" / "fsdp_siglip.yaml").read_text())["fsdp_config"]
    (tmp_path / "fsdp.json").write_text(json.dumps(config))
    siglip = ["--pixel_normalization", "auto"]
    from tgazsr.train import main

    main([*_args(tiny_siglip, saved_dataset, tmp_path / "one", 8), *siglip])  # the one-process reference
    args = _args(tiny_siglip, saved_dataset, tmp_path / "fsdp", 4) + siglip + [
        "--fsdp", "true", "--fsdp_config", str(tmp_path / "fsdp.json")]
    run = _two_ranks([str(ROOT / "tests" / "fsdp_on_cpu.py")], args, "an FSDP2 SigLIP training step on two processes")
    assert run.returncode == 0, run.stderr[-4000:]
    _assert_same_weights(tmp_path / "fsdp", tmp_path / "one", tiny_siglip)
    from transformers import SiglipModel

    SiglipModel.from_pretrained(str(tmp_path / "fsdp"))


def test_fsdp_refuses_evaluation_while_training():
    from tgazsr.config import RobustTrainingConfig
    from tgazsr.recipes import RecipeError

    with pytest.raises(RecipeError, match="eval_strategy = 'steps' with FSDP"):
        RobustTrainingConfig(output_dir="unused", fsdp=True, eval_strategy="steps", eval_datasets=["cifar10"],
                             use_cpu=True)


def test_fsdp2_resume_continues_exactly(tiny_clip, saved_dataset, tmp_path):
    """A sharded run stopped after step 2 and resumed (weights and optimizer state from the engine's
    checkpoint files) ends with the weights of a run that never stopped. The stopped run is the
    straight one's folder as it stood after its second checkpoint (one launch fewer)."""
    config = yaml.safe_load((ROOT / "accelerate_configs" / "fsdp.yaml").read_text())["fsdp_config"]
    (tmp_path / "fsdp.json").write_text(json.dumps(config))

    def run(out, *extra):
        recipe, *flags = _args(tiny_clip, saved_dataset, out, 4)
        args = [recipe, *merge_flags(flags, [
            "--fsdp", "true", "--fsdp_config", str(tmp_path / "fsdp.json"), "--lr_scheduler_type", "constant",
            "--optim_args", "momentum=0.9", "--save_strategy", "steps", "--save_steps", "1", *extra])]
        done = _two_ranks([str(ROOT / "tests" / "fsdp_on_cpu.py")], args,
                          f"an FSDP2 run on two processes to {out.name}, {' '.join(extra)}")
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    run(tmp_path / "straight", "--max_steps", "3")
    # the folder a run killed after its second checkpoint leaves: that checkpoint, nothing else (the
    # straight run keeps its last two, checkpoints 2 and 3)
    shutil.copytree(tmp_path / "straight" / "checkpoint-2", tmp_path / "stopped" / "checkpoint-2")
    resumed = run(tmp_path / "stopped", "--max_steps", "3", "--resume_from_checkpoint", "true")
    assert "Resuming from" in resumed.stderr and "checkpoint-2" in resumed.stderr
    a = load_file(tmp_path / "stopped" / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7)

