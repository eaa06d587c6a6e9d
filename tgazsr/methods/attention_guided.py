"""TGA-ZSR, Comp-TGA and the vision-based variant: CE on adversarial images plus two attention
terms, L_AR (adversarial attention of the trained model toward the frozen model's clean
attention) and L_AMC (the trained model's clean attention kept there too)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import losses
from ..attention import ATTENTION_NORMS, complementary_attention, text_guided_attention, vision_attention
from ..limits import setting
from ..modeling import ImageEncoding
from .base import LossOutput, Method, MethodConfig, StepView, register_method
from .papers import COMP_TGA, TGA_ZSR

TERMS = ("loss_ce", "loss_ar", "loss_amc")
NEGATED_PROMPT = "negated_prompt_template"

_ALPHA = "Weight of the attention refinement loss L_AR (adversarial attention toward the frozen model's clean one)."
_BETA = "Weight of the attention model-constraint loss L_AMC (clean attention kept there too)."


@dataclass
class AttentionGuidedConfig(MethodConfig):
    """TGA-ZSR's settings (METHOD.md): the two attention weights, the distance between maps and the
    normalization of the projected tokens."""

    alpha: float = setting(0.08, _ALPHA, ge=0)
    beta: float = setting(0.05, _BETA, ge=0)
    distance_metric: str = setting("l2", "Distance between attention maps.", choices=losses.DISTANCE_METRICS)
    attention_norm: str = setting(
        "token_axis", "Normalization of projected tokens before text-guided attention: 'token_axis' (reference: "
        "each feature over the 1+N tokens) or 'per_token' (cosine per patch).", choices=ATTENTION_NORMS)


@dataclass
class CompTGAConfig(AttentionGuidedConfig):
    """Comp-TGA's settings: TGA-ZSR's with its own weights, and the complementary prompt."""

    alpha: float = setting(0.10, _ALPHA, ge=0)
    beta: float = setting(0.07, _BETA, ge=0)
    negated_prompt_template: str = setting(
        "This is not a photo of a {}", "Comp-TGA's complementary prompt t_not_y; '{}' is replaced by the class name.",
        placeholders=1, hint="Write it with one '{}', e.g. --negated_prompt_template 'This is not a photo of a {}'.")


def attention_map(kind: str, enc: ImageEncoding, view: StepView, norm: str) -> torch.Tensor:
    t = view.text_embeds[view.labels]
    if kind == "text":
        return text_guided_attention(enc.tokens, t, view.image_size, norm, prefix=enc.prefix_tokens)
    if kind == "complementary":
        return complementary_attention(enc.tokens, t, view.prompt_embeds[NEGATED_PROMPT][view.labels], view.image_size,
                                       norm, prefix=enc.prefix_tokens)
    return vision_attention(enc.attentions, view.image_size, prefix=enc.prefix_tokens)


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


def _attention_method(name, title, description, kind, config, paper, prompts=()):
    return register_method(Method(
        name=name, title=title, description=description, loss=attention_loss(kind), adversarial=True,
        attack_objective="ce", uses_clean=True, reference="clean", attention=kind, config=config,
        prompts=prompts, loss_terms=TERMS, paper=paper,
    ))


TGA_ZSR_METHOD = _attention_method(
    "tga_zsr", "TGA-ZSR",
    "Text-guided attention refinement (L_AR) and attention-based model constraint (L_AMC) on top of "
    "adversarial cross-entropy.", "text", AttentionGuidedConfig, TGA_ZSR,
)
COMP_TGA_METHOD = _attention_method(
    "comp_tga", "Comp-TGA",
    "TGA-ZSR with complementary attention A(x; t_y) * (1 - A(x; t_not_y)), t_not_y the prompt "
    "'This is not a photo of a {class}'.", "complementary", CompTGAConfig, COMP_TGA,
    prompts=(NEGATED_PROMPT,),
)
VISION_METHOD = _attention_method(
    "vision_attention", "Vision-based",
    "TGA-ZSR's losses on the last vision layer's CLS-to-patch self-attention (head mean), a "
    "differentiable stand-in for the paper's Grad-CAM ablation.", "vision", AttentionGuidedConfig, TGA_ZSR,
)
