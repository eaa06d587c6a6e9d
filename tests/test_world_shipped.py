"""The world's shipped pretrained CLIP: it matches the default world, a build uses it (strictly, and
says so) when spec and seed match and pretrains otherwise, and a fresh pretraining reaches its
accuracy (slow)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from tgazsr.errors import ModelFolderError
from tgazsr.world import build_world
from tgazsr.world import pretraining, shipped
from tgazsr.world.spec import WorldSpec


def test_the_package_ships_the_model_of_the_default_world():
    record = shipped.shipped_record(WorldSpec(), seed=0)
    assert record is not None, "tgazsr/world/shipped/seed0 does not match WorldSpec(): ship the model of the new spec"
    weights = shipped.shipped_folder(0) / shipped.WEIGHTS
    assert weights.stat().st_size < 8 * 2**20  # a few MB
    assert record["pretraining"]["steps"] > 0 and not record["pretraining"].get("shipped")
    model, _ = shipped.load_shipped(WorldSpec(), seed=0)  # strict: every tensor of the config, its shape
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture
def shipped_small(tmp_path, monkeypatch):
    """A pretrained reduced world, shipped into a scratch folder the build looks in."""
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "shipped")
    source = build_world(tmp_path / "source", seed=0, small=True, pretrain=True)
    folder = shipped.ship(source.model, WorldSpec.reduced(), 0)
    return source, folder


def test_a_build_uses_the_shipped_model_when_spec_and_seed_match(shipped_small, tmp_path, monkeypatch, caplog):
    source, _ = shipped_small

    def no_pretraining(*a, **k):
        raise AssertionError("pretrained although a shipped model matches")

    monkeypatch.setattr(pretraining, "pretrain_clip", no_pretraining)
    with caplog.at_level("INFO", logger="tgazsr.world.build"):
        built = build_world(tmp_path / "fresh", seed=0, small=True)
    assert "the shipped pretrained model" in caplog.text
    a, b = load_file(os.path.join(source.model, "model.safetensors")), load_file(os.path.join(built.model, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.load(open(os.path.join(built.model, "pretraining.json")))["shipped"] is True
    assert os.path.isfile(os.path.join(built.model, "tokenizer_config.json"))  # the world's model folder, whole


def test_another_seed_or_pretrain_pretrains(shipped_small, tmp_path, monkeypatch):
    calls = []
    original = pretraining.pretrain_clip
    monkeypatch.setattr(pretraining, "pretrain_clip", lambda *a, **k: calls.append(k.get("seed")) or original(*a, **k))
    build_world(tmp_path / "seed1", seed=1, small=True)  # no shipped model for seed 1
    build_world(tmp_path / "forced", seed=0, small=True, pretrain=True)
    assert calls == [1, 0]


def test_a_shipped_model_missing_a_tensor_is_refused(shipped_small, tmp_path):
    _, folder = shipped_small
    weights = load_file(str(folder / shipped.WEIGHTS))
    del weights["visual_projection.weight"]
    save_file(weights, str(folder / shipped.WEIGHTS))
    with pytest.raises(ModelFolderError, match="visual_projection.weight"):
        build_world(tmp_path / "broken", seed=0, small=True)


@pytest.mark.slow
def test_the_shipped_model_is_what_pretraining_gives(tmp_path):
    """A fresh pretraining of the default world (minutes on a CPU) reaches the shipped model's clean
    zero-shot accuracy on the held-out sets, within 3 points on average."""
    from tgazsr.evaluation import EvalArguments, run_evaluation

    fresh = build_world(tmp_path / "fresh", seed=0, pretrain=True)
    reused = build_world(tmp_path / "reused", seed=0)

    def clean_average(paths) -> float:
        args = EvalArguments(model_name_or_path=paths.model, datasets=paths.eval_entries(), attacks=["pgd"],
                             eps=[paths.eps], attack_options={"pgd": {"steps": 1}}, max_samples=200, batch_size=200,
                             output_dir=str(tmp_path / "eval" / os.path.basename(paths.root)), plot=False)
        return run_evaluation(args)["average"]["clean_accuracy"]

    assert clean_average(fresh) >= clean_average(reused) - 0.03
