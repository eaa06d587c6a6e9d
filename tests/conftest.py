"""Shared fixtures: tiny CLIPs built from configs and small generated image datasets.

Nothing here touches the network: the tokenizer is a character-level CLIP tokenizer built from
the 256 byte symbols, the models are random, and images are drawn with numpy.

The evaluation tests share ``eval_world``: two tiny CLIPs and images labelled with model A's own
clean predictions (so its clean accuracy is 100% and every drop measured under attack is the
attack's doing), written in each local format the harness reads (save_to_disk, image folder,
parquet, webdataset tar).
"""

from __future__ import annotations

import io
import itertools
import os
import tarfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread in every run the tests start (tgazsr.cpu): tiny models are fastest on one, and a
# test must not slow down many times when another process holds a core.
os.environ.setdefault("TGAZSR_THREADS", "1")

import numpy as np
import pytest
import torch
from PIL import Image

CLASS_NAMES = ["red square", "green circle", "blue_triangle", "yellow-star"]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``launches`` (they start whole commands or several processes, 10 to 60 s each) go
    first: the suite runs on parallel workers (pytest-xdist), and a long test begun last would leave
    the other workers idle while it finishes. The order is otherwise the collection's."""
    items.sort(key=lambda item: item.get_closest_marker("launches") is None)


#: Rendezvous ports: each pytest-xdist worker draws from its own block, below Linux's ephemeral range
#: (32768 and up, where the kernel puts the ports gloo and clients open), so two workers never pick
#: the same port between one's check and its launcher's bind; a port something else holds is skipped.
PORT_BASE, PORT_BLOCK = 20000, 1500
_ports_drawn = itertools.count()


def free_port() -> int:
    """A port nobody listens on now, for a torchrun or accelerate rendezvous, from this worker's block."""
    import socket

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...
    block = int(worker[2:]) if worker[2:].isdigit() else 0
    for _ in range(PORT_BLOCK):
        port = PORT_BASE + block * PORT_BLOCK + next(_ports_drawn) % PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # held by another process
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_BASE + block * PORT_BLOCK}..{PORT_BASE + (block + 1) * PORT_BLOCK - 1}")


def merge_flags(defaults, extra):
    """Command-line flags ``defaults`` with each flag of ``extra`` replacing (or adding) its value(s):
    a flag given twice is an error, so tests override defaults this way."""
    flags: dict[str, list[str]] = {}
    for args in (list(defaults), list(extra)):
        key = None
        for arg in args:
            if arg.startswith("--"):
                key = arg
                flags[key] = []
            else:
                flags[key].append(arg)
    return [item for key, values in flags.items() for item in (key, *values)]


def write_char_tokenizer(directory: str | None = None):
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def build_tiny_clip(directory: str, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> str:
    """Save a random tiny CLIPModel with tokenizer and image processor to ``directory``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = write_char_tokenizer(directory)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            image_size=image_size, patch_size=patch_size, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2,
        ),
        projection_dim=16,
    )
    model = CLIPModel(config)
    model.save_pretrained(directory)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(directory)
    return directory


def build_tiny_siglip(directory: str, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> str:
    """Save a random tiny SiglipModel with a tokenizer (the character-level one, 64 tokens long as
    SigLIP's prompts are) and SigLIP's image processor (mean = std = 0.5) to ``directory``."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok = write_char_tokenizer(directory)
    tok.model_max_length = 64
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64, projection_size=32, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            image_size=image_size, patch_size=patch_size, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2,
        ),
    )
    model = SiglipModel(config)
    with torch.no_grad():  # SigLIP's initialization (log 10 and -10), so that logits are in the model's usual range
        model.logit_scale.fill_(2.302585)
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(directory)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    SiglipProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(directory)
    return directory


