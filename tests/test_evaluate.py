"""The evaluation harness end to end, offline: tiny CLIPs, generated data in the Hub formats.

The datasets are labelled with model A's own clean predictions (see ``eval_world`` in conftest.py), so
its clean accuracy is 100% and every drop is the attacks' doing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import CLASS_NAMES, CLEAN_NAMES, TEMPLATE, labelled_dataset, model_predictions
from tgazsr import evaluation as ev
from tgazsr.evaluate import main as evaluate_main
from tgazsr.evaluation import EvalArguments, harness, run_evaluation
from timed_run import run_timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("single_thread")


def _args(eval_world, out, pgd=None, **kw) -> EvalArguments:
    options = {"pgd": {"steps": 3, **(pgd or {})}, "cw": {"steps": 3}, "autoattack": {"n_iter": 3}}
    base = dict(model_name_or_path=eval_world["clip_a"], datasets=[eval_world["saved"]], attacks=["pgd"], eps=[8.0],
                attack_options=options, batch_size=8, output_dir=str(out), plot=False)
    base.update(kw)
    return EvalArguments(**base)


def _numbers(results: dict) -> dict:
    return {n: (r["num_samples"], r["clean_accuracy"], r["robust"]) for n, r in results["datasets"].items()}


@pytest.fixture(scope="module")
def main_run(eval_world, tmp_path_factory):
    """save_to_disk, parquet and webdataset copies of the same images; PGD and CW at 2 and 8/255."""
    out = tmp_path_factory.mktemp("main_run")
    args = _args(eval_world, out, datasets=[eval_world["saved"], eval_world["parquet"], eval_world["webdataset"]],
                 attacks=["pgd", "cw"], eps=[2.0, 8.0], class_names=",".join(CLASS_NAMES), plot=True)
    return run_evaluation(args), out


def test_outputs_and_their_shape(main_run):
    results, out = main_run
    assert set(results["datasets"]) == {"saved", "parquet", "test-000000.tar"}
    for name, r in results["datasets"].items():
        assert r["num_samples"] == 24 and r["num_classes"] == 4
        assert set(r["robust"]) == {"pgd@2/255", "cw@2/255", "pgd@8/255", "cw@8/255", "worst@2/255", "worst@8/255"}
        assert all(0.0 <= v <= 1.0 for v in [r["clean_accuracy"], *r["robust"].values()])
        assert r["seconds"] >= 0 and r["prompt_templates"] == [ev.DEFAULT_TEMPLATE]
    on_disk = json.loads((out / "results.json").read_text())
    assert _numbers(on_disk) == _numbers(results)
    avg = on_disk["average"]
    assert avg["num_datasets"] == 3
    assert avg["robust"]["pgd@8/255"] == pytest.approx(
        sum(r["robust"]["pgd@8/255"] for r in results["datasets"].values()) / 3)
    md = (out / "results.md").read_text()
    assert "| Average |" in md and "robust pgd@2/255" in md and "| clean |" in md
    assert (out / "tradeoff.png").stat().st_size > 1000
    assert len(list((out / "finished").iterdir())) == 3


def test_robust_never_exceeds_clean_and_never_rises_with_eps(main_run):
    results, _ = main_run
    for r in results["datasets"].values():
        assert r["clean_accuracy"] == 1.0  # labels are the model's own predictions
        rob = r["robust"]
        for attack in ("pgd", "cw", "worst"):
            assert rob[f"{attack}@8/255"] <= rob[f"{attack}@2/255"] <= r["clean_accuracy"]
        for eps in ("2/255", "8/255"):
            assert rob[f"worst@{eps}"] <= min(rob[f"pgd@{eps}"], rob[f"cw@{eps}"])
        assert rob["worst@8/255"] < 1.0  # the attacks do something at 8/255
    # The same images in the same order give the same numbers, whatever the file format.
    per = results["datasets"]
    assert per["saved"]["robust"] == per["parquet"]["robust"] == per["test-000000.tar"]["robust"]


def test_image_folder_and_very_large_eps(eval_world, tmp_path):
    args = _args(eval_world, tmp_path, datasets=[eval_world["folder"]], attacks=["pgd", "autoattack"], eps=[255.0],
                 attack_options={"pgd": {"steps": 8, "step_size": 64.0}, "autoattack": {"n_iter": 4}}, max_samples=8)
    r = run_evaluation(args)["datasets"]["folder"]
    assert r["num_samples"] == 8 and r["clean_accuracy"] == 1.0
    assert r["robust"]["pgd@255/255"] <= 0.125 and r["robust"]["autoattack@255/255"] <= 0.125
    # The folder holds only the classes model A predicts: 2 classes, so AutoAttack is APGD-CE alone.
    assert r["num_classes"] == 2 and r["autoattack"] == {"attacks": ["apgd-ce"], "n_target_classes": 1}


def test_a_fixed_seed_gives_identical_numbers(eval_world, tmp_path):
    kw = dict(attacks=["pgd"], eps=[4.0, 8.0], max_samples=16)
    first = run_evaluation(_args(eval_world, tmp_path / "a", **kw))
    second = run_evaluation(_args(eval_world, tmp_path / "b", **kw))
    assert _numbers(first) == _numbers(second)
    # Another batch size changes nothing either: random starts are drawn per sample.
    third = run_evaluation(_args(eval_world, tmp_path / "c", batch_size=5, **kw))
    assert _numbers(third) == _numbers(first)


def test_text_embeddings_once_per_dataset_and_never_shared_across_models(eval_world, tmp_path, monkeypatch):
    from tgazsr.modeling import ZeroShotCLIP

    calls = []
    original = ZeroShotCLIP.encode_text

    def counting(self, texts, tokenizer, batch_size=256):
        calls.append((id(self), tuple(texts)))
        return original(self, texts, tokenizer, batch_size)

    monkeypatch.setattr(ZeroShotCLIP, "encode_text", counting)
    args = _args(eval_world, tmp_path, attacks=["pgd", "cw"], eps=[2.0, 8.0], max_samples=8)
    a = run_evaluation(args)
    assert len(calls) == 1  # one dataset, one template: one pass of the text tower for 2 attacks x 2 eps
    b = run_evaluation(dataclass_replace(args, model_name_or_path=eval_world["clip_b"]))
    assert len(calls) == 2 and calls[0][0] != calls[1][0]  # model B computed its own embeddings
    assert a["model_fingerprint"] != b["model_fingerprint"]
    assert a["datasets"]["saved"]["key"] != b["datasets"]["saved"]["key"]  # B never reused A's results
    # The caches live on the instances: two models give two different classifiers.
    model_a, tok, _ = ev.load_model(EvalArguments(model_name_or_path=eval_world["clip_a"]), torch.device("cpu"))
    model_b, _, _ = ev.load_model(EvalArguments(model_name_or_path=eval_world["clip_b"]), torch.device("cpu"))
    ta = model_a.class_embeddings(CLEAN_NAMES, [TEMPLATE], tok)
    tb = model_b.class_embeddings(CLEAN_NAMES, [TEMPLATE], tok)
    assert not torch.allclose(ta, tb)


def dataclass_replace(args, **kw):
    import dataclasses

    return dataclasses.replace(args, **kw)


def test_resume_after_a_kill_keeps_the_first_dataset(eval_world, tmp_path, monkeypatch):
    args = _args(eval_world, tmp_path, datasets=[eval_world["saved"], eval_world["parquet"]], max_samples=8)
    original = ev.evaluate_dataset
    seen = []

    def dies_on_second(model, data, *a, **k):
        seen.append(data.name)
        if len(seen) == 2:
            raise KeyboardInterrupt("killed")
        return original(model, data, *a, **k)

    monkeypatch.setattr(harness, "evaluate_dataset", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(args)
    partial = json.loads((tmp_path / "results.json").read_text())
    assert list(partial["datasets"]) == ["saved"]
    first = partial["datasets"]["saved"]

    seen.clear()
    monkeypatch.setattr(harness, "evaluate_dataset", lambda model, data, *a, **k: seen.append(data.name) or original(model, data, *a, **k))
    resumed = run_evaluation(args)
    assert seen == ["parquet"]  # only the unfinished dataset ran
    assert resumed["datasets"]["saved"] == first  # kept as it was, seconds included
    assert set(resumed["datasets"]) == {"saved", "parquet"}

    seen.clear()
    run_evaluation(dataclass_replace(args, eps=[4.0]))  # other settings: nothing reused
    assert seen == ["saved", "parquet"]
    seen.clear()
    run_evaluation(dataclass_replace(args, model_name_or_path=eval_world["clip_b"]))  # another model: nothing reused
    assert seen == ["saved", "parquet"]


def test_plain_clipmodel_checkpoint_and_separate_tokenizer(eval_world, tmp_path):
    from transformers import CLIPModel

    bare = tmp_path / "bare"
    CLIPModel.from_pretrained(eval_world["clip_a"]).save_pretrained(bare)  # weights and config only
    assert sorted(os.listdir(bare)) == ["config.json", "model.safetensors"]
    with pytest.raises(OSError, match="tokenizer_name_or_path"):
        run_evaluation(_args(eval_world, tmp_path / "x", model_name_or_path=str(bare), max_samples=4))
    res = run_evaluation(_args(eval_world, tmp_path / "y", model_name_or_path=str(bare), max_samples=4,
                               tokenizer_name_or_path=eval_world["clip_a"]))
    assert res["datasets"]["saved"]["clean_accuracy"] == 1.0
    # The tiny CLIP directory itself is a third-party layout: no tgazsr file in it.
    assert not any("tgazsr" in f for f in os.listdir(eval_world["clip_a"]))


def test_normalization_comes_from_the_checkpoint_image_processor(eval_world, tmp_path):
    from tgazsr.modeling import CLIP_MEAN, IMAGENET_MEAN, IMAGENET_STD

    ckpt = tmp_path / "imagenet_normalized"
    shutil.copytree(eval_world["clip_a"], ckpt)
    config_path = ckpt / "processor_config.json"
    if not config_path.exists():
        config_path = ckpt / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    target = config.get("image_processor", config)
    target["image_mean"], target["image_std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
    config_path.write_text(json.dumps(config))
    auto = run_evaluation(_args(eval_world, tmp_path / "auto", model_name_or_path=str(ckpt), max_samples=4))
    assert auto["pixel_normalization"][0] == pytest.approx(list(IMAGENET_MEAN), abs=1e-6)
    assert auto["pixel_normalization"][1] == pytest.approx(list(IMAGENET_STD), abs=1e-6)
    forced = run_evaluation(_args(eval_world, tmp_path / "clip", model_name_or_path=str(ckpt), max_samples=4,
                                  pixel_normalization="clip"))
    assert forced["pixel_normalization"][0] == pytest.approx(list(CLIP_MEAN), abs=1e-6)
    assert forced["datasets"]["saved"]["key"] != auto["datasets"]["saved"]["key"]


def test_unreachable_benchmark_is_one_clear_error_and_the_rest_runs(eval_world, tmp_path):
    code = evaluate_main(["--model_name_or_path", eval_world["clip_a"], "--datasets", "cifar10", eval_world["saved"],
                    "--eps", "8", "--pgd_steps", "2", "--max_samples", "4", "--output_dir", str(tmp_path),
                    "--no_plot"])
    assert code == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["datasets"]) == ["saved"]
    message = results["errors"]["cifar10"]
    assert "'cifar10'" in message and "--datasets cifar10=DIR" in message and "--data_dir" in message
    assert "cifar10" in (tmp_path / "results.md").read_text()
    with pytest.raises(ev.DatasetUnavailable, match="Unknown benchmark"):
        ev.resolve_entry("cifar11", EvalArguments())
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):  # a typo fails before any work
        run_evaluation(_args(eval_world, tmp_path / "typo", datasets=[eval_world["saved"], "cifar11"]))


@pytest.fixture(scope="module")
def local_cifar10(eval_world, tmp_path_factory):
    """A local copy of a registry dataset (CIFAR-10 layout: img / label), labelled by model A."""
    import datasets

    from tgazsr.data import registry

    hub_names = registry.load_class_names("cifar10")
    names = registry.class_names("cifar10", "tga", hub_names)
    labels = model_predictions(eval_world["clip_a"], eval_world["images"], names, registry.prompt_templates("cifar10")[0])
    ds = labelled_dataset(eval_world["images"], labels, hub_names, image_column="img")
    root = tmp_path_factory.mktemp("registry_copies")
    datasets.DatasetDict({"test": ds}).save_to_disk(str(root / "cifar10"))
    return root


def test_registry_dataset_from_a_local_copy(eval_world, local_cifar10, tmp_path):
    args = _args(eval_world, tmp_path, datasets=[f"cifar10={local_cifar10 / 'cifar10'}"], max_samples=6)
    r = run_evaluation(args)["datasets"]["cifar10"]
    assert r["display_name"] == "CIFAR-10" and r["num_classes"] == 10 and r["num_samples"] == 6
    assert r["clean_accuracy"] == 1.0
    # --data_dir finds DATA_DIR/cifar10; the FARE protocol uses CLIP_benchmark's prompt ensemble.
    fare = run_evaluation(_args(eval_world, tmp_path / "fare", datasets=["cifar10"], data_dir=str(local_cifar10),
                                protocol="fare", max_samples=6))
    assert len(fare["datasets"]["cifar10"]["prompt_templates"]) == 18


def test_each_entry_is_resolved_once_and_its_labels_checked_once(eval_world, local_cifar10, tmp_path, monkeypatch):
    """One evaluation command: every --datasets entry is resolved once (the command checks the
    resolved entries and the harness evaluates them as they are), and a registry dataset's labels
    are checked against the registry once (one resolve_labels, one _hub_permutation)."""
    from collections import Counter

    from tgazsr.data import registry
    from tgazsr.evaluation import datasets as ev_datasets

    resolved, checked, permuted = [], [], []

    def counting(calls, original, key):
        return lambda *a, **k: calls.append(key(*a)) or original(*a, **k)

    monkeypatch.setattr(ev_datasets, "resolve_entry", counting(resolved, ev_datasets.resolve_entry, lambda e, _: e))
    monkeypatch.setattr(registry, "resolve_labels",
                        counting(checked, registry.resolve_labels, lambda spec, protocol="tga", *_: (spec.name, protocol)))
    monkeypatch.setattr(registry, "_hub_permutation", counting(permuted, registry._hub_permutation, lambda s, *_: s.name))
    copy = f"cifar10={local_cifar10 / 'cifar10'}"
    code = evaluate_main(["--model_name_or_path", eval_world["clip_a"], "--datasets", copy, eval_world["saved"],
                          "--eps", "8", "--pgd_steps", "1", "--max_samples", "4", "--output_dir", str(tmp_path),
                          "--no_plot"])
    assert code == 0
    assert set(json.loads((tmp_path / "results.json").read_text())["datasets"]) == {"cifar10", "saved"}
    assert Counter(resolved) == {copy: 1, eval_world["saved"]: 1}
    assert checked == [("cifar10", "tga")] and permuted == ["cifar10"]


def test_a_benchmark_added_as_one_data_file_and_one_class_name_file(eval_world, tmp_path, scratch_registry):
    """A new benchmark is a benchmark file and a class-name file in a directory given to
    add_benchmark_dir (or TGAZSR_BENCHMARK_DIRS); it then evaluates like a shipped one."""
    from conftest import CLASS_NAMES, write_toy_benchmark

    write_toy_benchmark(tmp_path / "benchmarks")
    assert scratch_registry.add_benchmark_dir(tmp_path / "benchmarks") == ["toy_shapes"]
    assert scratch_registry.get_benchmark("Toy-Shapes-Four").name == "toy_shapes"  # its alias
    assert "toy_shapes" not in scratch_registry.collection("tga16")  # it joins no collection by itself
    folder = tmp_path / "toy"  # an image folder: test/<class>/NNNN.png, the class folders in sorted order
    for i, image in enumerate(eval_world["images"]):
        (folder / "test" / CLASS_NAMES[i % 4]).mkdir(parents=True, exist_ok=True)
        image.save(folder / "test" / CLASS_NAMES[i % 4] / f"{i:04d}.png")
    args = _args(eval_world, tmp_path / "out", datasets=[f"toy_shapes={folder}"], max_samples=8)
    data = ev.prepare_dataset(f"toy_shapes={folder}", args, 32)
    assert data.class_names == ["blue triangle", "green circle", "red square", "yellow star"]  # the data's order
    r = run_evaluation(args)["datasets"]["toy_shapes"]
    assert (r["display_name"], r["num_classes"], r["num_samples"], r["split"]) == ("Toy shapes", 4, 8, "test")
    assert r["prompt_templates"] == ["a drawing of a {}."] and r["source"] == str(folder)
    fare = run_evaluation(dataclass_replace(args, protocol="fare", output_dir=str(tmp_path / "fare")))
    assert fare["datasets"]["toy_shapes"]["prompt_templates"] == ["a drawing of a {}.", "art of a {}."]


def test_recipes_parse_to_the_published_protocols(eval_world, tmp_path):
    from tgazsr.data.registry import TGA16
    tga = ev.parse_eval_args([os.path.join(REPO, "recipes/eval_tga16.yaml"), "--model_name_or_path", "m"])
    assert ev.prepare_dataset.__module__ and tga.attacks == ["pgd"] and tga.eps == [1.0]
    assert list(tga.datasets) in (TGA16, ["tga16"])
    pgd = tga.attack_settings("pgd")
    assert (pgd.steps, pgd.step_size, pgd.random_start, tga.protocol) == (100, 1.0, True, "tga")
    fare = ev.parse_eval_args([os.path.join(REPO, "recipes/eval_fare.yaml")])
    assert fare.attacks == ["autoattack"] and fare.eps == [2.0, 4.0] and fare.max_samples == 1000
    assert (fare.attack_settings("autoattack").version, fare.protocol) == ("fare", "fare")
    # The FARE recipe runs on a local dataset with the budgets of the tiny world.
    code = evaluate_main([os.path.join(REPO, "recipes/eval_fare.yaml"), "--model_name_or_path", eval_world["clip_a"],
                    "--datasets", eval_world["saved"], "--eps", "8", "--autoattack_n_iter", "3", "--max_samples", "6",
                    "--output_dir", str(tmp_path), "--no_plot", "--num_workers", "0"])
    assert code == 0
    r = json.loads((tmp_path / "results.json").read_text())["datasets"]["saved"]
    assert r["autoattack"]["attacks"] == ["apgd-ce", "apgd-t"] and r["autoattack"]["n_target_classes"] == 3


def test_evaluate_after_training_feeds_the_model_card(eval_world, tmp_path):
    from tgazsr.hub import _eval_results

    out = tmp_path / "trained"
    shutil.copytree(eval_world["clip_a"], out)
    cfg = SimpleNamespace(train_eps=8.0, eval_max_samples=4, per_device_eval_batch_size=4, device=torch.device("cpu"),
                          seed=0, eval_attack_steps=100, eval_attack_stepsize=1.0)
    res = ev.evaluate_after_training(str(out), [eval_world["saved"]], cfg)
    saved = res["benchmark"]["datasets"]["saved"]
    assert saved["num_samples"] == 4 and set(saved["robust"]) == {"pgd@8/255"}
    assert res["benchmark"]["settings"]["attack_settings"]["pgd"]["steps"] == 100
    names = {e.metric_name for e in _eval_results(res["benchmark"])}
    assert names == {"clean accuracy", "robust accuracy (pgd@8/255)"}
    assert (out / "eval" / "results.json").is_file()


def test_training_puts_benchmark_results_into_the_model_card(eval_world, tiny_clip, saved_dataset, tmp_path):
    from tgazsr import train

    out = tmp_path / "run"
    results = train.main([
        os.path.join(REPO, "recipes/tecoa.yaml"), "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset,
        "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "4", "--fp16", "false",
        "--use_cpu", "true", "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "no",
        "--eval_max_samples", "4", "--eval_attack_steps", "1", "--report_to", "none",
        "--eval_datasets", eval_world["saved"],
    ])
    bench = results["benchmark"]["datasets"]["saved"]
    assert bench["num_samples"] == 4 and set(bench["robust"]) == {"pgd@1/255"}
    card = (out / "README.md").read_text()
    assert "robust accuracy (pgd@1/255)" in card and "clean accuracy" in card
    from tgazsr.hub import public_name

    saved = json.loads((out / "train_results.json").read_text())["benchmark"]["datasets"]["saved"]
    assert saved == public_name(bench) and saved["source"] == "saved"  # the uploaded copy names no local path


def test_compare_with_base_prints_both_models(eval_world, tiny_clip, saved_dataset, tmp_path, capsys, monkeypatch):
    """Both models scored on eval_datasets, each entry resolved once for the whole run (the preflight's
    resolution serves the benchmark and the base model's comparison)."""
    from tgazsr import train
    from tgazsr.evaluation import datasets as ev_datasets

    resolved = []
    original = ev_datasets.resolve_entry
    monkeypatch.setattr(ev_datasets, "resolve_entry", lambda entry, args: resolved.append(entry) or original(entry, args))
    out = tmp_path / "cmp"
    results = train.main([
        os.path.join(REPO, "recipes/tga_zsr.yaml"), "--model_name_or_path", tiny_clip, "--dataset_name", saved_dataset,
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4", "--fp16", "false",
        "--use_cpu", "true", "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "no",
        "--learning_rate", "0.05", "--eval_max_samples", "4", "--eval_attack_steps", "2", "--report_to", "none",
        "--eval_datasets", eval_world["saved"], "--compare_with_base", "true",
    ])
    base, trained = results["base_benchmark"], results["benchmark"]
    assert base["model_fingerprint"] != trained["model_fingerprint"]
    table = (out / "comparison.md").read_text()
    assert "| dataset | base clean | base pgd@1/255 | tga_zsr clean | tga_zsr pgd@1/255 |" in table
    assert "**average**" in table and table in capsys.readouterr().out
    # eval_datasets once; the training set's valid split once, for the end-of-training check
    assert sorted(resolved) == sorted([eval_world["saved"], saved_dataset])


def test_plot_places_several_results_side_by_side(main_run, eval_world, tmp_path):
    from tgazsr.evaluation import plot

    _, out = main_run
    other = json.loads((out / "results.json").read_text())
    other["model"], other["average"]["clean_accuracy"] = "other", 0.5
    (tmp_path / "other.json").write_text(json.dumps(other))
    png = tmp_path / "both.png"
    assert plot.main([str(out / "results.json"), str(tmp_path / "other.json"), "--output", str(png),
                      "--per_dataset", "--labels", "A", "B"]) == 0
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="no average"):
        plot.plot_tradeoff([other], str(tmp_path / "x.png"), key="pgd@3/255")


