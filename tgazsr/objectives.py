"""Attack objectives by name: what an attack maximizes.

One registry, used by the training attack (``RobustCLIPTrainer``), every evaluation attack
(``tgazsr.attacks``) and the attention figure (``tgazsr.evaluation.visualize``). An objective
takes the model under attack and an :class:`AttackTarget` and returns a function from
``[0,1]`` images to one loss per sample (``contrastive`` is a batch loss and returns a scalar).

    ce           zero-shot cross-entropy of ``s * cos`` logits (TeCoA, TGA-ZSR, the TGA table's PGD)
    margin       CW margin ``min(max_{j!=y} z_j - z_y, kappa)`` (the TGA table's CW)
                 (on a defended classifier both add its ``adaptive_term``, the defense's own)
    contrastive  the backbone's in-batch image-text loss against the prompts of the labels (FT-Adv):
                 CLIP's symmetric softmax loss, SigLIP's sigmoid loss

Logits are the model's, ``s * cos + b`` where the family has a bias (SigLIP): ``ce`` and ``margin``
are invariant to a bias shared by every class, so they are those of ``s * cos``; ``contrastive``
reads the bias (see docs/evaluation.md).
    fare         squared L2 distance of the embedding to the frozen model's clean one (FARE)

Adding one is ``@register_objective("name")`` on a function of ``(model, target)``; an objective
that reads the frozen model declares it (``@register_objective("name", reads_reference=True)``),
and the training step then fills ``target.reference_embeds`` (the frozen model on the clean
images) and ``target.reference`` (the frozen encoder itself), whatever the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import losses
from .registry import Registry

LossFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttackTarget:
    """What an objective reads besides the images.

    labels: (B,) true classes. text_embeds: (C, D) normalized class embeddings of the classifier
    under attack. scale: multiply cosines by the model's logit scale (PMG-AFT's released code
    attacks plain cosines). reference_embeds: (B, D) the frozen model's clean embeddings (FARE).
    kappa: the margin cap of ``margin``.
    """

    labels: torch.Tensor
    text_embeds: torch.Tensor | None = None
    scale: bool = True
    reference_embeds: torch.Tensor | None = None
    reference: Callable | None = None
    method_config: object | None = None
    kappa: float = 50.0


Builder = Callable[[torch.nn.Module, AttackTarget], LossFn]


class LogitsClassifier(torch.nn.Module):
    """A classifier of ``[0,1]`` images that gives logits only, against its own class embeddings
    (a test-time defense, ``tgazsr.defenses``). The objectives that read logits (``ce``, ``margin``)
    call its ``classify``; those that need image embeddings refuse it."""

    text_embeds: torch.Tensor

    def adaptive_term(self, pixel_values: torch.Tensor) -> torch.Tensor | None:
        """A per-sample loss term that an attack on this classifier adds to ``ce`` and ``margin``,
        aimed at the defense's own mechanism (TTC's: its switch), or None."""
        return None

    def classify(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        if text_embeds is not self.text_embeds and not torch.equal(text_embeds.to(self.text_embeds), self.text_embeds):
            raise ValueError("A defended classifier scores against the class embeddings it was built with.")
        return self(pixel_values)


def _needs_embeddings(model, name: str) -> None:
    if isinstance(model, LogitsClassifier):
        raise ValueError(f"The {name} objective needs image embeddings; a defended classifier gives logits only. "
                         "Attack it with the ce or margin objective.")


@dataclass(frozen=True)
class Objective:
    """An attack objective: ``build(model, target)`` gives images -> losses. ``reads_reference``:
    it reads the frozen model (``target.reference_embeds`` / ``target.reference``)."""

    name: str
    build: Builder
    reads_reference: bool = False

    def __call__(self, model, target: AttackTarget) -> LossFn:
        return self.build(model, target)


OBJECTIVES: Registry[Objective] = Registry("attack objective", flag="--attack_loss")


def register_objective(name: str, reads_reference: bool = False) -> Callable[[Builder], Builder]:
    def add(fn: Builder) -> Builder:
        OBJECTIVES.register(name, Objective(name, fn, reads_reference))
        return fn

    return add


def unregister_objective(name: str) -> None:
    OBJECTIVES.unregister(name)


def get_objective(name: str) -> Objective:
    return OBJECTIVES.get(name)


def objective_loss(name: str, model, target: AttackTarget) -> LossFn:
    """``get_objective(name)(model, target)``: images -> per-sample losses."""
    return get_objective(name)(model, target)


def _logits(model, x: torch.Tensor, target: AttackTarget) -> torch.Tensor:
    if target.text_embeds is None:
        raise ValueError("This attack objective needs class text embeddings.")
    if isinstance(model, LogitsClassifier):
        if not target.scale:
            raise ValueError("A defended classifier gives scaled logits only; attack it with scale=True.")
        return model.classify(x, target.text_embeds)
    return model.logits(model(x).embeds, target.text_embeds, scale=target.scale)


def _with_defense_term(model, loss: LossFn) -> LossFn:
    """``loss`` plus the defended classifier's own adaptive term, when it has one."""
    if not isinstance(model, LogitsClassifier):
        return loss

    def total(x: torch.Tensor) -> torch.Tensor:
        value, term = loss(x), model.adaptive_term(x)
        return value if term is None else value + term.to(value)

    return total


@register_objective("ce")
def _ce(model, target: AttackTarget) -> LossFn:
    return _with_defense_term(model, lambda x: F.cross_entropy(_logits(model, x, target).float(), target.labels,
                                                               reduction="none"))


@register_objective("margin")
def _margin(model, target: AttackTarget) -> LossFn:
    return _with_defense_term(model, lambda x: losses.margin_loss(_logits(model, x, target), target.labels,
                                                                  target.kappa))


@register_objective("contrastive")
def _contrastive(model, target: AttackTarget) -> LossFn:
    _needs_embeddings(model, "contrastive")
    if target.text_embeds is None:
        raise ValueError("The contrastive objective needs class text embeddings.")
    text = target.text_embeds[target.labels]
    return lambda x: model.backbone.contrastive_loss(model(x).embeds, text, model.logit_scale, model.logit_bias)


@register_objective("fare", reads_reference=True)
def _fare(model, target: AttackTarget) -> LossFn:
    _needs_embeddings(model, "fare")
    if target.reference_embeds is None:
        raise ValueError("The fare objective needs the frozen model's clean embeddings (reference_embeds).")
    return lambda x: losses.embedding_l2(model(x).embeds, target.reference_embeds, reduce=False)
