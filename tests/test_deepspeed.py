"""DeepSpeed ZeRO-2 on two gloo processes (CPU), started as the README starts it (``accelerate launch``
with ``accelerate_configs/deepspeed_zero2.yaml``), gives the update of one process with the whole
batch, and the output directory is one plain CLIPModel.

ZeRO-3, the DeepSpeed release that cannot start an engine on a CLIP and the skip policy for
non-finite losses are refused when the recipe is parsed, before anything is loaded."""

from __future__ import annotations

import os
import sys

import pytest

from conftest import free_port
from timed_run import run_timed
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
    # about 75 s with DeepSpeed's first compile of its CPU ops (BENCHMARKS.md, "Time limits of the tests")
    run = run_timed([*launch, *_args(tiny_clip, saved_dataset, out, 4)], env=ENV, measured_s=75,
                    doing="a DeepSpeed ZeRO-2 training step on two processes (accelerate launch)")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "deepspeed_on_cpu: ZeRO stage 2 engine, 2 ranks" in run.stderr  # DeepSpeed's engine trained
    _assert_same_weights(out, one_process, tiny_clip)
    # the output is a plain CLIPModel directory, not the engine's checkpoint
    model, info = CLIPModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    assert not [name for name in os.listdir(out) if name.startswith("global_step") or name == "latest"]


@pytest.mark.parametrize("stage, version, skip, message", [
    (3, "0.19.7", False, "DeepSpeed ZeRO-3 is not supported.*accelerate_configs/fsdp.yaml"),
    (2, "0.19.8", False, r"DeepSpeed 0.19.8 cannot start its engine.*pip install 'deepspeed>=0.19.7,!=0.19.8'"),
    (2, "0.19.7", True, "nonfinite_loss = 'skip' is not supported under DeepSpeed"),
])
def test_what_deepspeed_cannot_do_is_refused_at_parse_time(stage, version, skip, message, tiny_clip,
                                                           saved_dataset, tmp_path, monkeypatch):
    """As `accelerate launch --config_file <a DeepSpeed config>` sets the environment."""
    import importlib.metadata

    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import RecipeError, parse_recipe

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", str(stage))
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: version if name == "deepspeed" else real_version(name))
    args = _args(tiny_clip, saved_dataset, tmp_path / "out", 4) + (["--nonfinite_loss", "skip"] if skip else [])
    with pytest.raises(RecipeError, match=message) as refused:
        parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), args)
    assert not (tmp_path / "out").exists()
    # The parsed arguments registered DeepSpeed's config globally (a weak reference): once they are gone,
    # later tests must not load models as under ZeRO-3.
    import gc

    from transformers.integrations import is_deepspeed_zero3_enabled

    del refused
    gc.collect()
    assert not is_deepspeed_zero3_enabled()
