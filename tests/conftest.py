"""Shared fixtures: a tiny CLIP built from configs and small generated image datasets.

Nothing here touches the network: the tokenizer is a character-level CLIP tokenizer built from
the 256 byte symbols, the model is random, and images are drawn with numpy.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch
from PIL import Image

CLASS_NAMES = ["red square", "green circle", "blue_triangle", "yellow-star"]


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


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    return build_tiny_clip(str(tmp_path_factory.mktemp("tiny_clip")))


@pytest.fixture(scope="session")
def saved_dataset(tmp_path_factory) -> str:
    """A save_to_disk DatasetDict with train and valid splits."""
    import datasets

    path = str(tmp_path_factory.mktemp("data") / "toy")
    datasets.DatasetDict({"train": make_hf_dataset(16), "valid": make_hf_dataset(8, seed=1)}).save_to_disk(path)
    return path
