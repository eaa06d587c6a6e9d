"""Checks of model and tokenizer folders, before transformers silently makes do.

``from_pretrained`` of a vision-language model on a folder whose ``config.json`` describes another
model (BERT, a vision tower alone) warns and builds that model with random weights; ``AutoTokenizer`` on a folder
without tokenizer files builds a tokenizer without a vocabulary, which maps every word to the
unknown token, so every class gets the same text embedding. These checks turn both into a
:class:`~tgazsr.errors.ModelFolderError` that says what was found and what is expected.

``load_pretrained_strict`` reads transformers' loading report and refuses a weights file whose
tensors are not exactly those its config declares (missing, unexpected, of another shape), which
transformers would otherwise fill with a random initialization and only warn about.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from .errors import ModelFolderError, PromptError
from .files import read_json_object

#: Two prompts that differ in every word: a tokenizer that gives them the same ids has no vocabulary.
PROBE_PROMPTS = ("a photo of a dog", "a picture of the cat")


def looks_local(name_or_path: str) -> bool:
    """A path rather than a Hub id (``org/name``): absolute, relative (./, ../, ~) or deeper than one '/'."""
    return name_or_path.startswith((".", "/", "~", os.sep)) or name_or_path.count("/") > 1 or "\\" in name_or_path


def _checkpoints(path: str) -> list[str]:
    found = [d for d in os.listdir(path) if re.fullmatch(r"checkpoint-\d+", d)
             and os.path.isfile(os.path.join(path, d, "config.json"))]
    return sorted(found, key=lambda d: int(d.split("-")[1]))


def _expected() -> str:
    from .backbones import expected_folders

    return expected_folders()


def check_clip_config(config: dict, where: str) -> None:
    """Refuse a config.json (as a dict) that is not a registered backbone's (tgazsr.backbones): a
    CLIP's or a SigLIP's (a model type tgazsr knows and cannot read, such as Siglip2Model's, says why)."""
    from .backbones import BACKBONES, UNSUPPORTED_MODEL_TYPES

    model_type = config.get("model_type")
    if model_type in UNSUPPORTED_MODEL_TYPES:
        raise ModelFolderError(f"{where}: {UNSUPPORTED_MODEL_TYPES[model_type]}")
    if model_type in BACKBONES:
        problem = BACKBONES[model_type].config_problem(config)
        if problem:
            raise ModelFolderError(f"{where}: {problem}")
        return
    architectures = config.get("architectures") or []
    found = f"model_type {model_type!r}" if model_type else "no model_type"
    if architectures:
        found += f", architectures {', '.join(map(str, architectures))}"
    raise ModelFolderError(
        f"{where} is not a CLIP model, nor any other family tgazsr reads ({', '.join(b.title for b in BACKBONES.values())}): "
        f"its config.json has {found}. Expected {_expected()}. Pass a CLIP or SigLIP checkpoint "
        "(a Hub id such as openai/clip-vit-base-patch32 or google/siglip-base-patch16-224, or a folder tgazsr.train "
        "wrote); transformers would otherwise build a model with random weights from it."
    )


def check_model_folder(name_or_path: str, flag: str = "--model_name_or_path") -> None:
    """Refuse a local model path that is not a model directory of a registered backbone: missing, a file, a folder
    without config.json, or a config.json of another model. Hub ids pass (see ``load_clip``)."""
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        config_path = os.path.join(path, "config.json")
        if not os.path.isfile(config_path):
            entries = sorted(os.listdir(path))
            shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "") if entries else "nothing"
            checkpoints = _checkpoints(path)
            hint = (f" It holds training checkpoints: pass one of them, e.g. {flag} "
                    f"{os.path.join(name_or_path, checkpoints[-1])}." if checkpoints else "")
            raise ModelFolderError(
                f"{name_or_path} has no config.json, so it is not a model folder (it holds {shown}). "
                f"Expected {_expected()}.{hint}"
            )
        config = read_json_object(config_path, ModelFolderError, f"Expected {_expected()}.")
        check_clip_config(config, name_or_path)
    elif os.path.exists(path):
        raise ModelFolderError(f"{name_or_path} is a file, not a model folder. Pass {flag} {_expected()}.")
    elif looks_local(name_or_path):
        raise ModelFolderError(
            f"The model folder {name_or_path} does not exist. Pass {flag} an existing model directory, or a "
            "Hub id such as openai/clip-vit-base-patch32."
        )


