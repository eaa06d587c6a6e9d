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
    # DeepSpeed compiles its CPU collective here, in a folder of this test's own: a lock left in the
    # user's cache by a killed build would make the run wait forever (tgazsr.build_locks)
    env = {**ENV, "TORCH_EXTENSIONS_DIR": str(tmp_path / "torch_extensions")}
    # about 90 s with DeepSpeed's compile of its CPU op (BENCHMARKS.md, "Time limits of the tests")
    run = run_timed([*launch, *_args(tiny_clip, saved_dataset, out, 4)], env=env, measured_s=90,
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
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch_extensions"))
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


def test_a_build_lock_left_by_a_killed_compilation_is_refused_before_the_run_waits_on_it(
        tiny_clip, saved_dataset, tmp_path, monkeypatch, caplog):
    """torch's extension build waits without a limit for an op's ``lock`` file to go: an old one (a
    build killed midway) is refused at parse time with the file to delete; a recent one is logged."""
    import time

    from tgazsr.config import DataArguments, ModelArguments, RobustTrainingConfig
    from tgazsr.recipes import RecipeError, parse_recipe

    root = tmp_path / "torch_extensions"
    for op, age in (("deepspeed_shm_comm", 3600), ("fused_adam", 5)):
        (root / op).mkdir(parents=True)
        lock = root / op / "lock"
        lock.touch()
        os.utime(lock, (time.time() - age, time.time() - age))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(root))
    args = _args(tiny_clip, saved_dataset, tmp_path / "out", 4)
    with pytest.raises(RecipeError) as refused:
        parse_recipe((ModelArguments, DataArguments, RobustTrainingConfig), args)
    message = str(refused.value)
    assert f"rm {root / 'deepspeed_shm_comm' / 'lock'}" in message and "60 minutes ago" in message
    assert "fused_adam" not in message  # a build that may still be running is not refused ...
    assert any("fused_adam" in r.getMessage() and "5 s old" in r.getMessage() for r in caplog.records)  # ... but named
    assert not (tmp_path / "out").exists()
    del refused
    import gc

    gc.collect()


def test_the_extension_folder_is_the_one_torch_builds_in(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    from tgazsr.build_locks import build_locks, extension_root

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setattr(os, "makedirs", lambda *a, **k: None)  # torch's helper creates the folder; not here
    assert os.path.join(extension_root(), "op") == cpp_extension._get_build_directory("op", verbose=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extension_root() == str(tmp_path)
    assert build_locks() == []