def test_visualize_writes_the_attention_figure(eval_world, tmp_path):
    from tgazsr.evaluation import visualize

    image = tmp_path / "img.png"
    eval_world["images"][0].save(image)
    png = tmp_path / "attention.png"
    code = visualize.main(["--model_name_or_path", eval_world["clip_a"], "--image", str(image), "--label", "red square",
                           "--class_names", ",".join(CLEAN_NAMES), "--eps", "8", "--steps", "3", "--output", str(png)])
    assert code == 0 and png.stat().st_size > 1000
    model, tok, _ = ev.load_model(EvalArguments(model_name_or_path=eval_world["clip_a"]), torch.device("cpu"))
    x = torch.rand(1, 3, 32, 32)
    pair = visualize.attention_pair(model, tok, x, "red square", CLEAN_NAMES, TEMPLATE, 8, 3, 2)
    for tag in ("clean", "adv"):
        m = pair[f"{tag}_map"]
        assert m.shape == (32, 32) and 0 <= m.min() and m.max() <= 1 + 1e-6
    assert (pair["x_adv"] - x).abs().max() <= 8 / 255 + 1e-6
    assert pair["clean_pred"] in CLEAN_NAMES and pair["adv_pred"] in CLEAN_NAMES
    with pytest.raises(ValueError, match="at least two classes"):
        visualize.attention_pair(model, tok, x, "red square", None, TEMPLATE, 8, 3, 2)


