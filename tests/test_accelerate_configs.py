"""The accelerate configs load as accelerate reads them, and their engine settings are the ones
tgazsr's saving and frozen reference rely on. (DDP and FSDP2 also run in test_distributed.py,
DeepSpeed ZeRO-2 in test_deepspeed.py; ZeRO-3 is refused, and has no config.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "accelerate_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_as_accelerate_reads_it(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.mixed_precision == "no"  # the recipe's --bf16/--fp16 decides, never a silent override
    text = path.read_text()
    if config.num_machines == 1 and config.distributed_type.value != "NO":
        assert "accelerate launch --config_file accelerate_configs/" + path.name in text  # its launch command


def test_every_engine_has_a_config():
    engines = {yaml.safe_load(p.read_text())["distributed_type"] for p in CONFIGS}
    assert {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"} <= engines
    stages = {yaml.safe_load(p.read_text()).get("deepspeed_config", {}).get("zero_stage") for p in CONFIGS}
    assert stages == {None, 2}  # ZeRO-3 is refused (tgazsr.config.deepspeed_problems): no config offers it


@pytest.mark.parametrize("path", [p for p in CONFIGS if "deepspeed" in p.name], ids=lambda p: p.name)
def test_deepspeed_config_builds_the_engine_settings(path):
    from accelerate.utils import DeepSpeedPlugin

    block = yaml.safe_load(path.read_text())["deepspeed_config"]
    plugin = DeepSpeedPlugin(**block)  # the plugin accelerate builds from this block
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == block["zero_stage"]
    assert zero["offload_param"]["device"] == "none" and zero["offload_optimizer"]["device"] == "none"
    # batch sizes and clipping come from the recipe through the Trainer
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == "auto"
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"


@pytest.mark.parametrize("name, family", [("fsdp.yaml", "clip"), ("fsdp_siglip.yaml", "siglip")])
def test_each_fsdp_config_wraps_its_backbones_own_layers(name, family, tiny_clip, tiny_siglip):
    """The layer class each config wraps is the one its backbone's vision tower repeats, and the
    other family's config is refused on it with the class to wrap (before anything is sharded)."""
    from types import SimpleNamespace

    from tgazsr.errors import UserError
    from tgazsr.modeling import ZeroShotCLIP, load_clip
    from tgazsr.trainer import check_wrapped_layers

    block = yaml.safe_load((ROOT / "accelerate_configs" / name).read_text())["fsdp_config"]
    assert block["fsdp_version"] == 2 and block["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    folders = {"clip": tiny_clip, "siglip": tiny_siglip}
    own = ZeroShotCLIP(load_clip(folders[family]))
    other = ZeroShotCLIP(load_clip(folders["siglip" if family == "clip" else "clip"]))
    plugin = SimpleNamespace(transformer_cls_names_to_wrap=[block["fsdp_transformer_layer_cls_to_wrap"]])
    assert own.backbone.shard_unit_names(own.clip) == [block["fsdp_transformer_layer_cls_to_wrap"]]
    assert own.backbone.fsdp_config == f"accelerate_configs/{name}"  # the config the refusal names
    check_wrapped_layers(plugin, own)
    with pytest.raises(UserError, match=f"which this {type(other.clip).__name__} does not have.*"
                                        f"{other.backbone.shard_unit_names(other.clip)[0]}"):
        check_wrapped_layers(plugin, other)


def test_slurm_script_is_valid_bash_and_uses_the_multi_node_config():
    script = ROOT / "docs" / "slurm_multi_node.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "accelerate_configs/multi_node.yaml" in text and "--machine_rank" in text
    config = yaml.safe_load((ROOT / "accelerate_configs" / "multi_node.yaml").read_text())
    assert config["num_machines"] > 1


def test_the_installed_environment_keeps_accelerate_launch_working():
    """What the install puts beside the package must not break the launcher the README starts with:
    accelerate's command line imports optional packages it finds (timm, for one, which fails without
    torchvision; the install keeps it in .test_deps, off the path)."""
    import sys

    from timed_run import run_timed

    launcher = str(Path(sys.executable).parent / "accelerate")
    done = run_timed([launcher, "launch", "--help"], measured_s=4, doing="accelerate launch --help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage" in done.stdout.lower()

