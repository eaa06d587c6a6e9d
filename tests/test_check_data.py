"""The data check and the protocol loader, offline, on local copies with the Hub copies' schemas.

Each registry dataset gets a tiny generated copy in ``DATA_DIR/<name>`` (save_to_disk, or
webdataset shards laid out like CLIP_benchmark's repositories), and the registry's expected split
sizes are set to the copy's (``sized``); then every failure the check exists for is provoked: a
wrong class count, reversed names, a class-name column that disagrees, a missing split, a wrong
split size. Entries without a local copy are unreachable (the tests run with the Hub offline).
"""

from __future__ import annotations

import dataclasses
import io
import tarfile

import datasets
import numpy as np
import pytest
from PIL import Image

from tgazsr.data import registry as reg
from tgazsr.data.check import check_data, check_entry, format_check_table
from tgazsr.data.loading import DataError
from tgazsr.data.sources import load_protocol_data


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))


def _dataset(labels, names=None, image_column="image", label_column="label", extra=None) -> datasets.Dataset:
    label_feature = datasets.ClassLabel(names=list(names)) if names is not None else datasets.Value("int64")
    features = {image_column: datasets.Image(), label_column: label_feature}
    data = {image_column: [_image(i) for i in range(len(labels))], label_column: list(labels)}
    for column, values in (extra or {}).items():
        features[column] = datasets.Value("string")
        data[column] = list(values)
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def _save(root, name, splits: dict) -> str:
    path = root / name
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return str(path)


def _write_wds(root, name, split, labels, class_names=None) -> str:
    """CLIP_benchmark's layout: <split>/0.tar with sNNNNNNN.png / .cls, <split>/nshards.txt, classnames.txt."""
    folder = root / name / split
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "0.tar", "w") as tar:
        for i, label in enumerate(labels):
            buf = io.BytesIO()
            _image(i).save(buf, format="PNG")
            for ext, payload in (("png", buf.getvalue()), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"s{i:07d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    (folder / "nshards.txt").write_text("1\n")  # one shard + one txt: read as text without the data_files pattern
    if class_names is not None:
        (root / name / "classnames.txt").write_text("\n".join(class_names) + "\n")
    return str(root / name)


@pytest.fixture
def sized(monkeypatch):
    """Set an entry's expected split sizes (TGA source, or FARE source) to those of a tiny copy."""
    monkeypatch.setattr(reg, "REGISTRY", dict(reg.REGISTRY))

    def apply(name, fare=False, **sizes):
        spec = reg.REGISTRY[name]
        pairs = tuple(sizes.items())
        if fare:
            spec = dataclasses.replace(spec, fare_source=dataclasses.replace(spec.fare_source, split_sizes=pairs))
        else:
            spec = dataclasses.replace(spec, split_sizes=pairs)
        reg.REGISTRY[name] = spec
        return spec

    return apply


def _row(rows, name):
    (row,) = [r for r in rows if r["name"] == name]
    return row


# --- a registry copy that matches, and the failures the check is for ---------------------------


def test_matching_copy_is_ok_and_the_table_lists_it(tmp_path, sized):
    names = reg.load_class_names("cifar10")
    _save(tmp_path, "cifar10", {"test": _dataset([0, 1, 2, 9, 3, 4], names, image_column="img")})
    sized("cifar10", test=6)
    row = _row(check_data(["cifar10"], data_dir=str(tmp_path)), "cifar10")
    assert row["status"] == "ok", row
    assert row["split"] == "test" and row["source"].endswith("cifar10") and row["protocol"] == "tga"
    assert "6 images" in row["message"] and "10 names by ClassLabel" in row["message"]
    table = format_check_table([row])
    assert table.startswith("| dataset | protocol | source | split(s) | status | message |")
    assert "| cifar10 | tga |" in table and table.count("\n") == 3


def test_wrong_class_count_fails(tmp_path, sized):
    names = reg.load_class_names("cifar10")[:9]
    _save(tmp_path, "cifar10", {"test": _dataset([0, 1, 2], names, image_column="img")})
    sized("cifar10", test=3)
    row = check_entry("cifar10", "tga", str(tmp_path / "cifar10"))
    assert row["status"] == "failed" and "9 classes" in row["message"] and "expects 10" in row["message"]


def test_reversed_names_fail_where_order_is_checked_and_reorder_where_names_are_matched(tmp_path, sized):
    flowers = reg.load_class_names("flowers102")
    _save(tmp_path, "flowers102", {"test": _dataset([0, 1], list(reversed(flowers)))})
    sized("flowers102", test=2)
    row = check_entry("flowers102", "tga", str(tmp_path / "flowers102"))  # positional check
    assert row["status"] == "failed" and "differ" in row["message"]
    dtd = reg.load_class_names("dtd")  # names check: the data's own order is followed
    _save(tmp_path, "dtd", {"test": _dataset([0, 1], list(reversed(dtd)))})
    sized("dtd", test=2)
    assert check_entry("dtd", "tga", str(tmp_path / "dtd"))["status"] == "ok"
    data = load_protocol_data("dtd", "tga", str(tmp_path / "dtd"))
    assert reg.class_names("dtd", "tga", data.label_names)[0] == "zigzagged"


def test_missing_split_fails(tmp_path, sized):
    names = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
             "Residential", "River", "SeaLake"]
    _save(tmp_path, "eurosat", {"test": _dataset(range(10), names)})  # the test split alone, as before
    sized("eurosat", train=10, validation=10, test=10)
    row = check_entry("eurosat", "tga", str(tmp_path / "eurosat"))
    assert row["status"] == "failed" and "no split 'train'" in row["message"]
    assert row["split"] == "train+validation+test"
    # the FARE protocol reads only CLIP_benchmark's test split: a copy of that is enough
    sized("eurosat", fare=True, test=10)
    fare_names = reg.load_class_names("eurosat", fare=True)
    _save(tmp_path / "fare", "eurosat", {"test": _dataset(range(10), fare_names)})
    assert check_entry("eurosat", "fare", str(tmp_path / "fare" / "eurosat"))["status"] == "ok"


