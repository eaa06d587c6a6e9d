"""A cache for ``--model_name_or_path``: each source converted once into ``$TGAZSR_HOME/converted``,
keyed by a fingerprint of its files (or Hub revision) and the options."""

from __future__ import annotations

import hashlib
import logging
import os
import re

from ..files import file_lock
from . import writing
from .base import CHECKPOINT_SUFFIXES, CONVERTER_VERSION, HUB_PREFIX, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, ConversionError
from .sources import _Resolved, _resolve
from .zoo import zoo_entry

logger = logging.getLogger("tgazsr.convert")

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
            try:
                writing._convert_resolved(resolved, out, base_model=base_model, tokenizer=tokenizer,
                                          quick_gelu=quick_gelu, overwrite=True)
            except ConversionError as err:  # its fix names tgazsr convert's options, which this command has not
                raise ConversionError(
                    f"{err} (This arose converting {resolved.name} for --model_name_or_path, which takes no conversion "
                    f"options: run `tgazsr convert {resolved.name} FOLDER` with the options named, then pass "
                    "--model_name_or_path FOLDER.)") from None
    return out
