"""Resolving a source: a local file or folder, ``hf-hub:ORG/NAME`` (downloaded, or read from the
local Hub cache when the Hub is off) or a zoo name."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..registry import close_matches
from .base import CHECKPOINT_SUFFIXES, HUB_PREFIX, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, ConversionError, public
from .zoo import ZOO, ZooEntry, zoo_entry

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

    metadata = [OPEN_CLIP_CONFIG, "*.json", "*.txt", "*.model"]  # *.model: a SigLIP's sentencepiece tokenizer
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
                    raise ConversionError(f"{repo_id} is a transformers model repository: pass --model_name_or_path "
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
        return _Resolved(local, entry.name if entry else public(local))
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
    close = close_matches(spec, list(ZOO), n=2, cutoff=0.6)
    hint = f" Did you mean the zoo entry {close[0]!r}?" if close else ""
    raise ConversionError(
        f"{spec} does not exist. Pass a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)}), an open_clip folder, "
        f"hf-hub:ORG/NAME, or a zoo name ({', '.join(ZOO)}).{hint}")