def test_wrong_split_size_fails_and_the_reference_count_is_reported(tmp_path, sized):
    names = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
             "Residential", "River", "SeaLake"]
    splits = {s: _dataset(range(10), names) for s in ("train", "validation", "test")}
    _save(tmp_path, "eurosat", splits)
    row = check_entry("eurosat", "tga", str(tmp_path / "eurosat"))  # registry: 16,200 / 5,400 / 5,400
    assert row["status"] == "failed" and "has 10 rows, the registry expects 16,200" in row["message"]
    sized("eurosat", train=10, validation=10, test=10)
    row = check_entry("eurosat", "tga", str(tmp_path / "eurosat"))
    assert row["status"] == "ok" and "30 images" in row["message"] and "reference 27,000" in row["message"]
    data = load_protocol_data("eurosat", "tga", str(tmp_path / "eurosat"))  # all splits, concatenated
    assert len(data.dataset) == 30 and data.split == "train+validation+test"
    assert data.split_rows == {"train": 10, "validation": 10, "test": 10}


# --- a class-name column (Caltech-256's 'text') -------------------------------------------------------


def _caltech256(root, texts_for):
    folders = reg.load_class_names("caltech256")  # label i = folder i+1
    splits = {}
    for k, split in enumerate(("train", "validation", "test")):
        labels = [0, 1, 14, 256][k:] + [k]
        splits[split] = _dataset(labels, extra={"text": [texts_for(folders, y) for y in labels]})
    return _save(root, "caltech256", splits), sum(len(d) for d in splits.values())


def test_class_name_column_is_read_and_checked(tmp_path, sized):
    path, total = _caltech256(tmp_path, lambda folders, y: f"{y + 1:03d}.{folders[y]}" + ("-101" if y == 14 else ""))
    sized("caltech256", train=5, validation=4, test=3)
    row = check_entry("caltech256", "tga", path)
    assert row["status"] == "ok", row
    assert "names by the 'text' column" in row["message"] and total == 12
    data = load_protocol_data("caltech256", "tga", path)
    assert len(data.dataset) == 12 and data.label_names is None


def test_class_name_column_that_disagrees_fails_before_scoring(tmp_path, sized):
    path, _ = _caltech256(tmp_path, lambda folders, y: folders[(y + 1) % len(folders)])  # shifted by one
    sized("caltech256", train=5, validation=4, test=3)
    row = check_entry("caltech256", "tga", path)
    assert row["status"] == "failed" and "'text' column disagrees" in row["message"]
    with pytest.raises(ValueError, match="disagrees"):
        load_protocol_data("caltech256", "tga", path)


def test_reversed_registered_names_fail_against_the_class_name_column(tmp_path, sized):
    path, _ = _caltech256(tmp_path, lambda folders, y: folders[y])
    folders = reg.load_class_names("caltech256")
    spec = dataclasses.replace(reg.REGISTRY["caltech256"], split_sizes=(("train", 5), ("validation", 4), ("test", 3)))
    assert check_entry(spec, "tga", path)["status"] == "ok"
    reversed_spec = dataclasses.replace(spec, class_names_file=None, class_names=tuple(reversed(folders)))
    with pytest.raises(ValueError, match="disagrees"):
        reg.check_label_texts(reversed_spec, "tga", [(0, folders[0]), (1, folders[1])])
    row = check_entry(reversed_spec, "tga", path)
    assert row["status"] == "failed" and "disagrees" in row["message"]