def make_images(n: int, num_classes: int, size: int = 40, seed: int = 0):
    """Class-dependent coloured images with noise: (PIL images, labels)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 255, size=(num_classes, 3))
    images, labels = [], []
    for i in range(n):
        y = i % num_classes
        arr = rng.normal(palette[y], 30, size=(size, size + 8, 3)).clip(0, 255).astype(np.uint8)
        images.append(Image.fromarray(arr))
        labels.append(y)
    return images, labels


def write_image_folder(root: str, n: int = 16, class_names=CLASS_NAMES, seed: int = 0) -> str:
    images, labels = make_images(n, len(class_names), seed=seed)
    for i, (im, y) in enumerate(zip(images, labels)):
        d = os.path.join(root, class_names[y])
        os.makedirs(d, exist_ok=True)
        im.save(os.path.join(d, f"{i:04d}.png"))
    return root


def make_hf_dataset(n: int = 16, class_names=CLASS_NAMES, seed: int = 0):
    import datasets

    images, labels = make_images(n, len(class_names), seed=seed)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names))})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


TOY_BENCHMARK = """\
# A benchmark of generated images, read from a local copy only (repository: null).
name: {name}
display_name: Toy shapes
aliases: [{name}-four]
resize: square
reference_images: null
protocols:
  tga:
    source:
      repository: null
      splits: [test]
      image_column: image
      label_column: label
    num_classes: 4
    class_names: {{file: {name}.txt, clean_chars: _-/}}
    templates: ["a drawing of a {{}}."]
    label_check: {{method: names}}
    notes: Four colour-shape classes of generated images.
  fare:
    source: {{same_as: tga, splits: [test]}}
    class_names: {{file: {name}.txt, clean_chars: ""}}
    templates: ["a drawing of a {{}}.", "art of a {{}}."]
"""


def write_toy_benchmark(directory, name: str = "toy_shapes", text: str | None = None) -> str:
    """One benchmark file and its class-name file (``CLASS_NAMES``) in ``directory``: all a new
    benchmark needs. ``text`` replaces the benchmark file's text (``{name}`` formatted in)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.txt"), "w", encoding="utf-8") as f:
        f.write("# source: the four colour-shape classes of conftest.CLASS_NAMES\n" + "\n".join(CLASS_NAMES) + "\n")
    path = os.path.join(directory, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write((TOY_BENCHMARK if text is None else text).format(name=name))
    return path


@pytest.fixture
def scratch_registry(monkeypatch):
    """Benchmarks and collections registered in a test (``register_benchmark``, ``add_benchmark_dir``)
    vanish after it: the test works on copies of the registry's tables."""
    from tgazsr.data import registry as reg
    from tgazsr.registry import Registry

    for attr in ("REGISTRY", "COLLECTIONS"):
        table = getattr(reg, attr)
        copy = Registry(table.kind, flag=table.flag)
        for name, item in table.items():
            copy.register(name, item)
        monkeypatch.setattr(reg, attr, copy)
    monkeypatch.setattr(reg, "_LOOKUP", dict(reg._LOOKUP))
    return reg


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    return build_tiny_clip(str(tmp_path_factory.mktemp("tiny_clip")))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> str:
    return build_tiny_siglip(str(tmp_path_factory.mktemp("tiny_siglip")))


@pytest.fixture(scope="session")
def saved_dataset(tmp_path_factory) -> str:
    """A save_to_disk DatasetDict with train and valid splits."""
    import datasets

    path = str(tmp_path_factory.mktemp("data") / "toy")
    datasets.DatasetDict({"train": make_hf_dataset(16), "valid": make_hf_dataset(8, seed=1)}).save_to_disk(path)
    return path


# --- the evaluation world -----------------------------------------------------------------

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


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models run fastest on one thread, and stay fast when other processes share the CPU
    (several OpenMP threads spin against each other there)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory) -> dict:
    return get_world(tmp_path_factory)


def edit_weights(path, how: str, name: str = "vision_model.post_layernorm.weight") -> str:
    """Rewrite the safetensors file ``path`` so that it lacks the tensor ``name`` (``how="missing"``),
    holds an extra one (``"unexpected"``) or holds ``name`` with one more row (``"mismatched"``).
    Returns the name of the tensor the loader must report."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    if how == "missing":
        del weights[name]
    elif how == "unexpected":
        name = "vision_model.extra_head.weight"
        weights[name] = torch.zeros(3)
    else:
        weights[name] = torch.zeros(weights[name].shape[0] + 1, *weights[name].shape[1:])
    save_file(weights, str(path), metadata={"format": "pt"})
    return name


#: Flags that fit a method's recipe to the tiny ``saved_dataset`` where the recipe names data of its own
#: (AGFT's recipe names ImageNet's class names and no eval split).
TINY_DATA_FLAGS = {"agft": ["--eval_split", "valid", "--class_names", *CLASS_NAMES]}
