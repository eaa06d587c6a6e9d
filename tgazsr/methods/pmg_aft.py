"""PMG-AFT, as its released code computes it.

``CE(q(x_adv), y) + KL(p_theta0(x_adv) || p_theta(x_adv)) + KL(p_theta(x) || p_theta(x_adv))``:
the released code calls ``KLDivLoss(reduction="sum")(log_softmax(q_adv), softmax(q_target))``,
which is ``sum target * (log target - log_softmax(q_adv))`` = KL(p_target || p_adv), with the
frozen model on x_adv and the trained model on clean x as targets. The clean target is not
detached (``kl_detach_target`` detaches it), the KL terms are batch sums (``kl_reduction``), and
the logits are plain cosines (``pmg_logit_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import losses
from ..limits import setting
from .base import LossOutput, Method, MethodConfig, StepView, register_method
from .papers import PMG_AFT


@dataclass
class PMGAFTConfig(MethodConfig):
    """PMG-AFT's settings; the defaults are its released code's."""

    kl_weight_general: float = setting(1.0, "PMG-AFT: weight of KL(p_theta0(x_adv) || p_theta(x_adv)).", ge=0)
    kl_weight_clean: float = setting(1.0, "PMG-AFT: weight of KL(p_theta(x) || p_theta(x_adv)).", ge=0)
    kl_reduction: str = setting("sum", "PMG-AFT: 'sum' the KL terms over the batch (released code) or 'mean'.",
                                choices=("sum", "mean"))
    kl_detach_target: bool = setting(
        False, "PMG-AFT: detach the clean target p_theta(x) of the second KL term (released code: no, gradients "
        "flow through both sides).")
    pmg_logit_scale: bool = setting(
        False, "PMG-AFT: scale its logits by the model's logit scale. Released code: no (plain cosine "
        "similarities, temperature 1).")


def pmg_aft_loss(view: StepView, cfg) -> LossOutput:
    q_adv = view.logits_fn(view.adv.embeds, scale=view.scale)
    q_clean = view.logits_fn(view.clean.embeds, scale=view.scale)
    q_ref_adv = view.logits_fn(view.ref_adv.embeds, scale=view.scale)
    ce = losses.cross_entropy(q_adv, view.labels)
    kl_general = losses.kl_divergence(q_ref_adv, q_adv, cfg.kl_reduction, detach_p=True)
    kl_clean = losses.kl_divergence(q_clean, q_adv, cfg.kl_reduction, detach_p=cfg.kl_detach_target)
    kl = cfg.kl_weight_general * kl_general + cfg.kl_weight_clean * kl_clean
    logs = {"loss_ce": ce, "loss_kl_general": kl_general, "loss_kl_clean": kl_clean}
    if cfg.kl_reduction == "sum":
        return LossOutput(ce, kl, logs, q_adv)
    return LossOutput(ce + kl, None, logs, q_adv)


PMG_AFT_METHOD = register_method(Method(
    name="pmg_aft", title="PMG-AFT",
    description="Pre-trained model guided adversarial fine-tuning: CE plus KL(p_theta0(x_adv) || p_theta(x_adv)) "
    "and KL(p_theta(x) || p_theta(x_adv)).",
    loss=pmg_aft_loss, adversarial=True, attack_objective="ce", uses_clean=True, reference="adv",
    config=PMGAFTConfig, logit_scale_field="pmg_logit_scale", loss_terms=("loss_ce", "loss_kl_general", "loss_kl_clean"),
    paper=PMG_AFT,
))