@pytest.mark.launches
def test_two_processes_give_the_numbers_of_one(eval_world, tmp_path):
    kw = dict(attacks=["pgd", "cw"], eps=[8.0], max_samples=12, batch_size=4)
    single = run_evaluation(_args(eval_world, tmp_path / "one", **kw))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    from conftest import free_port

    port = str(free_port())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "tgazsr.evaluate", "--model_name_or_path", eval_world["clip_a"], "--datasets", eval_world["saved"],
           "--attacks", "pgd", "cw", "--eps", "8", "--pgd_steps", "3", "--cw_steps", "3", "--max_samples", "12",
           "--batch_size", "4", "--output_dir", str(tmp_path / "two"), "--no_plot"]
    proc = run_timed(cmd, cwd=REPO, env=env, measured_s=10, doing="the evaluation on two processes (torchrun)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["num_processes"] == 2
    assert _numbers(two) == _numbers(single)


def test_exports_and_leaderboard_other_tools_read(main_run, tmp_path):
    import csv

    from tgazsr.cli import main as tgazsr_main

    results, out = main_run
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["dataset"] for r in rows} == set(results["datasets"])
    assert all(r["task"] == "zeroshot_classification" and "acc1" in r["metrics"] for r in rows)
    assert all("robust_acc1@worst@8/255" in r["metrics"] for r in rows)
    table = list(csv.DictReader((out / "results.csv").open()))
    assert len(table) == len(rows) and float(table[0]["acc1"]) == rows[0]["metrics"]["acc1"]
    # Two runs ranked in one table; the default column is the worst case at the largest eps.
    other = json.loads((out / "results.json").read_text())
    for r in other["datasets"].values():
        r["robust"] = {k: v / 2 for k, v in r["robust"].items()}
    other["model"] = "weaker"
    (tmp_path / "other.json").write_text(json.dumps(other))
    md = tmp_path / "lb.md"
    assert tgazsr_main(["leaderboard", str(out / "results.json"), str(tmp_path / "other.json"), "--output", str(md),
                        "--plot", str(tmp_path / "lb.png")]) == 0
    text = md.read_text()
    assert "Robust = worst@8/255" in text and text.index("| 1 |") < text.index("| weaker |")
    assert (tmp_path / "lb.png").stat().st_size > 1000
