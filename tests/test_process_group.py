"""A launched run closes its process group in one way (tgazsr.process_group): what holds a group in
a reference cycle (FSDP's modules, the Trainer) is freed while the group is still open, then every
group is destroyed, so nothing is left for the interpreter's exit to tear down."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.distributed as dist

from conftest import free_port
from tgazsr.process_group import close_process_group


class Holder:
    """Like a sharded module: keeps a process group, inside a reference cycle."""

    def __init__(self, group):
        self.group = group
        self.me = self


@pytest.mark.parametrize("wait", [True, False])
def test_a_cycle_holding_a_group_is_freed_before_the_groups_are_destroyed(wait, tmp_path):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    freed_while_open = []
    holder = Holder(dist.new_group([0]))
    weakref.finalize(holder, lambda: freed_while_open.append(dist.is_initialized()))
    del holder  # unreachable, but alive in its cycle until a collection
    dist.all_reduce(torch.ones(1))
    gc.disable()  # no automatic collection: only close_process_group's own can free the holder
    try:
        close_process_group(wait=wait)
    finally:
        gc.enable()
    assert freed_while_open == [True]
    assert not dist.is_initialized()
    close_process_group(wait=wait)  # nothing open: nothing to do
