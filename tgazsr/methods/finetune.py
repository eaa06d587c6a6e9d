"""FT-Clean and FT-Adv: the model family's own image-text loss between the batch's images and the
prompts of their labels, on clean (FT-Clean) or adversarial (FT-Adv) images. Both are the
baselines of TeCoA's paper, with CLIP's symmetric softmax contrastive loss; on SigLIP they use
SigLIP's sigmoid loss (``Backbone.contrastive_loss``)."""

from __future__ import annotations

from .base import LossOutput, Method, StepView, register_method
from .papers import TECOA


def contrastive_loss(half: str):
    def loss(view: StepView, cfg) -> LossOutput:
        if view.backbone is None:
            raise ValueError("FT-Clean and FT-Adv read the model's own contrastive loss: the StepView names no backbone.")
        enc = view.adv if half == "adv" else view.clean
        value = view.backbone.contrastive_loss(enc.embeds, view.text_embeds[view.labels], view.logit_scale,
                                               view.logit_bias)
        return LossOutput(value, None, {"loss_contrastive": value}, view.logits_fn(enc.embeds.detach()))

    return loss


FT_CLEAN_METHOD = register_method(Method(
    name="ft_clean", title="FT-Clean", description="Contrastive fine-tuning on clean images.",
    loss=contrastive_loss("clean"), adversarial=False, attack_objective=None, uses_clean=True,
    loss_terms=("loss_contrastive",), paper=TECOA, backbone_loss=True,
))
FT_ADV_METHOD = register_method(Method(
    name="ft_adv", title="FT-Adv.",
    description="Contrastive fine-tuning on adversarial images (the attack maximizes the same loss).",
    loss=contrastive_loss("adv"), adversarial=True, attack_objective="contrastive",
    loss_terms=("loss_contrastive",), paper=TECOA, backbone_loss=True,
))
