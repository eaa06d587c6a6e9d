"""TGA-ZSR, Comp-TGA and the vision-based variant: CE on adversarial images plus two attention
terms, L_AR (adversarial attention of the trained model toward the frozen model's clean
attention) and L_AMC (the trained model's clean attention kept there too)."""

from __future__ import annotations

import torch

from .. import losses
from ..attention import complementary_attention, text_guided_attention, vision_attention
from ..modeling import ImageEncoding
from .base import LossOutput, Method, StepView, register_method
from .papers import COMP_TGA, TGA_ZSR

FIELDS = ("alpha", "beta", "distance_metric", "attention_norm")
TERMS = ("loss_ce", "loss_ar", "loss_amc")


def attention_map(kind: str, enc: ImageEncoding, view: StepView, norm: str) -> torch.Tensor:
    t = view.text_embeds[view.labels]
    if kind == "text":
        return text_guided_attention(enc.tokens, t, view.image_size, norm)
    if kind == "complementary":
        return complementary_attention(enc.tokens, t, view.negated_text_embeds[view.labels], view.image_size, norm)
    return vision_attention(enc.attentions, view.image_size)


def attention_loss(kind: str):
    def loss(view: StepView, cfg) -> LossOutput:
        logits_adv = view.logits_fn(view.adv.embeds)
        ce = losses.cross_entropy(logits_adv, view.labels)
        with torch.no_grad():
            target = attention_map(kind, view.ref_clean, view, cfg.attention_norm)
        ar = losses.attention_distance(attention_map(kind, view.adv, view, cfg.attention_norm), target,
                                       cfg.distance_metric)
        amc = losses.attention_distance(attention_map(kind, view.clean, view, cfg.attention_norm), target,
                                        cfg.distance_metric)
        total = ce + cfg.alpha * ar + cfg.beta * amc
        return LossOutput(total, None, {"loss_ce": ce, "loss_ar": ar, "loss_amc": amc}, logits_adv)

    return loss


def _attention_method(name, title, description, kind, weights, paper, extra_fields=()):
    return register_method(Method(
        name=name, title=title, description=description, loss=attention_loss(kind), adversarial=True,
        attack_objective="ce", uses_clean=True, reference="clean", attention=kind,
        fields=FIELDS + tuple(extra_fields), defaults={"alpha": weights[0], "beta": weights[1]},
        loss_terms=TERMS, paper=paper,
    ))


TGA_ZSR_METHOD = _attention_method(
    "tga_zsr", "TGA-ZSR",
    "Text-guided attention refinement (L_AR) and attention-based model constraint (L_AMC) on top of "
    "adversarial cross-entropy.", "text", (0.08, 0.05), TGA_ZSR,
)
COMP_TGA_METHOD = _attention_method(
    "comp_tga", "Comp-TGA",
    "TGA-ZSR with complementary attention A(x; t_y) * (1 - A(x; t_not_y)), t_not_y the prompt "
    "'This is not a photo of a {class}'.", "complementary", (0.10, 0.07), COMP_TGA,
    extra_fields=("negated_prompt_template",),
)
VISION_METHOD = _attention_method(
    "vision_attention", "Vision-based",
    "TGA-ZSR's losses on the last vision layer's CLS-to-patch self-attention (head mean), a "
    "differentiable stand-in for the paper's Grad-CAM ablation.", "vision", (0.08, 0.05), TGA_ZSR,
)
