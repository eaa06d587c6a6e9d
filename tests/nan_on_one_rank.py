"""``python -m tgazsr.train`` with a method whose loss is NaN on the second micro-batch of the
process of rank 1 only, for the tests of non-finite losses under data parallel: a fault that one
process meets and the others do not. The method, ``nan_on_rank_1``, is TeCoA's clean cross-entropy."""

import os
import sys

from tgazsr import losses
from tgazsr.methods import LossOutput, Method, register_method

_calls = []


def _loss(view, cfg):
    _calls.append(1)
    logits = view.logits_fn(view.clean.embeds)
    ce = losses.cross_entropy(logits, view.labels)
    if len(_calls) == 2 and os.environ.get("RANK") == "1":
        ce = ce * float("nan")
    return LossOutput(ce, None, {"loss_ce": ce}, logits)


register_method(Method(name="nan_on_rank_1", title="NaN on rank 1", description="test", loss=_loss,
                       adversarial=False, attack_objective=None, uses_clean=True, loss_terms=("loss_ce",)))

if __name__ == "__main__":
    from tgazsr.errors import run_command
    from tgazsr.train import main

    sys.exit(run_command(main))
