"""Torch threads on a CPU that other processes share.

Torch's intra-op threads wait for each other at every operation. When another process holds one of
two cores, two threads run many times slower than one (measured: the world's pretraining step took
10 s with 2 threads beside a busy process against 0.8 s with 1), so a CPU run uses the cores that
are idle when it starts, unless ``OMP_NUM_THREADS`` or ``TGAZSR_THREADS`` says otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os

logger = logging.getLogger("tgazsr")

THREADS_ENV = "TGAZSR_THREADS"


def default_threads() -> int:
    """Cores not busy with other processes (by the 1-minute load average), at least one;
    ``TGAZSR_THREADS`` when set."""
    if os.environ.get(THREADS_ENV, "").strip().isdigit():
        return max(1, int(os.environ[THREADS_ENV]))
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on POSIX
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (None: ``default_threads()``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n or default_threads()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def use_idle_cores(device) -> int | None:
    """For a run on the CPU, set torch's threads to the idle cores (:func:`default_threads`) unless
    ``OMP_NUM_THREADS`` fixes them; returns the count set (None: left as it was)."""
    import torch

    if getattr(device, "type", str(device)) != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return None
    n = default_threads()
    if n != torch.get_num_threads():
        logger.info("CPU run: %d torch thread(s), the idle cores of %d (set OMP_NUM_THREADS or %s to choose).", n,
                    os.cpu_count() or 1, THREADS_ENV)
        torch.set_num_threads(n)
    return n
