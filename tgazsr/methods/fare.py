"""FARE: unsupervised; keep the embedding of the adversarial image at the frozen model's clean one."""

from __future__ import annotations

from .. import losses
from .base import LossOutput, Method, StepView, register_method
from .papers import FARE


def fare_loss(view: StepView, cfg) -> LossOutput:
    value = losses.embedding_l2(view.adv.embeds, view.ref_clean.embeds)
    return LossOutput(value, None, {"loss_fare": value}, view.logits_fn(view.adv.embeds.detach()))


FARE_METHOD = register_method(Method(
    name="fare", title="FARE",
    description="Unsupervised adversarial fine-tuning: ||e_theta(x_adv) - e_theta0(x)||^2, attacked on the same distance.",
    loss=fare_loss, adversarial=True, attack_objective="fare", reference="clean", loss_terms=("loss_fare",),
    paper=FARE,
))