def test_declared_class_name_column_must_exist(tmp_path, sized):
    splits = {s: _dataset([0, 1]) for s in ("train", "validation", "test")}
    path = _save(tmp_path, "caltech256", splits)
    sized("caltech256", train=2, validation=2, test=2)
    assert "'text' is missing" in check_entry("caltech256", "tga", path)["message"]
    with pytest.raises(DataError, match="'text' is missing"):
        load_protocol_data("caltech256", "tga", path)


# --- CLIP_benchmark's webdataset layout and its classnames.txt ---------------------------------------


def test_webdataset_copy_with_classnames_file(tmp_path, sized):
    variants = reg.load_class_names("fgvc_aircraft", fare=True)
    path = _write_wds(tmp_path, "fgvc_aircraft", "test", [0, 5, 99, 2], variants)
    sized("fgvc_aircraft", test=4)
    for protocol in ("tga", "fare"):
        row = check_entry("fgvc_aircraft", protocol, path)
        assert row["status"] == "ok", row
        assert "100 names by classnames.txt" in row["message"]
    data = load_protocol_data("fgvc_aircraft", "tga", path)
    assert (data.image_column, data.label_column, data.names_origin) == ("png", "cls", "classnames.txt")
    assert reg.class_names("fgvc_aircraft", "tga", data.label_names)[2] == "boeing 737-200"
    assert sorted(data.dataset["cls"]) == [0, 2, 5, 99]


def test_webdataset_copy_with_a_wrong_classnames_file_fails(tmp_path, sized):
    variants = reg.load_class_names("fgvc_aircraft", fare=True)
    path = _write_wds(tmp_path, "fgvc_aircraft", "test", [0, 1], variants[:99])
    sized("fgvc_aircraft", test=2)
    row = check_entry("fgvc_aircraft", "tga", path)
    assert row["status"] == "failed" and "99 classes" in row["message"]
    _write_wds(tmp_path, "fgvc_aircraft", "test", [0, 1], ["Sopwith Camel"] + variants[1:])
    row = check_entry("fgvc_aircraft", "tga", path)
    assert row["status"] == "failed" and "do not match" in row["message"] and "Sopwith Camel" in row["message"]
    _write_wds(tmp_path, "fgvc_aircraft", "test", [0, 1], [variants[1]] + variants[1:])
    assert "repeated: ['727-200']" in check_entry("fgvc_aircraft", "tga", path)["message"]
    with pytest.raises(ValueError, match="do not match"):
        load_protocol_data("fgvc_aircraft", "tga", path)


def test_fare_reads_clip_benchmark_names_of_its_own_copy(tmp_path, sized):
    """Caltech-101: the TGA copy has 101 classes, CLIP_benchmark's VTAB copy 102 (with background)."""
    fare_names = reg.load_class_names("caltech101", fare=True)
    path = _write_wds(tmp_path, "caltech101", "test", [4, 0, 101], fare_names)
    sized("caltech101", fare=True, test=3)
    row = check_entry("caltech101", "fare", path)
    assert row["status"] == "ok" and "102 names by classnames.txt" in row["message"]
    assert check_entry("caltech101", "tga", path)["status"] == "failed"  # no 101-class train split there
    tfds_flowers = reg.load_class_names("flowers102", fare=True)
    assert "ball moss" in tfds_flowers and "pink-yellow dahlia?" in tfds_flowers  # TFDS's names, not CLIP's
    flowers = _write_wds(tmp_path, "flowers102", "test", [0, 1], tfds_flowers)
    sized("flowers102", fare=True, test=2)
    assert check_entry("flowers102", "fare", flowers)["status"] == "ok"


# --- other entries' schemas ----------------------------------------------------------------------


def test_sun397_full_dataset_with_path_label_names(tmp_path, sized):
    paths = [f"/{n[0]}/{n}" for n in reg.load_class_names("sun397")]  # dpdl-benchmark/sun397: '/a/abbey'
    splits = {s: _dataset([0, 396], paths) for s in ("train", "validation", "test")}
    path = _save(tmp_path, "sun397", splits)
    sized("sun397", train=2, validation=2, test=2)
    row = check_entry("sun397", "tga", path)
    assert row["status"] == "ok" and "reference 108,754" in row["message"]
    assert reg.BENCHMARKS["sun397"].source_for("tga").expected_rows() == 108_753  # TFDS drops one image


