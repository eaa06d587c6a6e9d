"""A method whose loss turns NaN on a chosen call, for the fault tests; run as a script, it is
``python -m tgazsr.train`` with ``nan_on_rank_1`` registered: NaN on the second micro-batch of the
process of rank 1 only, a fault that one process of a data-parallel run meets and the others do not.
The loss is TeCoA's clean cross-entropy."""

import os
import sys

from tgazsr import losses
from tgazsr.methods import LossOutput, Method


def nan_method(name: str, on_call: int, only_rank: str | None = None) -> Method:
    """A method whose loss is NaN on its ``on_call``-th call (on the process of rank ``only_rank``
    only, when given): deterministic, unlike a huge learning rate."""
    calls = []

    def loss(view, cfg):
        calls.append(1)
        logits = view.logits_fn(view.clean.embeds)
        ce = losses.cross_entropy(logits, view.labels)
        if len(calls) == on_call and (only_rank is None or os.environ.get("RANK") == only_rank):
            ce = ce * float("nan")
        return LossOutput(ce, None, {"loss_ce": ce}, logits)

    return Method(name=name, title="NaN", description="test", loss=loss, adversarial=False,
                  attack_objective=None, uses_clean=True, loss_terms=("loss_ce",))


if __name__ == "__main__":
    from tgazsr.errors import run_command
    from tgazsr.methods import register_method
    from tgazsr.train import main

    register_method(nan_method("nan_on_rank_1", on_call=2, only_rank="1"))
    sys.exit(run_command(main))
