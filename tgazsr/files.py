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
