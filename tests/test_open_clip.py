"""open_clip's own models, converted, give open_clip's features to 1e-5, and evaluate.

open_clip (installed without its dependencies, see the README) builds random CLIPs of two tiny
architectures, QuickGELU and GELU, in a separate process (tests/open_clip_reference.py, which
stands in for torchvision's transforms that open_clip imports but the model never uses). Their
weights are saved as an open_clip Hub folder (open_clip_config.json + open_clip_model.safetensors),
converted by ``tgazsr.convert``, and the converted ``CLIPModel``'s image and text features are
compared with open_clip's ``encode_image`` / ``encode_text`` on the same inputs.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from test_convert import GELU, QUICK, converted_features, open_clip_model_cfg, pixels, text_batch, \
    write_eot_tokenizer, write_open_clip_folder
from open_clip_reference import references
from tgazsr import convert as cv

INSTALL = 'pip install --no-deps "open_clip_torch==3.3.0" "ftfy>=6" wcwidth'


@pytest.fixture(scope="module")
def eot_tokenizer(tmp_path_factory) -> str:
    return write_eot_tokenizer(str(tmp_path_factory.mktemp("eot_tokenizer")))


@pytest.fixture(scope="module")
def open_clip_refs(tmp_path_factory) -> dict:
    """open_clip's state dict and features for ``pixels(arch)`` and ``text_batch(arch)``, by name."""
    if importlib.util.find_spec("open_clip") is None:
        pytest.fail(f"open_clip is not installed; the README's install command installs it ({INSTALL}).")

    def job(arch, seed):
        cfg = {**open_clip_model_cfg(arch), "quick_gelu": arch["quick_gelu"], "seed": seed}
        return cfg, {"pixels": pixels(arch), "ids": text_batch(arch["context"])}

    return references({"quick_gelu": job(QUICK, 0), "gelu": job(GELU, 0), "quick_gelu_seed3": job(QUICK, 3)},
                      tmp_path_factory.mktemp("open_clip_refs"), measured_s=6)


@pytest.mark.parametrize("arch", [QUICK, GELU], ids=["quick_gelu", "gelu"])
def test_open_clip_model_converts_to_its_own_features(arch, eot_tokenizer, open_clip_refs, tmp_path):
    ref = open_clip_refs["quick_gelu" if arch["quick_gelu"] else "gelu"]
    folder = write_open_clip_folder(tmp_path / "open_clip", ref["state_dict"], arch, tokenizer_dir=eot_tokenizer,
                                    quick_gelu=arch["quick_gelu"])
    out = cv.convert(folder, str(tmp_path / "clip"))
    model, image, text = converted_features(out, arch, text_batch(arch["context"]))
    assert image.abs().mean() > 1e-2 and text.abs().mean() > 1e-2  # features of substance, not near-zero noise
    torch.testing.assert_close(image, ref["image"], atol=1e-5, rtol=0)
    torch.testing.assert_close(text, ref["text"], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.logit_scale.detach(), ref["state_dict"]["logit_scale"])
    assert model.config.vision_config.hidden_act == ("quick_gelu" if arch["quick_gelu"] else "gelu")


def test_converted_open_clip_model_evaluates(eval_world, eot_tokenizer, open_clip_refs, tmp_path):
    from tgazsr.evaluation import EvalArguments, run_evaluation

    ref = open_clip_refs["quick_gelu_seed3"]
    folder = write_open_clip_folder(tmp_path / "open_clip", ref["state_dict"], QUICK, tokenizer_dir=eot_tokenizer,
                                    quick_gelu=True)
    model_dir = cv.load_model_or_convert(folder, cache_dir=str(tmp_path / "cache"))  # what --model_name_or_path does
    args = EvalArguments(model_name_or_path=model_dir, datasets=[eval_world["saved"]], attacks=["pgd"], eps=[8.0],
                         attack_options={"pgd": {"steps": 2}}, batch_size=8, output_dir=str(tmp_path / "eval"),
                         plot=False)
    results = run_evaluation(args)
    assert not results["errors"]
    r = results["datasets"]["saved"]
    assert r["num_samples"] == 24
    assert 0.0 <= r["robust"]["pgd@8/255"] <= r["clean_accuracy"] <= 1.0

    # Next to one's own model in one table: the same protocol on the same data, then the leaderboard.
    from tgazsr.cli import main as tgazsr_main

    own = run_evaluation(dataclasses.replace(args, model_name_or_path=eval_world["clip_a"],
                                             output_dir=str(tmp_path / "eval_own")))
    assert not own["errors"]
    table_file = tmp_path / "leaderboard.md"
    assert tgazsr_main(["leaderboard", str(tmp_path / "eval" / "results.json"),
                        str(tmp_path / "eval_own" / "results.json"), "--output", str(table_file)]) == 0
    rows = {line.split("|")[2].strip(): line for line in table_file.read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    # the converted model is named by what was converted (its folder), not by the conversion cache
    assert set(rows) == {"open_clip", "clip_a"}, rows
    assert f"{100 * r['clean_accuracy']:.2f}" in rows["open_clip"]
    assert f"{100 * own['datasets']['saved']['clean_accuracy']:.2f}" in rows["clip_a"]
