"""Small file helpers shared by the caches (the world, converted checkpoints)."""

from __future__ import annotations

import contextlib
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
