"""Closing the process group of a launched run (torchrun, accelerate launch), once, in one way.

Every process waits for the others (when the run ended normally), then what holds a reference to a
group is freed before the groups are destroyed: FSDP's sharded modules and the Trainer keep their
process groups alive in reference cycles, and a group freed only at interpreter exit can abort the
process there ("terminate called without an active exception"): gloo's worker threads are torn
down while Python is half gone. PyTorch's own discussion of the failure:
https://github.com/pytorch/pytorch/pull/179291 (destroy the groups while the interpreter is alive).
"""

from __future__ import annotations

import gc

import torch


def close_process_group(wait: bool) -> None:
    """Destroy the default process group and every other, if one is open; ``wait``: a barrier first
    (no process exits while another still writes)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if wait:
        torch.distributed.barrier()
    gc.collect()  # the run's modules and Trainer, unreachable now, release their groups here
    torch.distributed.destroy_process_group()
