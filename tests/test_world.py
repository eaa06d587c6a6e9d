"""The offline world: deterministic data, named splits, registry entries, a loadable tiny CLIP,
correct text pooling, and ``python -m tgazsr.world`` on the reduced world."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import torch

from tgazsr import world as w
from tgazsr.data import registry
from tgazsr.world import (
    EVAL_SETS,
    HELD_OUT_PAIRS,
    HELD_OUT_SETS,
    TRAIN_PAIRS,
    ObjectSpec,
    build_eval_set,
    build_world,
    caption,
    contrastive_loss,
    make_tokenizer,
    render,
)
from tgazsr.world.__main__ import main as world_main

HELD_OUT = ("shapes", "colours", "textures", "novel_pairs", "sizes")
HAVE_HARNESS = importlib.util.find_spec("tgazsr.evaluation") is not None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world") / "w", seed=0, small=True)


def _eval_bytes(name: str, n: int, seed: int) -> list[bytes]:
    ds = build_eval_set(name, n, seed)
    ds = ds.cast_column("image", __import__("datasets").Image(decode=False))
    return [row["bytes"] for row in ds["image"]] + [bytes(ds["label"])]


# --- data ------------------------------------------------------------------------------------


def test_world_is_deterministic_under_a_seed():
    assert _eval_bytes("shapes", 12, seed=0) == _eval_bytes("shapes", 12, seed=0)
    assert _eval_bytes("shapes", 12, seed=0) != _eval_bytes("shapes", 12, seed=1)
    assert _eval_bytes("world_shapes", 12, seed=0) == _eval_bytes("shapes", 12, seed=0)  # registry name too
    obj = ObjectSpec("star", "red", "striped", "large")
    a = render(obj, np.random.default_rng(3))
    b = render(obj, np.random.default_rng(3))
    c = render(obj, np.random.default_rng(4))
    assert a.dtype == np.uint8 and a.shape == (w.IMAGE_SIZE, w.IMAGE_SIZE, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    images1, objects1, captions1 = w.generate_pretraining(6, seed=5)
    images2, objects2, captions2 = w.generate_pretraining(6, seed=5)
    assert np.array_equal(images1, images2) and objects1 == objects2 and captions1 == captions2


def test_class_vocabularies():
    assert not set(TRAIN_PAIRS) & set(HELD_OUT_PAIRS)
    assert len(TRAIN_PAIRS) + len(HELD_OUT_PAIRS) == len(w.SHAPES) * len(w.COLOURS)
    assert HELD_OUT_SETS == HELD_OUT
    train_names = {w.pair_name(p) for p in TRAIN_PAIRS}
    for name in HELD_OUT_SETS:
        s = EVAL_SETS[name]
        assert s.held_out and not set(s.class_names) & train_names
        assert w.TRAIN_TEMPLATE not in s.templates
    assert not EVAL_SETS["objects"].held_out
    # every caption names at least one attribute and names it truly
    rng = np.random.default_rng(0)
    obj = ObjectSpec("hexagon", "cyan", "dotted", "small")
    for _ in range(50):
        text, named = caption(obj, rng)
        assert named and all(getattr(obj, a) == v and v in text for a, v in named.items())


def test_world_layout_and_named_splits(world):
    import datasets

    assert os.path.exists(os.path.join(world.root, w.COMPLETE_MARKER))
    assert world.eps == w.WORLD_EPS and world.image_size == w.IMAGE_SIZE and world.held_out == HELD_OUT
    assert set(world.eval) == set(EVAL_SETS)
    assert f"world-{w.WORLD_VERSION}-seed0-small" in w.default_root(0, small=True) and w.WORLD_VERSION == "v2"

    train = datasets.load_from_disk(world.train)
    assert isinstance(train, datasets.DatasetDict) and list(train) == ["train"]
    assert isinstance(train["train"].features["image"], datasets.Image)
    assert train["train"].features["label"].names == [w.pair_name(p) for p in TRAIN_PAIRS]
    assert train["train"][0]["image"].size == (w.IMAGE_SIZE, w.IMAGE_SIZE)
    for name, path in world.eval.items():
        saved = datasets.load_from_disk(path)
        assert isinstance(saved, datasets.DatasetDict) and list(saved) == ["test"]
        ds = saved["test"]
        assert ds.features["label"].names == list(EVAL_SETS[name].class_names)
        assert set(ds["label"]) == set(range(len(EVAL_SETS[name].class_names)))  # class balanced
        assert not os.path.exists(os.path.join(path, "tgazsr_eval.json"))  # the registry describes it
    pretrain = datasets.load_from_disk(world.pretrain)
    assert isinstance(pretrain, datasets.DatasetDict) and list(pretrain) == ["train"]
    assert {"image", "caption", "shape", "colour", "pattern", "size"} <= set(pretrain["train"].column_names)


def test_reuse_does_not_rebuild(world):
    marker = os.path.join(world.root, w.COMPLETE_MARKER)
    before = os.stat(marker).st_mtime_ns
    again = build_world(world.root, seed=0, small=True)
    assert again == world and os.stat(marker).st_mtime_ns == before
    assert w.is_complete(world, w.WorldSpec.reduced())
    assert not w.is_complete(world, w.WorldSpec())  # another spec is another world


# --- registry entries --------------------------------------------------------------------------


def test_world_sets_are_registry_entries(world):
    import datasets

    assert registry.collection("world") == [f"world_{n}" for n in HELD_OUT]
    assert registry.collection("World") == registry.collection("world")
    expected_templates = {
        "objects": ["This is a photo of a {}"],
        "shapes": ["a drawing of a {}."],
        "colours": ["something coloured {}."],
        "textures": ["a surface with a {} texture."],
        "novel_pairs": ["a photo of a {}."],
        "sizes": ["a picture of a small object.", "a picture of a large object."],
    }
    assert set(expected_templates) == set(EVAL_SETS)
    for name, es in EVAL_SETS.items():
        spec = registry.get_benchmark(f"world_{name}")
        assert spec is es.benchmark and es.registry_name == spec.name == f"world_{name}"
        assert spec.hub_id is None and spec.local_only
        assert spec.split == "test" and (spec.image_column, spec.label_column) == ("image", "label")
        assert spec.resize == registry.SQUARE
        assert spec.class_names_file is None and spec.class_names == es.class_names
        assert name not in registry.TGA16 and spec.name not in registry.BENCHMARKS  # the table stays 16
        for protocol in ("tga", "fare"):
            assert registry.prompt_templates(spec.name, protocol) == expected_templates[name]
        generated = datasets.load_from_disk(world.eval[name])["test"].features["label"].names
        assert spec.num_classes == len(generated)
        for protocol in ("tga", "fare"):
            assert registry.class_names(spec.name, protocol) == generated
            assert registry.class_names(spec.name, protocol, hub_names=generated) == generated
            assert registry.label_map(spec.name, protocol, hub_names=generated) is None
    # fixed prompts: one per class, in label order
    assert len(registry.prompt_templates("world_sizes")) == len(registry.class_names("world_sizes")) == 2
    assert [len(registry.class_names(f"world_{n}")) for n in HELD_OUT] == [8, 8, 4, 16, 2]


def test_eval_entries(world):
    entries = world.eval_entries()
    assert entries == [f"world_{n}={os.path.abspath(world.eval[n])}" for n in HELD_OUT]
    for entry in entries:
        name, path = entry.split("=", 1)
        assert registry.get_benchmark(name).name == name and os.path.isabs(path) and os.path.isdir(path)
    assert world.eval_entries(["objects", "world_sizes"]) == [
        f"world_objects={world.eval['objects']}",
        f"world_sizes={world.eval['sizes']}",
    ]
    with pytest.raises(ValueError, match="Unknown world evaluation set"):
        world.eval_entries(["cifar10"])


# --- tokenizer and model -----------------------------------------------------------------------


def test_tokenizer_round_trip(world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world.model)
    assert len(tokenizer) == 514
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (512, 513, 513)
    for text in ["a drawing of a crescent", "something coloured purple", "this is a photo of a large red star"]:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == 512 and ids[-1] == 513
        assert len(ids) == len(text.replace(" ", "")) + 2  # one token per character
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    ids = tokenizer("A surface with a DOTTED texture.")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "asurfacewithadottedtexture."
    assert tokenizer(["ab", "abcdef"], padding=True)["input_ids"][0][-1] == 513  # pads with EOS
    assert make_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_model_loads_and_pools_text_at_eos(world):
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(world.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(world.model)
    config = model.config.text_config
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (512, 513, 513)
    assert config.eos_token_id != 2  # not the legacy argmax path
    assert model.config.vision_config.image_size == w.IMAGE_SIZE

    batch = tokenizer(["a red star", "a drawing of a large cyan checkered hexagon."], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.text_model(**batch)
    first_eos = (batch["input_ids"] == 513).int().argmax(-1)
    assert first_eos[0] < batch["input_ids"].shape[1] - 1  # the short caption is padded
    expected = out.last_hidden_state[torch.arange(2), first_eos]
    torch.testing.assert_close(out.pooler_output, expected)
    # padding after the EOS changes nothing (causal mask + pooling at the first EOS)
    alone = tokenizer(["a red star"], return_tensors="pt")
    with torch.no_grad():
        pooled_alone = model.text_model(**alone).pooler_output
    torch.testing.assert_close(pooled_alone[0], out.pooler_output[0], atol=1e-5, rtol=1e-5)


def test_zero_shot_pipeline_runs(world):
    import datasets
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=world.model, device="cpu")
    image = datasets.load_from_disk(world.eval["shapes"])["test"][0]["image"]
    template = registry.prompt_templates("world_shapes")[0]
    labels = registry.class_names("world_shapes")
    result = classifier(image, candidate_labels=labels, hypothesis_template=template)
    assert sorted(r["label"] for r in result) == sorted(w.SHAPES)
    assert abs(sum(r["score"] for r in result) - 1) < 1e-4


def test_multi_positive_loss():
    logits = torch.randn(4, 4)
    unique = torch.arange(4).view(4, 1).repeat(1, 4)
    # with every caption naming every attribute of distinct objects it is CLIP's loss
    torch.testing.assert_close(contrastive_loss(logits, unique, unique), contrastive_loss(logits))
    # a caption that says nothing fits every image: its column is a positive of every row
    captions = unique.clone()
    captions[0] = -1
    assert contrastive_loss(logits, unique, captions) != contrastive_loss(logits)


def test_private_evaluation_is_gone():
    for name in ("pgd_linf", "load_images", "world_report", "format_report", "load_eval_metadata"):
        assert not hasattr(w, name), name
    assert importlib.util.find_spec("tgazsr.synthetic") is None


# --- python -m tgazsr.world --------------------------------------------------------------------


def test_cli_builds_and_prints_paths(world, capsys):
    assert world_main(["--root", world.root, "--small", "--no-report"]) == {}
    printed = capsys.readouterr().out
    assert world.model in printed and world.train in printed and "8/255" in printed
    assert all(entry in printed for entry in world.eval_entries())


def test_cli_report_goes_through_the_harness_contract(world, capsys, monkeypatch):
    """What the CLI asks of ``run_evaluation`` (a stand-in harness records the call)."""
    calls = []

    class FakeArgs:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    def fake_run(args):
        calls.append(args)
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "results.md"), "w") as f:
            f.write("| stand-in table |\n")
        return {"datasets": {}, "average": {"clean_accuracy": 0.5}}

    fake = types.ModuleType("tgazsr.evaluation")
    fake.EvalArguments, fake.run_evaluation = FakeArgs, fake_run
    monkeypatch.setitem(sys.modules, "tgazsr.evaluation", fake)
    import tgazsr

    monkeypatch.setattr(tgazsr, "evaluation", fake, raising=False)
    results = world_main(["--root", world.root, "--small", "--steps", "2", "--max_samples", "8"])
    assert results["average"] == {"clean_accuracy": 0.5}
    (args,) = calls
    assert args.model_name_or_path == world.model and args.datasets == world.eval_entries()
    assert args.attacks == ["pgd"] and args.eps == [world.eps]
    assert args.attack_options == {"pgd": {"steps": 2, "step_size": world.eps / 4}}
    assert args.max_samples == 8 and args.batch_size == 200 and args.plot is False
    assert args.output_dir == os.path.join(world.root, "report")
    assert "| stand-in table |" in capsys.readouterr().out


@pytest.mark.skipif(not HAVE_HARNESS, reason="tgazsr.evaluation (the evaluation harness) is not in this checkout yet")
def test_cli_report_of_the_base_model(world, capsys):
    results = world_main(["--root", world.root, "--small", "--steps", "1", "--max_samples", "8"])
    assert list(results["datasets"]) == [f"world_{n}" for n in HELD_OUT]
    for row in results["datasets"].values():
        assert 0 <= row["clean_accuracy"] <= 1 and 0 <= row["robust"]["pgd@8/255"] <= 1
    assert 0 <= results["average"]["clean_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert world.model in printed
    with open(os.path.join(world.root, "report", "results.md"), encoding="utf-8") as f:
        table = f.read()
    assert table.strip() and table.strip() in printed
