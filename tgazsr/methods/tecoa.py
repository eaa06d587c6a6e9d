"""TeCoA: cross-entropy of the zero-shot logits of adversarial images."""

from __future__ import annotations

from .. import losses
from .base import LossOutput, Method, StepView, register_method
from .papers import TECOA


def tecoa_loss(view: StepView, cfg) -> LossOutput:
    logits = view.logits_fn(view.adv.embeds)
    ce = losses.cross_entropy(logits, view.labels)
    return LossOutput(ce, None, {"loss_ce": ce}, logits)


TECOA_METHOD = register_method(Method(
    name="tecoa", title="TeCoA", description="Text-guided contrastive adversarial training: CE(z(x_adv), y).",
    loss=tecoa_loss, adversarial=True, attack_objective="ce", loss_terms=("loss_ce",), paper=TECOA,
))
