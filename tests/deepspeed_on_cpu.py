"""``python -m tgazsr.train`` under DeepSpeed's engine, for the tests: unchanged, except that it
prints the engine's ZeRO stage and world size once, so that a test can see DeepSpeed's engine (not
plain data parallel) trained.

Started by ``accelerate launch --config_file accelerate_configs/deepspeed_zero2.yaml`` with the
recipe's ``--use_cpu true``, the Trainer builds DeepSpeed's ZeRO-2 engine on CPU: accelerate opens
the gloo process group, DeepSpeed selects its CPU accelerator and joins that group when the engine
starts. Nothing CPU-specific needs patching. (DeepSpeed 0.19.8 cannot start an engine on a CLIP: it
broadcasts each parameter viewed as bytes, which fails on the 0-dim logit_scale; tgazsr refuses that
release with the install command of another, and the ``dev`` extra excludes it.)
"""

import sys

from deepspeed.runtime.engine import DeepSpeedEngine

_broadcast_model = DeepSpeedEngine._broadcast_model


def _broadcast_model_and_say_so(self):
    _broadcast_model(self)
    if self.global_rank == 0:
        print(f"deepspeed_on_cpu: ZeRO stage {self.zero_optimization_stage()} engine, "
              f"{self.world_size} ranks", file=sys.stderr)


DeepSpeedEngine._broadcast_model = _broadcast_model_and_say_so

if __name__ == "__main__":
    from tgazsr.errors import run_command
    from tgazsr.train import main

    sys.exit(run_command(main))
