"""Torch threads on a CPU that other processes share.

Torch's intra-op threads wait for each other at every operation. When another process holds one of
two cores, two threads run many times slower than one (measured: the world's pretraining step took
10 s with 2 threads beside a busy process against 0.8 s with 1), so a CPU run uses the cores that
are idle when it starts (:func:`use_idle_cores`).

Who decides, first match wins: ``TGAZSR_THREADS``; an ``OMP_NUM_THREADS`` above 1; several processes
on the machine (torchrun and ``accelerate launch`` split the cores between them); otherwise the idle
cores. ``OMP_NUM_THREADS=1`` alone does not decide: ``accelerate launch`` and torchrun set it by
default whatever the machine (the quickstart ran 160 s of fine-tuning on 1 thread against 102 s on
the 2 idle cores); ``TGAZSR_THREADS=1`` asks for one thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

logger = logging.getLogger("tgazsr")

THREADS_ENV = "TGAZSR_THREADS"


def _proc_times() -> tuple[int, int, int]:
    """(all CPU time, idle time, this process's time), in clock ticks, from /proc."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return sum(values), values[3] + values[4], int(own[11]) + int(own[12])


def busy_cores(window: float = 0.5) -> float:
    """How many cores other processes keep busy: measured over ``window`` seconds from /proc (this
    process's own time left out, so a run that has worked for a while does not count itself), or
    the 1-minute load average where /proc is not there."""
    try:
        first = _proc_times()
        time.sleep(window)
        last = _proc_times()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - not on POSIX
            return 0.0
    total = last[0] - first[0]
    if total <= 0:
        return 0.0
    others = total - (last[1] - first[1]) - (last[2] - first[2])
    return max(0.0, (os.cpu_count() or 1) * others / total)


def default_threads() -> int:
    """Cores not busy with other processes (:func:`busy_cores`), at least one; ``TGAZSR_THREADS``
    when set."""
    if os.environ.get(THREADS_ENV, "").strip().isdigit():
        return max(1, int(os.environ[THREADS_ENV]))
    cores = os.cpu_count() or 1
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


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


def _omp_threads() -> int:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


def use_idle_cores(device, processes: int = 1) -> int | None:
    """For a run on the CPU, set torch's threads as the module says; returns the count set (None:
    left as it was: not a CPU run, an ``OMP_NUM_THREADS`` above 1, or several processes)."""
    import torch

    if getattr(device, "type", str(device)) != "cpu":
        return None
    if not os.environ.get(THREADS_ENV, "").strip().isdigit() and (_omp_threads() > 1 or processes > 1):
        return None
    n = default_threads()
    if n != torch.get_num_threads():
        logger.info("CPU run: %d torch thread(s), the idle cores of %d (set %s to choose).", n,
                    os.cpu_count() or 1, THREADS_ENV)
        torch.set_num_threads(n)
    return n
