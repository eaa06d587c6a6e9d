"""Small file helpers shared by the caches (the world, converted checkpoints)."""

from __future__ import annotations

import contextlib
import json
import os


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
