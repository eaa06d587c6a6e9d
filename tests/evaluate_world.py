"""A small offline world for the evaluation tests: tiny CLIPs and datasets labelled by a model.

A random tiny CLIP classifies generated images almost at random, so the tests label the images
with the model's own clean predictions: its clean accuracy is then 100% and every drop measured
under attack is the attack's doing. The same images are written in each local format the
harness reads (save_to_disk, image folder, parquet, webdataset tar).
"""

from __future__ import annotations

import io
import os
import tarfile

import torch

from conftest import CLASS_NAMES, build_tiny_clip, make_images

TEMPLATE = "This is a photo of a {}"
CLEAN_NAMES = ["red square", "green circle", "blue triangle", "yellow star"]


def model_predictions(model_dir: str, images, class_names=CLEAN_NAMES, template: str = TEMPLATE) -> list[int]:
    """The clean predictions of the model in ``model_dir`` through the harness's own pipeline."""
    from tgazsr.data import ImageTransform
    from tgazsr.evaluation import EvalArguments, load_model

    model, tokenizer, _ = load_model(EvalArguments(model_name_or_path=model_dir), torch.device("cpu"))
    text = model.class_embeddings(list(class_names), [template], tokenizer)
    transform = ImageTransform(model.clip.config.vision_config.image_size)
    x = torch.stack([transform(im) for im in images])
    with torch.no_grad():
        return model.classify(x, text).argmax(-1).tolist()


def labelled_dataset(images, labels, class_names=CLASS_NAMES, image_column="image", label_column="label"):
    import datasets

    features = datasets.Features(
        {image_column: datasets.Image(), label_column: datasets.ClassLabel(names=list(class_names))}
    )
    return datasets.Dataset.from_dict({image_column: images, label_column: labels}, features=features)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_formats(root: str, images, labels, class_names=CLASS_NAMES) -> dict[str, str]:
    """The same labelled images as save_to_disk, image folder, parquet and webdataset tar."""
    import datasets

    ds = labelled_dataset(images, labels, class_names)
    paths = {}
    paths["saved"] = os.path.join(root, "saved")
    datasets.DatasetDict({"test": ds}).save_to_disk(paths["saved"])
    paths["folder"] = os.path.join(root, "folder")
    for i, (im, y) in enumerate(zip(images, labels)):
        d = os.path.join(paths["folder"], "test", class_names[y])
        os.makedirs(d, exist_ok=True)
        im.save(os.path.join(d, f"{i:04d}.png"))
    paths["parquet"] = os.path.join(root, "parquet")
    os.makedirs(paths["parquet"], exist_ok=True)
    ds.to_parquet(os.path.join(paths["parquet"], "test-00000-of-00001.parquet"))
    paths["webdataset"] = os.path.join(root, "wds", "test-000000.tar")
    os.makedirs(os.path.dirname(paths["webdataset"]), exist_ok=True)
    with tarfile.open(paths["webdataset"], "w") as tar:
        for i, (im, y) in enumerate(zip(images, labels)):
            for ext, payload in (("png", _png(im)), ("cls", str(y).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return paths


def build_eval_world(root: str, n: int = 24) -> dict:
    """Two tiny CLIPs (seeds 0 and 1) and model-0-labelled data in every format."""
    os.makedirs(root, exist_ok=True)
    clip_a = build_tiny_clip(os.path.join(root, "clip_a"), seed=0)
    clip_b = build_tiny_clip(os.path.join(root, "clip_b"), seed=1)
    images, _ = make_images(n, 8, seed=3)
    labels = model_predictions(clip_a, images)
    world = {"clip_a": clip_a, "clip_b": clip_b, "images": images, "labels": labels}
    world.update(write_formats(os.path.join(root, "data"), images, labels))
    return world


def get_world(tmp_path_factory) -> dict:
    """Build the world once per test session (shared by every evaluation test module)."""
    import json

    root = tmp_path_factory.getbasetemp() / "eval_world"
    marker = root / "world.json"
    if marker.is_file():
        world = json.loads(marker.read_text())
    else:
        world = build_eval_world(str(root))
        world.pop("images")
        marker.write_text(json.dumps(world))
    world["images"] = make_images(len(world["labels"]), 8, seed=3)[0]
    return world


def one_thread():
    """Tiny models run fastest on one thread, and stay fast when other processes share the CPU
    (several OpenMP threads spin against each other there). A generator for a pytest fixture."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