def test_count_only_source_checks_the_label_values(tmp_path, sized):
    bools = datasets.Dataset.from_dict(
        {"image": [_image(i) for i in range(4)], "label": [False, True, True, False]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("bool")}),
    )
    path = _save(tmp_path, "pcam", {"test": bools})
    sized("pcam", test=4)
    assert "count only" in check_entry("pcam", "tga", path)["message"]
    assert len(load_protocol_data("pcam", "tga", path).dataset) == 4
    one_class = _save(tmp_path / "one", "pcam", {"test": bools.select([1, 2])})
    with pytest.raises(DataError, match="1 label values occur"):
        load_protocol_data("pcam", "tga", one_class)


def test_unnamed_local_copy_stands_for_all_the_splits_read(tmp_path):
    names = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
             "Residential", "River", "SeaLake"]
    _dataset(range(10), names).save_to_disk(str(tmp_path / "eurosat"))
    data = load_protocol_data("eurosat", "tga", str(tmp_path / "eurosat"))
    assert data.split_rows == {"train+validation+test": 10}


def test_without_a_local_copy_the_hub_is_unreachable_offline(tmp_path):
    rows = check_data(["cifar100", "tga16"], data_dir=str(tmp_path))  # a collection expands, duplicates drop
    assert [r["name"] for r in rows] == ["cifar100"] + [n for n in reg.TGA16 if n != "cifar100"]
    assert {r["status"] for r in rows} == {"unreachable"}
    assert _row(rows, "sun397")["split"] == "train+validation+test"
    fare = reg.get_benchmark("sun397").source_for("fare")  # pinned: the source names its revision
    row = _row(check_data(["sun397"], protocol="fare"), "sun397")
    assert row["source"] == f"clip-benchmark/wds_sun397@{fare.revision[:12]}"
    with pytest.raises(ValueError, match="protocol"):
        check_data(["cifar10"], protocol="clip")


# --- the evaluation's loader -----------------------------------------------------------------------


def test_evaluation_reads_every_split_and_the_reference_prompt(tmp_path):
    from tgazsr.evaluation import datasets as ev
    from tgazsr.evaluation.arguments import EvalArguments

    names = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
             "Residential", "River", "SeaLake"]
    _save(tmp_path, "eurosat", {s: _dataset(range(10), names) for s in ("train", "validation", "test")})
    loaded = ev.prepare_dataset("eurosat", EvalArguments(data_dir=str(tmp_path)), 32)
    assert len(loaded) == 30 and loaded.split == "train+validation+test"
    assert loaded.class_names == reg.class_names("eurosat")
    bools = datasets.Dataset.from_dict(
        {"image": [_image(i) for i in range(2)], "label": [False, True]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("bool")}),
    )
    _save(tmp_path, "pcam", {"test": bools})
    args = EvalArguments(data_dir=str(tmp_path))
    assert ev.prepare_dataset("pcam", args, 32).templates[0].startswith("Tthis ")
    object.__setattr__(args, "fix_prompt_typos", True)  # the flag the evaluation CLI exposes
    assert ev.prepare_dataset("pcam", args, 32).templates[0].startswith("This ")


def test_fare_protocol_reads_a_local_copy_of_its_test_split(tmp_path):
    """A copy in the Hub copy's schema (img / ClassLabel) also serves the FARE protocol when its names fit."""
    from tgazsr.evaluation import datasets as ev
    from tgazsr.evaluation.arguments import EvalArguments

    _save(tmp_path, "cifar10", {"test": _dataset(range(10), reg.load_class_names("cifar10"), image_column="img")})
    loaded = ev.prepare_dataset("cifar10", EvalArguments(data_dir=str(tmp_path), protocol="fare", max_samples=4), 32)
    assert len(loaded) == 4 and len(loaded.templates) == 18 and loaded.class_names[0] == "airplane"
    with pytest.raises(ev.DatasetUnavailable, match="expects 102"):  # FARE Caltech-101 needs its 102 classes
        _save(tmp_path, "caltech101", {"test": _dataset(range(3), reg.load_class_names("caltech101"))})
        ev.prepare_dataset("caltech101", EvalArguments(data_dir=str(tmp_path), protocol="fare"), 32)


def test_unreachable_hub_copy_is_one_clear_error():
    from tgazsr.evaluation import datasets as ev
    from tgazsr.evaluation.arguments import EvalArguments

    with pytest.raises(ev.DatasetUnavailable, match="'cifar10' could not be loaded") as info:
        ev.prepare_dataset("cifar10", EvalArguments(protocol="fare"), 32)  # offline: wds_vtab-cifar10 unreachable
    assert "--datasets cifar10=DIR" in str(info.value)
