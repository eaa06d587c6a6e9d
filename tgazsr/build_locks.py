"""Locks left in torch's extension build folder by a build that was killed midway.

DeepSpeed compiles its ops on first use (on CPU, the shared-memory collective; on GPU, its fused
optimizers) through ``torch.utils.cpp_extension.load``, which takes a ``lock`` file in the op's build
folder and, when that file is already there, waits for it to disappear, without a time limit or a
message. A build killed midway (Ctrl-C, a job's time limit) leaves the file behind, and every later
run waits forever at its first step. A DeepSpeed run is checked for such files when its recipe is
parsed: an old one is refused with the file to delete, a recent one (a build that may still be
running in another process) is named in the log.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time

logger = logging.getLogger(__name__)

#: A lock this old is left by a killed build: compiling one of DeepSpeed's ops takes about a minute.
STALE_AFTER_S = 600


def extension_root() -> str:
    """The folder torch builds its extensions in, as ``torch.utils.cpp_extension`` chooses it: set by
    ``TORCH_EXTENSIONS_DIR``, else ``<cache>/torch_extensions/py<version>_<accelerator>``."""
    chosen = os.environ.get("TORCH_EXTENSIONS_DIR")
    if chosen:
        return chosen
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    if torch.version.hip is not None:
        accelerator = "rocm" + torch.version.hip.replace(".", "")
    elif torch.version.cuda is not None:
        accelerator = "cu" + torch.version.cuda.replace(".", "")
    else:
        accelerator = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return os.path.join(get_default_build_root(), f"{python}_{accelerator}")


def build_locks(root: str | None = None, now: float | None = None) -> list[tuple[str, float]]:
    """Each op's build lock under ``root`` with its age in seconds, oldest first."""
    root = extension_root() if root is None else root
    now = time.time() if now is None else now
    found = []
    for path in glob.glob(os.path.join(glob.escape(root), "*", "lock")):
        try:
            found.append((path, max(0.0, now - os.path.getmtime(path))))
        except OSError:  # released between the listing and the look
            continue
    return sorted(found, key=lambda item: -item[1])


def stale_lock_problems(root: str | None = None, now: float | None = None) -> list[str]:
    """A problem for each lock older than ``STALE_AFTER_S``; a log line for each younger one."""
    problems = []
    for path, age in build_locks(root, now):
        if age >= STALE_AFTER_S:
            problems.append(
                f"{path} is a build lock left {age / 60:.0f} minutes ago by a compilation that did not finish: "
                "DeepSpeed's first step would wait for it to disappear, forever and without a message. If no "
                f"other process is compiling this op, delete it (rm {path}) and start again; or build in another "
                "folder (export TORCH_EXTENSIONS_DIR=<an empty folder>).")
        else:
            logger.warning("%s: another process is compiling this op (its lock is %.0f s old); if the run waits "
                           "here for minutes, that build was killed: delete the file.", path, age)
    return problems
