"""``python -m tgazsr.train`` under DeepSpeed's engine on CPU gloo ranks, for the tests.

Started by ``accelerate launch --config_file accelerate_configs/deepspeed_zero2.yaml`` with the
recipe's ``--use_cpu true``, the Trainer already builds DeepSpeed's ZeRO-2 engine on CPU: accelerate
opens the gloo process group, DeepSpeed selects its CPU accelerator and joins that group when the
engine starts. Nothing CPU-specific needs patching.

What this launcher patches is a DeepSpeed 0.19.8 bug that does not depend on the device:
``DeepSpeedEngine._broadcast_model`` sends every parameter as ``p.data.view(torch.uint8)``, and a
0-dim tensor cannot be viewed as bytes, so the engine fails to start on any model with a scalar
parameter ("self.dim() cannot be 0 to view Float as Byte"). CLIP's ``logit_scale`` is one.
(0.19.7 broadcasts ``p.data`` itself and runs without this launcher.) The wrapper gives scalar
parameters the shape (1,) for the broadcast and back to () after it; same storage, same values.
It also prints the engine's ZeRO stage and world size once, so the tests can see the engine ran.
Nothing else is changed.
"""

import sys

from deepspeed.runtime.engine import DeepSpeedEngine

_broadcast_model = DeepSpeedEngine._broadcast_model


def _broadcast_model_with_scalars(self):
    scalars = [p for p in self.module.parameters() if p.dim() == 0]
    for p in scalars:
        p.data = p.data.reshape(1)
    try:
        _broadcast_model(self)
    finally:
        for p in scalars:
            p.data = p.data.reshape(())
    if self.global_rank == 0:
        print(f"deepspeed_on_cpu: ZeRO stage {self.zero_optimization_stage()} engine, "
              f"{self.world_size} ranks", file=sys.stderr)


DeepSpeedEngine._broadcast_model = _broadcast_model_with_scalars

if __name__ == "__main__":
    from tgazsr.errors import run_command
    from tgazsr.train import main

    sys.exit(run_command(main))
