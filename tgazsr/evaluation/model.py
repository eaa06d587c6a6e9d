"""The model under evaluation: loading, tokenizer, pixel normalization, fingerprint, finiteness."""

from __future__ import annotations

import hashlib
import logging

import torch
from transformers import AutoImageProcessor

from ..finite import non_finite_tensors
from ..errors import ModelFolderError
from ..model_checks import PROBE_PROMPTS, check_tokenizer
from ..backbones import Backbone, backbone_for
from ..modeling import NORMALIZATION_CHOICES, ZeroShotCLIP, load_clip, resolve_pixel_normalization
from ..recipes import RecipeError
from .arguments import EvalArguments

logger = logging.getLogger("tgazsr.evaluation")


class NonFiniteError(RuntimeError):
    """Weights, logits or attack losses that are NaN or infinite: no number may be reported."""


def model_fingerprint(clip: torch.nn.Module) -> str:
    """A hash of every tensor of the state dict (names, dtypes, shapes and bytes)."""
    h = hashlib.blake2b(digest_size=20)
    for name, tensor in sorted(clip.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_finite_weights(clip: torch.nn.Module, name: str) -> None:
    """Refuse a model with NaN or infinite weights: its accuracy would be a number without meaning."""
    bad = non_finite_tensors(clip)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(
            f"The model {name!r} has non-finite weights (NaN or inf) in {len(bad)} tensors: {shown}. "
            "It cannot be evaluated; evaluate its last finite checkpoint instead."
        )


TOKENIZER_HINT = (
    "Pass --tokenizer_name_or_path with the tokenizer of the base model the checkpoint was fine-tuned from "
    "(e.g. openai/clip-vit-base-patch32), or a model folder that has its tokenizer files (vocab.json and "
    "merges.txt, or tokenizer.json)."
)


def _check_tokenizer(tokenizer, name_or_path: str) -> None:
    """Refuse a tokenizer without a vocabulary: transformers builds one, silently, from a
    directory that has no tokenizer files, and it maps every word to the unknown token."""
    ids = tokenizer("a photo of a dog", add_special_tokens=False)["input_ids"]
    if not ids:
        raise ModelFolderError(
            f"The tokenizer loaded from {name_or_path!r} turns 'a photo of a dog' into no tokens at all: the "
            f"directory holds no usable tokenizer files. {TOKENIZER_HINT}"
        )
    check_tokenizer(tokenizer, PROBE_PROMPTS, repr(name_or_path), hint=TOKENIZER_HINT)


def load_tokenizer(name_or_path: str):
    from transformers import AutoProcessor, AutoTokenizer

    tokenizer = None
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer = tokenizer if callable(tokenizer) else None
    except Exception:  # noqa: BLE001 - a directory with a tokenizer but no processor: load the tokenizer alone
        tokenizer = None
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as err:
            raise ModelFolderError(
                f"Could not load a tokenizer from {name_or_path!r}: {err}\n{TOKENIZER_HINT}"
            ) from err
    _check_tokenizer(tokenizer, name_or_path)
    return tokenizer


def resolve_normalization(name: str, model_name_or_path: str, backbone: type[Backbone]):
    """(mean, std): a named normalization ('clip', 'siglip', 'imagenet'; another family's constants are
    refused), or for 'auto' the checkpoint's image processor's (the family's constants if it has none,
    said in the log): ``tgazsr.modeling.resolve_pixel_normalization``."""
    if name not in NORMALIZATION_CHOICES:
        raise RecipeError(f"pixel_normalization must be one of {', '.join(NORMALIZATION_CHOICES)}, got "
                          f"{name!r}: pass --pixel_normalization with one of them.")
    processor = None
    if name == "auto":
        try:
            processor = AutoImageProcessor.from_pretrained(model_name_or_path)
        except Exception:  # noqa: BLE001 - no image processor saved: the family's constants, said in the log
            processor = None
    return resolve_pixel_normalization(name, backbone, processor, model_name_or_path, logger)


def normalization_of(model) -> list[list[float]]:
    """The mean and std a ZeroShotCLIP applies, as plain numbers (for results and keys)."""
    return [[round(float(v), 6) for v in model.pixel_mean.flatten()], [round(float(v), 6) for v in model.pixel_std.flatten()]]


def load_model(args: EvalArguments, device: torch.device):
    """(ZeroShotCLIP in eval mode with no parameter gradients, tokenizer, weights fingerprint)."""
    if not args.model_name_or_path:
        raise RecipeError("No model to evaluate: pass --model_name_or_path (a model directory, e.g. one tgazsr.train wrote, or a Hub id).")
    clip = load_clip(args.model_name_or_path)
    check_finite_weights(clip, args.model_name_or_path)
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path)
    model = ZeroShotCLIP(clip, resolve_normalization(args.pixel_normalization, args.model_name_or_path,
                                                     backbone_for(clip)))
    fingerprint = model_fingerprint(model.clip)
    model.requires_grad_(False)
    model.eval()
    return model.to(device), tokenizer, fingerprint
