"""Data loading from every supported local format, class names, and pixel transforms."""

from __future__ import annotations

import io
import tarfile

import datasets
import pytest
import torch
from PIL import Image

from conftest import CLASS_NAMES, make_hf_dataset, make_images, write_image_folder
from tgazsr.data import DataError, ImageTransform, collate, prepare_classification_data

CLEAN = ["red square", "green circle", "blue triangle", "yellow star"]


def check(data, n, names=CLEAN, size=32):
    assert len(data) == n
    assert data.class_names == names
    item = data.dataset[0]
    assert item["pixel_values"].shape == (3, size, size)
    assert 0.0 <= item["pixel_values"].min() and item["pixel_values"].max() <= 1.0
    batch = collate([data.dataset[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, size, size) and batch["labels"].dtype == torch.long


def test_image_folder(tmp_path):
    root = write_image_folder(str(tmp_path / "folder"), n=8)
    data = prepare_classification_data(root, "train", 32)
    # imagefolder sorts class folders alphabetically; names are cleaned
    assert sorted(data.class_names) == sorted(CLEAN)
    assert len(data) == 8


def test_save_to_disk_dataset_and_split_errors(saved_dataset):
    check(prepare_classification_data(saved_dataset, "valid", 32), 8)
    with pytest.raises(DataError, match=r"no split 'test'.*\['train', 'valid'\]"):
        prepare_classification_data(saved_dataset, "test", 32)


def test_parquet_files(tmp_path):
    path = tmp_path / "pq"
    path.mkdir()
    make_hf_dataset(12).to_parquet(str(path / "train-00000.parquet"))
    check(prepare_classification_data(str(path), "train", 32), 12)
    check(prepare_classification_data(str(path / "train-00000.parquet"), "train", 32, max_samples=5), 5)


def test_webdataset_tars_with_class_names_file(tmp_path):
    images, labels = make_images(6, 4)
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, (im, y) in enumerate(zip(images, labels)):
            for ext, payload in (("png", _png(im)), ("cls", str(y).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    names_file = tmp_path / "names.txt"
    names_file.write_text("# my classes\n" + "\n".join(CLASS_NAMES) + "\n")
    data = prepare_classification_data(str(shard), "train", 32, image_column="image", label_column="label",
                                       class_names=str(names_file))
    check(data, 6)
    with pytest.raises(DataError, match="carries no class names"):
        prepare_classification_data(str(shard), "train", 32)


def _png(im):
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_wordnet_ids_map_to_first_synonym(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["n01443537", "n01629819"])})
    images, labels = make_images(4, 2)
    path = str(tmp_path / "wnid")
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).save_to_disk(path)
    data = prepare_classification_data(path, "train", 32)
    assert data.class_names == ["goldfish", "european fire salamander"]


def test_bad_columns_and_labels_are_named(saved_dataset):
    with pytest.raises(DataError, match=r"no image column 'picture'.*\['image', 'label'\]"):
        prepare_classification_data(saved_dataset, "train", 32, image_column="picture")
    with pytest.raises(DataError, match="2 class names were given.*4 classes"):
        prepare_classification_data(saved_dataset, "train", 32, class_names=["a", "b"])


def test_class_names_file_given_as_a_one_item_list(saved_dataset, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("# my names\nw\nx\ny\nz\n")
    data = prepare_classification_data(saved_dataset, "train", 32, class_names=[str(names)])  # --class_names FILE
    assert data.class_names == ["w", "x", "y", "z"]


def test_a_missing_split_is_never_replaced_by_another(tmp_path):
    import datasets

    folder = write_image_folder(str(tmp_path / "flat"), n=8)  # no split sub-folders: one split, 'train'
    with pytest.raises(DataError, match=r"no split 'valid'.*\['train'\]"):
        prepare_classification_data(folder, "valid", 32)
    assert prepare_classification_data(folder, None, 32).split == "train"  # unnamed request: its only split
    plain = str(tmp_path / "plain")
    make_hf_dataset(8).save_to_disk(plain)  # a Dataset saved without a split name
    with pytest.raises(DataError, match="without split names, not split 'valid'"):
        prepare_classification_data(plain, "valid", 32, accept_unnamed=False)
    named = str(tmp_path / "named")
    ds = make_hf_dataset(8)
    ds._split = datasets.NamedSplit("test")
    ds.save_to_disk(named)
    assert prepare_classification_data(named, "test", 32).split == "test"
    with pytest.raises(DataError, match="single split 'test', not split 'train'"):
        prepare_classification_data(named, "train", 32)


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_classification_data(str(tmp_path / "nowhere" / "data"), "train", 32)


def test_unreachable_hub_dataset_says_how_to_use_a_local_copy():
    # Offline (conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): no network call is made.
    with pytest.raises(DataError, match=r"(?s)no-such-user/no-such-dataset.*local copy"):
        prepare_classification_data("no-such-user/no-such-dataset", "train", 32)


def test_transforms_reference_geometry():
    im = Image.new("RGB", (300, 200), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 50, 200))  # a blue band on the left, cropped away by center crop
    out = ImageTransform(224, "shorter_side_crop")(im)
    assert out.shape == (3, 224, 224)
    assert out[0].mean() > 0.99 and out[2].mean() < 0.01
    sq = ImageTransform(224, "square")(im)
    assert sq.shape == (3, 224, 224) and sq[2, :, :5].mean() > 0.9  # the band survives a plain resize
    with pytest.raises(ValueError, match="resize_mode"):
        ImageTransform(224, "stretch")
