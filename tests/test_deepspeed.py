"""DeepSpeed ZeRO-2 on two gloo processes (CPU), started as the README starts it (``accelerate launch``
with ``accelerate_configs/deepspeed_zero2.yaml``), gives the update of one process with the whole
batch, and the output directory is one plain CLIPModel.

ZeRO-3 is not run: tgazsr does not train under it yet (see docs/scaling.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import free_port
from test_distributed import ENV, ROOT, _args, _assert_same_weights, one_process  # noqa: F401 (fixture)

pytest.importorskip("deepspeed")


@pytest.mark.slow
def test_zero2_two_processes_match_one_process(tiny_clip, saved_dataset, one_process, tmp_path):  # noqa: F811
    from transformers import CLIPModel

    out = tmp_path / "zero2"
    config = ROOT / "accelerate_configs" / "deepspeed_zero2.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
              "--num_processes", "2", "--main_process_port", str(free_port()),
              str(ROOT / "tests" / "deepspeed_on_cpu.py")]
    run = subprocess.run([*launch, *_args(tiny_clip, saved_dataset, out, 4)], capture_output=True, text=True,
                         env=ENV, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "deepspeed_on_cpu: ZeRO stage 2 engine, 2 ranks" in run.stderr  # DeepSpeed's engine trained
    _assert_same_weights(out, one_process, tiny_clip)
    # the output is a plain CLIPModel directory, not the engine's checkpoint
    model, info = CLIPModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    assert not [name for name in os.listdir(out) if name.startswith("global_step") or name == "latest"]
