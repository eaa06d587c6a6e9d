"""--sample_order clip_benchmark names the samples CLIP_benchmark scored with --n_samples (the FARE
report's 1,000 per dataset): checked against webdataset 0.2.48 and torch's DataLoader reading real
shards exactly as CLIP_benchmark's CLI does (shuffle buffer seeded with random.Random(seed),
4 workers, batches)."""

from __future__ import annotations

import io
import random
import tarfile

import pytest
import torch

from tgazsr.data.order import CLIP_BENCHMARK_SHUFFLE, clip_benchmark_order, select_samples, shards_of


def write_shards(root, sizes, with_image=False) -> list[list[int]]:
    """Shards 0.tar, 1.tar, ... whose samples carry their global index as the label (``cls``)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    shards, index = [], 0
    for s, size in enumerate(sizes):
        members = []
        with tarfile.open(root / f"{s}.tar", "w") as tar:
            for _ in range(size):
                files = {"cls": str(index).encode()}
                if with_image:
                    buf = io.BytesIO()
                    Image.new("RGB", (4, 4), (index % 256, 0, 0)).save(buf, "PNG")
                    files["png"] = buf.getvalue()
                for ext, data in files.items():
                    info = tarfile.TarInfo(f"sample{index:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                members.append(index)
                index += 1
        shards.append(members)
    return shards


def loader_order(root, n_shards, seed, buffer, initial, workers, batch) -> list[int]:
    """What CLIP_benchmark's CLI does with a webdataset when --n_samples is set."""
    import webdataset as wds

    dataset = (wds.WebDataset(str(root / f"{{0..{n_shards - 1}}}.tar")).decode().to_tuple("cls")
               .shuffle(buffer, initial=initial, rng=random.Random(seed)))
    loader = torch.utils.data.DataLoader(dataset.batched(batch), batch_size=None, shuffle=False,
                                         num_workers=workers)
    order = []
    for (labels,) in loader:
        order.extend(int(v) for v in labels)
    return order


@pytest.mark.parametrize("sizes,buffer,initial,batch", [
    ([7, 13, 5, 9, 11], 6, 6, 4),     # more shards than workers, buffer smaller than a shard
    ([30, 2, 17], 8, 3, 5),           # a worker with no shard; initial below the buffer size
    ([25], 100, 100, 7),              # one shard smaller than the buffer (the usual FARE case)
])
def test_order_is_the_dataloaders(sizes, buffer, initial, batch, tmp_path):
    shards = write_shards(tmp_path / "wds", sizes)
    expected = loader_order(tmp_path / "wds", len(sizes), seed=0, buffer=buffer, initial=initial, workers=4,
                            batch=batch)
    assert sorted(expected) == list(range(sum(sizes)))
    assert clip_benchmark_order(shards, seed=0, buffer=buffer, initial=initial, workers=4, batch=batch) == expected
    assert expected != list(range(sum(sizes)))


def test_fare_selection_through_datasets_matches_clip_benchmark(tmp_path):
    """The registry's path: shards loaded with datasets' webdataset builder (which lists 10.tar
    before 2.tar), then the first N of CLIP_benchmark's stream with FARE's settings."""
    import datasets

    sizes = [23] * 12
    write_shards(tmp_path / "wds", sizes, with_image=True)
    files = [str(tmp_path / "wds" / f"{s}.tar") for s in range(len(sizes))]
    ds = datasets.load_dataset("webdataset", data_files={"test": sorted(files)}, split="test")
    assert ds[23]["__url__"].endswith("1.tar") and ds[46]["__url__"].endswith("10.tar")  # datasets' order
    assert [len(s) for s in shards_of(ds["__url__"])] == sizes
    chosen, line = select_samples(ds, "clip_benchmark", 120, seed=0)
    expected = loader_order(tmp_path / "wds", len(sizes), seed=0, **{
        k: CLIP_BENCHMARK_SHUFFLE[k] for k in ("buffer", "initial", "workers", "batch")})[:120]
    assert [int(c) for c in chosen["cls"]] == expected
    assert "CLIP_benchmark's shuffled order" in line and "12 webdataset shard(s)" in line
    first, line = select_samples(ds, "stored", 120)
    assert len(first) == 120 and "first 120" in line


def test_a_dataset_without_shards_is_one_shard_and_says_so():
    import datasets

    ds = datasets.Dataset.from_dict({"label": list(range(30))})
    chosen, line = select_samples(ds, "clip_benchmark", 10, seed=0)
    assert chosen["label"] == clip_benchmark_order([list(range(30))], seed=0)[:10]
    assert "not a webdataset" in line
    with pytest.raises(ValueError, match="sample order"):
        select_samples(ds, "random", 10)


def test_evaluation_scores_clip_benchmarks_samples_and_says_which(tmp_path, tiny_clip):
    """The harness on a local webdataset copy with --sample_order clip_benchmark: the scored samples
    are CLIP_benchmark's first N (read back from their labels), the results say which, and the
    cache key differs from the stored order's."""
    from tgazsr.evaluation import EvalArguments, run_evaluation
    from tgazsr.evaluation.datasets import prepare_dataset

    sizes = [40, 40, 25]
    write_shards(tmp_path / "wds" / "test", sizes, with_image=True)
    classes = [str(i) for i in range(sum(sizes))]  # the label of sample i is i: the order is readable
    (tmp_path / "classes.txt").write_text("\n".join(classes))
    expected = clip_benchmark_order(
        [list(range(0, 40)), list(range(40, 80)), list(range(80, 105))], seed=0,
        **{k: CLIP_BENCHMARK_SHUFFLE[k] for k in ("buffer", "initial", "workers", "batch")})[:30]

    def args(order, out):
        return EvalArguments(model_name_or_path=tiny_clip, datasets=[f"toy={tmp_path / 'wds'}"], max_samples=30,
                             sample_order=order, label_column="cls", image_column="png",
                             class_names=str(tmp_path / "classes.txt"), attacks=["pgd"], eps=[1.0],
                             attack_options={"pgd": {"steps": 1}}, sanity_samples=0, output_dir=str(out), plot=False)

    data = prepare_dataset(f"toy={tmp_path / 'wds'}", args("clip_benchmark", tmp_path / "a"), 32)
    assert [int(data.dataset[i]["labels"]) for i in range(len(data))] == expected
    results = run_evaluation(args("clip_benchmark", tmp_path / "a"))
    record = results["datasets"]["toy"]
    assert record["num_samples"] == 30 and "CLIP_benchmark's shuffled order" in record["samples"]
    assert "CLIP_benchmark scores" in (tmp_path / "a" / "results.md").read_text()
    stored = run_evaluation(args("stored", tmp_path / "b"))["datasets"]["toy"]
    assert "first 30" in stored["samples"]


def test_an_unknown_sample_order_is_refused_before_anything_loads():
    from tgazsr.evaluation import EvalArguments
    from tgazsr.recipes import RecipeError

    with pytest.raises(RecipeError, match="sample_order = 'random': choose one of stored, clip_benchmark"):
        EvalArguments(model_name_or_path="unused", datasets=["cifar10"], sample_order="random")
