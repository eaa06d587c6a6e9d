"""push_to_hub, checked offline: the model card's metadata and the exact files that would go up."""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import pytest
import yaml

from tgazsr.hub import build_model_card, push_checkpoint, upload_plan, write_model_card
from tgazsr.train import main

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "tga_zsr.yaml")
RESULTS = {
    "datasets": {
        "cifar10": {"num_samples": 100, "clean_accuracy": 0.8, "robust": {"pgd@1/255": 0.4}},
        "dtd": {"num_samples": 50, "clean_accuracy": 0.4, "robust": {"pgd@1/255": 0.2}},
    }
}


def card_metadata(card_text: str) -> dict:
    return yaml.safe_load(card_text.split("---")[1])


def test_model_card_carries_method_hyperparameters_and_results():
    card = build_model_card(
        method="tga_zsr", base_model="openai/clip-vit-base-patch32", dataset="zh-plus/tiny-imagenet",
        hyperparameters={"alpha": 0.08, "train_eps": 1.0}, results=RESULTS, model_name="me/robust-clip",
    )
    meta = card_metadata(str(card))
    assert meta["base_model"] == "openai/clip-vit-base-patch32"
    assert meta["datasets"] == ["zh-plus/tiny-imagenet"]
    assert "tga_zsr" in meta["tags"] and meta["pipeline_tag"] == "zero-shot-image-classification"
    metrics = {
        (r["dataset"]["name"], m["name"]): m["value"]
        for entry in meta["model-index"] for r in entry["results"] for m in r["metrics"]
    }
    assert metrics[("cifar10", "clean accuracy")] == 0.8
    assert metrics[("dtd", "robust accuracy (pgd@1/255)")] == 0.2
    assert "TGA-ZSR" in card.text and "| `alpha` | `0.08` |" in card.text
    assert "| cifar10 | 80.00 | 40.00 |" in card.text


