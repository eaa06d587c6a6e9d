"""Two gloo processes (torchrun, CPU) give the same update as one process with the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "tga_zsr.yaml")


def _args(tiny_clip, data, out, batch):
    return [RECIPE, "--model_name_or_path", tiny_clip, "--dataset_name", data, "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", str(batch), "--fp16", "false", "--use_cpu", "true",
            "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "no", "--eval_max_samples", "0",
            "--train_random_start", "false", "--learning_rate", "0.01", "--optim_args", "momentum=0.0",
            "--max_grad_norm", "0", "--report_to", "none"]


def test_ddp_two_processes_match_one_process(tiny_clip, saved_dataset, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "tgazsr.train", *_args(tiny_clip, saved_dataset, tmp_path / "ddp", 4)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = subprocess.run([sys.executable, "-m", "tgazsr.train", *_args(tiny_clip, saved_dataset, tmp_path / "one", 8)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-4000:]
    a, b = load_file(tmp_path / "ddp" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    base = load_file(Path(tiny_clip) / "model.safetensors")
    assert any(not torch.equal(a[k], base[k]) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
