"""``python -m tgazsr.train`` under accelerate's FSDP engine on CPU gloo ranks, for the tests.

accelerate turns FSDP on only for accelerator devices (MULTI_GPU and the like); on CPU ranks it
silently stays plain data parallel. This launcher keeps the FSDP plugin the Trainer passes in, so
the same ``fully_shard`` code that runs on GPUs runs here on gloo. Nothing else is changed.
"""

import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__
_plugin = []


def _init_keeping_fsdp(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None:
        _plugin[:] = [fsdp_plugin]
    if _plugin and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = _plugin[0]


AcceleratorState.__init__ = _init_keeping_fsdp

if __name__ == "__main__":
    from tgazsr.errors import run_command
    from tgazsr.train import main

    sys.exit(run_command(main))