def test_training_output_upload_plan_and_push_without_network(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "run"
    main([RECIPE, "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset, "--output_dir", str(out),
          "--max_steps", "2", "--per_device_train_batch_size", "4", "--fp16", "false", "--use_cpu", "true",
          "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_steps", "1", "--eval_max_samples", "0",
          "--report_to", "none"])
    assert (out / "checkpoint-1").is_dir()
    plan = upload_plan(str(out))
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= set(plan)
    assert not any(p.startswith("checkpoint-") for p in plan)
    meta = card_metadata((out / "README.md").read_text())
    assert "tga_zsr" in meta["tags"] and meta["library_name"] == "transformers"

    with mock.patch("tgazsr.hub.HfApi") as api_cls:
        push_checkpoint(str(out), "me/robust-clip")
    api = api_cls.return_value
    api.create_repo.assert_called_once()
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "me/robust-clip" and kwargs["folder_path"] == str(out)
    assert "checkpoint-*" in kwargs["ignore_patterns"]


def test_push_to_hub_flag_needs_a_repo_id(tiny_clip, saved_dataset, tmp_path):
    with mock.patch("tgazsr.hub.HfApi") as api_cls, pytest.raises(ValueError, match="hub_model_id"):
        main([RECIPE, "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset,
              "--output_dir", str(tmp_path / "p"), "--max_steps", "1", "--per_device_train_batch_size", "4",
              "--fp16", "false", "--use_cpu", "true", "--dataloader_num_workers", "0", "--save_strategy", "no",
              "--eval_max_samples", "0", "--push_to_hub", "true"])
    api_cls.assert_not_called()


def test_write_model_card_for_local_base(tmp_path):
    path = write_model_card(str(tmp_path), method="fare", base_model=str(tmp_path), dataset=str(tmp_path),
                            hyperparameters={}, results=None)
    meta = card_metadata(path.read_text())
    assert "base_model" not in meta and "model-index" not in meta


def test_card_names_attack_has_citation_versions_and_no_local_path(tiny_clip, saved_dataset, tmp_path):
    import datasets

    from conftest import make_hf_dataset

    data_copy = tmp_path / "mydata"
    shutil.copytree(saved_dataset, data_copy)
    evalset = tmp_path / "evalset"
    datasets.DatasetDict({"test": make_hf_dataset(8, seed=2)}).save_to_disk(str(evalset))
    out = tmp_path / "cardrun"
    main([RECIPE, "--model_name_or_path", tiny_clip, "--dataset_name", str(data_copy), "--output_dir", str(out),
          "--max_steps", "1", "--per_device_train_batch_size", "4", "--fp16", "false", "--use_cpu", "true",
          "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "no", "--eval_max_samples", "4",
          "--eval_attack_steps", "2", "--report_to", "none", "--eval_datasets", f"toy={evalset}",
          "--compare_with_base", "true", "--use_peft", "true", "--hub_license", "mit"])
    text = (out / "README.md").read_text()
    meta = card_metadata(text)
    assert meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert "base_model" not in meta  # a local base model is not a Hub id
    # ... it is named by its folder and a fingerprint of its files, which does not depend on where it lies
    from tgazsr.files import local_fingerprint

    moved = tmp_path / "elsewhere" / Path(tiny_clip).name
    shutil.copytree(tiny_clip, moved)
    assert local_fingerprint(str(moved), True) == local_fingerprint(tiny_clip, True)
    assert f"local model `{Path(tiny_clip).name}` (fingerprint `{local_fingerprint(tiny_clip, True)}`" in text
    assert f"local dataset `mydata` (fingerprint `{local_fingerprint(str(data_copy), False)}`" in text
    (moved / "model.safetensors").write_bytes(b"x" + (moved / "model.safetensors").read_bytes()[1:])
    assert local_fingerprint(str(moved), True) != local_fingerprint(tiny_clip, True)  # other weights, same size
    metric = meta["model-index"][0]["results"][0]["metrics"]
    configs = " ".join(str(m.get("config", "")) for m in metric)
    assert "PGD-2" in configs and "samples" in configs and "pgd@1/255" in configs
    assert "@inproceedings" in text and "NeurIPS 2024" in text  # the method's citation
    assert "## Framework versions" in text and "transformers" in text
    assert "## LoRA" in text and "`lora_r`: `16`" in text
    assert "| dataset | base clean | TGA-ZSR clean |" in text and "tradeoff.png" in text
    assert "OptimizerNames" not in text and "SchedulerType" not in text and "https://github.com/)" not in text
    # Nothing that would be uploaded carries a local absolute path.
    for rel in upload_plan(str(out)):
        path = out / rel
        if path.suffix in (".md", ".json", ".txt", ".yaml"):
            content = path.read_text(errors="ignore")
            assert str(tmp_path) not in content and "/tmp/" not in content, rel


def test_card_metadata_reads_back_through_huggingface_hub():
    """The client side of the Hub's card validation: huggingface_hub parses the YAML into
    ModelCardData and the model-index into one EvalResult per dataset and metric (the server-side
    ``ModelCard.validate()`` needs the network and is not run here)."""
    from huggingface_hub import ModelCard

    card = ModelCard(str(build_model_card(
        method="tga_zsr", base_model="openai/clip-vit-base-patch32", dataset="zh-plus/tiny-imagenet",
        hyperparameters={"alpha": 0.08}, results=RESULTS, model_name="me/robust-clip", license="mit")))
    assert card.data.base_model == "openai/clip-vit-base-patch32" and card.data.license == "mit"
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "zero-shot-image-classification"
    results = {(r.dataset_name, r.metric_name): r for r in card.data.eval_results}
    assert len(results) == 4
    robust = results[("cifar10", "robust accuracy (pgd@1/255)")]
    assert robust.metric_value == 0.4 and robust.task_type == "zero-shot-image-classification"
    assert "100 samples" in robust.metric_config
