"""Small file helpers: the caches' locks (the world, converted checkpoints), JSON objects, fingerprints,
and the checks of an output folder or file that run before a command starts its work."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct

from .errors import UserError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: str):
    """An exclusive lock on ``path`` (POSIX ``flock``; a no-op where that is missing), so two
    processes never build the same cache entry at once."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process builds this entry now: say so, then wait for it
            logger.info("Waiting for another process that holds %s (it is building the same cache entry; it "
                        "is released when that process ends).", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json_object(path: str, error: type[Exception] = ValueError, hint: str = "") -> dict:
    """The JSON object in ``path``; a file that is not valid JSON, or holds no object, raises
    ``error`` with a message naming the file (and ``hint``, e.g. what was expected)."""
    suffix = f" {hint}" if hint else ""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as err:
        raise error(f"{path} is not valid JSON ({err}).{suffix}") from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object.{suffix}")
    return data


def local_fingerprint(path: str, read_bytes: bool) -> str:
    """A short hash naming a local model or dataset without its path (for what is published): the
    relative names and sizes of its files, and their bytes too when ``read_bytes`` (a model's few
    files; a dataset folder of many images is named by its listing alone). The same folder copied to
    another machine gives the same hash."""
    import hashlib

    digest = hashlib.blake2b(digest_size=6)
    root = os.path.abspath(os.path.expanduser(path))
    files = [root] if os.path.isfile(root) else sorted(
        os.path.join(d, f) for d, _, names in os.walk(root) for f in names)
    for file in files:
        rel = os.path.relpath(file, root) if file != root else os.path.basename(root)
        digest.update(f"{rel}|{os.path.getsize(file)}\n".encode())
        if read_bytes:
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


# --- output folders and files, checked before the work starts ------------------------------------

class OutputError(OSError, UserError):
    """An output folder or file that cannot be written (a file where a folder should be, no write
    permission, too little free space). An ``OSError`` too, as the failed write would have been."""


def _existing_ancestor(path: str) -> str:
    """``path`` or its nearest parent that exists."""
    here = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(here):
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    return here


def _probe_write(folder: str) -> str | None:
    """Why nothing can be written in the existing folder ``folder``, or None. Creates and removes a
    small file (a permission check alone is wrong for root and for read-only mounts)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".tgazsr-write-check-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.remove(probe)
    return None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_output_dir(path: str, need_bytes: int = 0, flag: str = "--output_dir", what: str = "") -> None:
    """Check, before any work, that the folder ``path`` can hold a command's output: it is not a
    file, it (or, when it does not exist yet, the nearest parent that does) takes a new file, and its
    disk has ``need_bytes`` free (``what`` says what they are for, e.g. "one checkpoint: ..."). Raises
    :class:`OutputError` naming the folder, what is wrong and the fix. Creates nothing."""
    if not path:
        raise OutputError(f"{flag} is empty: name the folder the output goes to.")
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(full) and not os.path.isdir(full):
        raise OutputError(f"{flag} {path} is a file, not a folder. Pass the path of a folder (new or existing) "
                          f"as {flag}, or move the file away.")
    base = _existing_ancestor(full)
    if not os.path.isdir(base):
        raise OutputError(f"{flag} {path} cannot be created: {base} is a file, not a folder. Pass another {flag}.")
    problem = _probe_write(base)
    if problem:
        where = path if base == full else f"{base}, where {path} would be created"
        raise OutputError(f"{flag} {path} is not writable: nothing can be written in {where} ({problem}). Pass a "
                          f"folder you can write to as {flag}, or change the folder's permissions.")
    if need_bytes > 0:
        import shutil

        free = shutil.disk_usage(base).free
        if free < need_bytes:
            purpose = f" for {what}" if what else ""
            raise OutputError(f"{flag} {path} has too little free space: about {human_bytes(need_bytes)} is needed"
                              f"{purpose}, {human_bytes(free)} is free on its disk. Free some space or pass a "
                              f"folder on another disk as {flag}.")


def check_output_file(path: str, flag: str = "--output") -> None:
    """Check, before any work, that the file ``path`` can be written: it is not a folder, and its folder
    exists or can be created and takes a new file. Raises :class:`OutputError`. Creates nothing."""
    if not path:
        raise OutputError(f"{flag} is empty: name the file to write.")
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        raise OutputError(f"{flag} {path} is a folder, not a file. Pass a file name, e.g. {flag} "
                          f"{os.path.join(path, 'out' + (os.path.splitext(path)[1] or '.png'))}.")
    base = _existing_ancestor(os.path.dirname(full))
    if not os.path.isdir(base):
        raise OutputError(f"{flag} {path} cannot be created: {base} is a file, not a folder. Pass another {flag}.")
    problem = _probe_write(base)
    if problem:
        raise OutputError(f"{flag} {path} cannot be written: nothing can be written in {base} ({problem}). Pass a "
                          f"file in a folder you can write to as {flag}.")


# --- the size of a checkpoint, before the model is loaded -----------------------------------------

_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_parameter_count(path: str) -> int:
    """The number of elements of every tensor in a ``.safetensors`` file, read from its header alone."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    count = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= int(dim)
        count += n
    return count


def model_parameter_count(model: str) -> int | None:
    """The parameter count of a model folder or Hub id, from its safetensors headers (a local folder, or
    a Hub id in the local cache), without loading it; None when it cannot be told (no safetensors
    weights, a Hub model not cached)."""
    files: list[str] = []
    if os.path.isdir(model):
        files = [os.path.join(model, n) for n in sorted(os.listdir(model)) if n.endswith(".safetensors")]
    elif model and not os.path.exists(model):
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model, "model.safetensors")
            files = [found] if isinstance(found, str) else []
        except Exception:  # noqa: BLE001 - not a Hub id, or no cache: unknown
            files = []
    if not files:
        return None
    try:
        return sum(safetensors_parameter_count(f) for f in files)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def optimizer_state_factor(optim: str) -> int:
    """Optimizer state per parameter, in copies of the parameters: 2 for Adam-style optimizers (two
    moments), 1 for SGD (momentum), Lion and Adafactor (bounded above by one copy), 2 for anything
    else (the larger, to be safe)."""
    name = str(getattr(optim, "value", optim)).lower()
    if name.startswith("sgd") or "lion" in name or "adafactor" in name:
        return 1
    return 2


def checkpoint_bytes(parameters: int, bytes_per_element: int = 4, optimizer_factor: int = 2) -> int:
    """About the size of one training checkpoint: the weights and the optimizer state,
    ``parameters x bytes_per_element x (1 + optimizer_factor)``."""
    return int(parameters) * int(bytes_per_element) * (1 + int(optimizer_factor))
