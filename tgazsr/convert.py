"""Convert OpenAI-CLIP and open_clip checkpoints into plain ``CLIPModel`` directories.

    tgazsr convert hf-hub:chs20/fare2-clip outputs/fare2-clip
    tgazsr convert fare2-clip outputs/fare2-clip                       (a name of the zoo below)
    tgazsr convert runs/tga_zsr/checkpoint.pth.tar outputs/tga-zsr --base_model openai/clip-vit-base-patch32
    tgazsr convert --list_zoo

Most published robust CLIPs are not ``transformers`` checkpoints: the TeCoA, PMG-AFT and TGA-ZSR
code saves ``.pth.tar`` files of OpenAI's CLIP (``clip.load``), RobustVLM releases ``.pt`` files of
the vision tower, and the FARE / TeCoA models on the Hub are open_clip folders
(``open_clip_config.json`` + ``open_clip_pytorch_model.bin`` or ``open_clip_model.safetensors``).
Their state dicts map onto ``CLIPModel`` one to one:

=============================================  ==================================================
OpenAI / open_clip                             CLIPModel
=============================================  ==================================================
``visual.conv1.weight``                        ``vision_model.embeddings.patch_embedding.weight``
``visual.class_embedding``                     ``vision_model.embeddings.class_embedding``
``visual.positional_embedding``                ``vision_model.embeddings.position_embedding.weight``
``visual.ln_pre`` / ``visual.ln_post``         ``vision_model.pre_layrnorm`` / ``.post_layernorm``
``visual.proj`` (width x embed)                ``visual_projection.weight`` (transposed)
``token_embedding.weight``                     ``text_model.embeddings.token_embedding.weight``
``positional_embedding``                       ``text_model.embeddings.position_embedding.weight``
``ln_final``                                   ``text_model.final_layer_norm``
``text_projection`` (width x embed)            ``text_projection.weight`` (transposed)
``logit_scale``                                ``logit_scale``
``*.resblocks.N.attn.in_proj_weight/bias``     ``*.layers.N.self_attn.{q,k,v}_proj`` (split in 3)
``*.resblocks.N.attn.out_proj``                ``*.layers.N.self_attn.out_proj``
``*.resblocks.N.ln_1`` / ``ln_2``              ``*.layers.N.layer_norm1`` / ``layer_norm2``
``*.resblocks.N.mlp.c_fc`` / ``c_proj``        ``*.layers.N.mlp.fc1`` / ``fc2``
=============================================  ==================================================

The architecture is read from the tensor shapes, as OpenAI's ``build_model`` reads it: the vision
width from ``conv1``, the patch size from its kernel, the image size from the number of positions,
the layer counts from the block indices, the text width, context length and vocabulary from the
text tensors, the embedding size from the projections; heads are ``width // 64`` unless an
``open_clip_config.json`` says otherwise (``heads``, ``head_width``). Every source tensor must be
used and every ``CLIPModel`` weight filled (the ``position_ids`` buffers are not weights), so a
checkpoint with parts a ``CLIPModel`` cannot hold (layer scale, attentional pooling, a visual
prompt) is refused with the names of those parts, never loaded half.

Two facts no tensor shows, and how they are decided:

- **the activation**: OpenAI's CLIP (and every model fine-tuned from it: TeCoA, PMG-AFT, FARE,
  TGA-ZSR) uses QuickGELU, most open_clip models trained on LAION / DataComp use GELU. It comes
  from ``quick_gelu=`` (``--quick_gelu true|false``), else the zoo entry, else the open_clip config
  (``quick_gelu``, open_clip's default False), else the base model's vision tower; with none of
  them it is an error.
- **text pooling**: OpenAI / open_clip pool the text at the end-of-text token, id 49407, so the
  converted text config has ``eos_token_id=49407`` and ``bos_token_id=49406`` (transformers then
  pools at the first 49407; with the legacy ``eos_token_id=2`` it would pool at ``argmax(ids)``).
  ``pad_token_id`` is 0, open_clip's ``pad_id``; the padding never reaches the pooled token (the
  text attention is causal and the pooled token is the first end-of-text token).

A checkpoint of the vision tower alone (TGA-ZSR's ``vision_encoder_state_dict``, RobustVLM's ``.pt``
files, ``visual.*`` keys only) takes its text tower, text projection, logit scale, tokenizer and
image normalization from ``base_model``: the CLIP it was fine-tuned from.

Checkpoint files are read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
numpy scalars/arrays, never pickled code. Conversions for ``--model_name_or_path`` are cached by
:func:`load_model_or_convert` in ``$TGAZSR_HOME/converted``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from .files import file_lock, read_json_object
from .errors import UserError

logger = logging.getLogger("tgazsr.convert")

#: Bumped when the converter's output changes: part of the cache key of load_model_or_convert.
CONVERTER_VERSION = 1
#: OpenAI's BPE tokenizer: <|startoftext|> and <|endoftext|> (the token the text tower pools at).
BOT_TOKEN_ID = 49406
EOT_TOKEN_ID = 49407
#: open_clip's pad_id (CLIPTextCfg.pad_id); padding follows the pooled token, so its value never matters.
PAD_TOKEN_ID = 0
#: nn.LayerNorm's default, which OpenAI's and open_clip's towers use.
LAYER_NORM_EPS = 1e-5
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

OPEN_CLIP_CONFIG = "open_clip_config.json"
#: open_clip's own names for the weights of a Hub folder, in its order of preference.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".bin", ".safetensors")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
HUB_PREFIX = "hf-hub:"
#: Keys of OpenAI's JIT state dicts that are metadata, not weights; ``attn_mask`` is the causal mask
#: (a constant buffer) that some open_clip versions saved.
METADATA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
#: Containers of training checkpoints, in the order they are looked in.
CONTAINERS = ("state_dict", "model", "model_state_dict", "vision_encoder_state_dict", "module")
#: open_clip config options that change the architecture away from what a CLIPModel computes.
UNSUPPORTED_VISION_OPTIONS = {
    "timm_model_name": None, "attentional_pool": False, "no_ln_pre": False, "pool_type": "tok",
    "final_ln_after_pool": False, "ls_init_value": None, "pos_embed_type": "learnable", "act_kwargs": None,
    "norm_kwargs": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "block_type": None,
}
UNSUPPORTED_TEXT_OPTIONS = {
    "hf_model_name": None, "text_arch": "clip", "embed_cls": False, "no_causal_mask": False,
    "final_ln_after_pool": False, "proj_bias": False, "proj_type": "linear", "ls_init_value": None,
    "act_kwargs": None, "norm_kwargs": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "block_type": None,
}


class ConversionError(ValueError, UserError):
    """A checkpoint that cannot be converted as given. The message says why and what to pass."""


# --- the zoo ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZooEntry:
    """A published robust CLIP: where it is, what it is, and the two facts its files may not carry
    (the activation and the tokenizer). ``confirmed`` names where each fact was read."""

    name: str
    source: str  # hf-hub:ORG/NAME, or the URL of the release (downloaded by hand)
    architecture: str
    eps: float  # training L-inf radius in units of 1/255
    method: str
    paper: str
    quick_gelu: bool
    tokenizer: str  # the tokenizer (and, for a vision-only checkpoint, the text tower): a CLIPModel Hub id
    vision_only: bool = False
    confirmed: str = ""


_ROBUST_CLIP = "Schlarmann et al., Robust CLIP (ICML 2024), arXiv:2402.12336"
_PERCEPTUAL = "Croce et al., Adversarially Robust CLIP Models Can Induce Better (Robust) Perceptual Metrics (SaTML 2025)"
_TECOA = "Mao et al., Understanding Zero-Shot Adversarial Robustness for Large-Scale Models (ICLR 2023), arXiv:2212.07016"
_HUB_CARD = ("Hub model card and the chs20/robust-clip collection; the RobustVLM README (github.com/chs20/RobustVLM): "
             "ViT-L/14 fine-tuned from OpenAI's CLIP (--pretrained openai, so QuickGELU) on ImageNet")

ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("tecoa2-clip", "hf-hub:chs20/tecoa2-clip", "ViT-L/14 (OpenAI init)", 2, "TeCoA",
             f"{_TECOA}; released by {_ROBUST_CLIP}", True, "openai/clip-vit-large-patch14", confirmed=_HUB_CARD),
    ZooEntry("tecoa4-clip", "hf-hub:chs20/tecoa4-clip", "ViT-L/14 (OpenAI init)", 4, "TeCoA",
             f"{_TECOA}; released by {_ROBUST_CLIP}", True, "openai/clip-vit-large-patch14", confirmed=_HUB_CARD),
    ZooEntry("fare2-clip", "hf-hub:chs20/fare2-clip", "ViT-L/14 (OpenAI init)", 2, "FARE", _ROBUST_CLIP, True,
             "openai/clip-vit-large-patch14", confirmed=_HUB_CARD + "; the fare2-clip file list (open_clip_config.json, "
             "open_clip_pytorch_model.bin, no tokenizer files)"),
    ZooEntry("fare4-clip", "hf-hub:chs20/fare4-clip", "ViT-L/14 (OpenAI init)", 4, "FARE", _ROBUST_CLIP, True,
             "openai/clip-vit-large-patch14", confirmed=_HUB_CARD + "; its card: 'from Openai CLIP initialization on "
             "ImageNet with infinity-norm and radius 4/255'"),
    ZooEntry("tecoa4-vit-b-32-laion2b", "hf-hub:chs20/TeCoA4-ViT-B-32-laion2B-s34B-b79K",
             "ViT-B/32 (LAION-2B init)", 4, "TeCoA", _PERCEPTUAL, False, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
             confirmed="Hub model card (based on laion/CLIP-ViT-B-32-laion2B-s34B-b79K, TeCoA, radius 4/255) and its "
                       "open_clip_config.json (no quick_gelu: GELU)"),
    ZooEntry("tecoa4-vit-b-16-laion2b", "hf-hub:chs20/TeCoA4-ViT-B-16-laion2B-s34B-b88K",
             "ViT-B/16 (LAION-2B init)", 4, "TeCoA", _PERCEPTUAL, False, "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
             confirmed="Hub model card (based on laion/CLIP-ViT-B-16-laion2B-s34B-b88K, TeCoA, radius 4/255)"),
    ZooEntry("fare4-vit-b-16-laion2b", "hf-hub:chs20/FARE4-ViT-B-16-laion2B-s34B-b88K",
             "ViT-B/16 (LAION-2B init)", 4, "FARE", _PERCEPTUAL, False, "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
             confirmed="Hub model card and its first commit (open_clip_config.json, open_clip_model.safetensors and "
                       "tokenizer files; based on laion/CLIP-ViT-B-16-laion2B-s34B-b88K, FARE, radius 4/255)"),
    ZooEntry("tga-zsr-vit-b-32", "https://drive.google.com/drive/folders/1T7APhNq3tRW81vC1Lx8JSbHxWuP7euSx",
             "ViT-B/32 (OpenAI init)", 1, "TGA-ZSR",
             "Yu, Zhang and Xu, Text-Guided Attention is All You Need for Zero-Shot Robustness in Vision-Language "
             "Models (NeurIPS 2024), arXiv:2410.21802", True, "openai/clip-vit-base-patch32", vision_only=True,
             confirmed="README of github.com/zhyblue424/TGA-ZSR (checkpoint link; defaults --arch vit_b32, "
                       "--train_eps 1); TGA-ZSR.py saves 'vision_encoder_state_dict': model.visual.state_dict() of "
                       "clip.load('ViT-B/32')"),
    ZooEntry("comp-tga-vit-b-32", "https://drive.google.com/drive/folders/1cvqDha1useGdCgTjGatZMuBj1W71nMyk",
             "ViT-B/32 (OpenAI init)", 1, "Comp-TGA",
             "Yu, Zhang and Xu, Complementary Text-Guided Attention for Zero-Shot Adversarial Robustness (TPAMI 2026)",
             True, "openai/clip-vit-base-patch32", vision_only=True,
             confirmed="README of github.com/zhyblue424/TGA-ZSR (Comp-TGA checkpoint link; defaults --arch vit_b32, "
                       "--train_eps 1)"),
)}


def zoo_entry(name: str) -> ZooEntry | None:
    """The zoo entry named ``name`` (case-insensitive), or None."""
    return ZOO.get(name) or {k.lower(): v for k, v in ZOO.items()}.get(name.lower())


def resolve_zoo(name: str) -> str:
    """The source (``hf-hub:ORG/NAME`` or a release URL) of the zoo entry ``name``."""
    entry = zoo_entry(name)
    if entry is None:
        close = difflib.get_close_matches(name.lower(), list(ZOO), n=3, cutoff=0.5)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise ConversionError(f"{name!r} is not in the zoo of published robust CLIPs.{hint} Known: {', '.join(ZOO)} "
                              "(tgazsr convert --list_zoo shows them).")
    return entry.source


def zoo_table() -> str:
    """The zoo as a Markdown table (name, source, architecture, eps, method, paper)."""
    lines = ["| name | source | architecture | train eps (1/255) | method | paper |", "|---|---|---|---|---|---|"]
    for e in ZOO.values():
        lines.append(f"| `{e.name}` | {e.source} | {e.architecture} | {e.eps:g} | {e.method} | {e.paper} |")
    return "\n".join(lines)


# --- reading checkpoints ------------------------------------------------------------------------

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
    return out


def _kind(sd: Mapping[str, torch.Tensor]) -> str | None:
    if any(k.startswith("visual.layer1.") or k.startswith("visual.attnpool.") for k in sd):
        return "resnet"
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


# --- the architecture -----------------------------------------------------------------------------

def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}transformer\.resblocks\.(\d+)\.")
    found = {int(m.group(1)) for m in map(pattern.match, sd) if m}
    if found and found != set(range(len(found))):
        raise ConversionError(f"The {prefix or 'text '}blocks are not numbered 0..N-1 (found {sorted(found)}).")
    return len(found)


def _heads(width: int, tower: str, override: int | None, cfg: dict | None) -> int:
    if override:
        heads = int(override)
    elif cfg and cfg.get("heads"):
        heads = int(cfg["heads"])
    elif cfg and cfg.get("head_width"):
        heads = width // int(cfg["head_width"])
    else:
        heads = width // 64  # OpenAI's build_model: heads of 64 channels
    if heads < 1 or width % heads:
        raise ConversionError(
            f"Cannot split the {tower} width {width} into attention heads ({heads}): OpenAI's rule is width // 64. "
            f"Pass {tower}_heads= (convert_state_dict) or an open_clip_config.json that gives them.")
    return heads


def _image_size(value) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ConversionError(f"Non-square image size {list(value)}: a CLIPModel takes square images.")
        value = value[0]
    return int(value)


def _check_options(cfg: dict, unsupported: dict, tower: str) -> None:
    bad = [f"{k}={cfg[k]!r}" for k, default in unsupported.items() if k in cfg and cfg[k] not in (default, None)
           and not (k == "pool_type" and cfg[k] == "tok")]
    if bad:
        raise ConversionError(f"The open_clip {tower} tower uses {', '.join(bad)}, which a transformers CLIPModel does "
                              "not compute: this model cannot be converted.")


def infer_architecture(sd: Mapping[str, torch.Tensor], model_cfg: dict | None = None,
                       vision_heads: int | None = None, text_heads: int | None = None) -> dict:
    """Sizes from the tensor shapes (as OpenAI's ``build_model``), checked against an open_clip ``model_cfg``.

    Returns ``{"embed_dim", "vision": {...}, "text": {...} or None}``.
    """
    def shape(key):
        if key not in sd:
            raise ConversionError(f"The checkpoint has no {key!r}, which every OpenAI / open_clip ViT CLIP has.")
        return tuple(sd[key].shape)

    conv = shape("visual.conv1.weight")
    if len(conv) != 4 or conv[2] != conv[3] or conv[1] != 3:
        raise ConversionError(f"visual.conv1.weight has shape {conv}: expected (width, 3, patch, patch).")
    width, patch = conv[0], conv[-1]
    positions = shape("visual.positional_embedding")[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise ConversionError(f"visual.positional_embedding has {positions} rows, not a square grid plus the class token.")
    vision_cfg = (model_cfg or {}).get("vision_cfg") or {}
    text_cfg = (model_cfg or {}).get("text_cfg") or {}
    vision = {
        "width": width, "layers": _count_blocks(sd, "visual."), "patch_size": patch, "image_size": patch * grid,
        "intermediate_size": shape("visual.transformer.resblocks.0.mlp.c_fc.weight")[0],
        "heads": _heads(width, "vision", vision_heads, vision_cfg),
    }
    embed_dim = shape("visual.proj")[1]
    text = None
    if "token_embedding.weight" in sd:
        text_width = shape("ln_final.weight")[0]
        text = {
            "width": text_width, "layers": _count_blocks(sd, ""), "context_length": shape("positional_embedding")[0],
            "vocab_size": shape("token_embedding.weight")[0],
            "intermediate_size": shape("transformer.resblocks.0.mlp.c_fc.weight")[0],
            "heads": _heads(text_width, "text", text_heads, text_cfg),
        }
        if shape("text_projection")[1] != embed_dim:
            raise ConversionError(f"visual.proj projects to {embed_dim} but text_projection to "
                                  f"{shape('text_projection')[1]}: the towers do not share an embedding space.")
        if text["vocab_size"] <= EOT_TOKEN_ID:
            raise ConversionError(
                f"The text vocabulary has {text['vocab_size']} tokens, so it has no end-of-text token {EOT_TOKEN_ID} to "
                "pool at: this is not OpenAI's tokenizer. Only CLIPs with OpenAI's BPE vocabulary convert.")
    if model_cfg:
        _check_options(vision_cfg, UNSUPPORTED_VISION_OPTIONS, "vision")
        _check_options(text_cfg, UNSUPPORTED_TEXT_OPTIONS, "text")
        pool, eos = text_cfg.get("pool_type") or "argmax", text_cfg.get("eos_id") or EOT_TOKEN_ID
        if pool not in ("argmax", "eos") or eos != EOT_TOKEN_ID:
            raise ConversionError(f"The open_clip text tower pools with pool_type={text_cfg.get('pool_type')!r}, "
                                  f"eos_id={text_cfg.get('eos_id')!r}; a CLIPModel pools at the end-of-text token.")
        said = {("vision", "width"): vision_cfg.get("width"), ("vision", "layers"): vision_cfg.get("layers"),
                ("vision", "patch_size"): vision_cfg.get("patch_size"),
                ("vision", "image_size"): _image_size(vision_cfg["image_size"]) if "image_size" in vision_cfg else None,
                ("embed", "dim"): model_cfg.get("embed_dim")}
        if text is not None:
            said.update({("text", k): text_cfg.get(c) for k, c in (("width", "width"), ("layers", "layers"),
                         ("context_length", "context_length"), ("vocab_size", "vocab_size"))})
        found = {("embed", "dim"): embed_dim, **{("vision", k): v for k, v in vision.items()},
                 **({("text", k): v for k, v in text.items()} if text else {})}
        wrong = [f"{t} {k}: config {v}, weights {found[(t, k)]}" for (t, k), v in said.items()
                 if v is not None and int(v) != found[(t, k)]]
        if wrong:
            raise ConversionError("open_clip_config.json does not describe these weights (" + "; ".join(wrong) + ").")
    return {"embed_dim": embed_dim, "vision": vision, "text": text}


# --- mapping the weights ---------------------------------------------------------------------------

class _Source:
    """The source state dict, with a record of every key taken."""

    def __init__(self, sd: Mapping[str, torch.Tensor]):
        self.sd, self.used = sd, set()

    def take(self, key: str) -> torch.Tensor:
        if key not in self.sd:
            raise ConversionError(f"The checkpoint has no {key!r}: it is incomplete or not an OpenAI / open_clip CLIP.")
        self.used.add(key)
        return self.sd[key].detach().to(torch.float32)


def _map_blocks(src: _Source, out: dict, src_prefix: str, dst_prefix: str, layers: int) -> None:
    for i in range(layers):
        s, d = f"{src_prefix}transformer.resblocks.{i}.", f"{dst_prefix}encoder.layers.{i}."
        for name, part in zip(("q", "k", "v"), src.take(s + "attn.in_proj_weight").chunk(3, dim=0)):
            out[f"{d}self_attn.{name}_proj.weight"] = part.clone()
        for name, part in zip(("q", "k", "v"), src.take(s + "attn.in_proj_bias").chunk(3, dim=0)):
            out[f"{d}self_attn.{name}_proj.bias"] = part.clone()
        for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[f"{d}{b}.weight"] = src.take(f"{s}{a}.weight")
            out[f"{d}{b}.bias"] = src.take(f"{s}{a}.bias")


def _map_vision(src: _Source, out: dict, layers: int) -> None:
    v, d = "visual.", "vision_model."
    out[f"{d}embeddings.class_embedding"] = src.take(v + "class_embedding")
    out[f"{d}embeddings.patch_embedding.weight"] = src.take(v + "conv1.weight")
    out[f"{d}embeddings.position_embedding.weight"] = src.take(v + "positional_embedding")
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        out[f"{d}{b}.weight"] = src.take(f"{v}{a}.weight")
        out[f"{d}{b}.bias"] = src.take(f"{v}{a}.bias")
    _map_blocks(src, out, v, d, layers)
    out["visual_projection.weight"] = src.take(v + "proj").t().contiguous()


def _map_text(src: _Source, out: dict, layers: int) -> None:
    d = "text_model."
    out[f"{d}embeddings.token_embedding.weight"] = src.take("token_embedding.weight")
    out[f"{d}embeddings.position_embedding.weight"] = src.take("positional_embedding")
    out[f"{d}final_layer_norm.weight"] = src.take("ln_final.weight")
    out[f"{d}final_layer_norm.bias"] = src.take("ln_final.bias")
    _map_blocks(src, out, "", d, layers)
    out["text_projection.weight"] = src.take("text_projection").t().contiguous()
    out["logit_scale"] = src.take("logit_scale").reshape(())


def _vision_config(arch: dict, embed_dim: int, hidden_act: str) -> dict:
    v = arch["vision"]
    return dict(hidden_size=v["width"], intermediate_size=v["intermediate_size"], num_hidden_layers=v["layers"],
                num_attention_heads=v["heads"], image_size=v["image_size"], patch_size=v["patch_size"], num_channels=3,
                hidden_act=hidden_act, layer_norm_eps=LAYER_NORM_EPS, projection_dim=embed_dim)


def _text_config(arch: dict, embed_dim: int, hidden_act: str) -> dict:
    t = arch["text"]
    return dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=t["intermediate_size"],
                num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                max_position_embeddings=t["context_length"], hidden_act=hidden_act, layer_norm_eps=LAYER_NORM_EPS,
                bos_token_id=BOT_TOKEN_ID, eos_token_id=EOT_TOKEN_ID, pad_token_id=PAD_TOKEN_ID,
                projection_dim=embed_dim)


def _public(name: str | None) -> str | None:
    """A name fit for files that may be shared: a local path becomes its last component."""
    if name is None:
        return None
    name = str(getattr(name, "name_or_path", None) or name)
    if os.path.exists(os.path.expanduser(name)):
        return os.path.basename(os.path.normpath(name))
    return name


def _load_base(base_model):
    from transformers import CLIPModel

    if isinstance(base_model, CLIPModel):
        return base_model
    from .modeling import load_clip

    return load_clip(str(base_model))


def _activation(quick_gelu: bool | None, model_cfg: dict | None, base, where: str,
                origin: str = "given") -> tuple[bool, str]:
    if quick_gelu is not None:
        if model_cfg is not None and bool(model_cfg.get("quick_gelu", False)) != bool(quick_gelu):
            logger.warning("%s: open_clip_config.json says quick_gelu=%s, overridden by quick_gelu=%s (%s).", where,
                           bool(model_cfg.get("quick_gelu", False)), bool(quick_gelu), origin)
        return bool(quick_gelu), origin
    if model_cfg is not None:
        return bool(model_cfg.get("quick_gelu", False)), "open_clip_config.json"
    if base is not None:
        return base.config.vision_config.hidden_act == "quick_gelu", "base model"
    raise ConversionError(
        f"{where}: the weights do not say whether the model uses QuickGELU (OpenAI's CLIP and every model fine-tuned "
        "from it: TeCoA, PMG-AFT, FARE, TGA-ZSR) or GELU (most open_clip models trained on LAION or DataComp), and "
        "there is no open_clip_config.json or base model to tell. Pass --quick_gelu true or --quick_gelu false "
        "(quick_gelu= in Python).")


def _convert(state_dict: Mapping[str, torch.Tensor], *, quick_gelu: bool | None = None, base_model=None,
             model_cfg: dict | None = None, vision_heads: int | None = None, text_heads: int | None = None,
             where: str = "the checkpoint", quick_gelu_from: str = "given"):
    """(CLIPModel, info): the converted model and what was inferred (sizes, activation, its origin)."""
    from transformers import CLIPConfig, CLIPModel

    sd = normalize_state_dict(state_dict)
    kind = _kind(sd)
    if kind == "resnet" or kind is None or kind == "text":
        _pick_state_dict(sd, where)  # raises the error that says what is missing
    arch = infer_architecture(sd, model_cfg, vision_heads, text_heads)
    vision_only = arch["text"] is None
    base = None
    if vision_only:
        if base_model is None:
            raise ConversionError(
                f"{where} holds only the vision tower (visual.* weights, no token_embedding or text transformer). Its "
                "text tower, text projection, logit scale and tokenizer come from the CLIP it was fine-tuned from: "
                "pass --base_model with that model, e.g. --base_model openai/clip-vit-base-patch32 for a ViT-B/32 "
                "fine-tuned by the TeCoA / PMG-AFT / TGA-ZSR code (base_model= in Python).")
        base = _load_base(base_model)
    use_quick, act_from = _activation(quick_gelu, model_cfg, base, where, quick_gelu_from)
    hidden_act = "quick_gelu" if use_quick else "gelu"
    src = _Source(sd)
    mapped: dict[str, torch.Tensor] = {}
    _map_vision(src, mapped, arch["vision"]["layers"])
    if vision_only:
        if base.config.projection_dim != arch["embed_dim"]:
            raise ConversionError(
                f"{where} projects images to {arch['embed_dim']} dimensions but the base model "
                f"{_public(base_model)} projects text to {base.config.projection_dim}: it is not the model this "
                "vision tower was fine-tuned from.")
        text_config = base.config.text_config.to_dict()
        base_sd = base.state_dict()
        for key, value in base_sd.items():
            if key.startswith("text_model.") or key.startswith("text_projection.") or key == "logit_scale":
                mapped[key] = value.detach().to(torch.float32).clone()
        logit_scale_init = float(base.config.logit_scale_init_value)
    else:
        _map_text(src, mapped, arch["text"]["layers"])
        text_config = _text_config(arch, arch["embed_dim"], hidden_act)
        logit_scale_init = float(mapped["logit_scale"])
    unused = sorted(set(sd) - src.used)
    if unused:
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        raise ConversionError(
            f"{where} holds weights a CLIPModel has no place for: {shown}. Converting would drop them (layer scale, "
            "attentional pooling, prompts or another architecture), so it is refused.")
    config = CLIPConfig(text_config=text_config, vision_config=_vision_config(arch, arch["embed_dim"], hidden_act),
                        projection_dim=arch["embed_dim"], logit_scale_init_value=logit_scale_init)
    model = CLIPModel(config)
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
    if missing or extra:
        raise ConversionError(f"The mapped weights do not fill the CLIPModel: missing {missing[:6]}, unexpected "
                              f"{extra[:6]}.")
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise ConversionError(f"{where}: the weights do not fit the inferred architecture ({arch}): {err}") from err
    model.eval()
    source_dtypes = sorted({str(v.dtype).replace("torch.", "") for v in sd.values() if v.is_floating_point()})
    info = {"architecture": arch, "vision_only": vision_only, "quick_gelu": use_quick, "quick_gelu_from": act_from,
            "hidden_act": hidden_act, "source_dtype": source_dtypes}
    return model, info


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], *, quick_gelu: bool | None = None,
                       base_model: str | None = None, open_clip_config: dict | None = None,
                       vision_heads: int | None = None, text_heads: int | None = None):
    """A ``CLIPModel`` (float32, eval mode) from an OpenAI-CLIP / open_clip state dict.

    ``state_dict`` may be wrapped (``module.`` prefixes) or hold the vision tower alone (``visual.*``
    keys, or the bare keys of ``model.visual.state_dict()``); then ``base_model`` (a CLIPModel
    directory or Hub id, or a loaded ``CLIPModel``) supplies the text tower, text projection and
    logit scale. ``quick_gelu``: the activation (None: from ``open_clip_config`` (its ``model_cfg``
    or the whole file), else the base model, else an error). ``vision_heads`` / ``text_heads``
    override the ``width // 64`` rule.
    """
    model_cfg = None
    if open_clip_config is not None:
        model_cfg = open_clip_config.get("model_cfg", open_clip_config)
    model, _ = _convert(state_dict, quick_gelu=quick_gelu, base_model=base_model, model_cfg=model_cfg,
                        vision_heads=vision_heads, text_heads=text_heads)
    return model


# --- sources --------------------------------------------------------------------------------------

@dataclass
class _Resolved:
    local: str  # a file or folder on this machine
    name: str  # a public name: a zoo name, hf-hub:ORG/NAME, or the file's name
    revision: str | None = None
    zoo: ZooEntry | None = None


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:  # pragma: no cover - a dependency
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download_hub(repo_id: str, spec: str, then: str = "") -> tuple[str, str]:
    """(local snapshot folder, its commit) of an open_clip Hub repository."""
    from huggingface_hub import HfApi, snapshot_download

    metadata = [OPEN_CLIP_CONFIG, "*.json", "*.txt"]
    offline = _hub_offline()
    try:
        if offline:
            local = snapshot_download(repo_id, local_files_only=True)
        else:
            files = set(HfApi().list_repo_files(repo_id))
            weights = next((w for w in OPEN_CLIP_WEIGHTS if w in files), None)
            if weights is None:
                found = sorted(f for f in files if f.endswith(CHECKPOINT_SUFFIXES))
                if "config.json" in files and "model.safetensors" in files:
                    raise ConversionError(f"{repo_id} is a transformers CLIPModel repository: pass --model_name_or_path "
                                          f"{repo_id} directly, no conversion is needed.")
                if len(found) != 1:
                    raise ConversionError(f"{spec} has no open_clip weights ({', '.join(OPEN_CLIP_WEIGHTS[:3])}); "
                                          f"checkpoint files there: {', '.join(found) or 'none'}.")
                weights = found[0]
            local = snapshot_download(repo_id, allow_patterns=[weights, *metadata])
    except ConversionError:
        raise
    except Exception as err:  # noqa: BLE001 - offline, unreachable, private, missing: one message
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        how = ("the Hub is off (HF_HUB_OFFLINE is set) and it is not in the local cache" if offline
               else f"the Hub did not answer ({type(err).__name__}: {first})")
        folder = repo_id.split("/")[-1]
        raise ConversionError(
            f"Could not get {spec}: {how}. On a machine with access to the Hub, download the folder "
            f"(hf download {repo_id} --local-dir {folder}), bring it here and pass its path instead"
            f"{then or f' (tgazsr convert {folder} OUTPUT_DIR)'}.") from None
    return local, os.path.basename(os.path.normpath(local))


def _resolve(source: str) -> _Resolved:
    entry = None
    spec = str(source)
    if not os.path.exists(os.path.expanduser(spec)):
        entry = zoo_entry(spec)
        if entry is not None:
            spec = entry.source
    if os.path.exists(os.path.expanduser(spec)):
        local = os.path.expanduser(spec)
        return _Resolved(local, entry.name if entry else _public(local))
    name = entry.name if entry else spec
    if spec.startswith(HUB_PREFIX):
        repo_id = spec[len(HUB_PREFIX):].strip("/")
        if repo_id.count("/") != 1:
            raise ConversionError(f"{spec}: expected hf-hub:ORG/NAME.")
        then = ""
        if entry is not None:
            tokenizer_hint = f" --base_model {entry.tokenizer}" if entry.vision_only else f" --tokenizer {entry.tokenizer}"
            then = (f": tgazsr convert {repo_id.split('/')[-1]} OUTPUT_DIR --quick_gelu {str(entry.quick_gelu).lower()}"
                    f"{tokenizer_hint} (the zoo's settings for {entry.name}; offline, a local copy of "
                    f"{entry.tokenizer})")
        local, revision = _download_hub(repo_id, spec, then)
        return _Resolved(local, name, revision, entry)
    if re.match(r"https?://", spec):
        hint = (f" tgazsr convert PATH OUTPUT_DIR --base_model {entry.tokenizer} --quick_gelu "
                f"{str(entry.quick_gelu).lower()}" if entry else " tgazsr convert PATH OUTPUT_DIR")
        raise ConversionError(
            f"{name} is published at {spec}, not on the Hub: tgazsr does not download it. Download the checkpoint "
            f"there by hand, then run{hint}.")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        raise ConversionError(
            f"{spec} is not a local path. A transformers CLIPModel on the Hub needs no conversion (pass it as "
            f"--model_name_or_path); an open_clip repository is written hf-hub:{spec}.")
    close = difflib.get_close_matches(spec.lower(), list(ZOO), n=2, cutoff=0.6)
    hint = f" Did you mean the zoo entry {close[0]!r}?" if close else ""
    raise ConversionError(
        f"{spec} does not exist. Pass a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)}), an open_clip folder, "
        f"hf-hub:ORG/NAME, or a zoo name ({', '.join(ZOO)}).{hint}")


# --- tokenizer and image processor ----------------------------------------------------------------

def _load_tokenizer(where: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where)
    except Exception as err:  # noqa: BLE001 - a folder without tokenizer files, an unreachable Hub id
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConversionError(f"Could not load a tokenizer from {_public(where)} ({type(err).__name__}: {first}). Pass "
                              "--tokenizer or --base_model with a CLIP tokenizer (a local folder, or a Hub id on a "
                              "machine with access to the Hub).") from err


def _check_tokenizer(tokenizer, text_config, where: str) -> None:
    eos = text_config.eos_token_id
    if eos != 2 and tokenizer.eos_token_id != eos:  # 2: transformers' legacy argmax pooling (older configs)
        raise ConversionError(
            f"The tokenizer from {where} ends prompts with token {tokenizer.eos_token_id}, but the text tower pools at "
            f"the end-of-text token {eos}: the text embeddings would be taken at the wrong position. Pass the tokenizer "
            "of OpenAI's CLIP (--base_model openai/clip-vit-base-patch32).")
    largest = max(tokenizer.get_vocab().values())
    if largest >= text_config.vocab_size:
        raise ConversionError(f"The tokenizer from {where} has token ids up to {largest}, beyond the text tower's "
                              f"{text_config.vocab_size} embeddings: it is not this model's tokenizer.")
    if not tokenizer.model_max_length or tokenizer.model_max_length > text_config.max_position_embeddings:
        tokenizer.model_max_length = text_config.max_position_embeddings


def _image_processor(image_size: int, preprocess: dict | None, base_model) -> tuple[Any, dict]:
    """A CLIPImageProcessor at ``image_size`` with the source's mean/std (open_clip_config.json's
    preprocess_cfg), else the base model's, else CLIP's."""
    from transformers import CLIPImageProcessor, CLIPModel

    mean, std, origin = list(CLIP_MEAN), list(CLIP_STD), "CLIP's"
    if preprocess and preprocess.get("mean") and preprocess.get("std"):
        mean, std, origin = [float(v) for v in preprocess["mean"]], [float(v) for v in preprocess["std"]], \
            "open_clip_config.json"
    elif base_model is not None:
        where = base_model.name_or_path if isinstance(base_model, CLIPModel) else str(base_model)
        with contextlib.suppress(Exception):  # a base model without an image processor: CLIP's constants
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(where)
            if len(processor.image_mean) == 3 and len(processor.image_std) == 3:
                mean, std, origin = list(processor.image_mean), list(processor.image_std), "base model"
    resize_mode = (preprocess or {}).get("resize_mode", "shortest")
    resample = {"bilinear": 2, "bicubic": 3, "nearest": 0}.get((preprocess or {}).get("interpolation", "bicubic"), 3)
    crop = {"height": image_size, "width": image_size}
    if resize_mode == "squash":
        processor = CLIPImageProcessor(size=dict(crop), crop_size=crop, do_center_crop=False, image_mean=mean,
                                       image_std=std, resample=resample)
    else:
        if resize_mode != "shortest":
            logger.warning("resize_mode %r has no CLIPImageProcessor equivalent; using shortest-edge resize and a "
                           "center crop.", resize_mode)
        processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=crop, image_mean=mean,
                                       image_std=std, resample=resample)
    return processor, {"image_mean": mean, "image_std": std, "normalization_from": origin, "resize_mode": resize_mode}


# --- convert --------------------------------------------------------------------------------------

def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.isfile(output_dir):
        raise ConversionError(f"The output {output_dir} is a file; pass a folder.")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ConversionError(f"The output folder {output_dir} is not empty. Pass another folder, or "
                              "--overwrite_output_dir true to replace it.")


def _convert_resolved(resolved: _Resolved, output_dir: str, *, base_model: str | None = None,
                      tokenizer: str | None = None, quick_gelu: bool | None = None, overwrite: bool = False) -> str:
    entry = resolved.zoo
    output_dir = os.path.expanduser(str(output_dir))
    _check_output_dir(output_dir, overwrite)
    quick_gelu_from = "given"
    if entry is not None:  # the zoo's curated facts come before what the files say
        if quick_gelu is None:
            quick_gelu, quick_gelu_from = entry.quick_gelu, "zoo"
        if base_model is None and entry.vision_only:
            base_model = entry.tokenizer
    ckpt = load_checkpoint(resolved.local)
    model, info = _convert(ckpt.state_dict, quick_gelu=quick_gelu, base_model=base_model, model_cfg=ckpt.model_cfg,
                           where=resolved.name, quick_gelu_from=quick_gelu_from)
    # The tokenizer: --tokenizer, else the base model's, else the source folder's, else the zoo's. Never another.
    for candidate, origin in ((tokenizer, "tokenizer"), (base_model, "base_model"), (ckpt.tokenizer_dir, "source"),
                              (entry.tokenizer if entry else None, "zoo")):
        if candidate:
            tok_where, tok_origin = candidate, origin
            break
    else:
        raise ConversionError(
            f"{resolved.name} has no tokenizer files (tokenizer.json or vocab.json + merges.txt), and none was named. "
            "Pass the tokenizer of the CLIP it comes from: --base_model openai/clip-vit-base-patch32 (or "
            "openai/clip-vit-large-patch14, ...; every OpenAI / open_clip CLIP uses the same BPE vocabulary), or "
            "--tokenizer FOLDER. tgazsr never picks a tokenizer on its own.")
    tok = _load_tokenizer(str(tok_where))
    _check_tokenizer(tok, model.config.text_config, _public(str(tok_where)))
    image_processor, image_info = _image_processor(model.config.vision_config.image_size, ckpt.preprocess_cfg,
                                                   base_model)
    from transformers import CLIPProcessor

    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        model.save_pretrained(tmp)
        CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(tmp)
        record = {
            "converter": "tgazsr.convert", "converter_version": CONVERTER_VERSION, "source": resolved.name,
            "source_revision": resolved.revision, "zoo": entry.name if entry else None,
            "format": "open_clip" if ckpt.model_cfg is not None else "openai",
            "checkpoint_entry": ckpt.container or None, "vision_only": info["vision_only"],
            "base_model": _public(str(base_model)) if base_model is not None else None,
            "tokenizer": _public(str(tok_where)), "tokenizer_from": tok_origin,
            "quick_gelu": info["quick_gelu"], "quick_gelu_from": info["quick_gelu_from"],
            "hidden_act": info["hidden_act"], "architecture": info["architecture"],
            "text_eos_token_id": model.config.text_config.eos_token_id, "source_dtype": info["source_dtype"],
            **image_info,
        }
        with open(os.path.join(tmp, "conversion.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        if os.path.isdir(output_dir):
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    arch = info["architecture"]
    logger.info("Converted %s into %s: ViT width %d, %d layers, patch %d, image %d; %s; activation %s (%s).",
                resolved.name, output_dir, arch["vision"]["width"], arch["vision"]["layers"],
                arch["vision"]["patch_size"], arch["vision"]["image_size"],
                "vision tower only, text from the base model" if info["vision_only"] else
                f"text width {arch['text']['width']}, {arch['text']['layers']} layers",
                info["hidden_act"], info["quick_gelu_from"])
    return output_dir


def convert(source: str, output_dir: str, *, base_model: str | None = None, tokenizer: str | None = None,
            quick_gelu: bool | None = None, overwrite: bool = False) -> str:
    """Convert ``source`` into a CLIPModel directory ``output_dir`` (safetensors, CLIPProcessor,
    ``conversion.json``) and return ``output_dir``.

    ``source``: a checkpoint file, an open_clip folder, ``hf-hub:ORG/NAME`` (downloaded when the Hub
    is reachable, else read from the local Hub cache) or a zoo name. ``base_model``: the CLIP it was
    fine-tuned from (the text tower of a vision-only checkpoint; the tokenizer and normalization).
    ``tokenizer``: where the tokenizer comes from, before ``base_model`` and the source folder.
    """
    return _convert_resolved(_resolve(source), output_dir, base_model=base_model, tokenizer=tokenizer,
                             quick_gelu=quick_gelu, overwrite=overwrite)


# --- a cache for --model_name_or_path ----------------------------------------------------------------

def default_cache_dir() -> str:
    """``$TGAZSR_HOME/converted`` (or ``$XDG_CACHE_HOME/tgazsr/converted``, ``~/.cache/tgazsr/converted``)."""
    base = os.environ.get("TGAZSR_HOME")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "tgazsr")
    return os.path.join(base, "converted")


def needs_conversion(name_or_path: str) -> bool:
    """Whether ``name_or_path`` is something :func:`load_model_or_convert` converts (a checkpoint file,
    an open_clip folder, ``hf-hub:...``, a zoo name) rather than a CLIPModel directory or Hub id."""
    value = str(name_or_path)
    path = os.path.expanduser(value)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")):
            return False
        return os.path.isfile(os.path.join(path, OPEN_CLIP_CONFIG)) or any(
            os.path.isfile(os.path.join(path, w)) for w in OPEN_CLIP_WEIGHTS)
    if os.path.isfile(path):
        return path.endswith(CHECKPOINT_SUFFIXES)
    return value.startswith(HUB_PREFIX) or zoo_entry(value) is not None


def _slug(resolved: _Resolved) -> str:
    name = resolved.name.split(":", 1)[-1].split("/")[-1]
    for suffix in sorted(CHECKPOINT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _fingerprint(resolved: _Resolved, **options) -> str:
    h = hashlib.sha256()
    h.update(f"v{CONVERTER_VERSION}|{resolved.name}|{options}".encode())
    if resolved.revision:
        h.update(f"|revision={resolved.revision}".encode())
    else:
        local = os.path.abspath(resolved.local)
        files = [local] if os.path.isfile(local) else sorted(
            os.path.join(local, f) for f in os.listdir(local) if os.path.isfile(os.path.join(local, f)))
        h.update(f"|{local}".encode())
        for f in files:
            st = os.stat(f)
            h.update(f"|{os.path.basename(f)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def load_model_or_convert(name_or_path: str, cache_dir: str | None = None, *, base_model: str | None = None,
                          tokenizer: str | None = None, quick_gelu: bool | None = None) -> str:
    """A CLIPModel directory or Hub id for ``--model_name_or_path``.

    A CLIPModel directory or Hub id is returned as given. A checkpoint file (``.pth.tar``, ``.pt``, ...),
    an open_clip folder, ``hf-hub:ORG/NAME`` or a zoo name is converted once into
    ``cache_dir`` (default ``$TGAZSR_HOME/converted``) as ``<name>-<hash>``, the hash covering the
    source's files (name, size, mtime) or its Hub revision and the options; later calls return that
    directory without converting again.
    """
    if not needs_conversion(name_or_path):
        return name_or_path
    resolved = _resolve(str(name_or_path))
    root = os.path.expanduser(cache_dir or default_cache_dir())
    os.makedirs(root, exist_ok=True)
    key = _fingerprint(resolved, base_model=base_model, tokenizer=tokenizer, quick_gelu=quick_gelu)
    out = os.path.join(root, f"{_slug(resolved)}-{key}")

    def done() -> bool:
        return os.path.isfile(os.path.join(out, "conversion.json")) and os.path.isfile(os.path.join(out, "config.json"))

    if done():
        logger.info("Using the conversion of %s in %s.", resolved.name, out)
        return out
    with file_lock(os.path.join(root, f".{os.path.basename(out)}.lock")):
        if not done():  # another process may have finished it while this one waited
            _convert_resolved(resolved, out, base_model=base_model, tokenizer=tokenizer, quick_gelu=quick_gelu,
                              overwrite=True)
    return out


# --- the command ------------------------------------------------------------------------------------

@dataclass
class ConvertArguments:
    """tgazsr convert SOURCE OUTPUT_DIR [--base_model M] [--tokenizer T] [--quick_gelu true|false]"""

    source: str | None = field(default=None, metadata={
        "help": "What to convert (also the first positional argument): a checkpoint file (.pth, .pth.tar, .pt, .bin, "
                ".safetensors), an open_clip folder, hf-hub:ORG/NAME, or a zoo name (--list_zoo)."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where to write the CLIPModel directory (also the second positional argument)."})
    base_model: str | None = field(default=None, metadata={
        "help": "The CLIP the checkpoint was fine-tuned from (CLIPModel folder or Hub id): the text tower of a "
                "vision-only checkpoint, and the tokenizer."})
    tokenizer: str | None = field(default=None, metadata={
        "help": "Where the tokenizer comes from (default: --base_model, else the source folder's)."})
    quick_gelu: bool | None = field(default=None, metadata={
        "help": "QuickGELU (OpenAI's CLIP and models fine-tuned from it) or GELU. Default: the zoo entry, the "
                "open_clip config, or the base model; required when none says."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a non-empty output_dir."})
    list_zoo: bool = field(default=False, metadata={"help": "Print the zoo of published robust CLIPs and exit."})


def main(argv: Sequence[str] | None = None) -> int:
    from .recipes import RecipeError, parse_recipe

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    positional = []
    while argv and not argv[0].startswith("-") and not argv[0].endswith((".yaml", ".yml")):
        positional.append(argv.pop(0))
    if len(positional) > 2:
        raise RecipeError(f"tgazsr convert takes SOURCE and OUTPUT_DIR, got {len(positional)} positional arguments: "
                          f"{positional}.")
    given = [f for name, value in zip(("--source", "--output_dir"), positional) for f in (name, value)]
    (args,) = parse_recipe((ConvertArguments,), given + argv)
    if args.list_zoo:
        print(zoo_table())
        return 0
    if not args.source or not args.output_dir:
        raise RecipeError("Pass what to convert and where: tgazsr convert SOURCE OUTPUT_DIR (e.g. tgazsr convert "
                          "fare2-clip outputs/fare2-clip). tgazsr convert --list_zoo lists the published robust CLIPs.")
    out = convert(args.source, args.output_dir, base_model=args.base_model, tokenizer=args.tokenizer,
                  quick_gelu=args.quick_gelu, overwrite=args.overwrite_output_dir)
    print(out)
    return 0


if __name__ == "__main__":
    from .errors import run_command

    sys.exit(run_command(main))
