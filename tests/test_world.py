"""The offline world: deterministic data, a loadable tiny CLIP, correct text pooling."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tgazsr import synthetic
from tgazsr.synthetic import (
    EVAL_SETS,
    HELD_OUT_PAIRS,
    TRAIN_PAIRS,
    ObjectSpec,
    build_eval_set,
    build_world,
    caption,
    contrastive_loss,
    make_tokenizer,
    render,
)


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
    obj = ObjectSpec("star", "red", "striped", "large")
    a = render(obj, np.random.default_rng(3))
    b = render(obj, np.random.default_rng(3))
    c = render(obj, np.random.default_rng(4))
    assert a.dtype == np.uint8 and a.shape == (synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    images1, objects1, captions1 = synthetic.generate_pretraining(6, seed=5)
    images2, objects2, captions2 = synthetic.generate_pretraining(6, seed=5)
    assert np.array_equal(images1, images2) and objects1 == objects2 and captions1 == captions2


def test_class_vocabularies():
    assert not set(TRAIN_PAIRS) & set(HELD_OUT_PAIRS)
    assert len(TRAIN_PAIRS) + len(HELD_OUT_PAIRS) == len(synthetic.SHAPES) * len(synthetic.COLOURS)
    held_out = [s for s in EVAL_SETS.values() if s.held_out]
    assert len(held_out) >= 4
    train_names = {synthetic.pair_name(p) for p in TRAIN_PAIRS}
    for s in held_out:
        assert not set(s.class_names) & train_names
        assert synthetic.TRAIN_TEMPLATE not in s.prompt_templates
    # every caption names at least one attribute and names it truly
    rng = np.random.default_rng(0)
    obj = ObjectSpec("hexagon", "cyan", "dotted", "small")
    for _ in range(50):
        text, named = caption(obj, rng)
        assert named and all(getattr(obj, a) == v and v in text for a, v in named.items())


def test_world_layout_and_datasets(world):
    import datasets

    assert os.path.exists(os.path.join(world.root, synthetic.COMPLETE_MARKER))
    assert world.eps == synthetic.WORLD_EPS
    assert set(world.eval) == set(EVAL_SETS)
    train = datasets.load_from_disk(world.train)
    assert isinstance(train.features["image"], datasets.Image)
    assert train.features["label"].names == [synthetic.pair_name(p) for p in TRAIN_PAIRS]
    assert train[0]["image"].size == (synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE)
    for path in world.eval.values():
        ds = datasets.load_from_disk(path)
        meta = synthetic.load_eval_metadata(path)
        assert ds.features["label"].names == meta["class_names"]
        assert set(ds["label"]) == set(range(len(meta["class_names"])))  # class balanced
        assert meta["classifier_templates"]
        if meta["prompt_template"] is not None:
            assert "{}" in meta["prompt_template"]
    pretrain = datasets.load_from_disk(world.pretrain)
    assert {"image", "caption", "shape", "colour", "pattern", "size"} <= set(pretrain.column_names)


def test_reuse_does_not_rebuild(world):
    marker = os.path.join(world.root, synthetic.COMPLETE_MARKER)
    before = os.stat(marker).st_mtime_ns
    again = build_world(world.root, seed=0, small=True)
    assert again == world and os.stat(marker).st_mtime_ns == before


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
    assert model.config.vision_config.image_size == synthetic.IMAGE_SIZE

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
    image = datasets.load_from_disk(world.eval["shapes"])[0]["image"]
    result = classifier(image, candidate_labels=list(synthetic.SHAPES), hypothesis_template="a drawing of a {}.")
    assert [r["label"] for r in result] and sorted(r["label"] for r in result) == sorted(synthetic.SHAPES)
    assert abs(sum(r["score"] for r in result) - 1) < 1e-4


def test_world_report_and_cli(world, capsys):
    report = synthetic.world_report(world, steps=1, limit=8)
    assert set(report["sets"]) == set(EVAL_SETS)
    for v in report["sets"].values():
        assert 0 <= v["robust"] <= 100 and 0 <= v["clean"] <= 100
    synthetic.main(["--root", world.root, "--small", "--steps", "1"])
    printed = capsys.readouterr().out
    assert "held-out mean" in printed and world.model in printed
    with open(os.path.join(world.root, "report.json")) as f:
        assert json.load(f)


def test_pgd_stays_in_the_ball():
    x = torch.rand(4, 3, 8, 8)
    y = torch.tensor([0, 1, 0, 1])
    weight = torch.randn(3 * 8 * 8, 2)
    x_adv = synthetic.pgd_linf(lambda z: z.flatten(1) @ weight, x, y, eps=2 / 255, steps=3)
    assert (x_adv - x).abs().max() <= 2 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_multi_positive_loss():
    logits = torch.randn(4, 4)
    unique = torch.arange(4).view(4, 1).repeat(1, 4)
    # with every caption naming every attribute of distinct objects it is CLIP's loss
    torch.testing.assert_close(contrastive_loss(logits, unique, unique), contrastive_loss(logits))
    # a caption that says nothing fits every image: its column is a positive of every row
    captions = unique.clone()
    captions[0] = -1
    assert contrastive_loss(logits, unique, captions) != contrastive_loss(logits)
