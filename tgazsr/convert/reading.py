"""Reading checkpoints: ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.bin`` files with
``torch.load(weights_only=True)``, ``.safetensors``, and open_clip folders; the CLIP weights found in
them, with OpenAI / open_clip key names."""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..files import read_json_object
from .base import CHECKPOINT_SUFFIXES, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, TOKENIZER_FILES, ConversionError
from .siglip import is_siglip

#: Keys of OpenAI's JIT state dicts that are metadata, not weights; ``attn_mask`` is the causal mask
#: (a constant buffer) that some open_clip versions saved.
METADATA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
#: Containers of training checkpoints, in the order they are looked in.
CONTAINERS = ("state_dict", "model", "model_state_dict", "vision_encoder_state_dict", "module")


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` read.

    state_dict: OpenAI / open_clip key names (``visual.*`` for the vision tower), wrappers and
        ``module.`` prefixes removed, metadata keys dropped.
    container: where in the file the weights were (``"state_dict"``, ``"vision_encoder_state_dict"``,
        ... or ``""`` for a bare state dict).
    model_cfg / preprocess_cfg: from an open_clip folder's ``open_clip_config.json``, else None.
    tokenizer_dir: the folder, when it holds tokenizer files.
    files: the files read (for the cache key).
    """

    state_dict: dict[str, torch.Tensor]
    container: str = ""
    model_cfg: dict | None = None
    preprocess_cfg: dict | None = None
    tokenizer_dir: str | None = None
    files: list[str] = field(default_factory=list)


def _numpy_safe_globals() -> list:
    """numpy scalars and arrays (``best_acc1`` of the TeCoA-style checkpoints is a numpy float): data,
    not code. Both module spellings (numpy 1's ``numpy.core``, numpy 2's ``numpy._core``)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    found: list = [np.dtype, np.ndarray]
    for obj in (multiarray.scalar, multiarray._reconstruct):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            found.append((obj, f"{module}.{obj.__name__}"))
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            found.append(dtype_class)
    return found


def _torch_load(path: str):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in archive.namelist()):
                raise ConversionError(
                    f"{os.path.basename(path)} is a TorchScript archive (as OpenAI's original CLIP release), which would "
                    "run its own code when loaded; tgazsr does not load it. OpenAI's CLIPs are on the Hub as CLIPModel "
                    "checkpoints (openai/clip-vit-base-patch32, openai/clip-vit-large-patch14, ...): use those, or "
                    "re-save the weights with torch.save(model.state_dict(), 'weights.pt') where you trust the file."
                )
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - the unpickler's refusal, or a file that is not a checkpoint
        message = str(err)
        if "Weights only load failed" not in message and "weights_only" not in message.lower():
            raise ConversionError(f"Could not read {os.path.basename(path)} as a PyTorch checkpoint: {err}") from err
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - old (non-zip) format: the error text names the first one
            unsafe = re.findall(r"GLOBAL (\S+)", message)[:1]
        shown = ", ".join(unsafe[:6]) + (" ..." if len(unsafe) > 6 else "") if unsafe else "objects"
        raise ConversionError(
            f"{os.path.basename(path)} holds pickled Python objects besides tensors ({shown}). tgazsr reads checkpoints "
            "with torch.load(weights_only=True), which never runs code from a file, so it refuses them. If you trust "
            "the file, save its tensors alone and convert that file, e.g. python -c \"import torch; "
            "c = torch.load('in.pth.tar', weights_only=False); torch.save(c['state_dict'], 'weights.pt')\"."
        ) from None


def _read_weights_file(path: str):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as err:  # noqa: BLE001 - a corrupt or truncated file
            raise ConversionError(f"Could not read {os.path.basename(path)} as safetensors: {err}") from err
    return _torch_load(path)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "_orig_mod.", "model."):
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def normalize_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI / open_clip key names: no ``module.`` / ``_orig_mod.`` / ``model.`` prefix, no metadata
    keys, and ``visual.`` in front of a bare vision tower's keys (``model.visual.state_dict()``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = _strip_prefixes(key)
        if key in METADATA_KEYS:
            continue
        if key in out:
            raise ConversionError(f"The checkpoint holds {key!r} twice (with and without a wrapper prefix).")
        out[key] = value
    if "conv1.weight" in out and "class_embedding" in out and "visual.conv1.weight" not in out:
        out = {f"visual.{k}": v for k, v in out.items()}
    if "trunk.patch_embed.proj.weight" in out and "trunk.attn_pool.latent" in out:  # a SigLIP's model.visual
        out = {f"visual.{k}": v for k, v in out.items()}
    return out


def _kind(sd: Mapping[str, torch.Tensor]) -> str | None:
    if any(k.startswith("visual.layer1.") or k.startswith("visual.attnpool.") for k in sd):
        return "resnet"
    if is_siglip(sd):  # open_clip's SigLIP: a timm trunk, the text tower under text.
        return "full" if "text.token_embedding.weight" in sd else "vision"
    has_vision = "visual.conv1.weight" in sd
    has_text = "token_embedding.weight" in sd
    if has_vision and has_text:
        return "full"
    if has_vision:
        return "vision"
    if has_text:
        return "text"
    return None


def _nonempty_tensors(obj) -> list[str]:
    if isinstance(obj, torch.Tensor):
        return [""] if obj.numel() else []
    if isinstance(obj, Mapping):
        return [f"{k}{'.' + n if n else ''}" for k, v in obj.items() for n in _nonempty_tensors(v)]
    return []


def _pick_state_dict(obj, where: str) -> tuple[dict[str, torch.Tensor], str]:
    """The CLIP weights inside a loaded file: the file itself, or one of its containers."""
    candidates: list[tuple[str, dict]] = []
    if _is_state_dict(obj):
        candidates.append(("", normalize_state_dict(obj)))
    elif isinstance(obj, Mapping):
        for key in CONTAINERS:
            if _is_state_dict(obj.get(key)):
                candidates.append((key, normalize_state_dict(obj[key])))
    kinds = [(key, sd, _kind(sd)) for key, sd in candidates]
    for key, sd, kind in kinds:
        if kind == "resnet":
            raise ConversionError(
                f"{where} holds a ResNet CLIP (visual.layer1..4 and visual.attnpool): transformers has no CLIPModel for "
                "it. Only ViT CLIPs convert.")
    chosen = next(((k, sd) for k, sd, kind in kinds if kind == "full"), None) or next(
        ((k, sd) for k, sd, kind in kinds if kind == "vision"), None)
    if chosen is None:
        top = sorted(map(str, obj)) if isinstance(obj, Mapping) else [type(obj).__name__]
        raise ConversionError(
            f"{where} holds no CLIP weights in OpenAI / open_clip format (no visual.conv1.weight, class_embedding or "
            f"token_embedding.weight; top-level entries: {', '.join(top[:12])}). Expected a state dict of OpenAI's CLIP "
            "or open_clip, alone or under 'state_dict' / 'vision_encoder_state_dict' (as the TeCoA, PMG-AFT and TGA-ZSR "
            "code saves it).")
    key, sd = chosen
    if key == "vision_encoder_state_dict" and isinstance(obj, Mapping):
        # TeCoA / PMG-AFT / TGA-ZSR: 'state_dict' and 'add_prompter' hold the visual prompt (empty without one).
        prompt = [f"{c}.{n}".rstrip(".") for c in ("state_dict", "add_prompter") if c in obj
                  for n in _nonempty_tensors(obj[c])]
        if prompt:
            raise ConversionError(
                f"{where} was trained with a visual prompt ({', '.join(prompt[:4])}): the prompt is part of that model "
                "and a CLIPModel cannot hold it. Only checkpoints fine-tuned without a prompt convert.")
    return sd, key


def _read_open_clip_config(path: str) -> tuple[dict, dict | None]:
    config = read_json_object(path, ConversionError)
    model_cfg = config.get("model_cfg", config)  # open_clip reads both layouts
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg:
        raise ConversionError(f"{path} has no model_cfg with a vision_cfg: it is not an open_clip config.")
    preprocess = config.get("preprocess_cfg")
    return model_cfg, preprocess if isinstance(preprocess, dict) else None


def _has_tokenizer(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, f)) for f in TOKENIZER_FILES)


def load_checkpoint(path: str) -> LoadedCheckpoint:
    """Read a checkpoint file (``.pth``, ``.pth.tar``, ``.pt``, ``.bin`` with ``torch.load(weights_only=True)``,
    ``.safetensors``) or an open_clip folder (``open_clip_config.json`` beside ``open_clip_model.safetensors``
    or ``open_clip_pytorch_model.bin``; its ``model_cfg`` gives ``quick_gelu`` and the sizes, its
    ``preprocess_cfg`` the normalization). A file that needs pickled objects is refused, saying so."""
    path = os.path.expanduser(str(path))
    name = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")) and not os.path.isfile(os.path.join(path, OPEN_CLIP_CONFIG)):
            raise ConversionError(f"{name} holds a config.json: it is a transformers model folder, which needs no "
                                  "conversion (pass it as --model_name_or_path directly).")
        weights = next((os.path.join(path, w) for w in OPEN_CLIP_WEIGHTS if os.path.isfile(os.path.join(path, w))), None)
        if weights is None:
            found = sorted(f for f in os.listdir(path) if f.endswith(CHECKPOINT_SUFFIXES))
            if len(found) == 1:
                weights = os.path.join(path, found[0])
            else:
                what = f"several checkpoint files ({', '.join(found[:6])}): pass one of them" if found else \
                    "no checkpoint file"
                raise ConversionError(f"The folder {name} has {what}. An open_clip folder holds "
                                      f"{' or '.join(OPEN_CLIP_WEIGHTS[:3])} beside {OPEN_CLIP_CONFIG}.")
        config_path = os.path.join(path, OPEN_CLIP_CONFIG)
        model_cfg, preprocess = _read_open_clip_config(config_path) if os.path.isfile(config_path) else (None, None)
        sd, container = _pick_state_dict(_read_weights_file(weights), f"{name}/{os.path.basename(weights)}")
        files = [weights] + ([config_path] if model_cfg is not None else [])
        return LoadedCheckpoint(sd, container, model_cfg, preprocess, path if _has_tokenizer(path) else None, files)
    if not os.path.isfile(path):
        raise ConversionError(f"The checkpoint {path} does not exist.")
    if not path.endswith(CHECKPOINT_SUFFIXES):
        raise ConversionError(f"{name} is not a checkpoint file tgazsr reads: expected one of "
                              f"{', '.join(CHECKPOINT_SUFFIXES)}, or an open_clip folder.")
    sd, container = _pick_state_dict(_read_weights_file(path), name)
    return LoadedCheckpoint(sd, container, files=[path])
