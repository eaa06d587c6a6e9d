"""AGFT, as its released code computes it (METHOD.md, "AGFT, as its released code computes it").

Alignment-Guided Fine-Tuning trains on adversarial images toward the frozen model's own zero-shot
distribution instead of one-hot labels. One step:

- soft target, under no_grad, from the frozen model theta0 on the **clean** image:
  ``p = softmax(r * S * cos(e_theta0(x), T))`` (``r`` = ``agft_scale_ratio`` 0.4, ``S`` =
  ``agft_logit_scale`` 180: the target's scale is 72);
- student logits on the attacked image at the full scale: ``z = S * cos(e_theta(x_adv), T)``;
- loss: the batch mean of the soft-label cross-entropy ``-sum_c p_c log softmax(z)_c`` (torch's
  ``CrossEntropyLoss`` with a probability target); no clean term, the labels are never read;
- the training attack (objective ``agft_soft_ce``) maximizes that same soft cross-entropy at scale
  ``S``, driven by the same soft target.

``T`` are the normalized class embeddings of the training prompt; the cosines carry neither the
model's own logit scale nor a logit bias. The whole vision tower trains; the text tower and the
logit scale stay frozen (the trainer's default). The released code names the two settings
``method_args["AGFT"]["logit_scale"]`` and ``["scale_ratio"]``; here they are ``agft_logit_scale`` and
``agft_scale_ratio``, so that the recipe key does not read as the model's own (frozen) logit scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..limits import setting
from ..objectives import AttackTarget, register_objective
from ..papers import AGFT
from .base import LossOutput, Method, MethodConfig, StepView, register_method

OBJECTIVE = "agft_soft_ce"
TERM = "loss_soft_ce"


@dataclass
class AGFTConfig(MethodConfig):
    """AGFT's settings; the defaults are its released training run's (README: logit_scale 180, scale_ratio 0.4)."""

    agft_logit_scale: float = setting(
        180.0, "AGFT: the scale S of the student's logits S * cos(e_theta(x_adv), T), in the loss and in the training "
        "attack (released code: method_args logit_scale).", gt=0)
    agft_scale_ratio: float = setting(
        0.4, "AGFT: the ratio r of the soft target's scale to S: p = softmax(r * S * cos(e_theta0(x), T)) from the "
        "frozen model on the clean image (released code: method_args scale_ratio).", gt=0)


def soft_target(reference_cosines: torch.Tensor, cfg) -> torch.Tensor:
    """``softmax(r * S * cos(e_theta0(x), T))``, without gradient: (B, C) class probabilities."""
    with torch.no_grad():
        return torch.softmax(reference_cosines.detach().float() * (cfg.agft_scale_ratio * cfg.agft_logit_scale), dim=-1)


def soft_cross_entropy(cosines: torch.Tensor, target: torch.Tensor, cfg) -> torch.Tensor:
    """Per sample ``-sum_c p_c log softmax(S * cos)_c``: (B,)."""
    logits = cosines.float() * cfg.agft_logit_scale
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1)


def agft_loss(view: StepView, cfg) -> LossOutput:
    cos_adv = view.logits_fn(view.adv.embeds, scale=False)
    target = soft_target(view.logits_fn(view.ref_clean.embeds, scale=False), cfg)
    loss = soft_cross_entropy(cos_adv, target, cfg).mean()
    return LossOutput(loss, None, {TERM: loss}, cos_adv.detach())


@register_objective(OBJECTIVE, reads_reference=True)
def _agft_soft_ce(model, target: AttackTarget):
    """The training attack: the soft cross-entropy of the loss, per sample, against the soft target
    from the frozen model's clean embeddings."""
    cfg = target.method_config
    if target.reference_embeds is None or target.text_embeds is None:
        raise ValueError(f"The {OBJECTIVE} objective needs the frozen model's clean embeddings and the class "
                         "embeddings.")
    if not all(hasattr(cfg, name) for name in ("agft_logit_scale", "agft_scale_ratio")):
        from ..recipes import RecipeError

        raise RecipeError(f"The attack objective {OBJECTIVE} reads AGFT's settings (agft_logit_scale, "
                          "agft_scale_ratio), which the chosen method does not have. Train with --method agft, or "
                          "choose another --attack_loss.")
    p = soft_target(model.logits(target.reference_embeds, target.text_embeds, scale=False), cfg)
    return lambda x: soft_cross_entropy(model.logits(model(x).embeds, target.text_embeds, scale=False), p, cfg)


AGFT_METHOD = register_method(Method(
    name="agft", title="AGFT",
    description="Alignment-guided fine-tuning: soft-label cross-entropy of the adversarial image's logits at scale S "
    "toward the frozen model's clean zero-shot distribution at scale r * S, attacked on the same loss.",
    loss=agft_loss, adversarial=True, attack_objective=OBJECTIVE, uses_clean=False, reference="clean",
    config=AGFTConfig, loss_terms=(TERM,), paper=AGFT,
))