def check_tokenizer(tokenizer, prompts: Iterable[str], where: str, hint: str | None = None) -> None:
    """Refuse a tokenizer that gives two distinct prompts the same token ids.

    The usual cause: a folder without tokenizer files, from which transformers builds a tokenizer
    with no vocabulary (every word becomes the unknown token), so every class would get the same
    text embedding and accuracy would be chance. ``where`` names the folder (or Hub id) it came
    from; ``hint`` replaces the default advice. Prompts that only collide once truncated to the
    tokenizer's length are refused too (a ``PromptError``): their classes would be the same.
    """
    distinct = list(dict.fromkeys(str(p) for p in prompts))
    if len(distinct) < 2:
        return
    advice = hint or (
        "Pass a model folder with its tokenizer files (vocab.json and merges.txt, or tokenizer.json, as "
        "CLIPProcessor.save_pretrained writes them), or in evaluation --tokenizer_name_or_path with the "
        "tokenizer of the base model the checkpoint was fine-tuned from."
    )
    ids = [[int(t) for t in tokens] for tokens in tokenizer(distinct, padding=False, truncation=True)["input_ids"]]
    special = set(getattr(tokenizer, "all_special_ids", None) or []) | {getattr(tokenizer, "unk_token_id", None)}
    if all(all(t in special for t in tokens) for tokens in ids):
        raise ModelFolderError(
            f"The tokenizer loaded from {where} has no vocabulary ({len(tokenizer)} tokens): every word of every "
            f"prompt (e.g. {distinct[0]!r}) becomes the unknown token, so every class would get the same text "
            f"embedding. The folder has no tokenizer files. {advice}"
        )
    seen: dict[tuple, str] = {}
    for prompt, tokens in zip(distinct, ids):
        key = tuple(tokens)
        if key not in seen:
            seen[key] = prompt
            continue
        first = seen[key]
        full = tokenizer([first, prompt], padding=False, truncation=False)["input_ids"]
        if list(full[0]) != list(full[1]):
            raise PromptError(
                f"The prompts {first!r} and {prompt!r} are the same once truncated to the {len(key)} tokens the "
                f"tokenizer of {where} keeps, so their classes could not be told apart. Shorten the prompt template "
                "or the class names."
            )
        raise ModelFolderError(
            f"The tokenizer loaded from {where} gives the distinct prompts {first!r} and {prompt!r} the same token "
            f"ids ({len(tokenizer)} tokens in its vocabulary), so their classes would get the same text embedding: "
            f"the folder has no usable tokenizer files. {advice}"
        )


def load_processor(name_or_path: str):
    """``AutoProcessor.from_pretrained`` for training: the processor (tokenizer and image processor)
    of a model directory, or a ``ModelFolderError`` naming what the folder lacks."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFolderError(
            f"Could not load the tokenizer and image processor of {name_or_path} ({type(err).__name__}: {first}). "
            "Pass a model folder with its tokenizer files (vocab.json and merges.txt, or tokenizer.json) and its "
            "image processor (preprocessor_config.json or processor_config.json), as CLIPProcessor.save_pretrained "
            "writes them next to the weights."
        ) from err
    tokenizer = getattr(processor, "tokenizer", processor)
    if callable(tokenizer):
        check_tokenizer(tokenizer, PROBE_PROMPTS, name_or_path)
    return processor


# --- strict loading: exactly the tensors the config declares -------------------------------------

#: How many tensors of each kind a message names.
SHOWN_TENSORS = 10


def _listed(names, limit: int = SHOWN_TENSORS) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def tensor_problems(missing=(), unexpected=(), mismatched=(), errors=()) -> list[str]:
    """One line per kind of problem: ``missing`` and ``unexpected`` tensor names, ``mismatched``
    ``(name, shape in the file, shape the model declares)``, and other loading errors."""
    lines = []
    if missing:
        lines.append(f"missing {len(missing)} tensor(s) the config declares: {_listed(missing)}")
    if unexpected:
        lines.append(f"{len(unexpected)} unexpected tensor(s) the config does not declare: {_listed(unexpected)}")
    if mismatched:
        shown = [f"{name} (file {list(a)}, config {list(b)})" for name, a, b in sorted(mismatched, key=lambda m: m[0])]
        lines.append(f"{len(mismatched)} tensor(s) of the wrong shape: {_listed(shown)}")
    lines += [str(e).strip().splitlines()[0] for e in errors if str(e).strip()]
    return lines


def strict_loading_error(where: str, problems: list[str], fix: str, error=ModelFolderError) -> Exception:
    return error(
        f"{where} does not hold exactly the tensors its config declares, so some layers would keep a random "
        "initialization: " + "; ".join(problems) + f". {fix}"
    )


LOAD_FIX = ("The weights file is incomplete, edited or belongs to another configuration: pass the folder as "
            "save_pretrained (or tgazsr.train, or tgazsr convert) wrote it, with the config.json written beside "
            "those weights.")


def load_pretrained_strict(cls, name_or_path: str, **kwargs):
    """``cls.from_pretrained(name_or_path, **kwargs)`` that reads transformers' loading report and
    refuses any missing, unexpected or wrongly shaped tensor and any loading error with a
    :class:`~tgazsr.errors.ModelFolderError` naming the tensors (up to ``SHOWN_TENSORS`` of each kind)
    and the fix. A clean ``save_pretrained`` / ``from_pretrained`` round trip reports nothing (the
    old persistent ``position_ids`` buffers of older checkpoints are dropped by transformers itself
    before it reports), so nothing else is allowed."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its own load report would print above ours: the report is read below
    try:
        model, info = cls.from_pretrained(name_or_path, output_loading_info=True, ignore_mismatched_sizes=True,
                                          **kwargs)
    finally:
        hf_logging.set_verbosity(level)
    problems = tensor_problems(info.get("missing_keys") or (), info.get("unexpected_keys") or (),
                               info.get("mismatched_keys") or (), info.get("error_msgs") or ())
    if problems:
        raise strict_loading_error(name_or_path, problems, LOAD_FIX)
    return model


def state_dict_problems(expected: dict, found: dict) -> list[str]:
    """:func:`tensor_problems` of ``found`` (name -> tensor) against ``expected`` (name -> tensor)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [(k, tuple(found[k].shape), tuple(expected[k].shape)) for k in expected
                  if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    return tensor_problems(missing, unexpected, mismatched)
