"""Each training method as one small object: its attack objective and its loss terms.

All methods share one training step (``RobustCLIPTrainer.compute_loss``):
1. attack the clean batch (if the method is adversarial) with the method's objective;
2. one forward of the trained model on ``[x_adv; x]`` (or whichever halves the method uses);
3. one no-grad forward of the frozen reference where the method needs it;
4. the method's loss terms from a ``StepView`` of those outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import losses
from .attention import complementary_attention, text_guided_attention, vision_attention
from .modeling import ImageEncoding


@dataclass
class StepView:
    """Everything a method's loss may read for one batch. Encodings are None when unused."""

    labels: torch.Tensor
    text_embeds: torch.Tensor  # (C, D) normalized class embeddings
    negated_text_embeds: torch.Tensor | None  # (C, D), Comp-TGA only
    logits_fn: Callable[..., torch.Tensor]  # (image_embeds, scale=True) -> zero-shot logits
    logit_scale: torch.Tensor
    image_size: int
    adv: ImageEncoding | None  # trained model on x_adv
    clean: ImageEncoding | None  # trained model on x
    ref_adv: ImageEncoding | None  # frozen model on x_adv
    ref_clean: ImageEncoding | None  # frozen model on x


@dataclass
class LossOutput:
    """``mean_terms`` are batch means; ``sum_terms`` are batch sums (PMG-AFT's KL). The trainer
    scales each kind so gradient accumulation matches the equivalent larger batch. ``logs`` are
    the unweighted terms, by name."""

    mean_part: torch.Tensor
    sum_part: torch.Tensor | None
    logs: dict[str, torch.Tensor]
    accuracy_logits: torch.Tensor


@dataclass(frozen=True)
class Method:
    name: str
    adversarial: bool  # trains on attacked images
    attack_loss: str | None  # default objective of the training attack
    uses_clean: bool  # forward the clean batch through the trained model
    reference: str | None  # None | "clean" | "adv": which images the frozen model sees
    attention: str | None  # None | "text" | "complementary" | "vision"
    loss: Callable[[StepView, object], LossOutput]


def _attention(kind: str, enc: ImageEncoding, view: StepView, norm: str) -> torch.Tensor:
    t = view.text_embeds[view.labels]
    if kind == "text":
        return text_guided_attention(enc.tokens, t, view.image_size, norm)
    if kind == "complementary":
        return complementary_attention(enc.tokens, t, view.negated_text_embeds[view.labels], view.image_size, norm)
    return vision_attention(enc.attentions, view.image_size)


def _attention_loss(kind: str) -> Callable[[StepView, object], LossOutput]:
    def loss(view: StepView, cfg) -> LossOutput:
        logits_adv = view.logits_fn(view.adv.embeds)
        ce = losses.cross_entropy(logits_adv, view.labels)
        with torch.no_grad():
            target = _attention(kind, view.ref_clean, view, cfg.attention_norm)
        ar = losses.attention_distance(_attention(kind, view.adv, view, cfg.attention_norm), target, cfg.distance_metric)
        amc = losses.attention_distance(
            _attention(kind, view.clean, view, cfg.attention_norm), target, cfg.distance_metric
        )
        total = ce + cfg.alpha * ar + cfg.beta * amc
        return LossOutput(total, None, {"loss_ce": ce, "loss_ar": ar, "loss_amc": amc}, logits_adv)

    return loss


def _tecoa_loss(view: StepView, cfg) -> LossOutput:
    logits = view.logits_fn(view.adv.embeds)
    ce = losses.cross_entropy(logits, view.labels)
    return LossOutput(ce, None, {"loss_ce": ce}, logits)


def _contrastive_loss(half: str) -> Callable[[StepView, object], LossOutput]:
    def loss(view: StepView, cfg) -> LossOutput:
        enc = view.adv if half == "adv" else view.clean
        value = losses.contrastive(enc.embeds, view.text_embeds[view.labels], view.logit_scale)
        return LossOutput(value, None, {"loss_contrastive": value}, view.logits_fn(enc.embeds.detach()))

    return loss


def _pmg_aft_loss(view: StepView, cfg) -> LossOutput:
    scale = uses_logit_scale(METHODS["pmg_aft"], cfg)
    q_adv = view.logits_fn(view.adv.embeds, scale=scale)
    q_clean = view.logits_fn(view.clean.embeds, scale=scale)
    q_ref_adv = view.logits_fn(view.ref_adv.embeds, scale=scale)
    ce = losses.cross_entropy(q_adv, view.labels)
    kl_general = losses.kl_divergence(q_adv, q_ref_adv, cfg.kl_reduction, cfg.kl_detach_target)
    kl_clean = losses.kl_divergence(q_adv, q_clean, cfg.kl_reduction, cfg.kl_detach_target)
    kl = cfg.kl_weight_general * kl_general + cfg.kl_weight_clean * kl_clean
    logs = {"loss_ce": ce, "loss_kl_general": kl_general, "loss_kl_clean": kl_clean}
    if cfg.kl_reduction == "sum":
        return LossOutput(ce, kl, logs, q_adv)
    return LossOutput(ce + kl, None, logs, q_adv)


def _fare_loss(view: StepView, cfg) -> LossOutput:
    value = losses.embedding_l2(view.adv.embeds, view.ref_clean.embeds)
    return LossOutput(value, None, {"loss_fare": value}, view.logits_fn(view.adv.embeds.detach()))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("tga_zsr", True, "ce", True, "clean", "text", _attention_loss("text")),
        Method("comp_tga", True, "ce", True, "clean", "complementary", _attention_loss("complementary")),
        Method("vision_attention", True, "ce", True, "clean", "vision", _attention_loss("vision")),
        Method("tecoa", True, "ce", False, None, None, _tecoa_loss),
        Method("pmg_aft", True, "ce", True, "adv", None, _pmg_aft_loss),
        Method("fare", True, "fare", False, "clean", None, _fare_loss),
        Method("ft_clean", False, None, True, None, None, _contrastive_loss("clean")),
        Method("ft_adv", True, "contrastive", False, None, None, _contrastive_loss("adv")),
    ]
}


def uses_logit_scale(method: Method, cfg) -> bool:
    """Whether the method's zero-shot logits (and so its CE attack) are scaled by the logit scale.
    PMG-AFT's released code uses plain cosines for both its loss and its training attack."""
    return cfg.pmg_logit_scale if method.name == "pmg_aft" else True


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
    return METHODS[name]
